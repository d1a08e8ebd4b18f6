//! What a local program can write into the TUN device and what the tunnel writes back, through the
//! offload code of fastwire's Linux TUN queue: a super-packet with an arbitrary virtio-net header split
//! into segments (what a TUN read does with TSO/USO on; tun-rs 2.8.16's `gso_split`), and arbitrary
//! packets planned into coalesced writes (what a batched TUN write does; our own
//! `fastwire_io::tun::gro::Gro`). Random bytes rarely make an IP packet with valid checksums, so two
//! more inputs build them: flows of well-formed TCP or UDP packets (valid checksums, consecutive
//! sequence numbers, then edits) for GRO, and a well-formed super-packet with a plausible header for the
//! split. Invariants: no panic; segments fit their buffers and carry the super-packet's payload, in
//! order, when the split succeeds on a well-formed one; every planned write lies in the buffer, every
//! packet is written exactly once, and with no edits each flow's payload bytes come out in order.
#![no_main]

use arbitrary::Arbitrary;
use fastwire_io::tun::gro::{Gro, VNET_HDR_LEN};
use libfuzzer_sys::fuzz_target;
use tun_rs::{VirtioNetHdr, gso_split};

#[derive(Arbitrary, Debug)]
struct Header {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Split {
        header: Header,
        packet: Vec<u8>,
        segment_room: u16,
    },
    Coalesce {
        packets: Vec<Vec<u8>>,
        udp: bool,
    },
    Flows {
        v6: bool,
        udp: bool,
        can_udp_gro: bool,
        segments: Vec<FlowSegment>,
    },
    SplitBuilt {
        v6: bool,
        udp: bool,
        mss: u16,
        payload_len: u16,
        ecn: bool,
        segment_room: u16,
        edit: Option<Edit>,
    },
}

/// One packet of a flow: which of four flows, how much payload, which TCP flags, whether its sequence
/// number leaves a gap, and an optional edit of one byte after the checksums are written.
#[derive(Arbitrary, Debug)]
struct FlowSegment {
    flow: u8,
    payload_len: u16,
    tcp_flags: Option<u8>,
    gap: bool,
    edit: Option<Edit>,
}

#[derive(Arbitrary, Debug)]
struct Edit {
    at: u16,
    value: u8,
}

#[path = "../../crates/io/tests/support/internet_checksum.rs"]
mod reference;
use reference::internet_checksum;

/// virtio-net: the checksum from `csum_start` on is left to the receiver (not re-exported by tun-rs).
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// A well-formed IPv4 or IPv6 packet carrying a TCP or UDP header and `payload`, checksums valid.
fn build_packet(v6: bool, proto: u8, port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4_len = if proto == TCP { 20 } else { 8 } + payload.len();
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&port.to_be_bytes());
    l4[2..4].copy_from_slice(&443u16.to_be_bytes());
    if proto == TCP {
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4[8..12].copy_from_slice(&1u32.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
        l4[20..].copy_from_slice(payload);
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4[8..].copy_from_slice(payload);
    }
    let (src, dst): (&[u8], &[u8]) = if v6 {
        (
            &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        )
    } else {
        (&[10, 0, 0, 1], &[10, 0, 0, 2])
    };
    let pseudo_len = (l4_len as u32).to_be_bytes();
    let csum = internet_checksum(&[src, dst, &[0, proto], &pseudo_len, &l4]);
    let at = if proto == TCP { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    let mut ip = if v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        h[6] = proto;
        h[7] = 64;
        h[8..24].copy_from_slice(src);
        h[24..40].copy_from_slice(dst);
        h
    } else {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        h[6] = 0x40; // DF
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(src);
        h[16..20].copy_from_slice(dst);
        let c = internet_checksum(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    };
    ip.extend_from_slice(&l4);
    ip
}

fn apply_edit(packet: &mut [u8], edit: &Option<Edit>) {
    if let (Some(e), false) = (edit, packet.is_empty()) {
        let at = usize::from(e.at) % packet.len();
        packet[at] = e.value;
    }
}

fn payload_bytes(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// Room the engine leaves in front of each segment (its WireGuard header).
const HEADROOM: usize = 16;
/// Largest segment buffer an input may ask for.
const MAX_ROOM: usize = HEADROOM + 9000;

thread_local! {
    // Allocated once, as the engine allocates its arenas once: only the first `room` bytes are used.
    static SEGMENTS: std::cell::RefCell<Vec<Vec<u8>>> =
        std::cell::RefCell::new((0..tun_rs::IDEAL_BATCH_SIZE).map(|_| vec![0u8; MAX_ROOM]).collect());
}

/// Splits `packet` as a TUN read does, into segment buffers of the room the input asks for; when the
/// split succeeds, checks every segment fits its buffer and hands the segments (headroom stripped) to
/// `check`.
fn split(
    packet: &mut [u8],
    hdr: VirtioNetHdr,
    segment_room: u16,
    v6: bool,
    check: impl FnOnce(Vec<&[u8]>),
) {
    let room = HEADROOM + (segment_room as usize % 9000).max(68);
    SEGMENTS.with(|segments| {
        let mut segments = segments.borrow_mut();
        let mut bufs: Vec<&mut [u8]> = segments.iter_mut().map(|b| &mut b[..room]).collect();
        let mut sizes = [0usize; tun_rs::IDEAL_BATCH_SIZE];
        let Ok(n) = gso_split(packet, hdr, &mut bufs, &mut sizes, HEADROOM, v6) else {
            return;
        };
        assert!(n <= bufs.len());
        let mut out = Vec::with_capacity(n);
        for (buf, &size) in bufs.iter().zip(&sizes[..n]) {
            assert!(HEADROOM + size <= room, "a segment larger than its buffer");
            out.push(&buf[HEADROOM..HEADROOM + size]);
        }
        check(out);
    });
}

/// Plans `packets` as the TUN writer does (each behind the engine's headroom) and returns each write's
/// bytes, after checking every packet went into exactly one write.
fn coalesce(packets: &[Vec<u8>], udp: bool) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for p in packets {
        buf.extend_from_slice(&[0u8; HEADROOM]);
        spans.push((buf.len(), p.len()));
        buf.extend_from_slice(p);
    }
    let mut gro = Gro::new();
    gro.plan(&mut buf, &spans, udp);
    let mut writes = Vec::new();
    let mut heads = 0;
    let mut pieces = 0;
    for write in gro.writes() {
        assert!(
            !write.is_empty() && write.len() <= 64,
            "a write of {} spans",
            write.len()
        );
        let mut bytes = Vec::new();
        for &(start, len) in write {
            assert!(start + len <= buf.len(), "a span outside the buffer");
            bytes.extend_from_slice(&buf[start..start + len]);
        }
        assert!(
            bytes.len() <= VNET_HDR_LEN + 65_535,
            "a write larger than an IP packet"
        );
        heads += 1;
        pieces += write.len();
        writes.push(bytes);
    }
    assert!(
        heads <= packets.len() && pieces == packets.len(),
        "a packet lost or written twice"
    );
    writes
}

fuzz_target!(|input: Input| {
    match input {
        Input::Split {
            header,
            mut packet,
            segment_room,
        } => {
            packet.truncate(65_535);
            let hdr = VirtioNetHdr {
                flags: header.flags,
                gso_type: header.gso_type,
                hdr_len: header.hdr_len,
                gso_size: header.gso_size,
                csum_start: header.csum_start,
                csum_offset: header.csum_offset,
            };
            let is_v6 = packet.first().is_some_and(|b| b >> 4 == 6);
            split(&mut packet, hdr, segment_room, is_v6, |_| {});
        }
        Input::Coalesce { packets, udp } => {
            let packets: Vec<Vec<u8>> = packets
                .into_iter()
                .take(tun_rs::IDEAL_BATCH_SIZE)
                .map(|p| p[..p.len().min(65_000)].to_vec())
                .collect();
            coalesce(&packets, udp);
        }
        Input::Flows {
            v6,
            udp,
            can_udp_gro,
            segments,
        } => {
            let proto = if udp { UDP } else { TCP };
            let mut seq = [1000u32; 4];
            let mut edited = false;
            let mut expected: [Vec<u8>; 4] = Default::default();
            let packets: Vec<Vec<u8>> = segments
                .iter()
                .take(tun_rs::IDEAL_BATCH_SIZE)
                .map(|seg| {
                    let flow = usize::from(seg.flow % 4);
                    let len = usize::from(seg.payload_len % 1400);
                    let flags = seg.tcp_flags.unwrap_or(0x10); // ACK
                    let payload = payload_bytes(len, seg.flow);
                    expected[flow].extend_from_slice(&payload);
                    let mut packet =
                        build_packet(v6, proto, 1000 + flow as u16, seq[flow], flags, &payload);
                    seq[flow] = seq[flow].wrapping_add(len as u32 + u32::from(seg.gap));
                    edited |= seg.edit.is_some();
                    apply_edit(&mut packet, &seg.edit);
                    packet
                })
                .collect();
            let writes = coalesce(&packets, can_udp_gro);
            if !edited {
                // Each flow's payload, write by write, is what went in, in order.
                let iph = if v6 { 40 } else { 20 };
                let headers = iph + if udp { 8 } else { 20 };
                let mut carried: [Vec<u8>; 4] = Default::default();
                for write in &writes {
                    let packet = &write[VNET_HDR_LEN..];
                    let port = u16::from_be_bytes([packet[iph], packet[iph + 1]]);
                    carried[usize::from(port - 1000)].extend_from_slice(&packet[headers..]);
                }
                assert!(carried == expected, "a flow's bytes changed or moved");
            }
        }
        Input::SplitBuilt {
            v6,
            udp,
            mss,
            payload_len,
            ecn,
            segment_room,
            edit,
        } => {
            let proto = if udp { UDP } else { TCP };
            let payload = payload_bytes(usize::from(payload_len) % 60_000, 7);
            let mut packet = build_packet(v6, proto, 1000, 1, 0x18, &payload);
            let iph_len: u16 = if v6 { 40 } else { 20 };
            let l4_hdr: u16 = if udp { 8 } else { 20 };
            let gso_type = match (udp, v6) {
                (true, _) => tun_rs::VIRTIO_NET_HDR_GSO_UDP_L4,
                (false, false) => tun_rs::VIRTIO_NET_HDR_GSO_TCPV4,
                (false, true) => tun_rs::VIRTIO_NET_HDR_GSO_TCPV6,
            };
            let hdr = VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: gso_type | if ecn { 0x80 } else { 0 },
                hdr_len: iph_len + l4_hdr,
                gso_size: mss.max(1),
                csum_start: iph_len,
                csum_offset: if udp { 6 } else { 16 },
            };
            let well_formed = edit.is_none();
            apply_edit(&mut packet, &edit);
            split(&mut packet, hdr, segment_room, v6, |segments| {
                let header = usize::from(iph_len + l4_hdr);
                let mut carried = Vec::with_capacity(payload.len());
                for segment in segments {
                    assert!(
                        segment.len() >= header,
                        "a segment shorter than its headers"
                    );
                    carried.extend_from_slice(&segment[header..]);
                }
                if well_formed {
                    assert!(
                        carried == payload,
                        "the segments do not carry the payload in order"
                    );
                }
            });
        }
    }
});
