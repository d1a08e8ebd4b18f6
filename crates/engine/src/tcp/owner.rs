//! The TCP owner thread: accepts, dials, reads, decrypts, writes — for every TCP connection.
//!
//! One event loop (mio/epoll) sleeps until a socket is ready, a worker hands over frames, the control
//! plane changes something, or a deadline (authentication timeout, reconnect) is due. It never blocks on a
//! socket and takes no lock on the data path.

use super::conn::{Conn, Role};
use super::dial::{HEALTHY_AFTER, backoff};
use super::{Control, Limits, Outbox};
use crate::shared::{Shared, ShutdownReason, Transmit};
use crate::stats::{Counter, SendDrop, TcpClose, WorkerStats};
use crate::tun_sink::TunSink;
use fastwire_io::tun::TunQueue;
use fastwire_io::udp::canonical;
use fastwire_proto::framing::{FrameError, length_prefix};
use fastwire_proto::messages::RESPONSE_LEN;
use fastwire_proto::{DATA_HEADER_LEN, Endpoint, Incoming, RecvDrop, TAILROOM};
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
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
        dirty: Vec::new(),
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
    /// Connections with new frames queued.
    dirty: Vec<usize>,
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

    fn accept(&mut self, now: Instant) {
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

    fn dial(&mut self, target: SocketAddr, now: Instant) {
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
    fn finish_connect(&mut self, slot: usize, now: Instant) {
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

    /// Reads every connection that has bytes waiting (up to its budget); false when the interface is gone.
    fn read_ready(&mut self, now: Instant) -> bool {
        let ready = std::mem::take(&mut self.readable);
        for slot in ready {
            match self.read_conn(slot, now) {
                Ok(true) => self.readable.push(slot),
                Ok(false) => {}
                Err(ReadEnd::Close(reason)) => self.close(slot, reason, now),
                Err(ReadEnd::InterfaceGone) => return false,
            }
        }
        self.readable.sort_unstable();
        self.readable.dedup();
        if !self.sink.flush(&self.shared, &self.stats) {
            return false;
        }
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
            loop {
                let frame = match conn.rx.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(FrameError::ZeroLength) => {
                        return Err(ReadEnd::Close(TcpClose::ZeroLength));
                    }
                };
                let incoming = shared
                    .device
                    .handle_incoming(endpoint, frame, now, &mut self.reply);
                let authenticated = match &incoming {
                    Incoming::Data { len, .. } => {
                        let packet = &frame[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
                        if !self.sink.push(packet, shared, stats) {
                            return Err(ReadEnd::InterfaceGone);
                        }
                        true
                    }
                    Incoming::Keepalive { .. } | Incoming::HandshakeComplete { .. } => true,
                    // A cookie reply proves nothing about who sent it.
                    Incoming::CookieAccepted { .. } => false,
                    Incoming::Reply { len } => {
                        let reply = &self.reply[..*len];
                        let prefix = length_prefix(*len).unwrap_or_default();
                        if !conn.is_authenticated() {
                            // Written at once, outside the pool: a client that is nobody yet must not
                            // hold shared buffers. One that does not read its replies is dropped.
                            if !conn.send_now(&prefix, reply) {
                                return Err(ReadEnd::Close(TcpClose::Unauthenticated));
                            }
                        } else if !shared.tcp.take_buffer().is_some_and(|mut buf| {
                            buf.extend_from_slice(&prefix);
                            buf.extend_from_slice(reply);
                            conn.enqueue(buf, &shared.tcp)
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
                // address means.
                if authenticated && conn.authenticated(now) {
                    self.by_addr.insert(conn.remote, slot);
                }
            }
        }
        Ok(conn.readable)
    }

    /// Moves frames handed over by other threads onto their connections.
    fn take_handoff(&mut self) {
        let handoff = &self.shared.tcp;
        while let Some(batch) = handoff.pop() {
            let conn = self
                .by_addr
                .get(&batch.to)
                .copied()
                .and_then(|slot| Some((slot, self.conns.get_mut(slot)?.as_mut()?)));
            match conn {
                // Still connecting: `finish_connect` says hello itself; anything older is stale.
                Some((_, conn)) if conn.role == (Role::Dialed { connected: false }) => {
                    self.stats
                        .send_drop(SendDrop::TcpNotConnected, batch.packets as u64);
                    handoff.give_back(batch.frames);
                }
                Some((slot, conn)) => {
                    let packets = batch.packets as u64;
                    if conn.enqueue(batch.frames, handoff) {
                        self.dirty.push(slot);
                    } else {
                        self.stats.send_drop(SendDrop::TcpBackpressure, packets);
                    }
                }
                None => {
                    self.stats
                        .send_drop(SendDrop::TcpNotConnected, batch.packets as u64);
                    handoff.give_back(batch.frames);
                }
            }
        }
    }

    fn write_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &slot in &dirty {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if conn.role == (Role::Dialed { connected: false }) {
                continue;
            }
            if conn.flush(&self.shared.tcp).is_err() {
                self.close(slot, TcpClose::Error, now);
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn apply_control(&mut self, now: Instant) {
        if !self.shared.tcp_control_dirty.swap(false, Ordering::Acquire) {
            return;
        }
        let control = std::mem::take(
            &mut *self
                .shared
                .tcp_control
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let Control {
            listener,
            fwmark,
            dial_targets,
        } = control;
        if let Some(mark) = fwmark {
            self.fwmark = mark;
            for conn in self.conns.iter().flatten() {
                let _ = fastwire_io::tcp::set_fwmark(&conn.stream, mark);
            }
            // SYN-ACKs leave with the listener's mark.
            if let Some(listener) = &self.listener {
                let _ = fastwire_io::tcp::set_fwmark(listener, mark);
            }
        }
        if let Some(listener) = listener {
            if let Some(mut old) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            if let Some(std_listener) = listener {
                let mut l = mio::net::TcpListener::from_std(std_listener);
                match self
                    .poll
                    .registry()
                    .register(&mut l, LISTENER, Interest::READABLE)
                {
                    Ok(()) => {
                        self.listener = Some(l);
                        self.accept(now);
                    }
                    Err(e) => tracing::error!("cannot watch the TCP listener: {e}"),
                }
            }
        }
        if let Some(targets) = dial_targets {
            let wanted: HashSet<SocketAddr> = targets.into_iter().collect();
            let gone: Vec<SocketAddr> = self
                .dials
                .keys()
                .filter(|a| !wanted.contains(a))
                .copied()
                .collect();
            for target in gone {
                if let Some(slot) = self.dials.remove(&target).and_then(|d| d.slot) {
                    self.close(slot, TcpClose::Unconfigured, now);
                }
            }
            for target in wanted {
                self.dials.entry(target).or_insert(Dial {
                    slot: None,
                    failures: 0,
                    next_attempt: now,
                    session_worked: true,
                });
            }
            self.next_housekeeping = Some(now);
        }
    }

    /// Closes connections past their deadline, dials what is due, and finds the next deadline.
    fn housekeeping(&mut self, now: Instant) {
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

enum ReadEnd {
    Close(TcpClose),
    InterfaceGone,
}
