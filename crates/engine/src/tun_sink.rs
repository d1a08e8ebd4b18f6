//! Decrypted packets on their way to the TUN device, written in batches where they were decrypted
//! (coalesced into super-packets when offloads are on): the UDP receive batch's arena, or the TCP
//! owner's receive buffer after each read. Used by every thread that delivers: the UDP workers (or the in-order committer of
//! the single-queue pipeline) and the TCP owner.

use crate::shared::{Shared, ShutdownReason};
use crate::stats::{Counter, SendDrop, WorkerStats};
use fastwire_io::tun::{Coalescer, HEADROOM, PacketSpan, TunQueue};
use fastwire_proto::DATA_HEADER_LEN;
use std::io;
use std::sync::Arc;

pub(crate) struct TunSink {
    tun: Arc<dyn TunQueue>,
    coalescer: Coalescer,
}

// Plaintexts keep their WireGuard header's room in front of them; the TUN writer needs less.
const _: () = assert!(DATA_HEADER_LEN >= HEADROOM);

impl TunSink {
    pub fn new(tun: Arc<dyn TunQueue>) -> Self {
        Self {
            tun,
            coalescer: Coalescer::new(),
        }
    }

    /// Writes packets where they lie, `buf[start..start + len]` for each span, each behind
    /// `DATA_HEADER_LEN` bytes of room (the decrypted plaintexts of a receive batch or of one TCP
    /// read): no copy. Their bytes are not kept (headers may be rewritten for coalescing). False when
    /// the interface is gone.
    pub fn write_in_place(
        &mut self,
        buf: &mut [u8],
        packets: &[PacketSpan],
        shared: &Shared,
        stats: &WorkerStats,
    ) -> bool {
        if packets.is_empty() {
            return true;
        }
        match self.tun.send_batch(&mut self.coalescer, buf, packets) {
            Ok(unsent) => {
                if unsent.full > 0 {
                    stats.send_drop(SendDrop::TunFull, unsent.full as u64);
                }
                if unsent.failed > 0 {
                    stats.count(Counter::TunWriteFailed, unsent.failed as u64);
                }
            }
            Err(e) => {
                if interface_gone(shared, &*self.tun, &e) {
                    return false;
                }
                // Refused as a whole (spans the writer would not take): none of it was written.
                stats.count(Counter::TunWriteFailed, packets.len() as u64);
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
