//! ring vs aws-lc-rs: in-place ChaCha20-Poly1305 seal and open as WireGuard's data path uses them
//! (12-byte nonce = 4 zero bytes + 8-byte little-endian counter, empty AAD, tag kept separate on seal).
//!
//! The two libraries are measured back to back for each size, so drifting load from other processes on
//! the machine hits both about equally.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

const SIZES: [usize; 4] = [64, 512, 1420, 8192];
const KEY: [u8; 32] = [0x42; 32];
const TAG_LEN: usize = 16;

fn wg_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// Both crates expose the same `aead` API, so one body measures either.
macro_rules! library_benches {
    ($module:ident, $name:literal, $aead:path) => {
        mod $module {
            use super::*;
            use $aead as aead;

            fn key() -> aead::LessSafeKey {
                aead::LessSafeKey::new(
                    aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &KEY)
                        .expect("valid key length"),
                )
            }

            pub fn seal(group: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
                let key = key();
                let mut buf = vec![0xa5u8; size];
                let mut counter = 0u64;
                group.bench_function(BenchmarkId::new($name, size), |b| {
                    b.iter(|| {
                        counter = counter.wrapping_add(1);
                        let nonce = aead::Nonce::assume_unique_for_key(wg_nonce(counter));
                        let tag = key
                            .seal_in_place_separate_tag(
                                nonce,
                                aead::Aad::empty(),
                                black_box(&mut buf),
                            )
                            .expect("seal");
                        black_box(&tag);
                    })
                });
            }

            pub fn open(group: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
                let key = key();
                // One valid packet (ciphertext || tag); each iteration opens a fresh copy made outside
                // the timed routine.
                let counter = 7u64;
                let mut packet = vec![0xa5u8; size];
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(wg_nonce(counter)),
                        aead::Aad::empty(),
                        &mut packet,
                    )
                    .expect("seal");
                packet.extend_from_slice(tag.as_ref());
                assert_eq!(packet.len(), size + TAG_LEN);
                group.bench_function(BenchmarkId::new($name, size), |b| {
                    b.iter_batched_ref(
                        || packet.clone(),
                        |in_out| {
                            let nonce = aead::Nonce::assume_unique_for_key(wg_nonce(counter));
                            let plain = key
                                .open_in_place(nonce, aead::Aad::empty(), black_box(in_out))
                                .expect("authentic");
                            black_box(plain.len());
                        },
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    };
}

library_benches!(with_ring, "ring", ring::aead);
library_benches!(with_aws_lc, "aws-lc-rs", aws_lc_rs::aead);

fn aead_benches(c: &mut Criterion) {
    let mut seal = c.benchmark_group("seal");
    for size in SIZES {
        seal.throughput(Throughput::Bytes(size as u64));
        with_ring::seal(&mut seal, size);
        with_aws_lc::seal(&mut seal, size);
    }
    seal.finish();

    let mut open = c.benchmark_group("open");
    for size in SIZES {
        open.throughput(Throughput::Bytes(size as u64));
        with_ring::open(&mut open, size);
        with_aws_lc::open(&mut open, size);
    }
    open.finish();
}

criterion_group!(benches, aead_benches);
criterion_main!(benches);
