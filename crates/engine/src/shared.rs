//! State shared by the workers and the timer thread, and the send helpers both use.

use crate::stats::{Counter, SendDrop, WorkerStats};
use crate::tcp::{Outbox, TcpHandoff};
use arc_swap::ArcSwapOption;
use fastwire_io::tun::TunQueue;
use fastwire_io::udp::UdpSocket;
use fastwire_io::wait::Waker;
use fastwire_proto::messages::{COOKIE_REPLY_LEN, INITIATION_LEN};
use fastwire_proto::{
    DATA_HEADER_LEN, Device, Endpoint, Incoming, Peer, RecvDrop, SendError, Transport,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why the engine stopped (or was asked to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// SIGINT/SIGTERM or an explicit request.
    Requested,
    /// The TUN interface was deleted (e.g. `ip link delete`, `wg-quick down`).
    InterfaceRemoved,
    /// A fatal I/O error in the data plane.
    Failed,
}

pub(crate) struct Shared {
    pub device: Device,
    /// One socket per worker, all bound to the listen port with SO_REUSEPORT; swapped whole on rebind.
    pub sockets: ArcSwapOption<Vec<UdpSocket>>,
    /// What the kernel dropped on the sockets of groups replaced by a rebind, so the count never goes
    /// backwards.
    pub retired_kernel_drops: std::sync::atomic::AtomicU64,
    pub fwmark: AtomicU32,
    pub mtu: AtomicUsize,
    pub stop: AtomicBool,
    pub worker_wakers: Vec<Waker>,
    pub timer_wake: (Mutex<bool>, Condvar),
    pub shutdown: (Mutex<Option<ShutdownReason>>, Condvar),
    /// Counters for the timer thread and the control plane (workers have their own).
    pub control_stats: WorkerStats,
    /// Open TCP connections by state, kept by the TCP owner.
    pub tcp_states: crate::stats::TcpStates,
    /// Handshake messages from the workers, for the handshake thread.
    pub handshakes: crate::handshake::HandshakeQueue,
    /// Frames for TCP connections, handed to the TCP owner thread.
    pub tcp: TcpHandoff,
    /// Configuration for the TCP owner (listener, fwmark, connections to keep up).
    pub tcp_control: Mutex<crate::tcp::Control>,
    /// Set after changing `tcp_control`, so the owner's loop looks at the lock only when needed.
    pub tcp_control_dirty: AtomicBool,
    /// The TCP listen port (0 = none).
    pub tcp_port: std::sync::atomic::AtomicU16,
}

/// How often a data-path thread re-reads the interface MTU.
const MTU_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Shared {
    pub fn wake_timer(&self) {
        let (lock, cv) = &self.timer_wake;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_one();
    }

    pub fn wake_workers(&self) {
        for w in &self.worker_wakers {
            w.wake();
        }
    }

    pub fn request_shutdown(&self, reason: ShutdownReason) {
        let (lock, cv) = &self.shutdown;
        let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        cv.notify_all();
    }

    /// The socket of worker `index` (the timer thread uses worker 0's).
    pub fn socket(&self, index: usize) -> Option<SocketRef> {
        let group = self.sockets.load_full()?;
        (!group.is_empty()).then(|| SocketRef {
            index: index % group.len(),
            group,
        })
    }

    /// Hands a configuration change to the TCP owner.
    pub fn control_tcp(&self, change: impl FnOnce(&mut crate::tcp::Control)) {
        change(&mut self.tcp_control.lock().unwrap_or_else(|p| p.into_inner()));
        self.tcp_control_dirty.store(true, Ordering::Release);
        self.tcp.wake();
    }

    pub fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Re-reads the interface MTU at most once per [`MTU_CHECK_INTERVAL`] (the user may change it while
    /// we run); readers of [`Shared::mtu`] resize their buffers when it changes.
    pub fn check_mtu(&self, tun: &dyn TunQueue, last: &mut Instant) {
        if last.elapsed() < MTU_CHECK_INTERVAL {
            return;
        }
        *last = Instant::now();
        if let Ok(mtu) = tun.mtu() {
            self.mtu.store(usize::from(mtu), Ordering::Relaxed);
        }
    }

    /// Sends one message (handshake, cookie reply, a lone data message) over the endpoint's transport.
    pub fn send_message(
        &self,
        tx: &mut Transmit,
        to: Endpoint,
        msg: &[u8],
        stats: &WorkerStats,
    ) -> bool {
        match to.transport {
            Transport::Udp => {
                let sent = tx
                    .udp
                    .is_some_and(|s| s.send_to(msg, to.addr, to.local).is_ok());
                if !sent {
                    stats.send_drop(SendDrop::SendFailed, 1);
                }
                sent
            }
            Transport::Tcp => match tx.outbox.push(&self.tcp, to.addr, msg) {
                Ok(()) => true,
                Err(reason) => {
                    stats.send_drop(reason, 1);
                    false
                }
            },
        }
    }

    /// Sends a handshake initiation to `peer` if it has an endpoint and one is due.
    pub fn initiate(
        &self,
        tx: &mut Transmit,
        peer: &Arc<Peer>,
        retry: bool,
        now: Instant,
        stats: &WorkerStats,
    ) {
        let Some(endpoint) = peer.endpoint() else {
            return;
        };
        let mut msg = [0u8; INITIATION_LEN];
        if let Some(n) = self
            .device
            .create_initiation(peer, now, wall_clock(), retry, &mut msg)
        {
            stats.count(Counter::HandshakesSent, 1);
            self.send_message(tx, endpoint, &msg[..n], stats);
        }
    }

    /// Encrypts `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` for `peer` and sends it; without a session,
    /// stages the packet and starts a handshake. `len == 0` sends a keepalive.
    pub fn seal_and_send(
        &self,
        tx: &mut Transmit,
        peer: &Arc<Peer>,
        buf: &mut [u8],
        len: usize,
        now: Instant,
        stats: &WorkerStats,
    ) {
        match self.device.seal(peer, buf, len, self.mtu(), now) {
            Ok(sealed) => {
                if self.send_message(tx, sealed.endpoint, &buf[..sealed.len], stats) {
                    stats.count(Counter::TxPackets, 1);
                }
                if sealed.rekey {
                    self.initiate(tx, peer, false, now, stats);
                }
            }
            Err(SendError::NoSession) => {
                if len > 0 && !peer.stage(&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]) {
                    stats.send_drop(SendDrop::StagedOverflow, 1);
                }
                self.initiate(tx, peer, false, now, stats);
            }
            // As wireguard-go: packets wait for the peer to connect (a server rarely knows its
            // clients' endpoints). A handshake from the peer sets the endpoint; the session it
            // confirms sends them.
            Err(SendError::NoEndpoint) if len > 0 => {
                if !peer.stage(&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]) {
                    stats.send_drop(SendDrop::StagedOverflow, 1);
                }
            }
            Err(SendError::NoEndpoint) => stats.send_drop(SendDrop::NoEndpoint, 1),
            Err(SendError::NoRoom) => stats.send_drop(SendDrop::SendFailed, 1),
        }
    }

    /// What a received message asks of the sending side, whatever transport it came on: a handshake when
    /// the session is getting old, the packets that waited for a session (or the keepalive that confirms
    /// one we initiated); and its counters. Drops are the caller's to count (it may act on them).
    pub fn follow_up(
        &self,
        tx: &mut Transmit,
        incoming: &Incoming,
        scratch: &mut [u8],
        now: Instant,
        stats: &WorkerStats,
    ) {
        match incoming {
            Incoming::Data {
                peer,
                rekey,
                confirmed,
                ..
            } => {
                stats.count(Counter::RxPackets, 1);
                if *rekey {
                    self.initiate(tx, peer, false, now, stats);
                }
                if *confirmed {
                    self.flush_staged(tx, peer, scratch, now, stats, false);
                }
            }
            Incoming::Keepalive {
                peer,
                confirmed: true,
            } => self.flush_staged(tx, peer, scratch, now, stats, false),
            Incoming::HandshakeComplete { peer } => {
                stats.count(Counter::HandshakesCompleted, 1);
                self.flush_staged(tx, peer, scratch, now, stats, true)
            }
            // The responder is under load and gave us a cookie for an initiation that had none: send
            // the initiation again now, with mac2, rather than after the retry timer (5 s).
            Incoming::CookieAccepted { peer, resend: true } => {
                self.initiate(tx, peer, true, now, stats)
            }
            Incoming::Reply {
                len: COOKIE_REPLY_LEN,
                ..
            } => {
                stats.count(Counter::CookieRepliesSent, 1);
                stats.recv_drop(RecvDrop::CookieSent);
            }
            Incoming::Reply { peer: Some(_), .. } => {
                stats.count(Counter::HandshakeResponsesSent, 1)
            }
            _ => {}
        }
    }

    /// A session is ready: send what waited for it. With nothing waiting, `keepalive_if_none` sends a
    /// keepalive instead (the initiator must confirm a new session; a confirmed responder need not).
    pub fn flush_staged(
        &self,
        tx: &mut Transmit,
        peer: &Arc<Peer>,
        buf: &mut [u8],
        now: Instant,
        stats: &WorkerStats,
        keepalive_if_none: bool,
    ) {
        let staged = peer.take_staged();
        if staged.is_empty() {
            if !keepalive_if_none {
                return;
            }
            self.seal_and_send(tx, peer, buf, 0, now, stats);
            return;
        }
        for packet in staged {
            let Some(slot) = buf.get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()) else {
                continue;
            };
            slot.copy_from_slice(&packet);
            self.seal_and_send(tx, peer, buf, packet.len(), now, stats);
        }
    }
}

/// Where one thread sends: its UDP socket (none while the port is being rebound) and its batch of frames
/// for the TCP owner, flushed at the end of each round.
pub(crate) struct Transmit<'a> {
    pub udp: Option<&'a UdpSocket>,
    pub outbox: &'a mut Outbox,
}

/// A counted reference to one socket of the current group.
pub(crate) struct SocketRef {
    group: Arc<Vec<UdpSocket>>,
    index: usize,
}

impl std::ops::Deref for SocketRef {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        &self.group[self.index]
    }
}
