//! A data-plane worker: owns one TUN queue and one UDP socket and runs both directions to completion.
//!
//! Out: one TUN read (a TSO super-packet split into segments, or one packet) -> route -> encrypt each
//! segment in place -> runs of same-peer, full-size ciphertexts leave in one UDP GSO send.
//! In: one recvmmsg (each buffer possibly a UDP GRO train of datagrams) -> decrypt in place -> source
//! check -> one batched TUN write that coalesces TCP segments (GRO). It sleeps in poll(2) when idle and
//! never awaits; all buffers belong to the worker and are allocated once.

use crate::shared::{Shared, ShutdownReason, Transmit};
use crate::stats::{Counter, SendDrop, WorkerStats};
use crate::tcp::Outbox;
use crate::tun_sink::{TunSink, interface_gone};
use fastwire_io::poll::{Ready, wait};
use fastwire_io::tun::{MAX_SEGMENTS, TunQueue, VIRTIO_NET_HDR_LEN};
use fastwire_io::udp::{MAX_GSO_BYTES, RecvMeta, UdpSocket};
use fastwire_proto::{DATA_HEADER_LEN, Incoming, Peer, TAILROOM};
use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Fill-seal-send rounds per readiness event before looking at the other direction.
const TUN_ROUNDS_PER_WAKE: usize = 1;
/// Arena slots: room for one more full read (MAX_SEGMENTS) whenever fewer than MAX_SEGMENTS are filled.
const ARENA_SLOTS: usize = 2 * MAX_SEGMENTS;
/// TUN reads gathered into one round (small packets arrive one per read).
const TUN_READS_PER_FILL: usize = 64;
/// recvmmsg calls per readiness event.
const UDP_READS_PER_WAKE: usize = 1;
/// Buffers per recvmmsg; each holds a GRO train of up to 64 datagrams.
const RX_BUFFERS: usize = 16;
const RX_BUFFER_LEN: usize = 65_535;
/// Largest IP packet a TUN device hands us (and GRO may build).
const MAX_PACKET: usize = 65_535;
/// How often a worker re-reads the interface MTU (the user may change it with `ip link set mtu`).
const MTU_CHECK_INTERVAL: Duration = Duration::from_secs(1);

const _: () = assert!(
    DATA_HEADER_LEN >= VIRTIO_NET_HDR_LEN,
    "headroom must fit the virtio header"
);

pub(crate) struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub tun: Arc<TunQueue>,
    pub stats: Arc<WorkerStats>,
}

/// Outgoing side: segments land at a fixed stride in one arena, so full-size ciphertexts are contiguous
/// and a run of them is a ready-made GSO payload.
struct TxBuffers {
    /// The MTU the arena was sized for (padding and the stride depend on it).
    mtu: usize,
    arena: Vec<u8>,
    stride: usize,
    /// Where ciphertexts smaller than the stride are gathered back to back for one GSO send.
    gather: Vec<u8>,
    scratch: Vec<u8>,
    sizes: [usize; ARENA_SLOTS],
}

impl TxBuffers {
    fn new(mtu: usize) -> Self {
        // Padding stops at the MTU, so a full-size ciphertext is exactly header + MTU + tag: with that
        // stride, full-size segments sit back to back and a run of them is sent in place.
        let stride = DATA_HEADER_LEN + mtu + fastwire_proto::crypto::TAG_LEN;
        Self {
            mtu,
            arena: vec![0; stride * ARENA_SLOTS],
            stride,
            gather: vec![0; MAX_GSO_BYTES],
            scratch: vec![0; VIRTIO_NET_HDR_LEN + MAX_PACKET],
            sizes: [0; ARENA_SLOTS],
        }
    }
}

/// Incoming side: recvmmsg buffers, and the batch of plaintext for the TUN device.
struct RxBuffers {
    arena: Vec<u8>,
    meta: [RecvMeta; RX_BUFFERS],
    sink: TunSink,
}

/// Ciphertexts for one peer and endpoint, all `segment` long except perhaps the last: one GSO send.
struct Run {
    peer: Arc<Peer>,
    endpoint: fastwire_proto::Endpoint,
    /// First arena slot (for runs that are sent in place).
    start: usize,
    count: usize,
    segment: usize,
    last_len: usize,
    bytes: usize,
    /// Full-size segments, contiguous in the arena; otherwise gathered into `TxBuffers::gather`.
    in_place: bool,
}

impl Worker {
    pub fn run(self) {
        let mut mtu = self.shared.mtu();
        let mut tx = TxBuffers::new(mtu);
        let mut rx = RxBuffers {
            arena: vec![0; RX_BUFFERS * RX_BUFFER_LEN],
            meta: [RecvMeta::default(); RX_BUFFERS],
            sink: TunSink::new(self.tun.clone()),
        };
        let mut scratch = vec![0u8; DATA_HEADER_LEN + MAX_PACKET + TAILROOM];
        let mut reply = [0u8; 256];
        let mut mtu_checked = Instant::now();
        let waker = &self.shared.worker_wakers[self.index];
        let mut ready = [Ready::default(); 3];
        let mut outbox = Outbox::default();
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
            if mtu_checked.elapsed() >= MTU_CHECK_INTERVAL {
                mtu_checked = Instant::now();
                if let Ok(current) = self.tun.mtu().map(usize::from)
                    && current != mtu
                {
                    mtu = current;
                    self.shared.mtu.store(mtu, Ordering::Relaxed);
                    tx = TxBuffers::new(mtu);
                }
            }
            let Some(socket) = socket else {
                // No socket (being rebound): packets from the TUN device have nowhere to go yet.
                continue;
            };
            let mut out = Transmit {
                udp: Some(&socket),
                outbox: &mut outbox,
            };
            if ready[0].readable && !self.handle_tun(&socket, &mut out, &mut tx, &mut scratch) {
                return;
            }
            if ready[2].readable
                && !self.handle_udp(&socket, &mut out, &mut rx, &mut scratch, &mut reply)
            {
                return;
            }
            outbox.flush(&self.shared.tcp);
            if self.shared.device.take_timers_dirty() {
                self.shared.wake_timer();
            }
        }
    }

    /// Reads from the TUN queue, encrypts and sends; false when the interface is gone.
    ///
    /// Each round first fills the arena (one TSO super-packet, or up to [`TUN_READS_PER_FILL`] single
    /// packets), then seals everything and sends same-peer runs with one GSO send each.
    fn handle_tun(
        &self,
        socket: &UdpSocket,
        out: &mut Transmit,
        tx: &mut TxBuffers,
        scratch: &mut [u8],
    ) -> bool {
        let now = Instant::now();
        for _ in 0..TUN_ROUNDS_PER_WAKE {
            let (filled, drained) = match self.fill_from_tun(tx) {
                Some(r) => r,
                None => return false,
            };
            self.seal_and_send_runs(socket, out, tx, filled, scratch, now);
            out.outbox.flush(&self.shared.tcp);
            if drained {
                break;
            }
        }
        true
    }

    /// Reads until the queue is empty or MAX_SEGMENTS slots are filled. Returns (slots filled, queue drained),
    /// or `None` when the interface is gone.
    fn fill_from_tun(&self, tx: &mut TxBuffers) -> Option<(usize, bool)> {
        let mut filled = 0;
        for _ in 0..TUN_READS_PER_FILL {
            // Every read gets MAX_SEGMENTS free slots: a super-packet of small segments (a low MSS)
            // may split into that many, and a read that does not fit would be lost.
            if filled >= MAX_SEGMENTS {
                return Some((filled, false));
            }
            let mut chunks = tx.arena[filled * tx.stride..].chunks_exact_mut(tx.stride);
            let mut views: [&mut [u8]; MAX_SEGMENTS] =
                std::array::from_fn(|_| chunks.next().unwrap_or_default());
            match self.tun.recv_batch(
                &mut tx.scratch,
                &mut views,
                &mut tx.sizes[filled..filled + MAX_SEGMENTS],
                DATA_HEADER_LEN,
            ) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some((filled, true)),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if interface_gone(&self.shared, &e) {
                        return None;
                    }
                    self.stats.send_drop(SendDrop::NotIp, 1);
                }
            }
        }
        Some((filled, false))
    }

    fn seal_and_send_runs(
        &self,
        socket: &UdpSocket,
        out: &mut Transmit,
        tx: &mut TxBuffers,
        filled: usize,
        scratch: &mut [u8],
        now: Instant,
    ) {
        let mtu = tx.mtu;
        let stride = tx.stride;
        let max_segments = socket.max_gso_segments().max(1);
        let mut run: Option<Run> = None;
        for i in 0..filled {
            let len = tx.sizes[i];
            let slot = &mut tx.arena[i * stride..(i + 1) * stride];
            let packet = &slot[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
            if !matches!(packet.first().map(|b| b >> 4), Some(4) | Some(6)) {
                self.stats.send_drop(SendDrop::NotIp, 1);
                continue;
            }
            let Some(peer) = self.shared.device.route(packet) else {
                self.stats.send_drop(SendDrop::NoRoute, 1);
                continue;
            };
            let sealed = match self.shared.device.seal(&peer, slot, len, mtu, now) {
                Ok(sealed) => sealed,
                Err(_) => {
                    // No session or endpoint: the single-packet path stages it and starts a handshake.
                    let copy = &mut scratch[..DATA_HEADER_LEN + len + TAILROOM];
                    copy[DATA_HEADER_LEN..DATA_HEADER_LEN + len]
                        .copy_from_slice(&slot[DATA_HEADER_LEN..DATA_HEADER_LEN + len]);
                    self.shared
                        .seal_and_send(out, &peer, copy, len, now, &self.stats);
                    continue;
                }
            };
            if sealed.rekey {
                self.shared.initiate(out, &peer, false, now, &self.stats);
            }
            if sealed.endpoint.is_tcp() {
                // Framed into the batch for the TCP owner: runs of frames leave in one writev there.
                let at = i * stride;
                let ciphertext = &tx.arena[at..at + sealed.len];
                match out
                    .outbox
                    .push(&self.shared.tcp, sealed.endpoint.addr, ciphertext)
                {
                    Ok(()) => self.stats.count(Counter::TxPackets, 1),
                    Err(reason) => self.stats.send_drop(reason, 1),
                }
                continue;
            }
            if sealed.len > MAX_GSO_BYTES {
                // Only with an MTU near 64 KiB: too big for a GSO run, send it alone.
                let at = i * stride;
                match socket.send_to(&tx.arena[at..at + sealed.len], sealed.endpoint.addr) {
                    Ok(_) => self.stats.count(Counter::TxPackets, 1),
                    Err(_) => self.stats.send_drop(SendDrop::SendFailed, 1),
                }
                continue;
            }
            let extends = run.as_ref().is_some_and(|r| {
                Arc::ptr_eq(&r.peer, &peer)
                    && r.endpoint == sealed.endpoint
                    && r.last_len == r.segment
                    && sealed.len <= r.segment
                    && r.count < max_segments
                    && r.bytes + sealed.len <= MAX_GSO_BYTES
                    && (!r.in_place || r.start + r.count == i)
            });
            if !extends {
                if let Some(r) = run.take() {
                    self.send_run(socket, tx, &r);
                }
                let in_place = sealed.len == stride;
                run = Some(Run {
                    peer,
                    endpoint: sealed.endpoint,
                    start: i,
                    count: 0,
                    segment: sealed.len,
                    last_len: sealed.len,
                    bytes: 0,
                    in_place,
                });
            }
            if let Some(r) = run.as_mut() {
                // Full-size ciphertexts already sit back to back in the arena; smaller ones are gathered.
                if !r.in_place {
                    let at = i * stride;
                    tx.gather[r.bytes..r.bytes + sealed.len]
                        .copy_from_slice(&tx.arena[at..at + sealed.len]);
                }
                r.count += 1;
                r.bytes += sealed.len;
                r.last_len = sealed.len;
            }
        }
        if let Some(r) = run.take() {
            self.send_run(socket, tx, &r);
        }
    }

    fn send_run(&self, socket: &UdpSocket, tx: &TxBuffers, run: &Run) {
        let contents = if run.in_place {
            let start = run.start * tx.stride;
            &tx.arena[start..start + run.bytes]
        } else {
            &tx.gather[..run.bytes]
        };
        match socket.send_segments(contents, run.segment, run.endpoint.addr) {
            Ok(()) => self.stats.count(Counter::TxPackets, run.count as u64),
            Err(_) => self.stats.send_drop(SendDrop::SendFailed, run.count as u64),
        }
    }

    /// Receives, decrypts and writes to the TUN queue; false when the interface is gone.
    fn handle_udp(
        &self,
        socket: &UdpSocket,
        out: &mut Transmit,
        rx: &mut RxBuffers,
        scratch: &mut [u8],
        reply: &mut [u8],
    ) -> bool {
        let now = Instant::now();
        for _ in 0..UDP_READS_PER_WAKE {
            let n = {
                let mut chunks = rx.arena.chunks_exact_mut(RX_BUFFER_LEN);
                let mut iovs: [IoSliceMut<'_>; RX_BUFFERS] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                match socket.recv_batch(&mut iovs, &mut rx.meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP errors from earlier sends surface here (ECONNREFUSED...): not fatal.
                    Err(_) => continue,
                }
            };
            let mut queued_handshakes = false;
            for b in 0..n {
                let meta = rx.meta[b];
                let stride = meta.stride.max(1);
                let len = meta.len.min(RX_BUFFER_LEN);
                let base = b * RX_BUFFER_LEN;
                let mut offset = 0;
                while offset < len {
                    let seg_len = stride.min(len - offset);
                    let datagram = &mut rx.arena[base + offset..base + offset + seg_len];
                    offset += seg_len;
                    if is_handshake(datagram) {
                        // Off the data path: the handshake thread does the costly part.
                        let device = &self.shared.device;
                        match device
                            .precheck_handshake(datagram)
                            .and_then(|()| self.shared.handshakes.push(meta.addr, datagram))
                        {
                            Ok(()) => queued_handshakes = true,
                            Err(reason) => self.stats.recv_drop(reason),
                        }
                        continue;
                    }
                    let incoming = self
                        .shared
                        .device
                        .handle_incoming(meta.addr, datagram, now, reply);
                    match &incoming {
                        Incoming::Data { len, .. } => {
                            let packet = &datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
                            if !rx.sink.push(packet, &self.shared, &self.stats) {
                                return false;
                            }
                        }
                        Incoming::Reply { len }
                            if socket.send_to(&reply[..*len], meta.addr).is_err() =>
                        {
                            self.stats.send_drop(SendDrop::SendFailed, 1)
                        }
                        Incoming::Dropped(reason) => self.stats.recv_drop(*reason),
                        _ => {}
                    }
                    self.shared
                        .follow_up(out, &incoming, scratch, now, &self.stats);
                }
            }
            if queued_handshakes {
                self.shared.handshakes.wake();
            }
            if !rx.sink.flush(&self.shared, &self.stats) {
                return false;
            }
        }
        true
    }
}

/// Initiations, responses and cookie replies (types 1 to 3); the rest of the shape check is the device's.
fn is_handshake(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(1..=3))
}
