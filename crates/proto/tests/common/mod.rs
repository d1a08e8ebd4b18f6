//! What the protocol tests share: two devices that are each other's peer, a handshake between them,
//! IP packets in buffers with head- and tailroom, and a readable name for each outcome.
#![allow(dead_code)] // each test file uses its own part of this

use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::{DATA_HEADER_LEN, Device, Incoming, TAILROOM};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MTU: usize = 1420;

pub struct Side {
    pub dev: Device,
    pub addr: SocketAddr,
    pub peer: Arc<fastwire_proto::Peer>,
}

pub fn key(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    k
}

pub fn public(private: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes()
}

/// A and B with each other as peers; A owns 10.0.0.1/32, B owns 10.0.0.2/32.
pub fn pair(now: Instant, psk: Option<[u8; 32]>) -> (Side, Side) {
    let (ka, kb) = (key(1), key(2));
    let mk = |own: [u8; 32], other: [u8; 32], own_ip: [u8; 4], other_ip: [u8; 4], port: u16| {
        let dev = Device::new(now);
        dev.set_private_key(Some(own));
        let peer = dev.add_peer(public(other)).unwrap();
        peer.set_preshared_key(psk);
        dev.set_allowed_ips(&peer, true, &[(IpAddr::from(other_ip), 32)])
            .unwrap();
        let _ = own_ip;
        Side {
            dev,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            peer,
        }
    };
    let a = mk(ka, kb, [10, 0, 0, 1], [10, 0, 0, 2], 1000);
    let b = mk(kb, ka, [10, 0, 0, 2], [10, 0, 0, 1], 2000);
    a.peer.set_endpoint(b.addr);
    (a, b)
}

pub fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// Wall-clock time that advances with the simulated `now`, so TAI64N timestamps grow with it.
pub fn wall_at(now: Instant) -> Duration {
    static START: std::sync::OnceLock<(Instant, Duration)> = std::sync::OnceLock::new();
    // An origin before any `now` a test uses: an hour back where the clock allows it (Windows' `Instant`
    // counts from boot and cannot go below it, so a machine up less than an hour gets less).
    let origin = || {
        [3600, 60, 1]
            .into_iter()
            .find_map(|s| Instant::now().checked_sub(Duration::from_secs(s)))
            .unwrap_or_else(Instant::now)
    };
    let (t0, w0) = *START.get_or_init(|| (origin(), wall()));
    w0 + now.saturating_duration_since(t0)
}

/// A handshake from `i` to `r`, then the confirming keepalive; returns nothing, panics on failure.
pub fn handshake(i: &Side, r: &Side, now: Instant) {
    let mut init = [0u8; INITIATION_LEN];
    let n = i
        .dev
        .create_initiation(&i.peer, now, wall_at(now), false, &mut init)
        .expect("initiation");
    let mut reply = [0u8; 256];
    let len = match r
        .dev
        .handle_incoming(i.addr, &mut init[..n], now, &mut reply)
    {
        Incoming::Reply { len, .. } => len,
        other => panic!("expected a response, got {}", describe(&other)),
    };
    let mut scratch = [0u8; 256];
    match i
        .dev
        .handle_incoming(r.addr, &mut reply[..len], now, &mut scratch)
    {
        Incoming::HandshakeComplete { .. } => {}
        other => panic!("expected completion, got {}", describe(&other)),
    }
    // The initiator confirms with a keepalive so the responder promotes its session.
    let mut buf = vec![0u8; DATA_HEADER_LEN + TAILROOM];
    let s = i.dev.seal(&i.peer, &mut buf, 0, MTU, now).unwrap();
    match r
        .dev
        .handle_incoming(i.addr, &mut buf[..s.len], now, &mut scratch)
    {
        Incoming::Keepalive { .. } => {}
        other => panic!("expected keepalive, got {}", describe(&other)),
    }
}

pub fn describe(i: &Incoming) -> String {
    match i {
        Incoming::Data { len, .. } => format!("Data({len})"),
        Incoming::Keepalive { .. } => "Keepalive".into(),
        Incoming::Reply { len, .. } => format!("Reply({len})"),
        Incoming::HandshakeComplete { .. } => "HandshakeComplete".into(),
        Incoming::CookieAccepted { .. } => "CookieAccepted".into(),
        Incoming::Dropped(r) => format!("Dropped({r:?})"),
    }
}

/// An IPv4 packet from `src` to `dst` with `payload` bytes of body, in a buffer with headroom/tailroom.
pub fn ipv4_in_buffer(src: [u8; 4], dst: [u8; 4], payload: usize) -> (Vec<u8>, usize) {
    let len = 20 + payload;
    let mut buf = vec![0u8; DATA_HEADER_LEN + len + TAILROOM];
    let p = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    (buf, len)
}

pub fn send(
    from: &Side,
    to: &Side,
    src: [u8; 4],
    payload: usize,
    now: Instant,
) -> (Vec<u8>, Incoming) {
    let (mut buf, len) = ipv4_in_buffer(src, [10, 0, 0, 9], payload);
    let sealed = from
        .dev
        .seal(&from.peer, &mut buf, len, MTU, now)
        .expect("seal");
    let mut wire = buf[..sealed.len].to_vec();
    let mut scratch = [0u8; 256];
    let got = to
        .dev
        .handle_incoming(from.addr, &mut wire, now, &mut scratch);
    (wire, got)
}
