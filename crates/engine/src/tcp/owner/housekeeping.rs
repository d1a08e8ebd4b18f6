//! Housekeeping by deadline: closing connections past their authentication, idle or connect timeout,
//! dialing what is due, retrying `accept`, and finding the next deadline.

use super::{ACCEPT_RETRY, AUTH_TIMEOUT, CONNECT_TIMEOUT, IDLE_TIMEOUT, Owner};
use crate::stats::TcpClose;
use crate::tcp::conn::Role;
use fastwire_proto::Endpoint;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

impl Owner {
    /// Closes connections past their deadline, dials what is due, and finds the next deadline.
    pub(super) fn housekeeping(&mut self, now: Instant) {
        if std::mem::take(&mut self.accept_retry) {
            self.accept(now);
        }
        let endpoints: HashSet<SocketAddr> = self
            .shared
            .device
            .peers()
            .iter()
            .filter_map(|p| p.endpoint().filter(Endpoint::is_tcp).map(|e| e.addr))
            .collect();
        let mut expired = Vec::new();
        for (slot, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            let (deadline, reason) = match conn.role {
                Role::Accepted {
                    authenticated: false,
                } => (conn.opened + AUTH_TIMEOUT, TcpClose::AuthTimeout),
                Role::Accepted {
                    authenticated: true,
                } if !endpoints.contains(&conn.remote) => {
                    (conn.last_authenticated + IDLE_TIMEOUT, TcpClose::Idle)
                }
                Role::Dialed { connected: false } => {
                    (conn.opened + CONNECT_TIMEOUT, TcpClose::ConnectFailed)
                }
                _ => continue,
            };
            if deadline <= now {
                expired.push((slot, reason));
            }
        }
        for (slot, reason) in expired {
            self.close(slot, reason, now);
        }
        let due: Vec<SocketAddr> = self
            .dials
            .iter()
            .filter(|(_, d)| d.slot.is_none() && d.next_attempt <= now)
            .map(|(target, _)| *target)
            .collect();
        for target in due {
            self.dial(target, now);
        }
        self.next_housekeeping = self.next_deadline(&endpoints, now);
    }

    fn next_deadline(&self, endpoints: &HashSet<SocketAddr>, now: Instant) -> Option<Instant> {
        let conns = self.conns.iter().flatten().filter_map(|c| match c.role {
            Role::Accepted {
                authenticated: false,
            } => Some(c.opened + AUTH_TIMEOUT),
            // Roaming may stop it being an endpoint at any time: look again an idle period later.
            Role::Accepted {
                authenticated: true,
            } if endpoints.contains(&c.remote) => Some(now + IDLE_TIMEOUT),
            Role::Accepted {
                authenticated: true,
            } => Some((c.last_authenticated + IDLE_TIMEOUT).max(now)),
            Role::Dialed { connected: false } => Some(c.opened + CONNECT_TIMEOUT),
            Role::Dialed { connected: true } => None,
        });
        let dials = self
            .dials
            .values()
            .filter(|d| d.slot.is_none())
            .map(|d| d.next_attempt);
        let accept = self.accept_retry.then_some(now + ACCEPT_RETRY);
        conns.chain(dials).chain(accept).min()
    }
}
