//! Two sans-IO devices talking to each other: handshake, data, rekey, and every rejection path.

mod common;

use common::*;
use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::timers::{REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT};
use fastwire_proto::{
    DATA_HEADER_LEN, Device, Endpoint, Incoming, RecvDrop, TAILROOM, TimerEvents, TimerSchedule,
};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[test]
fn handshake_and_data_both_ways() {
    let now = Instant::now();
    for psk in [None, Some([7u8; 32])] {
        let (a, b) = pair(now, psk);
        handshake(&a, &b, now);
        let (wire, got) = send(&a, &b, [10, 0, 0, 1], 100, now);
        match got {
            Incoming::Data { len, .. } => {
                assert_eq!(len, 120);
                assert_eq!(wire[DATA_HEADER_LEN + 20 + 5], 5);
            }
            other => panic!("{}", describe(&other)),
        }
        let (_, got) = send(&b, &a, [10, 0, 0, 2], 1000, now);
        assert!(
            matches!(got, Incoming::Data { len: 1020, .. }),
            "{}",
            describe(&got)
        );
        assert!(a.dev.last_handshake(&a.peer).is_some());
        assert!(b.dev.last_handshake(&b.peer).is_some());
        assert!(a.peer.tx_bytes.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}

#[test]
fn mismatched_psk_fails() {
    let now = Instant::now();
    let (a, b) = pair(now, Some([1; 32]));
    b.peer.set_preshared_key(Some([2; 32]));
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    let mut reply = [0u8; 256];
    let Incoming::Reply { len, .. } = b.dev.handle_incoming(a.addr, &mut init, now, &mut reply)
    else {
        panic!("responder cannot see the psk mismatch yet")
    };
    let got = a
        .dev
        .handle_incoming(b.addr, &mut reply[..len], now, &mut [0u8; 256]);
    assert!(
        matches!(got, Incoming::Dropped(RecvDrop::HandshakeAuth)),
        "{}",
        describe(&got)
    );
}

#[test]
fn rejects_replay_tamper_and_disallowed_source() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let (wire, got) = send(&a, &b, [10, 0, 0, 1], 64, now);
    assert!(matches!(got, Incoming::Data { .. }));
    // Replay: the same ciphertext again. (handle_incoming decrypted in place, so re-seal a copy first.)
    let (mut buf, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 64);
    let s = a.dev.seal(&a.peer, &mut buf, len, MTU, now).unwrap();
    let original = buf[..s.len].to_vec();
    let mut first = original.clone();
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut first, now, &mut [0; 256]),
        Incoming::Data { .. }
    ));
    let mut again = original.clone();
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut again, now, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::Replay)
    ));
    // Tampered ciphertext.
    let (mut buf, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 64);
    let s = a.dev.seal(&a.peer, &mut buf, len, MTU, now).unwrap();
    buf[DATA_HEADER_LEN + 3] ^= 1;
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut buf[..s.len], now, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::DataAuth)
    ));
    // Unknown receiver index.
    let mut bogus = wire.clone();
    bogus[4] ^= 0xff;
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut bogus, now, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::UnknownSession)
    ));
    // A source address A is not allowed to use.
    let (_, got) = send(&a, &b, [10, 0, 0, 66], 10, now);
    assert!(
        matches!(got, Incoming::Dropped(RecvDrop::DisallowedSource)),
        "{}",
        describe(&got)
    );
}

#[test]
fn stale_counter_beyond_window_rejected() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let (mut old, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 10);
    let s = a.dev.seal(&a.peer, &mut old, len, MTU, now).unwrap();
    let old = old[..s.len].to_vec();
    for _ in 0..(fastwire_proto::replay::WINDOW_SIZE + 10) {
        let (mut buf, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 0);
        let s = a.dev.seal(&a.peer, &mut buf, len, MTU, now).unwrap();
        let _ = b
            .dev
            .handle_incoming(a.addr, &mut buf[..s.len], now, &mut [0; 256]);
    }
    let mut late = old;
    assert!(matches!(
        b.dev.handle_incoming(a.addr, &mut late, now, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::Replay)
    ));
}

#[test]
fn replayed_initiation_and_bad_mac1_rejected() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    let copy = init;
    assert!(matches!(
        b.dev.handle_incoming(a.addr, &mut init, now, &mut [0; 256]),
        Incoming::Reply { .. }
    ));
    let mut replay = copy;
    let later = now + Duration::from_secs(1);
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut replay, later, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::ReplayedTimestamp)
    ));
    let mut bad = copy;
    bad[fastwire_proto::messages::init::MAC1] ^= 1;
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut bad, later, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::BadMac1)
    ));
    let mut bad = copy;
    bad[fastwire_proto::messages::init::STATIC + 1] ^= 1;
    // Changing the body breaks mac1 first, which is the cheap check.
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut bad, later, &mut [0; 256]),
        Incoming::Dropped(RecvDrop::BadMac1)
    ));
}

/// A pair whose responder B is under load from its first handshake on, and A's first initiation to it.
fn under_load_pair(now: Instant) -> (Side, Side, [u8; INITIATION_LEN]) {
    let (a, b) = pair(now, None);
    // A backlog puts B under load; with a threshold of 0 every handshake message keeps it there.
    b.dev.note_handshake_backlog(now);
    b.dev.set_under_load_threshold(0);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    (a, b, init)
}

#[test]
fn under_load_demands_cookie_then_accepts_it() {
    let now = Instant::now();
    let (a, b, mut init) = under_load_pair(now);
    let mut reply = [0u8; 256];
    let Incoming::Reply { len, .. } = b.dev.handle_incoming(a.addr, &mut init, now, &mut reply)
    else {
        panic!("expected a cookie reply")
    };
    assert_eq!(len, 64, "a cookie reply, not a handshake response");
    assert!(matches!(
        a.dev
            .handle_incoming(b.addr, &mut reply[..len], now, &mut [0; 256]),
        Incoming::CookieAccepted { resend: true, .. }
    ));
    // The retry carries mac2 and is answered with a real response.
    let t = now + Duration::from_millis(50);
    a.dev
        .create_initiation(&a.peer, t, wall() + Duration::from_secs(1), true, &mut init)
        .unwrap();
    let got = b.dev.handle_incoming(a.addr, &mut init, t, &mut reply);
    assert!(
        matches!(got, Incoming::Reply { len: 92, .. }),
        "{}",
        describe(&got)
    );
    // A cookie for another source address does not count.
    a.dev
        .create_initiation(&a.peer, t, wall() + Duration::from_secs(2), true, &mut init)
        .unwrap();
    let other = SocketAddr::from(([127, 0, 0, 2], 1000));
    let got = b
        .dev
        .handle_incoming(other, &mut init, t + Duration::from_millis(30), &mut reply);
    assert!(
        matches!(got, Incoming::Reply { len: 64, .. }),
        "{}",
        describe(&got)
    );
    // That initiation carried a cookie already: a second cookie reply buys no early resend (no ping-pong).
    let got = a
        .dev
        .handle_incoming(b.addr, &mut reply[..64], t, &mut [0; 256]);
    assert!(
        matches!(got, Incoming::CookieAccepted { resend: false, .. }),
        "{}",
        describe(&got)
    );
}

#[test]
fn cookie_replies_stop_at_the_budget() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    // A backlog puts B under load; with a threshold of 0 every handshake message keeps it there.
    b.dev.note_handshake_backlog(now);
    b.dev.set_under_load_threshold(0);
    let (mut replies, mut limited) = (0, 0);
    for i in 0..20 {
        let t = now + Duration::from_millis(i);
        let mut init = [0u8; INITIATION_LEN];
        a.dev
            .create_initiation(&a.peer, t, wall_at(t), true, &mut init)
            .unwrap();
        match b.dev.handle_incoming(a.addr, &mut init, t, &mut [0; 256]) {
            Incoming::Reply { len: 64, .. } => replies += 1,
            Incoming::Dropped(RecvDrop::CookieRateLimited) => limited += 1,
            got => panic!("{}", describe(&got)),
        }
    }
    assert_eq!(replies, 5, "one source gets a burst of 5 cookie replies");
    assert_eq!(limited, 15);
    // Another source (port) has a budget of its own.
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), true, &mut init)
        .unwrap();
    let other = SocketAddr::from(([127, 0, 0, 1], 1001));
    assert!(matches!(
        b.dev.handle_incoming(other, &mut init, now, &mut [0; 256]),
        Incoming::Reply { len: 64, .. }
    ));
}

#[test]
fn a_handshake_backlog_puts_the_device_under_load() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    b.dev.note_handshake_backlog(now);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    let got = b.dev.handle_incoming(a.addr, &mut init, now, &mut [0; 256]);
    assert!(
        matches!(got, Incoming::Reply { len: 64, .. }),
        "under load: a cookie reply, {}",
        describe(&got)
    );
    // A second later the backlog no longer counts: a real response.
    let t = now + Duration::from_millis(1100);
    a.dev
        .create_initiation(&a.peer, t, wall_at(t), true, &mut init)
        .unwrap();
    let got = b.dev.handle_incoming(a.addr, &mut init, t, &mut [0; 256]);
    assert!(
        matches!(got, Incoming::Reply { len: 92, .. }),
        "{}",
        describe(&got)
    );
}

#[test]
fn a_burst_without_backlog_gets_no_cookies_but_a_flood_under_load_keeps_it() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    b.dev.set_under_load_threshold(10);
    let mut init = [0u8; INITIATION_LEN];
    // Each from a port of its own: one source's cookie budget is not what this is about.
    let mut port = 2000;
    let mut answer = |t: Instant| {
        a.dev
            .create_initiation(&a.peer, t, wall_at(t), true, &mut init)
            .unwrap();
        port += 1;
        let from = SocketAddr::from(([127, 0, 0, 1], port));
        match b.dev.handle_incoming(from, &mut init, t, &mut [0; 256]) {
            Incoming::Reply { len, .. } => len,
            got => panic!("{}", describe(&got)),
        }
    };
    // Three times the threshold within a second (one peer may initiate every 20 ms), and no backlog:
    // every one answered with a response.
    for i in 0..30 {
        assert_eq!(
            answer(now + Duration::from_millis(i * 25)),
            92,
            "message {i}"
        );
    }
    // A backlog, then more than the threshold every second: under load (cookie replies) past the
    // backlog's own second.
    let t0 = now + Duration::from_secs(1);
    b.dev.note_handshake_backlog(t0);
    for i in 0..40 {
        let t = t0 + Duration::from_millis(i * 50);
        assert_eq!(
            answer(t),
            64,
            "message {i} at +{} ms: a cookie reply",
            i * 50
        );
    }
    // The flood stops: a second later, a response again.
    assert_eq!(answer(t0 + Duration::from_millis(40 * 50 + 1100)), 92);
}

/// A screened initiation is handled as any other, without its MACs checked again: answered.
fn answers_screened_initiation(dev: &Device, from: SocketAddr, init: &mut [u8], now: Instant) {
    let got = dev.handle_screened_handshake(from, init, now, &mut [0; 256]);
    assert!(
        matches!(got, Incoming::Reply { len: 92, .. }),
        "{}",
        describe(&got)
    );
}

#[test]
fn screening_rejects_what_is_not_worth_queueing() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    let from = Endpoint::from(a.addr);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    let screen = |dev: &Device, msg: &[u8]| dev.screen_handshake(from, msg, now, &mut [0; 256]);
    let dropped = |r: Result<(), Incoming>| match r {
        Err(Incoming::Dropped(reason)) => Some(reason),
        _ => None,
    };
    assert!(screen(&b.dev, &init).is_ok());
    let mut bad = init;
    bad[120] ^= 1;
    assert_eq!(dropped(screen(&b.dev, &bad)), Some(RecvDrop::BadMac1));
    assert_eq!(
        dropped(screen(&b.dev, &init[..100])),
        Some(RecvDrop::Malformed)
    );
    let mut data = [0u8; 48];
    data[0] = 4;
    assert_eq!(dropped(screen(&b.dev, &data)), Some(RecvDrop::Malformed));
    let keyless = Device::new(now);
    assert_eq!(dropped(screen(&keyless, &init)), Some(RecvDrop::NoIdentity));
    answers_screened_initiation(&b.dev, a.addr, &mut init, now);
}

#[test]
fn under_load_screening_answers_with_cookies_within_the_budget() {
    let now = Instant::now();
    let (a, b, mut init) = under_load_pair(now);
    let from = Endpoint::from(a.addr);
    let mut reply = [0u8; 256];
    // Under load, an initiation without mac2 is answered with a cookie reply, never queued.
    let first = b.dev.screen_handshake(from, &init, now, &mut reply);
    assert!(
        matches!(
            first,
            Err(Incoming::Reply {
                len: 64,
                peer: None
            })
        ),
        "{}",
        first.as_ref().err().map_or("queued".into(), describe)
    );
    // One source's cookie budget runs out: the rest is refused where it arrives.
    let refused = (0..50)
        .filter(|_| {
            matches!(
                b.dev.screen_handshake(from, &init, now, &mut reply),
                Err(Incoming::Dropped(RecvDrop::CookieRateLimited))
            )
        })
        .count();
    assert!(refused >= 40, "{refused} of 50 refused");
    // With the budget spent, a message without mac2 could earn nothing, so it is refused before mac1 is
    // computed: a broken mac1 is counted against the budget, not as a bad mac1.
    let mut broken = init;
    broken[INITIATION_LEN - 20] ^= 1;
    let screened =
        |msg: &[u8], from: Endpoint| match b.dev.screen_handshake(from, msg, now, &mut [0; 256]) {
            Err(Incoming::Dropped(reason)) => Some(reason),
            _ => None,
        };
    assert_eq!(screened(&broken, from), Some(RecvDrop::CookieRateLimited));
    // A source with budget left, or a message carrying a mac2, still has its mac1 checked.
    let elsewhere = Endpoint::from(SocketAddr::from(([10, 0, 0, 77], 4000)));
    assert_eq!(screened(&broken, elsewhere), Some(RecvDrop::BadMac1));
    let mut with_mac2 = broken;
    with_mac2[INITIATION_LEN - 1] = 1;
    assert_eq!(screened(&with_mac2, from), Some(RecvDrop::BadMac1));
    // With the cookie, the initiation passes the screen and completes the handshake.
    let cookie = a
        .dev
        .handle_incoming(b.addr, &mut reply[..64], now, &mut [0; 256]);
    assert!(
        matches!(cookie, Incoming::CookieAccepted { .. }),
        "{}",
        describe(&cookie)
    );
    a.dev
        .create_initiation(&a.peer, now, wall(), true, &mut init)
        .unwrap();
    assert!(b.dev.screen_handshake(from, &init, now, &mut reply).is_ok());
    answers_screened_initiation(&b.dev, a.addr, &mut init, now);
}

#[test]
fn rekey_schedule_and_expiry() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let (mut buf, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 10);
    let s = a.dev.seal(&a.peer, &mut buf, len, MTU, now).unwrap();
    assert!(!s.rekey);
    let later = now + REKEY_AFTER_TIME + Duration::from_secs(1);
    let s = a.dev.seal(&a.peer, &mut buf, len, MTU, later).unwrap();
    assert!(s.rekey, "initiator rekeys after REKEY_AFTER_TIME");
    // The responder never rekeys on age by itself.
    let (mut buf2, len2) = ipv4_in_buffer([10, 0, 0, 2], [10, 0, 0, 9], 10);
    let s = b.dev.seal(&b.peer, &mut buf2, len2, MTU, later).unwrap();
    assert!(!s.rekey);
    // A new handshake rotates keys, and the old session still decrypts in-flight packets.
    let (mut inflight, l) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 10);
    let s = a.dev.seal(&a.peer, &mut inflight, l, MTU, later).unwrap();
    let inflight = inflight[..s.len].to_vec();
    handshake(&a, &b, later);
    let mut w = inflight;
    assert!(matches!(
        b.dev.handle_incoming(a.addr, &mut w, later, &mut [0; 256]),
        Incoming::Data { .. }
    ));
    // After REJECT_AFTER_TIME a session is unusable.
    let dead = later + REJECT_AFTER_TIME;
    let (mut buf, len) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 10);
    assert!(a.dev.seal(&a.peer, &mut buf, len, MTU, dead).is_err());
}

/// Receiving on a session we initiated that nears REJECT_AFTER_TIME asks for a handshake once (not per
/// packet), judged by the current session, not by the one an in-flight packet happened to use.
#[test]
fn receive_side_rekey_is_once_and_looks_at_the_current_session() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    b.peer.set_endpoint(a.addr);
    let rekey_of = |got: Incoming| match got {
        Incoming::Data { rekey, .. } => rekey,
        other => panic!("{}", describe(&other)),
    };
    let near_expiry = |t: Instant| t + REJECT_AFTER_TIME - Duration::from_secs(14);
    handshake(&a, &b, now);
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 10, now + Duration::from_secs(100));
    assert!(!rekey_of(got), "a young session");
    // B sealed this on A's aging session, then made a handshake of its own: A's current session is
    // now B's (young, and not A's to renew), so the in-flight packet on the old one asks for nothing.
    let old = near_expiry(now);
    let (mut inflight, l) = ipv4_in_buffer([10, 0, 0, 2], [10, 0, 0, 9], 10);
    let s = b.dev.seal(&b.peer, &mut inflight, l, MTU, old).unwrap();
    handshake(&b, &a, old);
    let got = a
        .dev
        .handle_incoming(b.addr, &mut inflight[..s.len], old, &mut [0u8; 256]);
    assert!(
        !rekey_of(got),
        "the packet's old session is not the current one"
    );
    // A session A initiated, near its end, on which A only receives: A asks once, not per packet.
    let t = old + Duration::from_secs(1);
    handshake(&a, &b, t);
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 10, near_expiry(t));
    assert!(
        rekey_of(got),
        "A initiated it and only receives: A must rekey"
    );
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 10, near_expiry(t));
    assert!(!rekey_of(got), "asked once, not per packet");
    // A completes a handshake of its own: it may ask again on that session when it ages.
    let t = near_expiry(t) + Duration::from_secs(1);
    handshake(&a, &b, t);
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 10, near_expiry(t));
    assert!(
        rekey_of(got),
        "after a completed handshake it may ask again"
    );
}

#[test]
fn timers_retry_then_give_up() {
    let now = Instant::now();
    let (a, _b) = pair(now, None);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall(), false, &mut init)
        .unwrap();
    assert!(
        a.dev
            .create_initiation(
                &a.peer,
                now + Duration::from_secs(1),
                wall(),
                false,
                &mut init
            )
            .is_none(),
        "rate limited"
    );
    let mut t = now;
    let mut retries = 0;
    let mut gave_up = false;
    let mut schedule = TimerSchedule::default();
    for _ in 0..100 {
        let Some(deadline) = a.dev.next_timer(&mut schedule) else {
            break;
        };
        assert!(deadline >= t);
        t = deadline;
        let ev = fire(&a.dev, &mut schedule, t);
        if ev.retry {
            retries += 1;
            a.dev
                .create_initiation(&a.peer, t, wall(), true, &mut init)
                .unwrap();
            assert!(t.duration_since(now) >= REKEY_TIMEOUT);
        }
        if ev.gave_up {
            gave_up = true;
            break;
        }
    }
    assert!(gave_up);
    // 20 initiations in all, as wireguard-go and the kernel send.
    assert_eq!(retries, fastwire_proto::timers::MAX_TIMER_HANDSHAKES + 1);
}

#[test]
fn keepalive_after_receiving_data() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let _ = send(&a, &b, [10, 0, 0, 1], 10, now);
    // B received data and sends nothing: after KEEPALIVE_TIMEOUT it owes a keepalive.
    let mut schedule = TimerSchedule::default();
    let t = b.dev.next_timer(&mut schedule).unwrap();
    let ev = fire(&b.dev, &mut schedule, t);
    assert!(ev.send_keepalive, "{ev:?}");
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), ty in 0u8..6) {
        let now = Instant::now();
        let (a, b) = pair(now, None);
        handshake(&a, &b, now);
        let mut msg = bytes;
        if let Some(first) = msg.first_mut() { *first = ty; }
        if msg.len() > 3 { msg[1] = 0; msg[2] = 0; msg[3] = 0; }
        let mut reply = [0u8; 256];
        let got = b.dev.handle_incoming(a.addr, &mut msg, now, &mut reply);
        let accepted = matches!(got, Incoming::Data { .. } | Incoming::Keepalive { .. } | Incoming::HandshakeComplete { .. });
        prop_assert!(!accepted, "random bytes were accepted: {}", describe(&got));
    }
}

#[test]
fn crossed_handshakes_leave_both_directions_working() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    b.peer.set_endpoint(a.addr);
    // Both sides initiate before either sees the other's initiation.
    let mut init_a = [0u8; INITIATION_LEN];
    let mut init_b = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall_at(now), false, &mut init_a)
        .unwrap();
    b.dev
        .create_initiation(&b.peer, now, wall_at(now), false, &mut init_b)
        .unwrap();
    let (mut resp_to_a, mut resp_to_b) = ([0u8; 256], [0u8; 256]);
    let Incoming::Reply { len: la, .. } =
        b.dev
            .handle_incoming(a.addr, &mut init_a, now, &mut resp_to_a)
    else {
        panic!("B answers A")
    };
    let Incoming::Reply { len: lb, .. } =
        a.dev
            .handle_incoming(b.addr, &mut init_b, now, &mut resp_to_b)
    else {
        panic!("A answers B")
    };
    assert!(matches!(
        a.dev
            .handle_incoming(b.addr, &mut resp_to_a[..la], now, &mut [0; 256]),
        Incoming::HandshakeComplete { .. }
    ));
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut resp_to_b[..lb], now, &mut [0; 256]),
        Incoming::HandshakeComplete { .. }
    ));
    // Each side now sends on the session it initiated; the other must still decrypt it.
    let (_, got) = send(&a, &b, [10, 0, 0, 1], 40, now);
    assert!(
        matches!(got, Incoming::Data { .. }),
        "B reads A: {}",
        describe(&got)
    );
    let (_, got) = send(&b, &a, [10, 0, 0, 2], 40, now);
    assert!(
        matches!(got, Incoming::Data { .. }),
        "A reads B: {}",
        describe(&got)
    );
}

#[test]
fn abandoned_handshakes_leave_no_index_behind() {
    let now = Instant::now();
    let (a, _b) = pair(now, None);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall_at(now), false, &mut init)
        .unwrap();
    assert_eq!(a.dev.index_count(), 1);
    let mut schedule = TimerSchedule::default();
    while let Some(t) = a.dev.next_timer(&mut schedule) {
        let ev = fire(&a.dev, &mut schedule, t);
        if ev.retry {
            a.dev
                .create_initiation(&a.peer, t, wall_at(t), true, &mut init)
                .unwrap();
            assert_eq!(
                a.dev.index_count(),
                1,
                "a retry replaces the index, never adds one"
            );
        }
        if ev.gave_up {
            break;
        }
    }
    assert_eq!(
        a.dev.index_count(),
        0,
        "giving up frees the handshake's index"
    );
}

#[test]
fn confirming_keepalive_is_reported() {
    let now = Instant::now();
    let (a, b) = pair(now, None);
    let mut init = [0u8; INITIATION_LEN];
    a.dev
        .create_initiation(&a.peer, now, wall_at(now), false, &mut init)
        .unwrap();
    let mut reply = [0u8; 256];
    let Incoming::Reply { len, .. } = b.dev.handle_incoming(a.addr, &mut init, now, &mut reply)
    else {
        panic!("response")
    };
    assert!(matches!(
        a.dev
            .handle_incoming(b.addr, &mut reply[..len], now, &mut [0; 256]),
        Incoming::HandshakeComplete { .. }
    ));
    let mut buf = vec![0u8; DATA_HEADER_LEN + TAILROOM];
    let s = a.dev.seal(&a.peer, &mut buf, 0, MTU, now).unwrap();
    match b
        .dev
        .handle_incoming(a.addr, &mut buf[..s.len], now, &mut [0; 256])
    {
        Incoming::Keepalive { confirmed, .. } => {
            assert!(confirmed, "first packet confirms the responder's session")
        }
        other => panic!("{}", describe(&other)),
    }
    let s = a.dev.seal(&a.peer, &mut buf, 0, MTU, now).unwrap();
    match b
        .dev
        .handle_incoming(a.addr, &mut buf[..s.len], now, &mut [0; 256])
    {
        Incoming::Keepalive { confirmed, .. } => assert!(!confirmed),
        other => panic!("{}", describe(&other)),
    }
}

/// Roaming between transports is ordinary roaming: replies follow the latest authenticated packet,
/// whether it came over UDP or a TCP connection; an unauthenticated one moves nothing.
#[test]
fn endpoint_follows_the_latest_authenticated_packet_across_transports() {
    use fastwire_proto::Endpoint;
    let now = Instant::now();
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    assert_eq!(b.peer.endpoint(), Some(Endpoint::udp(a.addr)));
    let over_tcp = Endpoint::tcp(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let mut scratch = [0u8; 256];
    let mut send = |from: Endpoint| {
        let mut buf = vec![0u8; DATA_HEADER_LEN + TAILROOM];
        let s = a.dev.seal(&a.peer, &mut buf, 0, MTU, now).unwrap();
        let got = b
            .dev
            .handle_incoming(from, &mut buf[..s.len], now, &mut scratch);
        assert!(
            matches!(got, Incoming::Keepalive { .. }),
            "{}",
            describe(&got)
        );
    };
    send(over_tcp);
    assert_eq!(b.peer.endpoint(), Some(over_tcp));
    let sealed = b.dev.seal(&b.peer, &mut [0u8; 64], 0, MTU, now).unwrap();
    assert_eq!(
        sealed.endpoint, over_tcp,
        "B answers over the TCP connection"
    );
    send(Endpoint::udp(a.addr));
    assert_eq!(b.peer.endpoint(), Some(Endpoint::udp(a.addr)));
    // A forged packet from another TCP connection does not move the endpoint.
    let mut forged = [4u8, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 9]
        .into_iter()
        .chain([0u8; 16])
        .collect::<Vec<_>>();
    let got = b
        .dev
        .handle_incoming(over_tcp, &mut forged, now, &mut scratch);
    assert!(matches!(got, Incoming::Dropped(_)), "{}", describe(&got));
    assert_eq!(b.peer.endpoint(), Some(Endpoint::udp(a.addr)));
}

/// What the timer driver does at `t` on a device with one peer: that peer's timer events.
fn fire(dev: &Device, schedule: &mut TimerSchedule, t: Instant) -> TimerEvents {
    let mut got = TimerEvents::default();
    dev.run_timers(schedule, t, |_, ev| got = ev);
    got
}
