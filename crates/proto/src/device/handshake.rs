//! The handshake messages: creating our initiations and handling the three kinds we receive —
//! initiations (answered with a response), responses (completing our handshake) and cookie replies.

use super::index::IndexEntry;
use super::macs::Macs;
use super::{Device, Incoming, RecvDrop};
use crate::endpoint::Endpoint;
use crate::messages::{self, INITIATION_LEN, Kind, RESPONSE_LEN};
use crate::noise;
use crate::peer::Peer;
use crate::session::Keypair;
use crate::timers::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Device {
    /// Writes a handshake initiation for `peer` into `out`. `wall` is the time since the Unix epoch, for the
    /// TAI64N timestamp. Returns `None` when there is no key to do it with, or (unless `retry`) when an
    /// initiation went out less than REKEY_TIMEOUT ago.
    pub fn create_initiation(
        &self,
        peer: &Arc<Peer>,
        now: Instant,
        wall: Duration,
        retry: bool,
        out: &mut [u8; INITIATION_LEN],
    ) -> Option<usize> {
        let epoch = self.epoch();
        let identity = self.identity.load_full()?;
        let mut hs = peer.handshake();
        let ss = hs.static_static(epoch, &identity.keys, &peer.public_key)?;
        if !retry {
            if hs
                .last_initiation_sent
                .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
            {
                return None;
            }
            hs.attempts = 0;
        }
        // A peer removed (or a key replaced) since this began gets no initiation.
        let index = self.new_index(peer, epoch)?;
        let old = hs.initiator.take().map(|s| s.local_index);
        let state = noise::create_initiation(
            &identity.keys,
            &peer.public_key,
            &ss,
            index,
            &noise::tai64n(wall),
            out,
        );
        let Some(state) = state else {
            drop(hs);
            self.index_update(|m| {
                m.remove(index);
            });
            return None;
        };
        hs.last_initiation_had_cookie = hs.cookies.add_macs(out, now);
        hs.initiator = Some(state);
        hs.last_initiation_sent = Some(now);
        drop(hs);
        if let Some(i) = old {
            self.index_update(|m| {
                m.remove(i);
            });
        }
        let at = self.at(now, REKEY_TIMEOUT + jitter());
        let fresh = peer.timers.retransmit_handshake.set(at);
        self.arm(peer, fresh, at);
        self.on_authenticated_sent(peer, now);
        Some(INITIATION_LEN)
    }

    pub(super) fn handle_initiation(
        &self,
        src: Endpoint,
        msg: &[u8],
        now: Instant,
        reply: &mut [u8],
        macs: Macs,
    ) -> Incoming {
        let epoch = self.epoch();
        let Some(identity) = self.identity.load_full() else {
            return Incoming::Dropped(RecvDrop::NoIdentity);
        };
        let sender = messages::le32(msg, messages::init::SENDER);
        if let Err(r) = self.check_macs(&identity, src, msg, sender, now, reply, macs) {
            return r;
        }
        let peers = self.peers.load();
        let consumed = noise::consume_initiation(&identity.keys, msg, |pk| {
            peers
                .get(pk)
                .and_then(|p| p.handshake().static_static(epoch, &identity.keys, pk))
        });
        let Some(consumed) = consumed else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        let Some(peer) = peers.get(&consumed.peer_public).cloned() else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        drop(peers);

        let mut hs = peer.handshake();
        if consumed.timestamp <= hs.latest_timestamp {
            return Incoming::Dropped(RecvDrop::ReplayedTimestamp);
        }
        if hs
            .last_initiation_received
            .is_some_and(|t| now.saturating_duration_since(t) < HANDSHAKE_INITIATION_RATE)
        {
            return Incoming::Dropped(RecvDrop::HandshakeFlood);
        }
        hs.latest_timestamp = consumed.timestamp;
        hs.last_initiation_received = Some(now);

        // The peer was removed, or our key replaced, while this was decrypted.
        let Some(index) = self.new_index(&peer, epoch) else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        let mut response = [0u8; RESPONSE_LEN];
        let Some(keys) = noise::create_response(&consumed, &hs.psk, index, &mut response) else {
            drop(hs);
            self.index_update(|m| {
                m.remove(index);
            });
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        hs.cookies.add_macs(&mut response, now);
        drop(hs);
        let keypair = Arc::new(Keypair::new(
            &keys,
            index,
            consumed.sender_index,
            false,
            now,
        ));
        let Some(out) = reply.get_mut(..RESPONSE_LEN) else {
            self.index_update(|m| {
                m.remove(index);
            });
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        // Refused when the peer was removed, or our key replaced, since the initiation was read.
        if !self.install_keypair(&peer, keypair, epoch) {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        }
        out.copy_from_slice(&response);
        peer.set_endpoint(src);
        self.on_session_derived(&peer, now);
        self.on_authenticated_received(&peer, now);
        self.on_authenticated_sent(&peer, now);
        Incoming::Reply {
            len: RESPONSE_LEN,
            peer: Some(peer),
        }
    }

    pub(super) fn handle_response(
        &self,
        src: Endpoint,
        msg: &[u8],
        now: Instant,
        reply: &mut [u8],
        macs: Macs,
    ) -> Incoming {
        let epoch = self.epoch();
        let Some(identity) = self.identity.load_full() else {
            return Incoming::Dropped(RecvDrop::NoIdentity);
        };
        let sender = noise::response_sender(msg);
        if let Err(r) = self.check_macs(&identity, src, msg, sender, now, reply, macs) {
            return r;
        }
        let receiver = messages::receiver_index(Kind::Response, msg);
        let Some(IndexEntry::Handshake(peer)) = self.indices.get(receiver) else {
            return Incoming::Dropped(RecvDrop::UnexpectedHandshake);
        };
        let keys = {
            let mut hs = peer.handshake();
            let Some(state) = hs.initiator.as_ref().filter(|s| s.local_index == receiver) else {
                return Incoming::Dropped(RecvDrop::UnexpectedHandshake);
            };
            let Some(keys) = noise::consume_response(state, &identity.keys, &hs.psk, msg) else {
                return Incoming::Dropped(RecvDrop::HandshakeAuth);
            };
            hs.initiator = None;
            keys
        };
        let keypair = Arc::new(Keypair::new(&keys, receiver, sender, true, now));
        if !self.install_keypair(&peer, keypair, epoch) {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        }
        peer.set_endpoint(src);
        self.on_handshake_complete(&peer, now);
        self.on_session_derived(&peer, now);
        self.on_authenticated_received(&peer, now);
        Incoming::HandshakeComplete { peer }
    }

    pub(super) fn handle_cookie_reply(&self, msg: &[u8], now: Instant) -> Incoming {
        let receiver = messages::receiver_index(Kind::CookieReply, msg);
        let peer = match self.indices.get(receiver) {
            Some(IndexEntry::Handshake(p)) | Some(IndexEntry::Session(p, _)) => p,
            None => return Incoming::Dropped(RecvDrop::UnexpectedHandshake),
        };
        let mut hs = peer.handshake();
        if !hs.cookies.consume_reply(msg, now) {
            return Incoming::Dropped(RecvDrop::BadCookie);
        }
        // Resend at once only for an initiation still unanswered that went out without a cookie: each
        // cookie reply buys at most one early initiation, and one that carried a cookie waits for its timer.
        let resend = hs.initiator.is_some() && !hs.last_initiation_had_cookie;
        hs.last_initiation_had_cookie = true;
        drop(hs);
        Incoming::CookieAccepted { peer, resend }
    }
}
