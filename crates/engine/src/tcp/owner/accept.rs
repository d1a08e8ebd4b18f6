//! Accepting connections: the listener's accept loop, and admission — the cap on connections, the
//! eviction of the oldest unauthenticated connection of the address holding the most, and the cap on
//! the accepted connections one peer authenticates.

use super::{
    ACCEPT_RETRY, AUTH_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, Owner, earliest,
};
use crate::stats::{Counter, TcpClose};
use crate::tcp::conn::{Conn, Role};
use fastwire_io::udp::canonical;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

impl Owner {
    pub(super) fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => self.admit(stream, canonical(remote), now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of file descriptors, say: no new edge will come for the connections already
                    // waiting, so look again shortly.
                    tracing::warn!("cannot accept a TCP connection: {e}");
                    self.accept_retry = true;
                    self.next_housekeeping = earliest(self.next_housekeeping, now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: mio::net::TcpStream, remote: SocketAddr, now: Instant) {
        self.stats.count(Counter::TcpAccepted, 1);
        let live = self.conns.len() - self.free_slots.len();
        if live >= MAX_CONNECTIONS {
            self.stats.tcp_closed(TcpClose::TableFull);
            return;
        }
        // Over the cap, the oldest unauthenticated connection of the address holding the most goes:
        // a flood from one address evicts its own connections, not the clients still handshaking.
        let mut per_ip: HashMap<IpAddr, (usize, Instant, usize)> = HashMap::new();
        let mut unauthenticated = 0;
        for (slot, conn) in self.conns.iter().enumerate() {
            if let Some(c) = conn
                && !c.is_authenticated()
            {
                unauthenticated += 1;
                let entry = per_ip.entry(c.remote.ip()).or_insert((0, c.opened, slot));
                entry.0 += 1;
                if c.opened < entry.1 {
                    (entry.1, entry.2) = (c.opened, slot);
                }
            }
        }
        if unauthenticated >= self.limits.max_unauthenticated.max(1) {
            let victim = per_ip
                .values()
                .max_by_key(|(count, opened, _)| (*count, std::cmp::Reverse(*opened)))
                .map(|&(_, _, slot)| slot);
            if let Some(slot) = victim {
                self.close(slot, TcpClose::Evicted, now);
            }
        }
        if fastwire_io::tcp::tune(&stream, self.fwmark).is_err() {
            self.stats.tcp_closed(TcpClose::Error);
            return;
        }
        let conn = Conn::new(
            stream,
            remote,
            Role::Accepted {
                authenticated: false,
            },
            now,
        );
        if let Some(slot) = self.insert(conn)
            && let Some(conn) = self.conn(slot)
        {
            // Bytes may have arrived before registration.
            conn.readable = true;
            self.readable.push(slot);
        }
        self.next_housekeeping = earliest(self.next_housekeeping, now + AUTH_TIMEOUT);
    }

    /// Connection `slot` was just authenticated by `peer`: if that makes more than its share of
    /// accepted connections, the least recently used others close.
    pub(super) fn cap_peer(&mut self, slot: usize, peer: &[u8; 32], now: Instant) {
        let mut others: Vec<(Instant, usize)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                (i != slot && c.peer.as_ref() == Some(peer)).then_some((c.last_authenticated, i))
            })
            .collect();
        let over = (others.len() + 1).saturating_sub(MAX_CONNECTIONS_PER_PEER);
        if over == 0 {
            return;
        }
        others.sort_unstable();
        for &(_, victim) in &others[..over] {
            self.close(victim, TcpClose::PeerOverCap, now);
        }
    }
}
