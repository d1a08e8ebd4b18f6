use super::*;
use tun_rs::{VirtioNetHdr, gso_split};

/// Room in front of each packet, as the engine leaves it (the WireGuard data header).
const ROOM: usize = 16;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;

#[path = "../../tests/support/internet_checksum.rs"]
mod reference;
use reference::internet_checksum;

struct Pkt {
    v6: bool,
    proto: u8,
    port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    id: u16,
    window: u16,
    payload: Vec<u8>,
}

impl Pkt {
    fn tcp(port: u16, seq: u32, payload_len: usize) -> Self {
        Self {
            v6: false,
            proto: TCP,
            port,
            seq,
            ack: 7,
            flags: ACK,
            id: 1,
            window: 1000,
            payload: (0..payload_len).map(|i| (i as u8) ^ (seq as u8)).collect(),
        }
    }

    fn udp(port: u16, payload_len: usize, tag: u8) -> Self {
        Self {
            proto: UDP,
            payload: vec![tag; payload_len],
            ..Self::tcp(port, 0, 0)
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let tcp = self.proto == TCP;
        let l4_len = if tcp { 20 } else { 8 } + self.payload.len();
        let mut l4 = vec![0u8; l4_len];
        l4[0..2].copy_from_slice(&self.port.to_be_bytes());
        l4[2..4].copy_from_slice(&443u16.to_be_bytes());
        if tcp {
            l4[4..8].copy_from_slice(&self.seq.to_be_bytes());
            l4[8..12].copy_from_slice(&self.ack.to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = self.flags;
            l4[14..16].copy_from_slice(&self.window.to_be_bytes());
            l4[20..].copy_from_slice(&self.payload);
        } else {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4[8..].copy_from_slice(&self.payload);
        }
        let (src, dst): (&[u8], &[u8]) = if self.v6 {
            (
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            )
        } else {
            (&[10, 0, 0, 1], &[10, 0, 0, 2])
        };
        let sum = internet_checksum(&[
            src,
            dst,
            &[0, self.proto],
            &(l4_len as u32).to_be_bytes(),
            &l4,
        ]);
        let at = if tcp { 16 } else { 6 };
        l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        let mut ip = if self.v6 {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            h[6] = self.proto;
            h[7] = 64;
            h[8..24].copy_from_slice(src);
            h[24..40].copy_from_slice(dst);
            h
        } else {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&self.id.to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = self.proto;
            h[12..16].copy_from_slice(src);
            h[16..20].copy_from_slice(dst);
            let sum = internet_checksum(&[&h]);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h
        };
        ip.extend_from_slice(&l4);
        ip
    }
}

/// A TCP flow's segments of `mss` bytes, the last with PSH, ids counting up.
fn flow(port: u16, segments: usize, mss: usize) -> Vec<Pkt> {
    (0..segments)
        .map(|i| {
            let mut p = Pkt::tcp(port, 1000 + (i * mss) as u32, mss);
            p.id = i as u16 + 1;
            if i + 1 == segments {
                p.flags = PSH_ACK;
            }
            p
        })
        .collect()
}

/// Lays packets out as the engine does (headroom in front of each) and plans them.
fn plan(packets: &[Vec<u8>], udp: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for p in packets {
        buf.extend_from_slice(&[0xee; ROOM]);
        spans.push((buf.len(), p.len()));
        buf.extend_from_slice(p);
    }
    let mut gro = Gro::new();
    gro.plan(&mut buf, &spans, udp);
    let writes = gro
        .writes()
        .map(|w| {
            w.iter()
                .flat_map(|&(s, l)| buf[s..s + l].to_vec())
                .collect()
        })
        .collect();
    (buf, writes)
}

fn vnet(write: &[u8]) -> VirtioNetHdr {
    VirtioNetHdr::decode(write).unwrap()
}

/// Splits a written super-packet back into packets, as the kernel would (tun-rs' independent split).
fn split(write: &[u8], v6: bool) -> Vec<Vec<u8>> {
    let hdr = vnet(write);
    let mut packet = write[VNET_HDR_LEN..].to_vec();
    let mut bufs = vec![vec![0u8; 2000]; 128];
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut sizes = [0usize; 128];
    let n = gso_split(&mut packet, hdr, &mut refs, &mut sizes, 0, v6).unwrap();
    (0..n).map(|i| bufs[i][..sizes[i]].to_vec()).collect()
}

fn tcp_seq(packet: &[u8], iph: usize) -> u32 {
    u32::from_be_bytes(packet[iph + 4..iph + 8].try_into().unwrap())
}

#[test]
fn an_in_order_flow_is_one_write_that_splits_back_into_its_packets() {
    for v6 in [false, true] {
        let pkts: Vec<Pkt> = flow(5000, 44, 1380)
            .into_iter()
            .map(|p| Pkt { v6, ..p })
            .collect();
        let bytes: Vec<Vec<u8>> = pkts.iter().map(Pkt::bytes).collect();
        let (_, writes) = plan(&bytes, false);
        assert_eq!(writes.len(), 1, "v6 {v6}");
        let hdr = vnet(&writes[0]);
        let iph = if v6 { 40 } else { 20 };
        assert_eq!(
            hdr.gso_type,
            if v6 { VNET_GSO_TCPV6 } else { VNET_GSO_TCPV4 }
        );
        assert_eq!(
            (hdr.flags, hdr.gso_size, hdr.hdr_len),
            (VNET_F_NEEDS_CSUM, 1380, iph as u16 + 20)
        );
        assert_eq!((hdr.csum_start, hdr.csum_offset), (iph as u16, 16));
        assert_eq!(writes[0].len(), VNET_HDR_LEN + iph + 20 + 44 * 1380);
        let segments = split(&writes[0], v6);
        assert_eq!(segments.len(), 44);
        for (segment, original) in segments.iter().zip(&bytes) {
            assert_eq!(segment[iph + 20..], original[iph + 20..], "payload");
            assert_eq!(tcp_seq(segment, iph), tcp_seq(original, iph));
            // The split's checksums are the originals' (same bytes, same pseudo-header).
            assert_eq!(segment[iph + 16..iph + 18], original[iph + 16..iph + 18]);
        }
        assert_eq!(
            segments[43][iph + 13],
            PSH_ACK,
            "PSH stays on the last segment"
        );
    }
}

#[test]
fn the_headers_of_a_run_are_rewritten_consistently() {
    let bytes: Vec<Vec<u8>> = flow(5000, 3, 1000).iter().map(Pkt::bytes).collect();
    let (_, writes) = plan(&bytes, false);
    let packet = &writes[0][VNET_HDR_LEN..];
    assert_eq!(
        usize::from(u16::from_be_bytes([packet[2], packet[3]])),
        packet.len()
    );
    assert_eq!(
        internet_checksum(&[&packet[..20]]),
        0,
        "IPv4 header checksum"
    );
    assert_eq!(
        packet[33], PSH_ACK,
        "the run carries the last segment's PSH"
    );
    // The TCP checksum field holds the pseudo-header sum (not inverted) for the whole length.
    let l4_len = (packet.len() - 20) as u32;
    let pseudo = !internet_checksum(&[&packet[12..20], &[0, TCP], &l4_len.to_be_bytes()]);
    assert_eq!(u16::from_be_bytes([packet[36], packet[37]]), pseudo);
}

#[test]
fn a_packet_alone_gets_an_empty_virtio_header_and_stays_as_it_was() {
    let garbage = vec![0x99u8; 50];
    let ping = {
        let mut p = Pkt::udp(1, 56, 3).bytes();
        p[9] = 1; // ICMP: not a flow we coalesce
        p
    };
    let (_, writes) = plan(&[garbage.clone(), ping.clone(), vec![]], true);
    assert_eq!(writes.len(), 3);
    for (write, original) in writes.iter().zip([garbage, ping, vec![]]) {
        assert_eq!(write[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
        assert_eq!(write[VNET_HDR_LEN..], original[..]);
    }
}

#[test]
fn a_bad_checksum_is_written_alone_and_the_flow_keeps_its_order() {
    let mut bytes: Vec<Vec<u8>> = flow(5000, 6, 1000).iter().map(Pkt::bytes).collect();
    let last = bytes[2].len() - 1;
    bytes[2][last] ^= 0xff;
    let (_, writes) = plan(&bytes, false);
    let seqs: Vec<(u32, usize)> = writes
        .iter()
        .map(|w| (tcp_seq(&w[VNET_HDR_LEN..], 20), w.len() - VNET_HDR_LEN - 40))
        .collect();
    assert_eq!(seqs, [(1000, 2000), (3000, 1000), (4000, 3000)]);
    assert_eq!(
        writes[1][VNET_HDR_LEN..],
        bytes[2][..],
        "the bad one is passed on untouched"
    );
}

#[test]
fn a_bad_first_segment_joins_nothing() {
    let mut bytes: Vec<Vec<u8>> = flow(5000, 3, 1000).iter().map(Pkt::bytes).collect();
    bytes[0][100] ^= 1;
    let (_, writes) = plan(&bytes, false);
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0][VNET_HDR_LEN..], bytes[0][..]);
    assert_eq!(vnet(&writes[1]).gso_size, 1000);
}

#[test]
fn interleaved_flows_each_become_one_write_in_first_packet_order() {
    let a = flow(1, 4, 500);
    let b = flow(2, 4, 500);
    let bytes: Vec<Vec<u8>> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.bytes(), y.bytes()])
        .collect();
    let (_, writes) = plan(&bytes, false);
    assert_eq!(writes.len(), 2);
    for (write, port) in writes.iter().zip([1u16, 2]) {
        assert_eq!(
            write[VNET_HDR_LEN + 20..VNET_HDR_LEN + 22],
            port.to_be_bytes()
        );
        assert_eq!(write.len(), VNET_HDR_LEN + 40 + 4 * 500);
    }
}

#[test]
fn what_must_not_merge_ends_the_run() {
    // A FIN in the middle, then a different acknowledgement, then a gap in the sequence.
    let mut pkts = flow(9, 8, 700);
    pkts[2].flags = FIN_ACK;
    for p in &mut pkts[4..] {
        p.ack = 8;
    }
    pkts[7].seq += 1;
    let bytes: Vec<Vec<u8>> = pkts.iter().map(Pkt::bytes).collect();
    let (_, writes) = plan(&bytes, false);
    let runs: Vec<usize> = writes
        .iter()
        .map(|w| (w.len() - VNET_HDR_LEN - 40) / 700)
        .collect();
    assert_eq!(runs, [2, 1, 1, 3, 1]);
}

#[test]
fn a_short_segment_ends_its_run_and_a_larger_one_cannot_follow() {
    let mut pkts = vec![
        Pkt::tcp(3, 0, 1000),
        Pkt::tcp(3, 1000, 1000),
        Pkt::tcp(3, 2000, 400),
        Pkt::tcp(3, 2400, 1000),
    ];
    pkts.push(Pkt::tcp(3, 3400, 1200));
    let bytes: Vec<Vec<u8>> = pkts.iter().map(Pkt::bytes).collect();
    let (_, writes) = plan(&bytes, false);
    let lens: Vec<usize> = writes.iter().map(|w| w.len() - VNET_HDR_LEN - 40).collect();
    assert_eq!(lens, [2400, 1000, 1200]);
}

#[test]
fn udp_merges_only_when_the_device_takes_udp_super_packets() {
    let pkts = [
        Pkt::udp(4, 600, 1),
        Pkt::udp(4, 600, 2),
        Pkt::udp(4, 100, 3),
    ];
    let bytes: Vec<Vec<u8>> = pkts.iter().map(Pkt::bytes).collect();
    let (_, writes) = plan(&bytes, false);
    assert_eq!(writes.len(), 3);
    let (_, writes) = plan(&bytes, true);
    assert_eq!(writes.len(), 1);
    let hdr = vnet(&writes[0]);
    assert_eq!(
        (hdr.gso_type, hdr.gso_size, hdr.csum_offset),
        (VNET_GSO_UDP_L4, 600, 6)
    );
    let packet = &writes[0][VNET_HDR_LEN..];
    assert_eq!(
        usize::from(u16::from_be_bytes([packet[24], packet[25]])),
        packet.len() - 20
    );
    let segments = split(&writes[0], false);
    assert_eq!(segments.len(), 3);
    for (segment, original) in segments.iter().zip(&bytes) {
        assert_eq!(segment[20..], original[20..], "UDP header and payload");
    }
}

#[test]
fn runs_stop_at_64_segments_and_64_kib() {
    let small: Vec<Vec<u8>> = (0..100)
        .map(|i| Pkt::tcp(6, i * 100, 100).bytes())
        .collect();
    let (_, writes) = plan(&small, false);
    let lens: Vec<usize> = writes
        .iter()
        .map(|w| (w.len() - VNET_HDR_LEN - 40) / 100)
        .collect();
    assert_eq!(lens, [64, 36]);
    let large: Vec<Vec<u8>> = (0..60)
        .map(|i| Pkt::tcp(6, i * 1400, 1400).bytes())
        .collect();
    let (_, writes) = plan(&large, false);
    assert!(writes.iter().all(|w| w.len() - VNET_HDR_LEN <= 65_535));
    assert_eq!(writes.len(), 2);
}

#[test]
fn more_flows_than_the_open_limit_still_keep_each_flow_in_order() {
    // 40 flows round-robin, 3 segments each: some runs close early, none reorders.
    let mut bytes = Vec::new();
    for round in 0..3u32 {
        for port in 0..40u16 {
            bytes.push(Pkt::tcp(port, round * 100, 100).bytes());
        }
    }
    let (_, writes) = plan(&bytes, false);
    let mut next_seq = [0u32; 40];
    for w in &writes {
        let p = &w[VNET_HDR_LEN..];
        let port = usize::from(u16::from_be_bytes([p[20], p[21]]));
        assert_eq!(tcp_seq(p, 20), next_seq[port]);
        next_seq[port] += (p.len() - 40) as u32;
    }
    assert!(next_seq.iter().all(|&s| s == 300));
}

/// Sets an IPv4 header field and makes the header checksum valid again.
fn edit_ipv4(packet: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    edit(packet);
    packet[10..12].fill(0);
    let sum = internet_checksum(&[&packet[..20]]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn a_new_window_ends_the_run_as_in_the_kernel() {
    let mut pkts = flow(8, 4, 500);
    pkts[2].window = 2000;
    pkts[3].window = 2000;
    let bytes: Vec<Vec<u8>> = pkts.iter().map(Pkt::bytes).collect();
    let (_, writes) = plan(&bytes, false);
    let lens: Vec<usize> = writes.iter().map(|w| w.len() - VNET_HDR_LEN - 40).collect();
    assert_eq!(lens, [1000, 1000]);
}

#[test]
fn ip_headers_must_match_and_be_valid() {
    // A bad IPv4 header checksum joins nothing; neither does a different IPv6 flow label.
    let mut bytes: Vec<Vec<u8>> = flow(8, 3, 500).iter().map(Pkt::bytes).collect();
    bytes[1][10] ^= 0x40;
    let (_, writes) = plan(&bytes, false);
    assert_eq!(writes.len(), 3);
    let mut bytes: Vec<Vec<u8>> = flow(8, 3, 500)
        .into_iter()
        .map(|p| Pkt { v6: true, ..p }.bytes())
        .collect();
    bytes[2][3] = 0x77; // flow label, outside the checksums
    let (_, writes) = plan(&bytes, false);
    let lens: Vec<usize> = writes.iter().map(|w| w.len() - VNET_HDR_LEN - 60).collect();
    assert_eq!(lens, [1000, 500]);
}

#[test]
fn a_later_fragment_between_the_same_hosts_ends_the_run_but_a_ping_does_not() {
    let datagram = |tag| Pkt::udp(4, 600, tag).bytes();
    let mut fragment = Pkt::udp(4, 600, 9).bytes();
    edit_ipv4(&mut fragment, |p| p[6..8].copy_from_slice(&[0, 100])); // offset 800, no ports
    let mut ping = Pkt::udp(4, 56, 0).bytes();
    edit_ipv4(&mut ping, |p| p[9] = 1); // ICMP
    let bytes = [
        datagram(1),
        datagram(2),
        fragment,
        datagram(3),
        ping,
        datagram(4),
    ];
    let (_, writes) = plan(&bytes, true);
    let lens: Vec<usize> = writes.iter().map(|w| w.len() - VNET_HDR_LEN).collect();
    // [1, 2], the fragment, [3, 4] with the ping written alone in between.
    assert_eq!(lens, [20 + 8 + 1200, 628, 20 + 8 + 1200, 84]);
}
