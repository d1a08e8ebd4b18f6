//! Every reason a received datagram can be dropped for, each provoked by the input that earns it and
//! seen as exactly that reason. The last check makes a reason added later without a test here fail.

mod common;

use common::*;
use fastwire_proto::messages::{COOKIE_REPLY_LEN, INITIATION_LEN, RESPONSE_LEN};
use fastwire_proto::timers::REJECT_AFTER_TIME;
use fastwire_proto::{Device, Incoming, RecvDrop};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Counted by the engine, not the device: its handshake queue refuses the message before the device
/// sees it (tested beside the queue, in fastwire-engine's `handshake` module).
const ENGINE_ONLY: [RecvDrop; 1] = [RecvDrop::HandshakeQueueFull];

#[derive(Default)]
struct Seen(HashSet<RecvDrop>);

impl Seen {
    #[track_caller]
    fn expect(&mut self, got: Incoming, reason: RecvDrop) {
        match got {
            Incoming::Dropped(r) if r == reason => {
                self.0.insert(r);
            }
            other => panic!("expected {reason:?}, got {}", describe(&other)),
        }
    }
}

fn initiation(from: &Side, t: Instant) -> [u8; INITIATION_LEN] {
    initiation_stamped(from, t, wall_at(t))
}

/// An initiation at `t` whose TAI64N timestamp says `wall` (timestamps are coarser than milliseconds).
fn initiation_stamped(from: &Side, t: Instant, wall: Duration) -> [u8; INITIATION_LEN] {
    let mut init = [0u8; INITIATION_LEN];
    from.dev
        .create_initiation(&from.peer, t, wall, true, &mut init)
        .expect("initiation");
    init
}

fn sealed(from: &Side, packet: [u8; 4], t: Instant) -> Vec<u8> {
    let (mut buf, len) = ipv4_in_buffer(packet, [10, 0, 0, 9], 16);
    let s = from
        .dev
        .seal(&from.peer, &mut buf, len, MTU, t)
        .expect("seal");
    buf[..s.len].to_vec()
}

#[test]
fn every_drop_reason_is_provoked_and_named() {
    let now = Instant::now();
    let mut seen = Seen::default();
    let reply = &mut [0u8; 256];

    // Shapes and keys.
    let (a, b) = pair(now, None);
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut [9, 0, 0, 0], now, reply),
        RecvDrop::Malformed,
    );
    let keyless = Device::new(now);
    seen.expect(
        keyless.handle_incoming(a.addr, &mut initiation(&a, now), now, reply),
        RecvDrop::NoIdentity,
    );
    let mut init = initiation(&a, now);
    init[fastwire_proto::messages::init::MAC1] ^= 1;
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut init, now, reply),
        RecvDrop::BadMac1,
    );
    // A stranger: B has no peer with its key (mac1 only needs B's public key, which it has).
    let stranger = Device::new(now);
    stranger.set_private_key(Some(key(3)));
    let c_peer = stranger.add_peer(public(key(2))).unwrap();
    let mut init = [0u8; INITIATION_LEN];
    stranger
        .create_initiation(&c_peer, now, wall_at(now), false, &mut init)
        .unwrap();
    seen.expect(
        b.dev.handle_incoming(
            SocketAddr::from(([127, 0, 0, 3], 3000)),
            &mut init,
            now,
            reply,
        ),
        RecvDrop::HandshakeAuth,
    );

    // Initiations: a replay, and a second one within 20 ms.
    let t = now + Duration::from_secs(1);
    let first = initiation(&a, t);
    assert!(matches!(
        b.dev.handle_incoming(a.addr, &mut first.clone(), t, reply),
        Incoming::Reply {
            len: RESPONSE_LEN,
            ..
        }
    ));
    let t = t + Duration::from_secs(1);
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut first.clone(), t, reply),
        RecvDrop::ReplayedTimestamp,
    );
    let t = t + Duration::from_secs(1);
    assert!(matches!(
        b.dev
            .handle_incoming(a.addr, &mut initiation(&a, t), t, reply),
        Incoming::Reply { .. }
    ));
    let soon = t + Duration::from_millis(5);
    let mut newer = initiation_stamped(&a, soon, wall_at(t) + Duration::from_secs(1));
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut newer, soon, reply),
        RecvDrop::HandshakeFlood,
    );

    // Responses and cookie replies for no handshake of ours.
    let (a, b) = pair(now, None);
    let Incoming::Reply { len, .. } =
        b.dev
            .handle_incoming(a.addr, &mut initiation(&a, now), now, reply)
    else {
        panic!("response")
    };
    let response = reply[..len].to_vec();
    assert!(matches!(
        a.dev
            .handle_incoming(b.addr, &mut response.clone(), now, &mut [0; 256]),
        Incoming::HandshakeComplete { .. }
    ));
    seen.expect(
        a.dev
            .handle_incoming(b.addr, &mut response.clone(), now, &mut [0; 256]),
        RecvDrop::UnexpectedHandshake,
    );

    // Under load: a cookie reply (counted as sent), one that does not authenticate, the cookie
    // budget, and, with a valid cookie, the per-source handshake budget.
    let (a, b) = pair(now, None);
    // A backlog puts B under load; with a threshold of 0 every handshake message keeps it there.
    b.dev.note_handshake_backlog(now);
    b.dev.set_under_load_threshold(0);
    let Incoming::Reply {
        len: COOKIE_REPLY_LEN,
        ..
    } = b
        .dev
        .handle_incoming(a.addr, &mut initiation(&a, now), now, reply)
    else {
        panic!("a cookie reply under load")
    };
    seen.0.insert(RecvDrop::CookieSent);
    let cookie = reply[..COOKIE_REPLY_LEN].to_vec();
    let mut forged = cookie.clone();
    forged[COOKIE_REPLY_LEN - 1] ^= 1;
    seen.expect(
        a.dev
            .handle_incoming(b.addr, &mut forged, now, &mut [0; 256]),
        RecvDrop::BadCookie,
    );
    assert!(matches!(
        a.dev
            .handle_incoming(b.addr, &mut cookie.clone(), now, &mut [0; 256]),
        Incoming::CookieAccepted { .. }
    ));
    // Initiations with mac2 from one address: a burst of 5 passes the macs, then the budget says no.
    let mut limited = false;
    for i in 1..=10 {
        let t = now + Duration::from_millis(i);
        let mut init = initiation_stamped(&a, t, wall_at(now) + Duration::from_secs(i));
        match b.dev.handle_incoming(a.addr, &mut init, t, reply) {
            Incoming::Dropped(RecvDrop::RateLimited) => {
                seen.0.insert(RecvDrop::RateLimited);
                limited = true;
                break;
            }
            Incoming::Reply {
                len: RESPONSE_LEN, ..
            }
            | Incoming::Dropped(RecvDrop::HandshakeFlood) => {}
            other => panic!("{}", describe(&other)),
        }
    }
    assert!(limited, "the per-source budget stops a burst");
    // Without mac2 (A's keys on a device that never got B's cookie), from one source: the
    // cookie-reply budget runs out.
    let (no_cookie, _) = pair(now, None);
    let mut budget_out = false;
    for i in 0..20 {
        let src = SocketAddr::from(([127, 0, 0, 3], 3000));
        let t = now + Duration::from_millis(100 + i);
        let mut init = initiation(&no_cookie, t);
        if let Incoming::Dropped(RecvDrop::CookieRateLimited) =
            b.dev.handle_incoming(src, &mut init, t, reply)
        {
            seen.0.insert(RecvDrop::CookieRateLimited);
            budget_out = true;
            break;
        }
    }
    assert!(
        budget_out,
        "one source gets a bounded number of cookie replies"
    );

    // Data: unknown index, tampering, replay, expiry, a decrypted packet that is not IP, and one
    // from an address the peer may not use.
    let (a, b) = pair(now, None);
    handshake(&a, &b, now);
    let mut data = sealed(&a, [10, 0, 0, 1], now);
    data[4] ^= 0xff;
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut data, now, reply),
        RecvDrop::UnknownSession,
    );
    let mut data = sealed(&a, [10, 0, 0, 1], now);
    let last = data.len() - 1;
    data[last] ^= 1;
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut data, now, reply),
        RecvDrop::DataAuth,
    );
    let data = sealed(&a, [10, 0, 0, 1], now);
    assert!(matches!(
        b.dev.handle_incoming(a.addr, &mut data.clone(), now, reply),
        Incoming::Data { .. }
    ));
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut data.clone(), now, reply),
        RecvDrop::Replay,
    );
    let mut late = sealed(&a, [10, 0, 0, 1], now);
    let expired = now + REJECT_AFTER_TIME + Duration::from_secs(1);
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut late, expired, reply),
        RecvDrop::ExpiredSession,
    );
    let (mut buf, _) = ipv4_in_buffer([10, 0, 0, 1], [10, 0, 0, 9], 16);
    buf[fastwire_proto::DATA_HEADER_LEN] = 0x00; // version 0: not IP
    let s = a.dev.seal(&a.peer, &mut buf, 36, MTU, now).unwrap();
    seen.expect(
        b.dev.handle_incoming(a.addr, &mut buf[..s.len], now, reply),
        RecvDrop::BadInnerPacket,
    );
    seen.expect(
        b.dev
            .handle_incoming(a.addr, &mut sealed(&a, [10, 0, 0, 66], now), now, reply),
        RecvDrop::DisallowedSource,
    );

    let untested: Vec<_> = RecvDrop::ALL
        .iter()
        .filter(|r| !seen.0.contains(r) && !ENGINE_ONLY.contains(r))
        .collect();
    assert!(untested.is_empty(), "no test provokes {untested:?}");
}
