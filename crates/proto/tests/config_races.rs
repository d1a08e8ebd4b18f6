//! Handshakes racing configuration changes. A worker may be in the middle of a handshake for a peer
//! while the UAPI removes that peer or replaces our private key: whatever the interleaving, nothing of
//! the removed peer (or of the old key) may stay in the index table. Each round starts the two at
//! once with a varying head start, so the race window is crossed in some rounds. Before the device
//! refused stale handshakes (`admits` in device/index.rs), each of these failed within 100 rounds.

mod common;

use common::{key, public};
use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::{Device, Incoming};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROUNDS: u32 = 600;

fn wall(round: u32) -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(round.into())
}

/// Each round a little later than the last, past the per-peer initiation rate limit (20 ms).
fn later(start: Instant, round: u32) -> Instant {
    start + Duration::from_millis(u64::from(round) * 25)
}

/// Busy-waits `micros` (a sleep would be far coarser than the race window).
fn spin(micros: u32) {
    let until = Instant::now() + Duration::from_micros(micros.into());
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Runs `a` and `b` at once, `b` after a head start of `delay_us` for `a`.
fn race(barrier: &Barrier, delay_us: u32, a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            a();
        });
        barrier.wait();
        spin(delay_us);
        b();
    });
}

/// The initiator side of every round: a device whose peer is `responder_public`.
fn initiator(responder_public: [u8; 32]) -> (Device, Arc<fastwire_proto::Peer>) {
    let now = Instant::now();
    let dev = Device::new(now);
    dev.set_private_key(Some(key(1)));
    let peer = dev.add_peer(responder_public).unwrap();
    peer.set_endpoint(SocketAddr::from(([127, 0, 0, 1], 2000)));
    (dev, peer)
}

#[test]
fn an_initiation_racing_peer_removal_leaves_no_index_behind() {
    let now = Instant::now();
    let (a, a_peer) = initiator(public(key(2)));
    let b = Device::new(now);
    b.set_private_key(Some(key(2)));
    let from = SocketAddr::from(([127, 0, 0, 1], 1000));
    let barrier = Barrier::new(2);
    let mut answered = 0;
    for round in 0..ROUNDS {
        let now = later(now, round);
        b.add_peer(public(key(1))).unwrap();
        let mut init = [0u8; INITIATION_LEN];
        a.create_initiation(&a_peer, now, wall(round), true, &mut init)
            .unwrap();
        let mut outcome = None;
        race(
            &barrier,
            (round * 37) % 400,
            || outcome = Some(b.handle_incoming(from, &mut init, now, &mut [0u8; 256])),
            || b.remove_peer(&public(key(1))),
        );
        if matches!(outcome, Some(Incoming::Reply { .. })) {
            answered += 1;
        }
        assert_eq!(
            b.index_count(),
            0,
            "round {round}: the removed peer's session stayed in the index table"
        );
    }
    // Both outcomes must have happened, or the rounds never raced.
    assert!(answered > 0 && answered < ROUNDS, "answered {answered}");
}

#[test]
fn our_handshake_racing_peer_removal_leaves_no_index_behind() {
    let now = Instant::now();
    let b = Device::new(now);
    b.set_private_key(Some(key(2)));
    let b_peer = b.add_peer(public(key(1))).unwrap();
    let from = SocketAddr::from(([127, 0, 0, 1], 2000));
    let barrier = Barrier::new(2);
    for round in 0..ROUNDS {
        let now = later(now, round);
        let (a, a_peer) = initiator(public(key(2)));
        let mut init = [0u8; INITIATION_LEN];
        a.create_initiation(&a_peer, now, wall(round), true, &mut init)
            .unwrap();
        let mut response = [0u8; 256];
        let Incoming::Reply { len, .. } = b.handle_incoming(from, &mut init, now, &mut response)
        else {
            panic!("round {round}: B answers");
        };
        race(
            &barrier,
            (round * 37) % 200,
            || {
                a.handle_incoming(from, &mut response[..len], now, &mut [0u8; 256]);
            },
            || a.remove_peer(&public(key(2))),
        );
        assert_eq!(
            a.index_count(),
            0,
            "round {round}: our handshake's session stayed in the index table"
        );
        b.remove_peer(&b_peer.public_key);
        b.add_peer(public(key(1))).unwrap();
    }
}

#[test]
fn a_handshake_racing_a_new_private_key_leaves_nothing_of_the_old_key() {
    let now = Instant::now();
    let (a, a_peer) = initiator(public(key(2)));
    let b = Device::new(now);
    b.add_peer(public(key(1))).unwrap();
    let from = SocketAddr::from(([127, 0, 0, 1], 1000));
    let barrier = Barrier::new(2);
    for round in 0..ROUNDS {
        let now = later(now, round);
        b.set_private_key(Some(key(2)));
        let mut init = [0u8; INITIATION_LEN];
        a.create_initiation(&a_peer, now, wall(round), true, &mut init)
            .unwrap();
        race(
            &barrier,
            (round * 37) % 400,
            || {
                b.handle_incoming(from, &mut init, now, &mut [0u8; 256]);
            },
            || b.set_private_key(Some(key(3))),
        );
        assert_eq!(
            b.index_count(),
            0,
            "round {round}: a session made under the replaced key stayed"
        );
    }
}

/// DH(static, static) is computed at a peer's first handshake and kept per configuration epoch: once our
/// private key changes, the next handshake must use the new key's, in either role.
#[test]
fn handshakes_after_a_new_private_key_use_the_new_key() {
    let now = Instant::now();
    let (a, a_peer) = initiator(public(key(2)));
    let b = Device::new(now);
    b.set_private_key(Some(key(2)));
    let b_peer = b.add_peer(public(key(1))).unwrap();
    b_peer.set_endpoint(SocketAddr::from(([127, 0, 0, 1], 1000)));
    let from = SocketAddr::from(([127, 0, 0, 1], 1000));
    let answered =
        |initiator: &Device, peer: &Arc<fastwire_proto::Peer>, responder: &Device, round| {
            let mut init = [0u8; INITIATION_LEN];
            initiator
                .create_initiation(peer, later(now, round), wall(round * 100), true, &mut init)
                .unwrap();
            matches!(
                responder.handle_incoming(from, &mut init, later(now, round), &mut [0u8; 256]),
                Incoming::Reply { .. }
            )
        };
    assert!(
        answered(&a, &a_peer, &b, 0),
        "B answers under its first key"
    );
    // B takes a new key; A learns B's new public key (a new peer, as `wg set` would make it).
    b.set_private_key(Some(key(3)));
    a.remove_peer(&public(key(2)));
    let a_peer = a.add_peer(public(key(3))).unwrap();
    a_peer.set_endpoint(SocketAddr::from(([127, 0, 0, 1], 2000)));
    assert!(answered(&a, &a_peer, &b, 1), "B answers under its new key");
    assert!(
        answered(&b, &b_peer, &a, 2),
        "B initiates under its new key"
    );
}
