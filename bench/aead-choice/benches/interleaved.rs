//! Hand-timed cross-check of `benches/aead.rs`, built for a shared, noisy machine: ring and aws-lc-rs
//! alternate batch by batch (and swap who goes first each round), so load from other processes hits both
//! alike, and the report gives the median and the minimum over many short batches. The minimum is the
//! figure least disturbed by other processes; the median is the typical one.
//!
//! Run: `cargo bench --bench interleaved`

use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [64, 512, 1420, 8192];
const KEY: [u8; 32] = [0x42; 32];
const ROUNDS: usize = 2001;
/// Each timed batch runs about this long: long enough for the clock, short enough to often fit between
/// other processes' time slices.
const BATCH_TIME: Duration = Duration::from_micros(100);
const WARM_UP: Duration = Duration::from_millis(300);

fn wg_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Seal,
    Open,
}

/// One library at one size: runs a timed batch of `iterations` operations and returns the elapsed time.
trait Subject {
    fn run(&mut self, op: Op, iterations: usize) -> Duration;
}

macro_rules! subject {
    ($module:ident, $aead:path) => {
        mod $module {
            use super::*;
            use $aead as aead;

            pub struct Bench {
                key: aead::LessSafeKey,
                buf: Vec<u8>,
                counter: u64,
                sealed: Vec<u8>,
                pool: Vec<Vec<u8>>,
            }

            impl Bench {
                pub fn new(size: usize) -> Self {
                    let key = aead::LessSafeKey::new(
                        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &KEY).expect("valid key"),
                    );
                    let mut sealed = vec![0xa5u8; size];
                    let tag = key
                        .seal_in_place_separate_tag(
                            aead::Nonce::assume_unique_for_key(wg_nonce(7)),
                            aead::Aad::empty(),
                            &mut sealed,
                        )
                        .expect("seal");
                    sealed.extend_from_slice(tag.as_ref());
                    Self {
                        key,
                        buf: vec![0xa5u8; size],
                        counter: 0,
                        sealed,
                        pool: Vec::new(),
                    }
                }
            }

            impl Subject for Bench {
                fn run(&mut self, op: Op, iterations: usize) -> Duration {
                    match op {
                        Op::Seal => {
                            let start = Instant::now();
                            for _ in 0..iterations {
                                self.counter += 1;
                                let nonce =
                                    aead::Nonce::assume_unique_for_key(wg_nonce(self.counter));
                                let tag = self
                                    .key
                                    .seal_in_place_separate_tag(
                                        nonce,
                                        aead::Aad::empty(),
                                        black_box(&mut self.buf),
                                    )
                                    .expect("seal");
                                black_box(&tag);
                            }
                            start.elapsed()
                        }
                        Op::Open => {
                            // Fresh ciphertexts prepared outside the timed loop.
                            self.pool.resize_with(iterations, Vec::new);
                            for packet in &mut self.pool {
                                packet.clear();
                                packet.extend_from_slice(&self.sealed);
                            }
                            let start = Instant::now();
                            for packet in &mut self.pool {
                                let nonce = aead::Nonce::assume_unique_for_key(wg_nonce(7));
                                let plain = self
                                    .key
                                    .open_in_place(nonce, aead::Aad::empty(), black_box(packet))
                                    .expect("authentic");
                                black_box(plain.len());
                            }
                            start.elapsed()
                        }
                    }
                }
            }
        }
    };
}

subject!(with_ring, ring::aead);
subject!(with_aws_lc, aws_lc_rs::aead);

fn iterations_for(subject: &mut dyn Subject, op: Op) -> usize {
    let warm_up_end = Instant::now() + WARM_UP;
    let mut iterations = 16;
    let mut per_op = Duration::ZERO;
    while Instant::now() < warm_up_end {
        per_op = subject.run(op, iterations) / iterations as u32;
        iterations = (iterations * 2).min(1 << 16);
    }
    let per_op_ns = per_op.as_nanos().max(1);
    ((BATCH_TIME.as_nanos() / per_op_ns) as usize).clamp(4, 1 << 16)
}

struct Summary {
    median_ns: f64,
    min_ns: f64,
}

fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    Summary {
        median_ns: samples[samples.len() / 2],
        min_ns: samples[0],
    }
}

fn mib_per_s(size: usize, ns: f64) -> f64 {
    size as f64 / ns * 1e9 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter word, if any, picks sizes or ops ("seal", "1420").
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    println!(
        "{:<5} {:>5} | {:>10} {:>10} {:>11} | {:>10} {:>10} {:>11} | {:>7} {:>7}",
        "op", "bytes", "ring p50", "aws p50", "ns", "ring min", "aws min", "ns", "p50 x", "min x"
    );
    for op in [Op::Seal, Op::Open] {
        let op_name = if op == Op::Seal { "seal" } else { "open" };
        for size in SIZES {
            if let Some(filter) = &filter
                && !op_name.contains(filter.as_str())
                && size.to_string() != *filter
            {
                continue;
            }
            let mut ring = with_ring::Bench::new(size);
            let mut aws = with_aws_lc::Bench::new(size);
            let iterations = iterations_for(&mut ring, op).max(iterations_for(&mut aws, op));
            let mut ring_ns = Vec::with_capacity(ROUNDS);
            let mut aws_ns = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let per_op = |subject: &mut dyn Subject| {
                    subject.run(op, iterations).as_nanos() as f64 / iterations as f64
                };
                if round % 2 == 0 {
                    ring_ns.push(per_op(&mut ring));
                    aws_ns.push(per_op(&mut aws));
                } else {
                    aws_ns.push(per_op(&mut aws));
                    ring_ns.push(per_op(&mut ring));
                }
            }
            let ring_summary = summarize(ring_ns);
            let aws_summary = summarize(aws_ns);
            println!(
                "{:<5} {:>5} | {:>10.0} {:>10.0} {:>11} | {:>10.0} {:>10.0} {:>11} | {:>7.3} {:>7.3}",
                op_name,
                size,
                mib_per_s(size, ring_summary.median_ns),
                mib_per_s(size, aws_summary.median_ns),
                format!("{:.0}/{:.0}", ring_summary.median_ns, aws_summary.median_ns),
                mib_per_s(size, ring_summary.min_ns),
                mib_per_s(size, aws_summary.min_ns),
                format!("{:.0}/{:.0}", ring_summary.min_ns, aws_summary.min_ns),
                ring_summary.median_ns / aws_summary.median_ns,
                ring_summary.min_ns / aws_summary.min_ns,
            );
        }
    }
    println!(
        "(MiB/s columns; ns = ring/aws-lc-rs ns per op; x = ring time / aws-lc-rs time, >1 means aws-lc-rs is faster)"
    );
}
