//! Reading connections and handling each frame where it lies in the receive buffer: decryption, the
//! plaintexts of each read written to the TUN device where they lie, replies, and the first authenticated
//! message that claims the address.

use super::{Owner, READ_BUDGET};
use crate::shared::Transmit;
use crate::stats::{SendDrop, TcpClose, TcpState};
use fastwire_proto::framing::{FrameError, length_prefix};
use fastwire_proto::messages::RESPONSE_LEN;
use fastwire_proto::{DATA_HEADER_LEN, Endpoint, Incoming, Peer, RecvDrop};
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::time::Instant;

impl Owner {
    /// Reads every connection that has bytes waiting (up to its budget); false when the interface is gone.
    pub(super) fn read_ready(&mut self, now: Instant) -> bool {
        let ready = std::mem::take(&mut self.readable);
        for slot in ready {
            match self.read_conn(slot, now) {
                Ok(true) => self.readable.push(slot),
                Ok(false) => {}
                Err(ReadEnd::Close(reason)) => self.close(slot, reason, now),
                Err(ReadEnd::InterfaceGone) => return false,
            }
        }
        for (slot, peer) in std::mem::take(&mut self.claimed) {
            self.cap_peer(slot, &peer, now);
        }
        self.readable.sort_unstable();
        self.readable.dedup();
        self.outbox.flush(&self.shared.tcp);
        true
    }

    /// Reads and handles the frames of one connection. `Ok(true)`: more to read after the budget.
    fn read_conn(&mut self, slot: usize, now: Instant) -> Result<bool, ReadEnd> {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(false);
        };
        if !conn.readable {
            return Ok(false);
        }
        let shared = &*self.shared;
        let stats = &*self.stats;
        let endpoint = Endpoint::tcp(conn.remote);
        let udp = shared.socket(0);
        let mut tx = Transmit {
            udp: udp.as_deref(),
            outbox: &mut self.outbox,
        };
        let mut budget = READ_BUDGET;
        while conn.readable && budget > 0 {
            match conn.stream.read(conn.rx.spare()) {
                Ok(0) => return Err(ReadEnd::Close(TcpClose::ByPeer)),
                Ok(n) => {
                    conn.rx.filled(n);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(ReadEnd::Close(TcpClose::Error)),
            }
            let plaintexts = &mut self.plaintexts;
            let mut handle_frames = || -> Result<(), ReadEnd> {
                loop {
                    let at = match conn.rx.next_frame_at() {
                        Ok(Some(at)) => at,
                        Ok(None) => return Ok(()),
                        Err(FrameError::ZeroLength) => {
                            return Err(ReadEnd::Close(TcpClose::ZeroLength));
                        }
                    };
                    let frame_start = at.start;
                    let frame = &mut conn.rx.bytes_mut()[at];
                    let incoming =
                        shared
                            .device
                            .handle_incoming(endpoint, frame, now, &mut self.reply);
                    let authenticated = match &incoming {
                        Incoming::Data { len, .. } => {
                            plaintexts.push((frame_start + DATA_HEADER_LEN, *len));
                            true
                        }
                        Incoming::Keepalive { .. } | Incoming::HandshakeComplete { .. } => true,
                        // A cookie reply proves nothing about who sent it.
                        Incoming::CookieAccepted { .. } => false,
                        Incoming::Reply { len, .. } => {
                            let reply = &self.reply[..*len];
                            let prefix = length_prefix(*len).unwrap_or_default();
                            if !conn.is_authenticated() {
                                // Written at once, outside the pool: a client that is nobody yet must
                                // not hold shared buffers. One that does not read its replies is dropped.
                                if !conn.send_now(&prefix, reply) {
                                    return Err(ReadEnd::Close(TcpClose::Unauthenticated));
                                }
                            } else if !shared.tcp.take_buffer().is_some_and(|mut buf| {
                                buf.extend_from_slice(&prefix);
                                buf.extend_from_slice(reply);
                                conn.enqueue(buf, 1, &shared.tcp) == 0
                            }) {
                                stats.send_drop(SendDrop::TcpQueueFull, 1);
                            } else {
                                self.dirty.push(slot);
                            }
                            *len == RESPONSE_LEN
                        }
                        Incoming::Dropped(reason) => {
                            stats.recv_drop(*reason);
                            if *reason == RecvDrop::Malformed {
                                return Err(ReadEnd::Close(TcpClose::Malformed));
                            }
                            if !conn.is_authenticated() {
                                return Err(ReadEnd::Close(TcpClose::Unauthenticated));
                            }
                            false
                        }
                    };
                    shared.follow_up(&mut tx, &incoming, &mut self.scratch, now, stats);
                    // The first authenticated message makes this connection what an endpoint with its
                    // address means, and one of its peer's.
                    if authenticated && conn.authenticated(now) {
                        shared.tcp_states.moved(
                            Some(TcpState::AcceptedUnauthenticated),
                            Some(TcpState::Accepted),
                        );
                        self.by_addr.insert(conn.remote, slot);
                        if let Some(peer) = sender(&incoming) {
                            conn.peer = Some(peer.public_key);
                            self.claimed.push((slot, peer.public_key));
                        }
                    }
                }
            };
            let handled = handle_frames();
            // This read's plaintexts are written where they lie, before the next read may move the
            // buffer's tail — also when a later frame closes the connection.
            let written =
                self.sink
                    .write_in_place(conn.rx.bytes_mut(), &self.plaintexts, shared, stats);
            self.plaintexts.clear();
            if !written {
                return Err(ReadEnd::InterfaceGone);
            }
            handled?;
        }
        Ok(conn.readable)
    }
}

/// The peer an authenticated message came from.
fn sender(incoming: &Incoming) -> Option<&Arc<Peer>> {
    match incoming {
        Incoming::Data { peer, .. }
        | Incoming::Keepalive { peer, .. }
        | Incoming::HandshakeComplete { peer } => Some(peer),
        Incoming::Reply { peer, .. } => peer.as_ref(),
        _ => None,
    }
}

enum ReadEnd {
    Close(TcpClose),
    InterfaceGone,
}
