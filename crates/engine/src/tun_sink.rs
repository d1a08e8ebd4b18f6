//! Decrypted packets on their way to the TUN device, written in batches (coalesced into super-packets when
//! offloads are on): where they were decrypted ([`TunSink::write_in_place`], the UDP receive batch) or
//! copied in first ([`TunSink::push`], the TCP owner, whose receive buffer moves on). Used by every thread that delivers: the UDP workers (or the in-order committer of
//! the single-queue pipeline) and the TCP owner.

use crate::shared::{Shared, ShutdownReason};
use crate::stats::{Counter, SendDrop, WorkerStats};
use fastwire_io::tun::{Coalescer, HEADROOM, MAX_PACKET, MAX_SEGMENTS, PacketSpan, TunQueue};
use fastwire_proto::DATA_HEADER_LEN;
use std::io;
use std::sync::Arc;

pub(crate) struct TunSink {
    tun: Arc<dyn TunQueue>,
    coalescer: Coalescer,
    /// Packets copied in by [`TunSink::push`], each behind `DATA_HEADER_LEN` bytes of headroom.
    staged: Vec<u8>,
    spans: Vec<PacketSpan>,
}

/// Staged bytes after which [`TunSink::push`] writes the batch (about 128 full-size packets).
const STAGED_BYTES: usize = MAX_SEGMENTS * (DATA_HEADER_LEN + 1500);

// Packets delivered in place keep their WireGuard header's room in front; the TUN writer needs less.
const _: () = assert!(DATA_HEADER_LEN >= HEADROOM);

impl TunSink {
    pub fn new(tun: Arc<dyn TunQueue>) -> Self {
        Self {
            tun,
            coalescer: Coalescer::new(),
            staged: Vec::with_capacity(STAGED_BYTES + DATA_HEADER_LEN + MAX_PACKET),
            spans: Vec::with_capacity(MAX_SEGMENTS),
        }
    }

    /// Copies one packet in, writing the batch when it is full; false when the interface is gone.
    /// For packets whose buffer is about to be reused (the TCP owner's receive buffer).
    pub fn push(&mut self, packet: &[u8], shared: &Shared, stats: &WorkerStats) -> bool {
        self.staged.extend_from_slice(&[0u8; DATA_HEADER_LEN]);
        self.spans.push((self.staged.len(), packet.len()));
        self.staged.extend_from_slice(packet);
        let full = self.spans.len() == MAX_SEGMENTS || self.staged.len() >= STAGED_BYTES;
        !full || self.flush(shared, stats)
    }

    /// Writes what is pending in one batch; false when the interface is gone.
    pub fn flush(&mut self, shared: &Shared, stats: &WorkerStats) -> bool {
        if self.spans.is_empty() {
            return true;
        }
        let written = self.write(shared, stats, None);
        self.staged.clear();
        self.spans.clear();
        written
    }

    /// Writes packets where they lie, `buf[start..start + len]` for each span, each with
    /// `DATA_HEADER_LEN` bytes of room in front (the receive batch's decrypted plaintexts): no copy.
    /// Their bytes are not kept (headers may be rewritten for coalescing). False when the interface
    /// is gone.
    pub fn write_in_place(
        &mut self,
        buf: &mut [u8],
        packets: &[PacketSpan],
        shared: &Shared,
        stats: &WorkerStats,
    ) -> bool {
        self.flush(shared, stats)
            && (packets.is_empty() || self.write(shared, stats, Some((buf, packets))))
    }

    fn write(
        &mut self,
        shared: &Shared,
        stats: &WorkerStats,
        packets: Option<(&mut [u8], &[PacketSpan])>,
    ) -> bool {
        let (buf, spans) = match packets {
            Some(given) => given,
            None => (&mut self.staged[..], &self.spans[..]),
        };
        match self.tun.send_batch(&mut self.coalescer, buf, spans) {
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
