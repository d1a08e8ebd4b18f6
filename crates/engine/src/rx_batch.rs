//! One batch of incoming datagrams (network -> TUN), in three steps like [`crate::tx_batch`]:
//! [`RxBatch::receive`] (one recvmmsg; a buffer may hold a UDP GRO train), [`RxBatch::open`] (decrypt in
//! place, check, note where each plaintext lies; handshakes go to the handshake thread) and
//! [`RxBatch::deliver`] (one batched, coalescing TUN write of the plaintexts where they lie).

use crate::shared::{Shared, Transmit};
use crate::stats::{Counter, SendDrop, WorkerStats};
use crate::tun_sink::TunSink;
use fastwire_io::udp::{RecvMeta, UdpSocket};
use fastwire_proto::{DATA_HEADER_LEN, Endpoint, Incoming};
use std::io::{self, IoSliceMut};
use std::time::Instant;

/// Buffers per recvmmsg; each holds a GRO train of up to 64 datagrams.
pub(crate) const RX_BUFFERS: usize = 16;
const RX_BUFFER_LEN: usize = 65_535;

pub(crate) struct RxBatch {
    arena: Vec<u8>,
    meta: [RecvMeta; RX_BUFFERS],
    received: usize,
    /// Where each decrypted packet lies in the arena (start, length), in arrival order.
    plaintexts: Vec<(usize, usize)>,
}

impl RxBatch {
    pub fn new() -> Self {
        Self {
            arena: vec![0; RX_BUFFERS * RX_BUFFER_LEN],
            meta: [RecvMeta::default(); RX_BUFFERS],
            received: 0,
            plaintexts: Vec::with_capacity(RX_BUFFERS * 64),
        }
    }

    /// One batched receive. Returns how many buffers were filled (`RX_BUFFERS`: there may be more
    /// waiting); `WouldBlock` when nothing is.
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut chunks = self.arena.chunks_exact_mut(RX_BUFFER_LEN);
        let mut iovs: [IoSliceMut<'_>; RX_BUFFERS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        self.received = socket.recv_batch(&mut iovs, &mut self.meta)?;
        Ok(self.received)
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Decrypts and checks every datagram in place; answers what needs an answer through `out`.
    pub fn open(
        &mut self,
        shared: &Shared,
        out: &mut Transmit,
        scratch: &mut [u8],
        reply: &mut [u8],
        now: Instant,
        stats: &WorkerStats,
    ) {
        let mut queued_handshakes = false;
        self.plaintexts.clear();
        let mut datagrams = 0;
        for b in 0..self.received {
            let meta = self.meta[b];
            let from = Endpoint::udp_to(meta.addr, meta.dst_ip);
            let stride = meta.stride.max(1);
            let len = meta.len.min(RX_BUFFER_LEN);
            let base = b * RX_BUFFER_LEN;
            let mut offset = 0;
            while offset < len {
                let seg_len = stride.min(len - offset);
                let start = base + offset;
                let datagram = &mut self.arena[start..start + seg_len];
                offset += seg_len;
                datagrams += 1;
                let incoming = if is_handshake(datagram) {
                    // Screened here (MACs, load, cookie replies); the Noise handshake is the
                    // handshake thread's.
                    let screened = shared.device.screen_handshake(from, datagram, now, reply);
                    match screened.and_then(|()| shared.handshakes.push(from, datagram)) {
                        Ok(()) => {
                            queued_handshakes = true;
                            continue;
                        }
                        Err(answer) => answer,
                    }
                } else {
                    shared.device.handle_incoming(from, datagram, now, reply)
                };
                match &incoming {
                    Incoming::Data { len, .. } => {
                        self.plaintexts.push((start + DATA_HEADER_LEN, *len));
                    }
                    Incoming::Reply { len, .. } => {
                        let sent = out.udp.is_some_and(|s| {
                            s.send_to(&reply[..*len], from.addr, from.local).is_ok()
                        });
                        if !sent {
                            stats.send_drop(SendDrop::SendFailed, 1);
                        }
                    }
                    Incoming::Dropped(reason) => stats.recv_drop(*reason),
                    _ => {}
                }
                shared.follow_up(out, &incoming, scratch, now, stats);
            }
        }
        if self.received > 0 {
            stats.count(Counter::RxBatches, 1);
            stats.count(Counter::RxDatagrams, datagrams);
        }
        if queued_handshakes {
            shared.handshakes.wake();
        }
    }

    /// Writes the batch's plaintexts to the TUN device where they lie (each behind the room of its
    /// WireGuard header) and empties the batch; false when the interface is gone.
    pub fn deliver(&mut self, sink: &mut TunSink, shared: &Shared, stats: &WorkerStats) -> bool {
        self.received = 0;
        let delivered = sink.write_in_place(&mut self.arena, &self.plaintexts, shared, stats);
        self.plaintexts.clear();
        delivered
    }
}

/// Initiations, responses and cookie replies (types 1 to 3); the rest of the shape check is the device's.
fn is_handshake(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(1..=3))
}
