//! Our own connections to `tcp://` endpoints: dialing, and on connect saying who we are (a keepalive
//! or an initiation) at once.

use super::{CONNECT_TIMEOUT, Owner, earliest};
use crate::shared::Transmit;
use crate::stats::{Counter, TcpClose, TcpState};
use crate::tcp::conn::{Conn, Role};
use crate::tcp::dial::backoff;
use fastwire_proto::Endpoint;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

impl Owner {
    pub(super) fn dial(&mut self, target: SocketAddr, now: Instant) {
        let result =
            fastwire_io::tcp::connect(target, self.fwmark).map(mio::net::TcpStream::from_std);
        let slot = match result {
            Ok(stream) => self.insert(Conn::new(
                stream,
                target,
                Role::Dialed { connected: false },
                now,
            )),
            Err(e) => {
                tracing::debug!(%target, "TCP connect failed: {e}");
                None
            }
        };
        let Some(dial) = self.dials.get_mut(&target) else {
            return;
        };
        match slot {
            Some(slot) => {
                dial.slot = Some(slot);
                self.next_housekeeping = earliest(self.next_housekeeping, now + CONNECT_TIMEOUT);
            }
            None => {
                self.stats.tcp_closed(TcpClose::ConnectFailed);
                dial.next_attempt = now + backoff(dial.failures);
                dial.failures = dial.failures.saturating_add(1);
                self.next_housekeeping = earliest(self.next_housekeeping, dial.next_attempt);
            }
        }
    }

    /// Our connection finished (or failed) its TCP handshake.
    pub(super) fn finish_connect(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => false,
                // Spurious wake-up: still connecting.
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(_) => true,
            },
        };
        if failed {
            self.close(slot, TcpClose::ConnectFailed, now);
            return;
        }
        conn.role = Role::Dialed { connected: true };
        let target = conn.remote;
        self.shared
            .tcp_states
            .moved(Some(TcpState::Connecting), Some(TcpState::Connected));
        let session_worked = self.dials.get(&target).is_none_or(|d| d.session_worked);
        self.stats.count(Counter::TcpConnected, 1);
        tracing::info!(%target, "TCP connection established");
        // Say who we are at once: the other side cannot send to us before an authenticated message
        // arrives on this connection.
        let udp = self.shared.socket(0);
        let mut tx = Transmit {
            udp: udp.as_deref(),
            outbox: &mut self.outbox,
        };
        for peer in self.shared.device.peers() {
            if peer.endpoint() != Some(Endpoint::tcp(target)) {
                continue;
            }
            if peer.has_session(now) && session_worked {
                self.shared
                    .seal_and_send(&mut tx, &peer, &mut self.scratch, 0, now, &self.stats);
            } else {
                // An initiation sent while there was no connection was lost: send one now rather than
                // wait out the retry timer.
                self.shared.initiate(&mut tx, &peer, true, now, &self.stats);
            }
        }
        self.outbox.flush(&self.shared.tcp);
    }
}
