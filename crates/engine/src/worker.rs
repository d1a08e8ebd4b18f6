//! A multi-queue worker: owns one TUN queue and one UDP socket of the group and runs both directions to
//! completion — no packet crosses threads (Linux, where the kernel spreads flows over the queues and
//! peers over the sockets).
//!
//! Out: TUN reads (a TSO super-packet split into segments, or single packets) -> route -> encrypt in
//! place -> runs of same-peer ciphertexts leave in one UDP GSO send ([`TxBatch`]).
//! In: one recvmmsg (each buffer possibly a UDP GRO train) -> decrypt in place -> source check -> one
//! batched TUN write that coalesces TCP segments ([`RxBatch`]). It sleeps in the kernel when idle and
//! never awaits; all buffers belong to the worker and are allocated once.

use crate::rx_batch::{RX_BUFFERS, RxBatch};
use crate::shared::{Shared, ShutdownReason, Transmit};
use crate::stats::WorkerStats;
use crate::tcp::Outbox;
use crate::tun_sink::TunSink;
use crate::tx_batch::TxBatch;
use fastwire_io::tun::{MAX_PACKET, ReadScratch, TunQueue};
use fastwire_io::wait::{Ready, wait};
use fastwire_proto::{DATA_HEADER_LEN, TAILROOM};
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub tun: Arc<dyn TunQueue>,
    pub stats: Arc<WorkerStats>,
}

/// Buffers every data-path thread needs besides its batches: room to stage a packet or build a
/// keepalive, a handshake answer, a TUN read's scratch space, its frames for the TCP owner.
pub(crate) struct Scratch {
    pub packet: Vec<u8>,
    pub reply: [u8; 256],
    pub read: ReadScratch,
    pub outbox: Outbox,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            packet: vec![0u8; DATA_HEADER_LEN + MAX_PACKET + TAILROOM],
            reply: [0u8; 256],
            read: ReadScratch::new(),
            outbox: Outbox::default(),
        }
    }
}

/// Timeout for a wait: look without sleeping when a source is known to hold more than the last read took.
pub(crate) fn wait_timeout(pending: bool) -> Option<Duration> {
    pending.then_some(Duration::ZERO)
}

impl Worker {
    pub fn run(self) {
        let shared = &*self.shared;
        let stats = &*self.stats;
        let mut tx = TxBatch::new(shared.mtu());
        let mut rx = RxBatch::new();
        let mut sink = TunSink::new(self.tun.clone());
        let mut scratch = Scratch::new();
        let mut mtu_checked = Instant::now();
        let waker = &shared.worker_wakers[self.index];
        let mut ready = [Ready::default(); 3];
        // A source that held more than one read took: look again before sleeping (where reporting
        // readiness consumes it, it would not be reported again).
        let (mut tun_pending, mut udp_pending) = (false, false);
        while !shared.stop.load(Ordering::Relaxed) {
            let socket = shared.socket(self.index);
            let handles = [
                self.tun.wait_handle(),
                waker.wait_handle(),
                socket
                    .as_ref()
                    .map_or(waker.wait_handle(), |s| s.wait_handle()),
            ];
            if wait(
                &handles,
                &mut ready,
                wait_timeout(tun_pending || udp_pending),
            )
            .is_err()
            {
                shared.request_shutdown(ShutdownReason::Failed);
                return;
            }
            if ready[0].failed {
                shared.request_shutdown(ShutdownReason::InterfaceRemoved);
                return;
            }
            if ready[1].readable {
                waker.drain();
            }
            shared.check_mtu(&*self.tun, &mut mtu_checked);
            let Some(socket) = socket else {
                // No socket (being rebound): packets from the TUN device have nowhere to go yet.
                continue;
            };
            let now = Instant::now();
            let mut out = Transmit {
                udp: Some(&socket),
                outbox: &mut scratch.outbox,
            };
            // One batch per direction per wake-up, so a packet waiting on one side (a ping reply behind
            // a bulk transfer) never waits for many batches of the other.
            if ready[0].readable || tun_pending {
                tx.fit(shared.mtu());
                let Some(drained) = tx.fill(&*self.tun, &mut scratch.read, shared, stats) else {
                    return;
                };
                tun_pending = !drained;
                tx.seal(shared, &mut out, &mut scratch.packet, now, stats);
                tx.send(Some(&socket), stats);
                out.outbox.flush(&shared.tcp);
            }
            if ready[2].readable || udp_pending {
                match rx.receive(&socket) {
                    Ok(n) => {
                        udp_pending = n == RX_BUFFERS;
                        rx.open(
                            shared,
                            &mut out,
                            &mut scratch.packet,
                            &mut scratch.reply,
                            now,
                            stats,
                        );
                        if !rx.deliver(&mut sink, shared, stats) {
                            return;
                        }
                    }
                    Err(e) => {
                        // ICMP errors from earlier sends surface here (ECONNREFUSED...): not fatal.
                        udp_pending = e.kind() == ErrorKind::Interrupted;
                    }
                }
            }
            out.outbox.flush(&shared.tcp);
            if shared.device.take_timers_dirty() {
                shared.wake_timer();
            }
        }
    }
}
