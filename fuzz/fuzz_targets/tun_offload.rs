//! What a local program can write into the TUN device and what the tunnel writes back, through the
//! offload code (tun-rs 2.8.16, which fastwire's Linux TUN queue uses): a super-packet with an arbitrary
//! virtio-net header split into segments (what a TUN read does with TSO/USO on), and arbitrary packets
//! coalesced by the GRO table (what a batched TUN write does). Invariants: no panic; segments fit their
//! buffers.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN, VirtioNetHdr, gso_split};

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
            let room = HEADROOM + (segment_room as usize % 9000).max(68);
            SEGMENTS.with(|segments| {
                let mut segments = segments.borrow_mut();
                let mut bufs: Vec<&mut [u8]> =
                    segments.iter_mut().map(|b| &mut b[..room]).collect();
                let mut sizes = [0usize; tun_rs::IDEAL_BATCH_SIZE];
                let is_v6 = packet.first().is_some_and(|b| b >> 4 == 6);
                if let Ok(n) = gso_split(&mut packet, hdr, &mut bufs, &mut sizes, HEADROOM, is_v6) {
                    assert!(n <= bufs.len());
                    for &s in &sizes[..n] {
                        assert!(HEADROOM + s <= room, "a segment larger than its buffer");
                    }
                }
            });
        }
        Input::Coalesce { packets, udp } => {
            let mut bufs: Vec<Vec<u8>> = packets
                .iter()
                .take(tun_rs::IDEAL_BATCH_SIZE)
                .map(|p| {
                    let mut b = vec![0u8; VIRTIO_NET_HDR_LEN.max(HEADROOM)];
                    b.extend_from_slice(&p[..p.len().min(65_000)]);
                    b
                })
                .collect();
            let mut table = GROTable::new();
            let _ = table.apply_gro(&mut bufs, VIRTIO_NET_HDR_LEN.max(HEADROOM), udp);
        }
    }
});
