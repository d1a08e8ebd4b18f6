//! TUN offload costs as the workers pay them (tun-rs, the same calls `recv_multiple`/`send_multiple`
//! make), without a TUN device:
//!
//! - `gso_split`: one 64 KiB TCP/IPv4 TSO super-packet (47 segments of MSS 1380, checksum offload
//!   requested) split into 1420-byte packets at `DATA_HEADER_LEN` in fixed-stride slots, as the send
//!   worker lays them out; each output segment gets fresh IPv4 and TCP checksums.
//! - `gro_coalesce`: 44 in-order 1420-byte segments of one TCP flow, with valid checksums, coalesced by
//!   `GroTable::apply_gro` into one super-packet with a virtio header, as the receive worker does before
//!   writing to the TUN device. Only `apply_gro` is timed; restoring the 44 input buffers is not (that
//!   restore is the copy the engine made before tun-rs' GRO). `fastwire_*`: the same segments planned
//!   by fastwire's own `tun::gro::Gro` where they lie (what the engine does now).
//!
//! Run: `cargo bench -p fastwire-io --bench offload`

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use criterion::{BenchmarkId, Criterion, Throughput};
    use fastwire_io::tun::gro::Gro;
    use tun_rs::{GROTable as GroTable, IDEAL_BATCH_SIZE as MAX_SEGMENTS, VIRTIO_NET_HDR_LEN};
    use tun_rs::{VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr, gso_split};

    /// Headroom the workers leave in front of each packet (the WireGuard data header).
    const HEADROOM: usize = 16;
    /// Room the workers leave after each packet (padding and AEAD tag).
    const TAILROOM: usize = 32;
    const MSS: usize = 1380;
    const IP_HEADER: usize = 20;
    const TCP_HEADER: usize = 20;
    const HEADERS: usize = IP_HEADER + TCP_HEADER;
    const SEGMENT_LEN: usize = HEADERS + MSS;
    const TSO_SEGMENTS: usize = 47;
    const GRO_SEGMENTS: usize = 44;
    const MAX_PACKET: usize = 65_535;
    const SRC: [u8; 4] = [10, 77, 0, 1];
    const DST: [u8; 4] = [10, 77, 0, 2];
    const FIRST_SEQ: u32 = 0x1000_0000;
    const TCP_ACK: u8 = 0x10;
    const TCP_PSH: u8 = 0x08;
    const NEEDS_CSUM: u8 = 1;

    /// Ones' complement sum of `data` added to `initial`, not folded.
    fn sum(data: &[u8], initial: u32) -> u32 {
        let mut chunks = data.chunks_exact(2);
        let mut acc = u64::from(initial);
        for pair in &mut chunks {
            acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            acc += u64::from(*last) << 8;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    fn pseudo_header_sum(tcp_len: usize) -> u32 {
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&SRC);
        pseudo[4..8].copy_from_slice(&DST);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        sum(&pseudo, 0)
    }

    /// An IPv4+TCP packet of one flow with `payload` bytes; `full_checksum` fills in the TCP checksum,
    /// otherwise it holds only the pseudo-header sum, as the kernel leaves it for checksum offload.
    fn tcp4_packet(
        seq: u32,
        ip_id: u16,
        payload: usize,
        flags: u8,
        full_checksum: bool,
    ) -> Vec<u8> {
        let total = HEADERS + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total.min(MAX_PACKET) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&ip_id.to_be_bytes());
        p[6] = 0x40; // don't fragment
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&SRC);
        p[16..20].copy_from_slice(&DST);
        let ip_checksum = !(sum(&p[..IP_HEADER], 0) as u16);
        p[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

        let tcp = &mut p[IP_HEADER..];
        tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
        tcp[12] = ((TCP_HEADER / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in tcp[TCP_HEADER..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let pseudo = pseudo_header_sum(total - IP_HEADER);
        let tcp_checksum = if full_checksum {
            !(sum(tcp, pseudo) as u16)
        } else {
            pseudo as u16
        };
        tcp[16..18].copy_from_slice(&tcp_checksum.to_be_bytes());
        p
    }

    fn checksums_valid(packet: &[u8]) -> bool {
        let ip_ok = sum(&packet[..IP_HEADER], 0) == 0xffff;
        let tcp_ok = sum(
            &packet[IP_HEADER..],
            pseudo_header_sum(packet.len() - IP_HEADER),
        ) == 0xffff;
        ip_ok && tcp_ok
    }

    fn config_group<'a>(
        c: &'a mut Criterion,
        name: &str,
        packets: usize,
        bytes: usize,
    ) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::ElementsAndBytes {
            elements: packets as u64,
            bytes: bytes as u64,
        });
        group
    }

    pub fn gso(c: &mut Criterion) {
        let mut super_packet =
            tcp4_packet(FIRST_SEQ, 1, TSO_SEGMENTS * MSS, TCP_ACK | TCP_PSH, false);
        let hdr = VirtioNetHdr {
            flags: NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: HEADERS as u16,
            gso_size: MSS as u16,
            csum_start: IP_HEADER as u16,
            csum_offset: 16,
        };
        let stride = HEADROOM + SEGMENT_LEN + TAILROOM;
        let mut arena = vec![0u8; stride * MAX_SEGMENTS];
        let mut slots: Vec<&mut [u8]> = arena.chunks_exact_mut(stride).collect();
        let mut sizes = [0usize; MAX_SEGMENTS];

        let n = gso_split(
            &mut super_packet,
            hdr,
            &mut slots,
            &mut sizes,
            HEADROOM,
            false,
        )
        .expect("valid TSO packet");
        assert_eq!(n, TSO_SEGMENTS);
        for (slot, &len) in slots.iter().zip(&sizes[..n]) {
            assert_eq!(len, SEGMENT_LEN);
            assert!(checksums_valid(&slot[HEADROOM..HEADROOM + len]));
        }

        let mut group = config_group(c, "gso_split", TSO_SEGMENTS, super_packet.len());
        group.bench_function(BenchmarkId::new("tcp4_mss1380", super_packet.len()), |b| {
            b.iter(|| {
                let n = gso_split(
                    black_box(&mut super_packet),
                    hdr,
                    &mut slots,
                    &mut sizes,
                    HEADROOM,
                    false,
                );
                black_box(n.expect("split"))
            })
        });
        group.finish();
    }

    pub fn gro(c: &mut Criterion) {
        let segments: Vec<Vec<u8>> = (0..GRO_SEGMENTS)
            .map(|i| {
                let flags = if i + 1 == GRO_SEGMENTS {
                    TCP_ACK | TCP_PSH
                } else {
                    TCP_ACK
                };
                let seq = FIRST_SEQ.wrapping_add((i * MSS) as u32);
                let mut buf = vec![0u8; HEADROOM];
                buf.extend(tcp4_packet(seq, i as u16 + 1, MSS, flags, true));
                buf
            })
            .collect();
        // The receive worker's buffers: room for a whole coalesced super-packet in each.
        let mut bufs: Vec<Vec<u8>> = segments
            .iter()
            .map(|_| Vec::with_capacity(HEADROOM + MAX_PACKET))
            .collect();
        let restore = |bufs: &mut [Vec<u8>]| {
            for (buf, segment) in bufs.iter_mut().zip(&segments) {
                buf.clear();
                buf.extend_from_slice(segment);
            }
        };
        let mut table = GroTable::new();

        restore(&mut bufs);
        table
            .apply_gro(&mut bufs, HEADROOM, true)
            .expect("valid segments");
        let hdr = VirtioNetHdr::decode(&bufs[0][HEADROOM - VIRTIO_NET_HDR_LEN..]).expect("header");
        assert_eq!(bufs[0].len(), HEADROOM + HEADERS + GRO_SEGMENTS * MSS);
        assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(usize::from(hdr.gso_size), MSS);

        let mut group = config_group(c, "gro_coalesce", GRO_SEGMENTS, GRO_SEGMENTS * SEGMENT_LEN);
        group.bench_function(BenchmarkId::new("tcp4_mss1380", GRO_SEGMENTS), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    restore(&mut bufs);
                    let start = Instant::now();
                    let result = table.apply_gro(black_box(&mut bufs), HEADROOM, true);
                    timed += start.elapsed();
                    result.expect("coalesce");
                }
                timed
            })
        });

        // fastwire's own planner on the same segments, laid out where the receive batch decrypts them
        // (one buffer, each behind its WireGuard header): no copy, the write is a list of spans.
        let mut arena = Vec::new();
        let mut spans = Vec::new();
        for segment in &segments {
            spans.push((arena.len() + HEADROOM, segment.len() - HEADROOM));
            arena.extend_from_slice(segment);
        }
        let pristine = arena.clone();
        let mut gro = Gro::new();
        gro.plan(&mut arena, &spans, true);
        assert_eq!(gro.writes().count(), 1);
        assert_eq!(gro.writes().next().map(<[_]>::len), Some(GRO_SEGMENTS));
        group.bench_function(
            BenchmarkId::new("fastwire_tcp4_mss1380", GRO_SEGMENTS),
            |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        arena.copy_from_slice(&pristine);
                        let start = Instant::now();
                        gro.plan(black_box(&mut arena), &spans, true);
                        timed += start.elapsed();
                    }
                    timed
                })
            },
        );
        group.finish();
    }
}

fn offload(c: &mut Criterion) {
    #[cfg(target_os = "linux")]
    {
        linux::gso(c);
        linux::gro(c);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = c;
}

fn config() -> Criterion {
    // A shared, noisy machine: short runs, repeated, beat long ones.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = offload
}
criterion_main!(benches);
