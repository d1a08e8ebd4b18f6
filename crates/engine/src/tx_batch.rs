//! One batch of outgoing packets (TUN -> network), in three steps that the two data paths schedule
//! differently: [`TxBatch::fill`] reads from the TUN queue, [`TxBatch::seal`] routes and encrypts in
//! place, [`TxBatch::send`] sends same-peer runs with one UDP GSO send each. A multi-queue worker runs
//! the three back to back; the single-queue pipeline reads in one thread at a time, seals on any
//! worker, and sends batches in the order they were read.
//!
//! Segments land at a fixed stride in one arena, so full-size ciphertexts are contiguous and a run of
//! them is a ready-made GSO payload; smaller ones are gathered back to back for their own run.

use crate::shared::{Shared, Transmit};
use crate::stats::{Counter, SendDrop, WorkerStats};
use crate::tun_sink::interface_gone;
use fastwire_io::tun::{MAX_SEGMENTS, ReadScratch, TunQueue};
use fastwire_io::udp::{MAX_GSO_BYTES, UdpSocket};
use fastwire_proto::{DATA_HEADER_LEN, Endpoint, Peer, TAILROOM};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Instant;

/// Arena slots: room for one more full read (MAX_SEGMENTS) whenever fewer than MAX_SEGMENTS are filled.
const ARENA_SLOTS: usize = 2 * MAX_SEGMENTS;
/// TUN reads gathered into one batch (small packets arrive one per read).
const TUN_READS_PER_FILL: usize = 64;

const _: () = assert!(
    DATA_HEADER_LEN >= fastwire_io::tun::HEADROOM,
    "the data header's room must fit the TUN device's per-packet header"
);

pub(crate) struct TxBatch {
    /// The MTU the arena was sized for (padding and the stride depend on it).
    mtu: usize,
    stride: usize,
    arena: Vec<u8>,
    /// Ciphertexts smaller than the stride, gathered back to back (each run's at `Run::gather_at`).
    gather: Vec<u8>,
    sizes: [usize; ARENA_SLOTS],
    filled: usize,
    runs: Vec<Run>,
}

/// Ciphertexts for one peer and endpoint, all `segment` long except perhaps the last: one GSO send.
struct Run {
    peer: Arc<Peer>,
    endpoint: Endpoint,
    /// First arena slot (for runs that are sent in place).
    start: usize,
    count: usize,
    segment: usize,
    last_len: usize,
    bytes: usize,
    /// Full-size segments, contiguous in the arena; otherwise gathered at `gather_at`.
    in_place: bool,
    gather_at: usize,
}

impl TxBatch {
    pub fn new(mtu: usize) -> Self {
        // Padding stops at the MTU, so a full-size ciphertext is exactly header + MTU + tag: with that
        // stride, full-size segments sit back to back and a run of them is sent in place.
        let stride = DATA_HEADER_LEN + mtu + fastwire_proto::crypto::TAG_LEN;
        Self {
            mtu,
            stride,
            arena: vec![0; stride * ARENA_SLOTS],
            gather: vec![0; stride * ARENA_SLOTS],
            sizes: [0; ARENA_SLOTS],
            filled: 0,
            runs: Vec::with_capacity(ARENA_SLOTS),
        }
    }

    /// Resizes for a new MTU (rare: the user changed it); a no-op otherwise.
    pub fn fit(&mut self, mtu: usize) {
        if mtu != self.mtu {
            *self = Self::new(mtu);
        }
    }

    /// Reads until the queue is empty, the arena is full or [`TUN_READS_PER_FILL`] reads were made.
    /// Returns whether the queue was seen empty, or `None` when the interface is gone.
    pub fn fill(
        &mut self,
        tun: &dyn TunQueue,
        scratch: &mut ReadScratch,
        shared: &Shared,
        stats: &WorkerStats,
    ) -> Option<bool> {
        for _ in 0..TUN_READS_PER_FILL {
            // Every read gets MAX_SEGMENTS free slots: a super-packet of small segments (a low MSS)
            // may split into that many, and a read that does not fit would be lost.
            if self.filled + MAX_SEGMENTS > ARENA_SLOTS {
                return Some(false);
            }
            let mut chunks = self.arena[self.filled * self.stride..].chunks_exact_mut(self.stride);
            let mut views: [&mut [u8]; MAX_SEGMENTS] =
                std::array::from_fn(|_| chunks.next().unwrap_or_default());
            match tun.recv_batch(
                scratch,
                &mut views,
                &mut self.sizes[self.filled..self.filled + MAX_SEGMENTS],
                DATA_HEADER_LEN,
            ) {
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if interface_gone(shared, tun, &e) {
                        return None;
                    }
                    stats.send_drop(SendDrop::NotIp, 1);
                }
            }
        }
        Some(false)
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Routes and encrypts every packet in place and plans the GSO runs. Packets for a TCP endpoint go
    /// to the outbox, packets without a session are staged (and a handshake starts) through `out`.
    pub fn seal(
        &mut self,
        shared: &Shared,
        out: &mut Transmit,
        scratch: &mut [u8],
        now: Instant,
        stats: &WorkerStats,
    ) {
        let mtu = self.mtu;
        let stride = self.stride;
        let max_segments = out.udp.map_or(1, |s| s.max_gso_segments().max(1));
        let mut gathered = 0;
        for i in 0..self.filled {
            let len = self.sizes[i];
            let slot = &mut self.arena[i * stride..(i + 1) * stride];
            let packet = &slot[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
            if !matches!(packet.first().map(|b| b >> 4), Some(4) | Some(6)) {
                stats.send_drop(SendDrop::NotIp, 1);
                continue;
            }
            let Some(peer) = shared.device.route(packet) else {
                stats.send_drop(SendDrop::NoRoute, 1);
                continue;
            };
            let sealed = match shared.device.seal(&peer, slot, len, mtu, now) {
                Ok(sealed) => sealed,
                Err(_) => {
                    // No session or endpoint: the single-packet path stages it and starts a handshake.
                    let copy = &mut scratch[..DATA_HEADER_LEN + len + TAILROOM];
                    copy[DATA_HEADER_LEN..DATA_HEADER_LEN + len]
                        .copy_from_slice(&slot[DATA_HEADER_LEN..DATA_HEADER_LEN + len]);
                    shared.seal_and_send(out, &peer, copy, len, now, stats);
                    continue;
                }
            };
            if sealed.rekey {
                shared.initiate(out, &peer, false, now, stats);
            }
            let at = i * stride;
            if sealed.endpoint.is_tcp() {
                // Framed into the batch for the TCP owner: runs of frames leave in one writev there.
                let ciphertext = &self.arena[at..at + sealed.len];
                match out
                    .outbox
                    .push(&shared.tcp, sealed.endpoint.addr, ciphertext)
                {
                    Ok(()) => stats.count(Counter::TxPackets, 1),
                    Err(reason) => stats.send_drop(reason, 1),
                }
                continue;
            }
            if sealed.len > MAX_GSO_BYTES {
                // Only with an MTU near 64 KiB: too big for a GSO run, send it alone.
                shared.send_message(
                    out,
                    sealed.endpoint,
                    &self.arena[at..at + sealed.len],
                    stats,
                );
                continue;
            }
            let extends = self.runs.last().is_some_and(|r| {
                Arc::ptr_eq(&r.peer, &peer)
                    && r.endpoint == sealed.endpoint
                    && r.last_len == r.segment
                    && sealed.len <= r.segment
                    && r.count < max_segments
                    && r.bytes + sealed.len <= MAX_GSO_BYTES
                    && (!r.in_place || r.start + r.count == i)
            });
            if !extends {
                self.runs.push(Run {
                    peer,
                    endpoint: sealed.endpoint,
                    start: i,
                    count: 0,
                    segment: sealed.len,
                    last_len: sealed.len,
                    bytes: 0,
                    in_place: sealed.len == stride,
                    gather_at: gathered,
                });
            }
            if let Some(r) = self.runs.last_mut() {
                if !r.in_place {
                    self.gather[gathered..gathered + sealed.len]
                        .copy_from_slice(&self.arena[at..at + sealed.len]);
                    gathered += sealed.len;
                }
                r.count += 1;
                r.bytes += sealed.len;
                r.last_len = sealed.len;
            }
        }
    }

    /// Sends the planned runs and empties the batch.
    pub fn send(&mut self, socket: Option<&UdpSocket>, stats: &WorkerStats) {
        if !self.runs.is_empty() {
            stats.count(Counter::TxBatches, 1);
        }
        for run in self.runs.drain(..) {
            let contents = if run.in_place {
                let start = run.start * self.stride;
                &self.arena[start..start + run.bytes]
            } else {
                &self.gather[run.gather_at..run.gather_at + run.bytes]
            };
            // A run the kernel took only part of (the one-by-one fallback stopped) counts what left.
            let sent = socket.map_or(0, |s| {
                s.send_segments(contents, run.segment, run.endpoint.addr, run.endpoint.local)
                    .map_or(0, |n| n.min(run.count))
            });
            if sent > 0 {
                stats.count(Counter::TxPackets, sent as u64);
            }
            if sent < run.count {
                stats.send_drop(SendDrop::SendFailed, (run.count - sent) as u64);
            }
        }
        self.filled = 0;
    }
}
