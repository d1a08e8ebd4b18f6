//! The timer driver's schedule: with many peers only the due ones are visited, a timer armed earlier
//! than the schedule knew is seen, and removed peers' entries go.
mod common;

use common::*;
use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::timers::{KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT};
use fastwire_proto::{Device, Incoming, Peer, TimerEvents, TimerSchedule};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` peers with real public keys, on a device with a private key.
fn device_with_peers(now: Instant, n: u32) -> (Device, Vec<Arc<Peer>>) {
    let dev = Device::new(now);
    dev.set_private_key(Some(key(1)));
    let peers = (0..n)
        .map(|i| {
            let mut private = [7u8; 32];
            // Bytes 1..5: byte 0 loses its low bits to clamping, which would make peers share a key.
            private[1..5].copy_from_slice(&i.to_le_bytes());
            private[0] &= 248;
            dev.add_peer(public(private)).unwrap()
        })
        .collect();
    assert_eq!(dev.peers().len(), n as usize, "distinct keys");
    (dev, peers)
}

#[test]
fn only_the_due_peers_are_visited() {
    let now = Instant::now();
    let (dev, peers) = device_with_peers(now, 10_000);
    let mut schedule = TimerSchedule::default();
    assert_eq!(dev.next_timer(&mut schedule), None, "no timer armed");
    assert!(schedule.is_empty());

    let due = [&peers[7], &peers[5000], &peers[9999]];
    for p in due {
        p.set_persistent_keepalive(25);
        dev.persistent_keepalive_changed(p, now);
    }
    let next = dev
        .next_timer(&mut schedule)
        .expect("three keepalives are due");
    assert!(next <= now + Duration::from_millis(1));
    assert_eq!(schedule.len(), 3, "one entry per armed peer, not per peer");

    let mut visited = Vec::new();
    let next = dev.run_timers(&mut schedule, now + Duration::from_millis(1), |p, ev| {
        assert!(ev.send_keepalive, "{ev:?}");
        visited.push(p.public_key);
    });
    visited.sort();
    let mut want: Vec<_> = due.iter().map(|p| p.public_key).collect();
    want.sort();
    assert_eq!(visited, want);
    // Nobody sent anything, so nothing re-armed the keepalives.
    assert_eq!(next, None);
    assert!(schedule.is_empty());
}

#[test]
fn a_timer_armed_earlier_than_the_schedule_knew_is_seen() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let mut schedule = TimerSchedule::default();
    // After the handshake, A's only timer is the key erasure.
    let first = a.dev.next_timer(&mut schedule).unwrap();
    assert!(first >= now + REJECT_AFTER_TIME * 3 - Duration::from_millis(1));

    // B sends data to A: A owes B a keepalive, much earlier than what the schedule held.
    let t1 = now + Duration::from_secs(1);
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 10, t1);
    assert!(matches!(got, Incoming::Data { .. }), "{}", describe(&got));
    let next = a.dev.next_timer(&mut schedule).unwrap();
    assert!(next <= t1 + KEEPALIVE_TIMEOUT, "{next:?}");
    let mut got = TimerEvents::default();
    a.dev.run_timers(&mut schedule, next, |_, ev| got = ev);
    assert!(got.send_keepalive, "{got:?}");

    // A initiates: its retry is due after REKEY_TIMEOUT (plus jitter), before the key erasure.
    let t2 = next + Duration::from_secs(1);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, t2, wall_at(t2), false, &mut init)
        .unwrap();
    let next = a.dev.next_timer(&mut schedule).unwrap();
    assert!(
        next >= t2 + REKEY_TIMEOUT && next < t2 + REKEY_TIMEOUT * 2,
        "{next:?}"
    );
    let mut got = TimerEvents::default();
    a.dev.run_timers(&mut schedule, next, |_, ev| got = ev);
    assert!(got.send_initiation && got.retry, "{got:?}");
}

#[test]
fn removed_peers_leave_the_schedule() {
    let now = Instant::now();
    let (dev, peers) = device_with_peers(now, 1000);
    let mut init = [0u8; INITIATION_LEN];
    // Peer 0's retry comes first; the others' a second later.
    dev.create_initiation(&peers[0], now, wall_at(now), false, &mut init)
        .unwrap();
    let later = now + Duration::from_secs(1);
    for (i, p) in peers[1..].iter().enumerate() {
        assert!(
            dev.create_initiation(p, later, wall_at(later), false, &mut init)
                .is_some(),
            "peer {}",
            i + 1
        );
    }
    let mut schedule = TimerSchedule::default();
    dev.next_timer(&mut schedule).unwrap();
    assert_eq!(schedule.len(), 1000);

    for p in &peers[1..] {
        dev.remove_peer(&p.public_key);
    }
    // Nothing is due yet; the entries of the removed peers are dropped (not kept until they come up).
    let next = dev.run_timers(&mut schedule, later, |p, ev| {
        panic!("nothing is due: {ev:?} for {:?}", p.public_key)
    });
    assert!(next.is_some_and(|t| t >= now + REKEY_TIMEOUT));
    assert_eq!(schedule.len(), 1, "only peer 0's entry is left");
}
