//! Decrypted packets on their way to the TUN device, written in batches (coalesced into super-packets when
//! offloads are on). Used by every thread that delivers: the UDP workers (or the in-order committer of
//! the single-queue pipeline) and the TCP owner.

use crate::shared::{Shared, ShutdownReason};
use crate::stats::{Counter, SendDrop, WorkerStats};
use fastwire_io::tun::{Coalescer, MAX_PACKET, MAX_SEGMENTS, TunQueue};
use fastwire_proto::DATA_HEADER_LEN;
use std::io;
use std::sync::Arc;

pub(crate) struct TunSink {
    tun: Arc<dyn TunQueue>,
    coalescer: Coalescer,
    /// One buffer per packet (coalescing grows the first of a flow), each with headroom in front.
    bufs: Vec<Vec<u8>>,
    pending: usize,
}

impl TunSink {
    pub fn new(tun: Arc<dyn TunQueue>) -> Self {
        Self {
            tun,
            coalescer: Coalescer::new(),
            bufs: (0..MAX_SEGMENTS)
                .map(|_| Vec::with_capacity(DATA_HEADER_LEN + MAX_PACKET))
                .collect(),
            pending: 0,
        }
    }

    /// Copies one packet in, writing the batch when it is full; false when the interface is gone.
    pub fn push(&mut self, packet: &[u8], shared: &Shared, stats: &WorkerStats) -> bool {
        let out = &mut self.bufs[self.pending];
        out.clear();
        out.extend_from_slice(&[0u8; DATA_HEADER_LEN]);
        out.extend_from_slice(packet);
        self.pending += 1;
        self.pending < self.bufs.len() || self.flush(shared, stats)
    }

    /// Writes what is pending in one batch; false when the interface is gone.
    pub fn flush(&mut self, shared: &Shared, stats: &WorkerStats) -> bool {
        if self.pending == 0 {
            return true;
        }
        let n = std::mem::take(&mut self.pending);
        match self
            .tun
            .send_batch(&mut self.coalescer, &mut self.bufs[..n], DATA_HEADER_LEN)
        {
            Ok(0) => {}
            Ok(full) => stats.send_drop(SendDrop::TunFull, full as u64),
            Err(e) => {
                if interface_gone(shared, &*self.tun, &e) {
                    return false;
                }
                stats.count(Counter::TunWriteFailed, 1);
            }
        }
        true
    }
}

/// Whether a failed call on a TUN queue means the interface is gone (then shutdown is requested) rather
/// than one bad packet.
pub(crate) fn interface_gone(shared: &Shared, tun: &dyn TunQueue, e: &io::Error) -> bool {
    let gone = tun.is_gone(e);
    if gone {
        shared.request_shutdown(ShutdownReason::InterfaceRemoved);
    }
    gone
}
