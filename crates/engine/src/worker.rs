//! A data-plane worker: owns one TUN queue and runs both directions to completion.
//!
//! TUN -> route -> encrypt in place -> UDP, and UDP -> decrypt in place -> source check -> TUN. It sleeps
//! in poll(2) when idle and never awaits; buffers are allocated once per worker.

use crate::shared::{Shared, ShutdownReason};
use crate::stats::{Counter, SendDrop, WorkerStats};
use fastwire_io::poll::{Ready, wait};
use fastwire_io::tun::TunQueue;
use fastwire_io::udp::UdpSocket;
use fastwire_proto::{DATA_HEADER_LEN, Incoming, TAILROOM};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Packets handled per readiness event before checking the other direction.
const BATCH: usize = 64;
/// Largest IP packet a TUN device hands us.
const MAX_PACKET: usize = 65535;

pub(crate) struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub tun: TunQueue,
    pub stats: Arc<WorkerStats>,
}

impl Worker {
    pub fn run(self) {
        let mut buf = vec![0u8; DATA_HEADER_LEN + MAX_PACKET + TAILROOM];
        let mut reply = [0u8; 256];
        let waker = &self.shared.worker_wakers[self.index];
        let mut ready = [Ready::default(); 3];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let socket = self.shared.socket(self.index);
            let tun_fd = self.tun.as_raw_fd();
            let udp_fd = socket.as_ref().map_or(waker.as_raw_fd(), |s| s.as_raw_fd());
            if wait(&[tun_fd, waker.as_raw_fd(), udp_fd], &mut ready, -1).is_err() {
                self.shared.request_shutdown(ShutdownReason::Failed);
                return;
            }
            if ready[0].failed {
                self.shared
                    .request_shutdown(ShutdownReason::InterfaceRemoved);
                return;
            }
            if ready[1].readable {
                waker.drain();
            }
            let Some(socket) = socket else {
                // No socket (being rebound): packets from the TUN device have nowhere to go yet.
                continue;
            };
            if ready[0].readable && !self.handle_tun(&socket, &mut buf) {
                return;
            }
            if ready[2].readable {
                self.handle_udp(&socket, &mut buf, &mut reply);
            }
            if self.shared.device.take_timers_dirty() {
                self.shared.wake_timer();
            }
        }
    }

    /// Reads up to a batch from the TUN queue; false when the interface is gone.
    fn handle_tun(&self, socket: &UdpSocket, buf: &mut [u8]) -> bool {
        let now = Instant::now();
        let shared = &self.shared;
        for _ in 0..BATCH {
            let n = match self
                .tun
                .recv(&mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_PACKET])
            {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    // EBADFD/EIO: the interface was deleted under us.
                    shared.request_shutdown(ShutdownReason::InterfaceRemoved);
                    return false;
                }
            };
            let packet = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
            if !matches!(packet.first().map(|b| b >> 4), Some(4) | Some(6)) {
                self.stats.send_drop(SendDrop::NotIp, 1);
                continue;
            }
            let Some(peer) = shared.device.route(packet) else {
                self.stats.send_drop(SendDrop::NoRoute, 1);
                continue;
            };
            shared.seal_and_send(socket, &peer, buf, n, now, &self.stats);
        }
        true
    }

    fn handle_udp(&self, socket: &UdpSocket, buf: &mut [u8], reply: &mut [u8]) {
        let now = Instant::now();
        let shared = &self.shared;
        for _ in 0..BATCH {
            let (n, src) = match socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here (ECONNREFUSED...): not fatal.
                Err(_) => continue,
            };
            match shared
                .device
                .handle_incoming(src, &mut buf[..n], now, reply)
            {
                Incoming::Data { peer, len, rekey } => {
                    self.stats.count(Counter::RxPackets, 1);
                    if self
                        .tun
                        .send(&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len])
                        .is_err()
                    {
                        self.stats.count(Counter::TunWriteFailed, 1);
                    }
                    if rekey {
                        shared.initiate(socket, &peer, false, now, &self.stats);
                    }
                }
                Incoming::Keepalive { .. } | Incoming::CookieAccepted => {}
                Incoming::Reply { len } => {
                    if len == fastwire_proto::messages::COOKIE_REPLY_LEN {
                        self.stats.count(Counter::CookieRepliesSent, 1);
                        self.stats.recv_drop(fastwire_proto::RecvDrop::CookieSent);
                    }
                    if socket.send_to(&reply[..len], src).is_err() {
                        self.stats.send_drop(SendDrop::SendFailed, 1);
                    }
                }
                Incoming::HandshakeComplete { peer } => {
                    shared.flush_staged(socket, &peer, buf, now, &self.stats)
                }
                Incoming::Dropped(reason) => self.stats.recv_drop(reason),
            }
        }
    }
}
