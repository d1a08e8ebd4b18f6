//! Decrypted packets on their way to the TUN device, written in batches (coalesced into super-packets when
//! offloads are on). Used by every thread that decrypts: the UDP workers and the TCP owner.

use crate::shared::{Shared, ShutdownReason};
use crate::stats::{Counter, WorkerStats};
use fastwire_io::tun::{GroTable, MAX_SEGMENTS, TunQueue};
use fastwire_proto::DATA_HEADER_LEN;
use std::io;
use std::sync::Arc;

/// Largest IP packet a TUN device takes (and GRO may build).
const MAX_PACKET: usize = 65_535;

pub(crate) struct TunSink {
    tun: Arc<TunQueue>,
    gro: GroTable,
    /// One buffer per packet (the GRO table coalesces across them), each with headroom for the virtio header.
    bufs: Vec<Vec<u8>>,
    pending: usize,
}

impl TunSink {
    pub fn new(tun: Arc<TunQueue>) -> Self {
        Self {
            tun,
            gro: GroTable::new(),
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
        if let Err(e) = self
            .tun
            .send_batch(&mut self.gro, &mut self.bufs[..n], DATA_HEADER_LEN)
        {
            if interface_gone(shared, &e) {
                return false;
            }
            stats.count(Counter::TunWriteFailed, 1);
        }
        true
    }
}

/// Whether a failed system call on a TUN queue means the interface is gone (then shutdown is requested)
/// rather than a bad packet. EIO only means the link is administratively down (writes while `ip link set
/// down`, or before `up` at start-up): the interface is still there, so the caller counts and carries on.
pub(crate) fn interface_gone(shared: &Shared, e: &io::Error) -> bool {
    // ENODEV, EBADFD — without a libc dependency in this crate.
    let gone = matches!(e.raw_os_error(), Some(19) | Some(77));
    if gone {
        shared.request_shutdown(ShutdownReason::InterfaceRemoved);
    }
    gone
}
