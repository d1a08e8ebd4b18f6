//! The TCP owner thread: accepts, dials, reads, decrypts, writes — for every TCP connection.
//!
//! One event loop (mio/epoll) sleeps until a socket is ready, a worker hands over frames, the control
//! plane changes something, or a deadline (authentication timeout, reconnect) is due. It never blocks on a
//! socket and takes no lock on the data path.
//!
//! This module holds the owner's state, its event loop and the connection table (insert, close); the
//! rest of its work lives in submodules: `accept` (accepting and admitting connections, evicting over
//! the cap), `outbound` (dialing `tcp://` endpoints and saying hello on connect), `frames` (reading
//! connections and handling each frame where it lies), `writes` (taking handed-over frames and writing
//! them), `control` (applying what the control plane asks) and `housekeeping` (deadlines and redials).

mod accept;
mod control;
mod frames;
mod housekeeping;
mod outbound;
mod writes;

use super::conn::{Conn, Role};
use super::dial::{HEALTHY_AFTER, backoff};
use super::{Limits, Outbox};
use crate::shared::{Shared, ShutdownReason};
use crate::stats::{TcpClose, WorkerStats};
use crate::tun_sink::TunSink;
use fastwire_io::tun::{PacketSpan, TunQueue};
use fastwire_proto::{DATA_HEADER_LEN, TAILROOM};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The token of the waker that [`super::TcpHandoff`] and the control plane use.
pub(crate) const WAKER_TOKEN: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// An accepted connection must carry a valid handshake (or an authenticated message) within this, or it
/// is closed: silent, trickling and half-open connections cost a slot for this long at most.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Our own connection attempts give up after this (then back off and retry).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An authenticated accepted connection that is no peer's endpoint any more and has been silent this
/// long (REJECT_AFTER_TIME: no session outlives it) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Connections of all kinds; beyond it new ones are refused at accept.
const MAX_CONNECTIONS: usize = 1024;
/// Accepted connections one peer's key may authenticate: one key cannot fill the table. Beyond it the
/// peer's least recently used one closes (a roaming client's newest connection is the one it uses).
const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// Bytes read from one connection per round before the others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// How soon to try `accept` again after it failed for lack of resources.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(crate) fn run(
    shared: Arc<Shared>,
    poll: Poll,
    tun: Arc<dyn TunQueue>,
    stats: Arc<WorkerStats>,
    limits: Limits,
) {
    let mut owner = Owner {
        shared,
        poll,
        stats,
        limits,
        listener: None,
        conns: Vec::new(),
        free_slots: Vec::new(),
        by_addr: HashMap::new(),
        dials: HashMap::new(),
        fwmark: 0,
        next_housekeeping: None,
        accept_retry: false,
        sink: TunSink::new(tun),
        outbox: Outbox::default(),
        reply: [0; 256],
        scratch: vec![0; DATA_HEADER_LEN + 65_535 + TAILROOM],
        readable: Vec::new(),
        plaintexts: Vec::new(),
        dirty: Vec::new(),
        claimed: Vec::new(),
    };
    owner.run();
}

struct Dial {
    /// The connection slot while connecting or connected.
    slot: Option<usize>,
    failures: u32,
    next_attempt: Instant,
    /// The previous connection carried an authenticated message. If it did not (the other side was
    /// restarted and no longer knows our session, say), the next one starts with a handshake.
    session_worked: bool,
}

struct Owner {
    shared: Arc<Shared>,
    poll: Poll,
    stats: Arc<WorkerStats>,
    limits: Limits,
    listener: Option<mio::net::TcpListener>,
    conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    /// Which connection an endpoint address means.
    by_addr: HashMap<SocketAddr, usize>,
    dials: HashMap<SocketAddr, Dial>,
    fwmark: u32,
    next_housekeeping: Option<Instant>,
    /// `accept` failed for lack of resources: connections may be waiting with no edge to come.
    accept_retry: bool,
    sink: TunSink,
    outbox: Outbox,
    reply: [u8; 256],
    scratch: Vec<u8>,
    /// Connections with bytes left to read.
    readable: Vec<usize>,
    /// Where the plaintexts of one read lie in its connection's receive buffer.
    plaintexts: Vec<PacketSpan>,
    /// Connections with new frames queued.
    dirty: Vec<usize>,
    /// Accepted connections just authenticated, with their peer's key: checked against the cap.
    claimed: Vec<(usize, [u8; 32])>,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Owner {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.shared.stop.load(Ordering::Relaxed) {
            let timeout = if self.readable.is_empty() {
                self.next_housekeeping
                    .map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("TCP event loop failed: {e}");
                self.shared.request_shutdown(ShutdownReason::Failed);
                break;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER_TOKEN => {}
                    LISTENER => self.accept(now),
                    Token(t) => self.on_socket_event(t - FIRST_CONN, event, now),
                }
            }
            self.apply_control(now);
            if !self.read_ready(now) {
                break;
            }
            self.take_handoff();
            self.write_dirty(now);
            if self.next_housekeeping.is_some_and(|t| t <= now) {
                self.housekeeping(now);
                self.write_dirty(now);
            }
        }
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            self.close(slot, TcpClose::Unconfigured, now);
        }
        while let Some(batch) = self.shared.tcp.pop() {
            self.shared.tcp.give_back(batch.frames);
        }
    }

    fn conn(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    fn on_socket_event(&mut self, slot: usize, event: &mio::event::Event, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.readable = true;
            self.readable.push(slot);
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.writable = true;
            if conn.role == (Role::Dialed { connected: false }) {
                self.finish_connect(slot, now);
            }
            self.dirty.push(slot);
        }
    }

    fn insert(&mut self, mut conn: Conn) -> Option<usize> {
        let slot = self.free_slots.pop().unwrap_or(self.conns.len());
        let registered = self.poll.registry().register(
            &mut conn.stream,
            Token(FIRST_CONN + slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            if slot < self.conns.len() {
                self.free_slots.push(slot);
            }
            return None;
        }
        // An accepted connection stands for its address only once it authenticates.
        if matches!(conn.role, Role::Dialed { .. }) {
            self.by_addr.insert(conn.remote, slot);
        }
        self.shared.tcp_states.moved(None, Some(conn.role.state()));
        if slot == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[slot] = Some(conn);
        }
        Some(slot)
    }

    fn close(&mut self, slot: usize, reason: TcpClose, now: Instant) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.shared.tcp_states.moved(Some(conn.role.state()), None);
        conn.release(&self.shared.tcp);
        if self.by_addr.get(&conn.remote) == Some(&slot) {
            self.by_addr.remove(&conn.remote);
        }
        self.free_slots.push(slot);
        self.stats.tcp_closed(reason);
        tracing::debug!(remote = %conn.remote, reason = reason.name(), "TCP connection closed");
        if let Some(dial) = self.dials.get_mut(&conn.remote)
            && dial.slot == Some(slot)
        {
            dial.slot = None;
            if conn.role == (Role::Dialed { connected: true }) {
                dial.session_worked = conn.last_authenticated > conn.opened;
            }
            let lived = now.saturating_duration_since(conn.opened);
            let healthy = conn.role == (Role::Dialed { connected: true })
                && (lived >= HEALTHY_AFTER || conn.last_authenticated > conn.opened);
            if healthy {
                dial.failures = 0;
            }
            dial.next_attempt = now + backoff(dial.failures);
            dial.failures = dial.failures.saturating_add(1);
            self.next_housekeeping = earliest(self.next_housekeeping, dial.next_attempt);
        }
    }
}
