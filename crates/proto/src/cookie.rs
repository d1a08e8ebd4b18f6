//! mac1/mac2 and cookie replies (whitepaper 5.4.4, 5.4.7): DoS mitigation for handshakes.
//!
//! [`CookieChecker`] is our side as a receiver of handshakes; [`CookieGenerator`] is kept per peer and adds
//! the MACs to the handshakes we send, remembering any cookie the peer gave us.

use crate::crypto::{self, Key, MAC_LEN, PrekeyedMac, hash, mac};
use crate::messages::{COOKIE_REPLY_LEN, TYPE_COOKIE_REPLY, cookie};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";
/// A cookie (and the secret behind it) lives this long.
pub const COOKIE_REFRESH_TIME: Duration = Duration::from_secs(120);

/// Byte offsets of mac1 and mac2 in a handshake message of length `len` (both are the last 32 bytes);
/// `None` for a message too short to carry them.
fn mac_offsets(len: usize) -> Option<(usize, usize)> {
    Some((len.checked_sub(2 * MAC_LEN)?, len - MAC_LEN))
}

/// The source address bytes a cookie is bound to.
fn address_bytes(src: &SocketAddr) -> ([u8; 18], usize) {
    let mut out = [0u8; 18];
    match src {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            out[4..6].copy_from_slice(&a.port().to_be_bytes());
            (out, 6)
        }
        SocketAddr::V6(a) => {
            out[..16].copy_from_slice(&a.ip().octets());
            out[16..18].copy_from_slice(&a.port().to_be_bytes());
            (out, 18)
        }
    }
}

/// Our own mac1 key, cookie key and the rotating secret behind the cookies we hand out.
///
/// mac1's key never changes, so checking mac1 takes no lock: every worker can reject a flood of bad
/// handshakes in parallel. Only the cookie secret (rotated every two minutes) sits behind a small lock.
pub struct CookieChecker {
    mac1: PrekeyedMac,
    cookie_key: Key,
    secret: Mutex<CookieSecret>,
}

struct CookieSecret {
    value: Key,
    born: Option<Instant>,
}

impl CookieChecker {
    pub fn new(our_public: &Key) -> Self {
        Self {
            mac1: PrekeyedMac::new(&hash(&[LABEL_MAC1, our_public])),
            cookie_key: hash(&[LABEL_COOKIE, our_public]),
            secret: Mutex::new(CookieSecret {
                value: [0; 32],
                born: None,
            }),
        }
    }

    /// True if `msg` ends with a valid mac1 for our public key. Lock-free; false for any message too short
    /// to carry the MACs.
    pub fn check_mac1(&self, msg: &[u8]) -> bool {
        let Some((m1, m2)) = mac_offsets(msg.len()) else {
            return false;
        };
        let expected = self.mac1.mac(&msg[..m1]);
        constant_time_eq(&expected, &msg[m1..m2])
    }

    /// True if `msg` carries a mac2 at all (not all zeros: a sender without a cookie sends zeros). Safe on
    /// any input; false if `msg` is too short to carry the MACs.
    pub fn carries_mac2(msg: &[u8]) -> bool {
        mac_offsets(msg.len()).is_some_and(|(_, m2)| msg[m2..].iter().any(|&b| b != 0))
    }

    /// True if `msg` (received from `src`) ends with a valid mac2: a MAC under the cookie we would give
    /// `src` now. An all-zero mac2 (a sender that has no cookie) is rejected without computing anything.
    /// Safe on any input.
    pub fn check_mac2(&self, msg: &[u8], src: &SocketAddr, now: Instant) -> bool {
        let Some((_, m2)) = mac_offsets(msg.len()) else {
            return false;
        };
        if !Self::carries_mac2(msg) {
            return false;
        }
        let Some(cookie) = self.current_cookie(src, now) else {
            return false;
        };
        let expected = mac(&cookie, &msg[..m2]);
        constant_time_eq(&expected, &msg[m2..])
    }

    fn current_cookie(&self, src: &SocketAddr, now: Instant) -> Option<[u8; MAC_LEN]> {
        let secret = {
            let s = self.secret.lock().unwrap_or_else(PoisonError::into_inner);
            let born = s.born?;
            if now.saturating_duration_since(born) >= COOKIE_REFRESH_TIME {
                return None;
            }
            s.value
        };
        let (bytes, len) = address_bytes(src);
        Some(mac(&secret, &bytes[..len]))
    }

    /// Builds a cookie reply to the handshake `msg` received from `src`; `None` if `msg` is too short to
    /// be a handshake message.
    pub fn create_reply(
        &self,
        msg: &[u8],
        sender_index: u32,
        src: &SocketAddr,
        now: Instant,
    ) -> Option<[u8; COOKIE_REPLY_LEN]> {
        let (m1, m2) = mac_offsets(msg.len())?;
        let secret = {
            let mut s = self.secret.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = s
                .born
                .is_some_and(|b| now.saturating_duration_since(b) < COOKIE_REFRESH_TIME);
            if !fresh {
                s.value = crypto::random_bytes();
                s.born = Some(now);
            }
            s.value
        };
        let (bytes, len) = address_bytes(src);
        let mut cookie_value = mac(&secret, &bytes[..len]);

        let mut out = [0u8; COOKIE_REPLY_LEN];
        out[0] = TYPE_COOKIE_REPLY;
        out[cookie::RECEIVER..cookie::RECEIVER + 4].copy_from_slice(&sender_index.to_le_bytes());
        let nonce: [u8; 24] = crypto::random_bytes();
        out[cookie::NONCE..cookie::NONCE + 24].copy_from_slice(&nonce);
        let tag = crypto::xseal(&self.cookie_key, &nonce, &msg[m1..m2], &mut cookie_value);
        out[cookie::COOKIE..cookie::COOKIE + 16].copy_from_slice(&cookie_value);
        out[cookie::COOKIE + 16..].copy_from_slice(&tag);
        Some(out)
    }
}

/// Per peer: adds mac1/mac2 to the handshakes we send and keeps the peer's latest cookie.
pub struct CookieGenerator {
    mac1: PrekeyedMac,
    cookie_key: Key,
    last_mac1: Option<[u8; MAC_LEN]>,
    cookie: Option<([u8; MAC_LEN], Instant)>,
}

impl CookieGenerator {
    pub fn new(peer_public: &Key) -> Self {
        Self {
            mac1: PrekeyedMac::new(&hash(&[LABEL_MAC1, peer_public])),
            cookie_key: hash(&[LABEL_COOKIE, peer_public]),
            last_mac1: None,
            cookie: None,
        }
    }

    /// Writes mac1 and (with a fresh cookie) mac2 into the last 32 bytes of `msg`; true if mac2 carries
    /// a cookie.
    pub fn add_macs(&mut self, msg: &mut [u8], now: Instant) -> bool {
        let Some((m1, m2)) = mac_offsets(msg.len()) else {
            return false;
        };
        let mac1 = self.mac1.mac(&msg[..m1]);
        msg[m1..m2].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        let mac2 = match self.cookie {
            Some((c, at)) if now.saturating_duration_since(at) < COOKIE_REFRESH_TIME => {
                Some(mac(&c, &msg[..m2]))
            }
            _ => None,
        };
        msg[m2..].copy_from_slice(&mac2.unwrap_or([0; MAC_LEN]));
        mac2.is_some()
    }

    /// Accepts a cookie reply to the last handshake we sent; false if it does not authenticate.
    pub fn consume_reply(&mut self, reply: &[u8], now: Instant) -> bool {
        let Some(last_mac1) = self.last_mac1 else {
            return false;
        };
        if reply.len() != COOKIE_REPLY_LEN {
            return false;
        }
        let nonce: [u8; 24] = crate::messages::fixed(reply, cookie::NONCE);
        let mut value: [u8; 16] = crate::messages::fixed(reply, cookie::COOKIE);
        let tag: [u8; 16] = crate::messages::fixed(reply, cookie::COOKIE + 16);
        if !crypto::xopen(&self.cookie_key, &nonce, &last_mac1, &mut value, &tag) {
            return false;
        }
        self.cookie = Some((value, now));
        true
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
