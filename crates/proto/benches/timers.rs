//! What one turn of the timer driver costs as the peer count grows.
//!
//! - `driver_turn/N`: N peers configured, min(N / 10, 1000) of them with a persistent keepalive armed 25 s
//!   away (not due), and one more whose keepalive is armed for now. Timed: arming that one (what the data
//!   path does) and the driver's turn that fires it (`Device::run_timers`, which files what was queued,
//!   pops what is due and returns the next deadline). The schedule touches only the due peer, so the
//!   turn should cost the same at 10 and at 100,000 peers.
//!
//! Run: `cargo bench -p fastwire-proto --bench timers`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fastwire_proto::{Device, Peer, TimerSchedule};

const PEER_COUNTS: [usize; 3] = [10, 1_000, 100_000];

/// A device with `n` peers. Their keys need not be valid curve points: no handshake happens here.
fn device(now: Instant, n: usize) -> (Device, Vec<Arc<Peer>>) {
    let dev = Device::new(now);
    let peers = (0..n)
        .map(|i| {
            let mut key = [0x5au8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            dev.add_peer(key).expect("distinct keys")
        })
        .collect();
    (dev, peers)
}

fn driver_turn(c: &mut Criterion) {
    let mut group = c.benchmark_group("driver_turn");
    for n in PEER_COUNTS {
        let start = Instant::now();
        let (dev, peers) = device(start, n);
        let armed = (n / 10).min(1000);
        // Setting a persistent keepalive arms it for "now": give them a now 25 s ahead.
        for p in &peers[1..=armed] {
            p.set_persistent_keepalive(25);
            dev.persistent_keepalive_changed(p, start + Duration::from_secs(25));
        }
        let mut schedule = TimerSchedule::default();
        let due = &peers[0];
        due.set_persistent_keepalive(25);
        let now = start + Duration::from_millis(1);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                dev.persistent_keepalive_changed(due, now);
                let mut fired = 0;
                let next = dev.run_timers(&mut schedule, now, |_, ev| {
                    fired += ev.send_keepalive as usize;
                });
                assert_eq!(fired, 1);
                black_box(next)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = driver_turn
}
criterion_main!(benches);
