//! What the fuzz targets share: a receiving device `B` that has a peer `A` with a live session and a
//! pending handshake of its own, and real messages to mutate — an initiation from A, the response and
//! the cookie reply to B's pending initiation, and data sealed by A on demand. With those, mutated inputs
//! get past the length and mac1 checks into decryption, the replay window, roaming and the allowed-IPs
//! check, which random bytes never reach.

use fastwire_proto::messages::INITIATION_LEN;
use fastwire_proto::{DATA_HEADER_LEN, Device, Incoming, Peer, TAILROOM};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MTU: usize = 1420;
pub const A_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, 1)), 51820);
pub const B_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, 2)), 51820);

fn key(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    k
}

fn public(private: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes()
}

/// One side: a device, its peer entry for the other side.
pub struct Side {
    pub dev: Device,
    pub peer: Arc<Peer>,
}

fn side(own: [u8; 32], other: [u8; 32], other_ips: &[(IpAddr, u8)], now: Instant) -> Side {
    let dev = Device::new(now);
    dev.set_private_key(Some(own));
    let peer = dev.add_peer(public(other)).expect("a distinct peer");
    dev.set_allowed_ips(&peer, true, other_ips)
        .expect("valid prefixes");
    Side { dev, peer }
}

/// The state every input starts from.
pub struct Fixture {
    pub a: Side,
    pub b: Side,
    pub now: Instant,
    /// A's initiation to B (B would accept it: a newer timestamp).
    pub initiation: Vec<u8>,
    /// A's response to B's pending initiation.
    pub response: Vec<u8>,
    /// A cookie reply (from A under load) to B's pending initiation.
    pub cookie_reply: Vec<u8>,
}

/// Wall-clock time that advances with the simulated `now` (TAI64N timestamps must grow).
pub fn wall_at(start: Instant, now: Instant) -> Duration {
    Duration::from_secs(1_700_000_000) + now.saturating_duration_since(start)
}

impl Fixture {
    pub fn new() -> Self {
        let now = Instant::now();
        let (ka, kb) = (key(1), key(2));
        let a_ips = [
            (IpAddr::from([10, 78, 0, 1]), 32),
            (IpAddr::from([0xfd78u16, 0, 0, 0, 0, 0, 0, 1]), 128),
        ];
        let b_ips = [
            (IpAddr::from([10, 78, 0, 2]), 32),
            (IpAddr::from([0xfd78u16, 0, 0, 0, 0, 0, 0, 2]), 128),
        ];
        let a = side(ka, kb, &b_ips, now);
        let b = side(kb, ka, &a_ips, now);
        a.peer.set_endpoint(B_ADDR);
        b.peer.set_endpoint(A_ADDR);
        let mut reply = [0u8; 256];
        // A session: A initiates, B answers, A confirms with a keepalive.
        let mut init = [0u8; INITIATION_LEN];
        let n = a
            .dev
            .create_initiation(&a.peer, now, wall_at(now, now), false, &mut init)
            .expect("initiation");
        let Incoming::Reply { len, .. } =
            b.dev
                .handle_incoming(A_ADDR, &mut init[..n], now, &mut reply)
        else {
            panic!("B answers A's initiation")
        };
        let mut scratch = [0u8; 256];
        let done = a
            .dev
            .handle_incoming(B_ADDR, &mut reply[..len], now, &mut scratch);
        assert!(
            matches!(done, Incoming::HandshakeComplete { .. }),
            "A completes the handshake"
        );
        let mut keepalive = vec![0u8; DATA_HEADER_LEN + TAILROOM];
        let sealed = a
            .dev
            .seal(&a.peer, &mut keepalive, 0, MTU, now)
            .expect("a session");
        let _ = b
            .dev
            .handle_incoming(A_ADDR, &mut keepalive[..sealed.len], now, &mut scratch);
        // B's pending handshake, answered twice: by A (a response) and by a copy of A under load
        // (a cookie reply) — both valid for B's current initiation.
        let later = now + Duration::from_millis(10);
        let mut b_init = [0u8; INITIATION_LEN];
        let n = b
            .dev
            .create_initiation(&b.peer, later, wall_at(now, later), false, &mut b_init)
            .expect("B initiates");
        let loaded = side(ka, kb, &b_ips, now);
        loaded.dev.set_under_load_threshold(0);
        loaded.dev.note_handshake_backlog(later);
        let mut cookie = [0u8; 256];
        let mut copy = b_init;
        let cookie_reply =
            match loaded
                .dev
                .handle_incoming(B_ADDR, &mut copy[..n], later, &mut cookie)
            {
                Incoming::Reply { len, .. } => cookie[..len].to_vec(),
                _ => Vec::new(),
            };
        let mut resp = [0u8; 256];
        let mut copy = b_init;
        let response = match a
            .dev
            .handle_incoming(B_ADDR, &mut copy[..n], later, &mut resp)
        {
            Incoming::Reply { len, .. } => resp[..len].to_vec(),
            _ => Vec::new(),
        };
        // A fresh initiation from A, newer than the first.
        let latest = later + Duration::from_millis(10);
        let mut a_init = [0u8; INITIATION_LEN];
        let n = a
            .dev
            .create_initiation(&a.peer, latest, wall_at(now, latest), true, &mut a_init)
            .unwrap_or(0);
        Fixture {
            a,
            b,
            now: latest,
            initiation: a_init[..n].to_vec(),
            response,
            cookie_reply,
        }
    }

    /// A seals `packet` for B: a data message B can decrypt, in a buffer of its exact length.
    pub fn seal_from_a(&self, packet: &[u8], now: Instant) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; DATA_HEADER_LEN + packet.len() + TAILROOM];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let sealed = self
            .a
            .dev
            .seal(&self.a.peer, &mut buf, packet.len(), MTU, now)
            .ok()?;
        buf.truncate(sealed.len);
        Some(buf)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// An IP packet with the given version, source and destination (the last byte of 10.78.0.x or
/// fd78::x) and body: shaped enough that the inner-packet and allowed-IPs checks decide.
pub fn inner_packet(v6: bool, src: u8, dst: u8, body: &[u8]) -> Vec<u8> {
    if v6 {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        p[6] = 17;
        p[8] = 0xfd;
        p[9] = 0x78;
        p[23] = src;
        p[24] = 0xfd;
        p[25] = 0x78;
        p[39] = dst;
        p.extend_from_slice(body);
        p
    } else {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 78, 0, src]);
        p[16..20].copy_from_slice(&[10, 78, 0, dst]);
        p.extend_from_slice(body);
        p
    }
}
