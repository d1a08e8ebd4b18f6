//! Per-packet costs of the protocol core, measured through the public API the workers call.
//!
//! - `seal/N`: `Device::seal` of a batch of 64 IPv4 packets of N bytes (the whole send path after
//!   routing: session lookup, counter, ChaCha20-Poly1305 in place, timer bookkeeping).
//! - `open/N`: `Device::handle_incoming` on 64 data messages (the whole receive path: classify, index
//!   lookup, decrypt in place, replay window, inner-header parse, allowed-IPs source check, timers).
//!   The replay window accepts a counter once, so every iteration re-seals its batch first; only the
//!   `handle_incoming` calls are timed. The ciphertexts are warm in cache, as after `recvmmsg`.
//! - `allowed_ips/...`: `AllowedIps::lookup_v4`/`lookup_v6` (what the data path calls), 1024 lookups per
//!   iteration, of random addresses ("random": mostly misses for small tables) or of random addresses
//!   inside a random stored prefix ("hit").
//!
//! Run: `cargo bench -p fastwire-proto --bench packet`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastwire_proto::allowed_ips::AllowedIps;
use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::{DATA_HEADER_LEN, Device, Incoming, Peer, TAILROOM};

const MTU: usize = 1420;
const BATCH: usize = 64;
const PACKET_SIZES: [usize; 2] = [64, 1420];
const LOOKUPS: usize = 1024;
const SENDER_IP: [u8; 4] = [10, 77, 0, 1];

// ----- a connected pair of devices -----

struct Side {
    dev: Device,
    addr: SocketAddr,
    peer: Arc<Peer>,
}

fn private_key(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    k
}

fn public_key(private: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes()
}

fn side(own: u8, other: u8, other_ip: [u8; 4], port: u16, now: Instant) -> Side {
    let dev = Device::new(now);
    dev.set_private_key(Some(private_key(own)));
    let peer = dev
        .add_peer(public_key(private_key(other)))
        .expect("new peer");
    dev.set_allowed_ips(&peer, true, &[(IpAddr::from(other_ip), 32)])
        .expect("valid prefix");
    Side {
        dev,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        peer,
    }
}

/// A (10.77.0.1) and B (10.77.0.2) after a complete handshake and the confirming keepalive, so both
/// hold a current session.
fn connected_pair(now: Instant) -> (Side, Side) {
    let a = side(1, 2, [10, 77, 0, 2], 1000, now);
    let b = side(2, 1, SENDER_IP, 2000, now);
    a.peer.set_endpoint(b.addr);

    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let mut init = [0u8; INITIATION_LEN];
    let n = a
        .dev
        .create_initiation(&a.peer, now, wall, false, &mut init)
        .expect("initiation");
    let mut reply = [0u8; 256];
    let Incoming::Reply { len, .. } =
        b.dev
            .handle_incoming(a.addr, &mut init[..n], now, &mut reply)
    else {
        panic!("responder did not answer the initiation");
    };
    let mut scratch = [0u8; 256];
    let Incoming::HandshakeComplete { .. } =
        a.dev
            .handle_incoming(b.addr, &mut reply[..len], now, &mut scratch)
    else {
        panic!("initiator did not complete the handshake");
    };
    let mut keepalive = [0u8; DATA_HEADER_LEN + TAILROOM];
    let sealed = a
        .dev
        .seal(&a.peer, &mut keepalive, 0, MTU, now)
        .expect("keepalive");
    let Incoming::Keepalive { .. } =
        b.dev
            .handle_incoming(a.addr, &mut keepalive[..sealed.len], now, &mut scratch)
    else {
        panic!("responder did not accept the keepalive");
    };
    (a, b)
}

/// `BATCH` slots, each an IPv4 packet of `size` bytes from A at `DATA_HEADER_LEN` with room for the tag.
fn packet_batch(size: usize) -> (Vec<u8>, usize) {
    let stride = DATA_HEADER_LEN + size + TAILROOM;
    let mut arena = vec![0u8; stride * BATCH];
    for slot in arena.chunks_exact_mut(stride) {
        let packet = &mut slot[DATA_HEADER_LEN..DATA_HEADER_LEN + size];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&(size as u16).to_be_bytes());
        packet[8] = 64;
        packet[9] = 17;
        packet[12..16].copy_from_slice(&SENDER_IP);
        packet[16..20].copy_from_slice(&[10, 77, 0, 2]);
        for (i, b) in packet[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
    }
    (arena, stride)
}

fn throughput(size: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: BATCH as u64,
        bytes: (BATCH * size) as u64,
    }
}

fn seal(c: &mut Criterion) {
    let now = Instant::now();
    let (a, _b) = connected_pair(now);
    let mut group = c.benchmark_group("seal");
    for size in PACKET_SIZES {
        let (mut arena, stride) = packet_batch(size);
        group.throughput(throughput(size));
        group.bench_function(BenchmarkId::from_parameter(size), |bench| {
            // Sealing in place overwrites the plaintext; sealing the ciphertext again costs the same.
            bench.iter(|| {
                for slot in arena.chunks_exact_mut(stride) {
                    let sealed = a.dev.seal(&a.peer, black_box(slot), size, MTU, now);
                    black_box(sealed.expect("seal"));
                }
            })
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let now = Instant::now();
    let (a, b) = connected_pair(now);
    let mut group = c.benchmark_group("open");
    for size in PACKET_SIZES {
        let (mut arena, stride) = packet_batch(size);
        let mut lens = [0usize; BATCH];
        let mut reply = [0u8; 256];
        group.throughput(throughput(size));
        group.bench_function(BenchmarkId::from_parameter(size), |bench| {
            bench.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Opening decrypts in place, so each slot holds the plaintext again to re-seal.
                    for (slot, len) in arena.chunks_exact_mut(stride).zip(lens.iter_mut()) {
                        *len = a.dev.seal(&a.peer, slot, size, MTU, now).expect("seal").len;
                    }
                    let mut delivered = 0;
                    let start = Instant::now();
                    for (slot, &len) in arena.chunks_exact_mut(stride).zip(lens.iter()) {
                        let got = b
                            .dev
                            .handle_incoming(a.addr, &mut slot[..len], now, &mut reply);
                        delivered += usize::from(matches!(got, Incoming::Data { .. }));
                        black_box(got);
                    }
                    timed += start.elapsed();
                    assert_eq!(delivered, BATCH, "every packet must be delivered");
                }
                timed
            })
        });
    }
    group.finish();
}

// ----- allowed IPs -----

/// splitmix64: deterministic, dependency-free randomness for reproducible tables.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` random IPv4 prefixes of /16../32 (a mix of subnets and single hosts, as peers' allowed IPs
/// look), and `LOOKUPS` addresses: uniformly random ones and ones inside a random stored prefix.
fn v4_case(count: usize, rng: &mut Rng) -> (AllowedIps<u32>, Vec<[u8; 4]>, Vec<[u8; 4]>) {
    let mut table = AllowedIps::new();
    let mut prefixes = Vec::with_capacity(count);
    for value in 0..count as u32 {
        let addr = rng.next() as u32;
        let cidr = 16 + rng.below(17) as u8;
        table
            .insert(IpAddr::V4(Ipv4Addr::from(addr)), cidr, value)
            .expect("valid prefix");
        prefixes.push((addr, cidr));
    }
    let random = (0..LOOKUPS)
        .map(|_| (rng.next() as u32).to_be_bytes())
        .collect();
    let hits = (0..LOOKUPS)
        .map(|_| {
            let (addr, cidr) = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host_mask = u32::MAX.checked_shr(u32::from(cidr)).unwrap_or(0);
            ((addr & !host_mask) | (rng.next() as u32 & host_mask)).to_be_bytes()
        })
        .collect();
    (table, random, hits)
}

/// As [`v4_case`] for IPv6: prefixes of /32../128 inside fd78::/16.
fn v6_case(count: usize, rng: &mut Rng) -> (AllowedIps<u32>, Vec<[u8; 16]>, Vec<[u8; 16]>) {
    let random_v6 = |rng: &mut Rng| {
        let bits = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        (0xfd78u128 << 112) | (bits >> 16)
    };
    let mut table = AllowedIps::new();
    let mut prefixes = Vec::with_capacity(count);
    for value in 0..count as u32 {
        let addr = random_v6(rng);
        let cidr = 32 + rng.below(97) as u8;
        table
            .insert(IpAddr::V6(Ipv6Addr::from(addr)), cidr, value)
            .expect("valid prefix");
        prefixes.push((addr, cidr));
    }
    let random = (0..LOOKUPS).map(|_| random_v6(rng).to_be_bytes()).collect();
    let hits = (0..LOOKUPS)
        .map(|_| {
            let (addr, cidr) = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host_mask = u128::MAX.checked_shr(u32::from(cidr)).unwrap_or(0);
            ((addr & !host_mask) | (random_v6(rng) & host_mask)).to_be_bytes()
        })
        .collect();
    (table, random, hits)
}

fn allowed_ips(c: &mut Criterion) {
    let mut rng = Rng(0x5eed);
    let mut group = c.benchmark_group("allowed_ips");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    for count in [10, 1_000, 100_000] {
        let (table, random, hits) = v4_case(count, &mut rng);
        assert!(hits.iter().all(|a| table.lookup_v4(*a).is_some()));
        for (kind, addrs) in [("v4_random", &random), ("v4_hit", &hits)] {
            group.bench_function(BenchmarkId::new(kind, count), |bench| {
                bench.iter(|| {
                    for addr in addrs {
                        black_box(table.lookup_v4(black_box(*addr)));
                    }
                })
            });
        }
    }
    let (table, random, hits) = v6_case(1_000, &mut rng);
    assert!(hits.iter().all(|a| table.lookup_v6(*a).is_some()));
    for (kind, addrs) in [("v6_random", &random), ("v6_hit", &hits)] {
        group.bench_function(BenchmarkId::new(kind, 1_000), |bench| {
            bench.iter(|| {
                for addr in addrs {
                    black_box(table.lookup_v6(black_box(*addr)));
                }
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // A shared, noisy machine: short runs, repeated, beat long ones.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = seal, open, allowed_ips
}
criterion_main!(benches);
