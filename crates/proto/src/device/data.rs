//! Transport data: opening received data messages (decrypt in place, replay, roaming, cryptokey
//! routing of the inner source) and sealing outgoing packets.

use super::index::IndexEntry;
use super::{Device, Incoming, RecvDrop};
use crate::endpoint::Endpoint;
use crate::messages::{self, DATA_HEADER_LEN, Kind};
use crate::peer::Peer;
use crate::session::{Keypair, OpenError};
use crate::timers::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why an outgoing packet could not be encrypted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No usable session: queue the packet and start a handshake.
    NoSession,
    /// The peer has no endpoint to send to.
    NoEndpoint,
    /// The buffer lacks room for padding and tag.
    NoRoom,
}

/// A sealed data message, ready to send.
#[derive(Debug, Clone, Copy)]
pub struct Sealed {
    pub len: usize,
    pub endpoint: Endpoint,
    /// The session is due for rekeying: start a handshake.
    pub rekey: bool,
}

impl Device {
    pub(super) fn handle_data(&self, src: Endpoint, msg: &mut [u8], now: Instant) -> Incoming {
        let receiver = messages::receiver_index(Kind::Data, msg);
        let Some(IndexEntry::Session(peer, keypair)) = self.indices.get(receiver) else {
            return Incoming::Dropped(RecvDrop::UnknownSession);
        };
        let n = match keypair.open(msg, now) {
            Ok(n) => n,
            Err(OpenError::Expired) => return Incoming::Dropped(RecvDrop::ExpiredSession),
            Err(OpenError::Auth) => return Incoming::Dropped(RecvDrop::DataAuth),
            Err(OpenError::Replay) => return Incoming::Dropped(RecvDrop::Replay),
        };
        peer.set_endpoint(src);
        peer.rx_bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
        let is_current = peer
            .current
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &keypair));
        let confirmed = !is_current && self.confirm_next(&peer, &keypair);
        if confirmed {
            self.on_handshake_complete(&peer, now);
        }
        self.on_authenticated_received(&peer, now);
        let rekey =
            self.last_minute_rekey(&peer, (is_current && !confirmed).then_some(&keypair), now);
        if n == 0 {
            return Incoming::Keepalive { peer, confirmed };
        }
        let inner = &msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
        let Some((source, len)) = inner_source(inner) else {
            return Incoming::Dropped(RecvDrop::BadInnerPacket);
        };
        let routes = self.routes.load();
        let owner = match source {
            IpAddr::V4(a) => routes.lookup_v4(a.octets()),
            IpAddr::V6(a) => routes.lookup_v6(a.octets()),
        };
        if !owner.is_some_and(|o| Arc::ptr_eq(&o.0, &peer)) {
            return Incoming::Dropped(RecvDrop::DisallowedSource);
        }
        let keepalive = &peer.timers.send_keepalive;
        if keepalive.get().is_none() {
            let at = self.at(now, KEEPALIVE_TIMEOUT);
            let fresh = keepalive.arm_if_idle(at);
            self.arm(&peer, fresh, at);
        } else if !peer.timers.keepalive_again.load(Ordering::Relaxed) {
            peer.timers.keepalive_again.store(true, Ordering::Relaxed);
        }
        Incoming::Data {
            peer,
            len,
            rekey,
            confirmed,
        }
    }

    /// wireguard-go's keepKeyFreshReceiving: the current session (`current`, when the caller holds it
    /// already) is one we initiated and is near REJECT_AFTER_TIME. Its responder never rekeys on age,
    /// so if we only receive, nobody would: ask once for a handshake, not again until one completes.
    fn last_minute_rekey(&self, peer: &Peer, current: Option<&Arc<Keypair>>, now: Instant) -> bool {
        let flag = &peer.timers.sent_last_minute_handshake;
        if flag.load(Ordering::Relaxed) {
            return false;
        }
        let aged = |k: &Keypair| {
            k.we_initiated && k.age(now) > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        };
        let due = match current {
            Some(k) => aged(k),
            None => peer.current.load().as_deref().is_some_and(aged),
        };
        due && !flag.swap(true, Ordering::Relaxed)
    }

    /// Encrypts the packet at `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` in place for `peer`.
    /// `len == 0` makes a keepalive.
    pub fn seal(
        &self,
        peer: &Peer,
        buf: &mut [u8],
        len: usize,
        mtu: usize,
        now: Instant,
    ) -> Result<Sealed, SendError> {
        let endpoint = peer.endpoint().ok_or(SendError::NoEndpoint)?;
        let guard = peer.current.load();
        let keypair = guard
            .as_ref()
            .filter(|k| k.can_send(now))
            .ok_or(SendError::NoSession)?;
        let total = keypair.seal(buf, len, mtu, now).ok_or(SendError::NoRoom)?;
        let rekey = keypair.we_initiated
            && (keypair.sent() >= REKEY_AFTER_MESSAGES || keypair.age(now) >= REKEY_AFTER_TIME);
        peer.tx_bytes.fetch_add(total as u64, Ordering::Relaxed);
        // The jitter costs a getrandom call: only pay it when the timer actually gets armed.
        if len > 0 && peer.timers.new_handshake.get().is_none() {
            let at = self.at(now, KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter());
            let fresh = peer.timers.new_handshake.arm_if_idle(at);
            self.arm(peer, fresh, at);
        }
        self.on_authenticated_sent(peer, now);
        Ok(Sealed {
            len: total,
            endpoint,
            rekey,
        })
    }
}

/// The source address and true length of an IPv4/IPv6 packet, if its header is consistent.
fn inner_source(packet: &[u8]) -> Option<(IpAddr, usize)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let total = u16::from_be_bytes([packet[2], packet[3]]) as usize;
            let src: [u8; 4] = messages::fixed(packet, 12);
            (20..=packet.len())
                .contains(&total)
                .then_some((IpAddr::V4(Ipv4Addr::from(src)), total))
        }
        6 if packet.len() >= 40 => {
            let total = 40 + u16::from_be_bytes([packet[4], packet[5]]) as usize;
            let src: [u8; 16] = messages::fixed(packet, 8);
            (total <= packet.len()).then_some((IpAddr::V6(Ipv6Addr::from(src)), total))
        }
        _ => None,
    }
}
