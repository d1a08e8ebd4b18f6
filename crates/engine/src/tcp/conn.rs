//! One TCP connection of the owner: its socket, receive buffer and queue of frames to send.

use super::handoff::TcpHandoff;
use crate::stats::TcpState;
use fastwire_proto::framing::{FrameBuffer, PREFIX_LEN};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes queued per connection above what the kernel holds (it holds at most
/// `fastwire_io::tcp::NOTSENT_LOWAT` unsent): beyond, new frames are dropped, never buffered. The limit
/// follows the path like the unsent limit: what it drains in [`QUEUE_TIME`], between [`QUEUE_MIN`] and
/// this (a fixed 512 KiB is 21 ms in front of every packet at 200 Mbit/s, and 1.7 ms at 2.5 Gbit/s).
pub(crate) const SEND_QUEUE_LIMIT: usize = 512 * 1024;
const QUEUE_TIME: Duration = Duration::from_millis(5);
const QUEUE_MIN: usize = 64 * 1024;
/// Pool buffers one connection may hold (the pool has `handoff::POOL_BUFFERS`).
pub(crate) const MAX_QUEUED_BUFFERS: usize = 12;
/// Messages no longer than this (a ping, a TCP acknowledgement, a DNS query, a keepalive: WireGuard's
/// 32 bytes of header and tag around up to 224 bytes of padded plaintext) still pass a full queue,
/// within [`SMALL_FRAMES_ROOM`] bytes and one pool buffer more: the frames a full queue drops are the
/// bulk flow's that filled it, not the sparse, interactive traffic sent in the same batch.
const SMALL_MESSAGE: usize = 256;
const SMALL_FRAMES_ROOM: usize = 64 * 1024;
/// Buffers gathered into one `writev`.
const IOVECS: usize = 64;
/// The kernel's unsent data per connection is held to what the path drains in this long (at its
/// measured delivery rate), between [`UNSENT_MIN`] and `fastwire_io::tcp::NOTSENT_LOWAT`: on a slow
/// path a fixed 128 KiB stands as a queue of its own in front of every packet (5 ms at 200 Mbit/s),
/// on a fast one a fixed 32 KiB starves the socket between the owner's wake-ups.
const UNSENT_TIME: Duration = Duration::from_millis(1);
const UNSENT_MIN: u32 = 16 * 1024;
/// How often a connection that is writing reads its delivery rate again.
const RATE_CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long the highest rate sample counts: a moment when the receiver did not read (it was not
/// scheduled) must not shrink the limit, but a path that became slower must.
const RATE_PEAK_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Came in on the listener; belongs to no peer until a message on it authenticates.
    Accepted { authenticated: bool },
    /// Ours, to a configured `tcp://` endpoint; `connected` once the handshake of TCP itself completed.
    Dialed { connected: bool },
}

impl Role {
    /// What the open-connection gauges count this role as.
    pub fn state(self) -> TcpState {
        match self {
            Role::Accepted {
                authenticated: false,
            } => TcpState::AcceptedUnauthenticated,
            Role::Accepted {
                authenticated: true,
            } => TcpState::Accepted,
            Role::Dialed { connected: false } => TcpState::Connecting,
            Role::Dialed { connected: true } => TcpState::Connected,
        }
    }
}

pub(crate) struct Conn {
    pub stream: mio::net::TcpStream,
    /// The other side, IPv4-mapped addresses made IPv4: the key of [`fastwire_proto::Endpoint::tcp`].
    pub remote: SocketAddr,
    pub role: Role,
    pub opened: Instant,
    /// The latest authenticated message received (or `opened`).
    pub last_authenticated: Instant,
    /// Accepted connections: the public key of the peer whose message first authenticated it.
    pub peer: Option<[u8; 32]>,
    pub rx: FrameBuffer,
    /// Batches waiting for the socket, oldest first; the first is written from `sent_of_first`.
    queue: VecDeque<Vec<u8>>,
    sent_of_first: usize,
    queued_bytes: usize,
    /// The kernel's unsent limit, sized to the path's rate.
    unsent: UnsentLimit,
    pub writable: bool,
    /// Still has bytes to read after this round's budget (edge-triggered readiness will not repeat).
    pub readable: bool,
}

impl Conn {
    pub fn new(stream: mio::net::TcpStream, remote: SocketAddr, role: Role, now: Instant) -> Self {
        Self {
            stream,
            remote,
            role,
            opened: now,
            last_authenticated: now,
            peer: None,
            rx: FrameBuffer::default(),
            queue: VecDeque::new(),
            sent_of_first: 0,
            queued_bytes: 0,
            unsent: UnsentLimit::new(now),
            writable: false,
            readable: false,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        !matches!(
            self.role,
            Role::Accepted {
                authenticated: false
            }
        )
    }

    /// Records an authenticated message; true when it is this accepted connection's first.
    pub fn authenticated(&mut self, now: Instant) -> bool {
        self.last_authenticated = now;
        let first = self.role
            == (Role::Accepted {
                authenticated: false,
            });
        if first {
            self.role = Role::Accepted {
                authenticated: true,
            };
        }
        first
    }

    /// Queues a buffer of `packets` frames; returns how many of them were dropped (then the buffer, or
    /// what was left of it, went back to the pool). A full queue still takes the batch's small frames
    /// (see [`SMALL_MESSAGE`]). Small batches are copied into the room left in the last queued buffer,
    /// so sparse traffic (handshake replies, single packets) never ties up many pool buffers: a
    /// connection holds at most [`MAX_QUEUED_BUFFERS`] of them (one more for small frames), and the
    /// pool stays available to every other connection.
    pub fn enqueue(&mut self, mut frames: Vec<u8>, packets: u32, handoff: &TcpHandoff) -> u32 {
        if frames.is_empty() {
            handoff.give_back(frames);
            return 0;
        }
        let fits = |c: &Self, len: usize, limit: usize, buffers: usize| {
            c.queue.is_empty()
                || (c.queued_bytes + len <= limit
                    && (c.queue.len() < buffers || c.tail_room() >= len))
        };
        let limit = self.unsent.queue_limit();
        let full = |c: &Self, len: usize| !fits(c, len, limit, MAX_QUEUED_BUFFERS);
        // The kernel may have room by now (the owner was busy or descheduled): try it first.
        if full(self, frames.len()) && (self.flush(handoff).is_err() || full(self, frames.len())) {
            let kept = keep_small_frames(&mut frames);
            let room = fits(
                self,
                frames.len(),
                limit + SMALL_FRAMES_ROOM,
                MAX_QUEUED_BUFFERS + 1,
            );
            if kept == 0 || !room {
                handoff.give_back(frames);
                return packets;
            }
            self.push(frames, handoff);
            return packets.saturating_sub(kept);
        }
        self.push(frames, handoff);
        0
    }

    fn push(&mut self, frames: Vec<u8>, handoff: &TcpHandoff) {
        self.queued_bytes += frames.len();
        if self.tail_room() >= frames.len()
            && let Some(tail) = self.queue.back_mut()
        {
            tail.extend_from_slice(&frames);
            handoff.give_back(frames);
        } else {
            self.queue.push_back(frames);
        }
    }

    /// Writes `prefix` + `msg` now, bypassing the queue; false unless all of it was taken (a partial write leaves
    /// the stream mid-frame, so the connection must then be closed).
    pub fn send_now(&mut self, prefix: &[u8], msg: &[u8]) -> bool {
        if !self.queue.is_empty() {
            return false;
        }
        let slices = [IoSlice::new(prefix), IoSlice::new(msg)];
        loop {
            match self.stream.write_vectored(&slices) {
                Ok(n) => return n == prefix.len() + msg.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Bytes the last queued buffer can still take without growing.
    fn tail_room(&self) -> usize {
        self.queue
            .back()
            .map_or(0, |tail| tail.capacity() - tail.len())
    }

    /// Writes as much of the queue as the socket takes, many buffers per `writev`; written buffers go
    /// back to the pool. An error means the connection is dead.
    pub fn flush(&mut self, handoff: &TcpHandoff) -> io::Result<()> {
        while self.writable && !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let mut n = 0;
            for (i, buf) in self.queue.iter().take(IOVECS).enumerate() {
                let from = if i == 0 { self.sent_of_first } else { 0 };
                slices[n] = IoSlice::new(&buf[from.min(buf.len())..]);
                n += 1;
            }
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.consume(written, handoff),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn consume(&mut self, mut written: usize, handoff: &TcpHandoff) {
        self.queued_bytes = self.queued_bytes.saturating_sub(written);
        while written > 0 {
            let Some(first) = self.queue.front() else {
                break;
            };
            let left = first.len() - self.sent_of_first;
            if written < left {
                self.sent_of_first += written;
                return;
            }
            written -= left;
            self.sent_of_first = 0;
            if let Some(done) = self.queue.pop_front() {
                handoff.give_back(done);
            }
        }
    }

    /// Every [`RATE_CHECK_EVERY`] while the connection writes: sizes the kernel's unsent limit to the
    /// path's delivery rate.
    pub fn tune_unsent_limit(&mut self, now: Instant) {
        if now.saturating_duration_since(self.unsent.checked) < RATE_CHECK_EVERY {
            return;
        }
        self.unsent.checked = now;
        if let Some(rate) = fastwire_io::tcp::delivery_rate(&self.stream)
            && let Some(limit) = self
                .unsent
                .update(rate.bytes_per_sec, rate.app_limited, now)
        {
            tracing::debug!(remote = %self.remote, rate = rate.bytes_per_sec, limit, "TCP unsent limit");
            // Best effort: a socket that refuses keeps the limit it has.
            let _ = fastwire_io::tcp::set_unsent_limit(&self.stream, limit);
        }
    }

    /// Returns every queued buffer to the pool (the connection is closing).
    pub fn release(&mut self, handoff: &TcpHandoff) {
        for buf in self.queue.drain(..) {
            handoff.give_back(buf);
        }
        self.queued_bytes = 0;
        self.sent_of_first = 0;
    }
}

/// The unsent limit of one connection and the rate it was sized from (sans-IO: rates and times in).
#[derive(Debug)]
struct UnsentLimit {
    current: u32,
    /// The highest delivery rate sample since it was last taken over, bytes per second: a lower
    /// sample takes its place only once it is [`RATE_PEAK_WINDOW`] old.
    peak: u64,
    peak_at: Instant,
    checked: Instant,
}

impl UnsentLimit {
    fn new(now: Instant) -> Self {
        Self {
            current: fastwire_io::tcp::NOTSENT_LOWAT,
            // Unknown counts as fast: the limit starts at the maximum until the path says otherwise.
            peak: u64::MAX,
            peak_at: now,
            checked: now,
        }
    }

    /// The connection's queue limit for the path's rate (see [`SEND_QUEUE_LIMIT`]).
    fn queue_limit(&self) -> usize {
        let drained = (self.peak as f64 * QUEUE_TIME.as_secs_f64()) as u64;
        drained.clamp(QUEUE_MIN as u64, SEND_QUEUE_LIMIT as u64) as usize
    }

    /// Takes a delivery rate sample; returns the new limit when it should change (by more than an
    /// eighth: each change is a system call). A sample taken while the sender had nothing to send
    /// (`app_limited`) only raises the estimate, as in BBR: it says the path is at least that fast,
    /// and no queue forms in front of such a sender anyway.
    fn update(&mut self, rate: u64, app_limited: bool, now: Instant) -> Option<u32> {
        if app_limited && rate < self.peak {
            return None;
        }
        if rate >= self.peak || now.saturating_duration_since(self.peak_at) > RATE_PEAK_WINDOW {
            self.peak = rate;
            self.peak_at = now;
        }
        let drained = (self.peak as f64 * UNSENT_TIME.as_secs_f64()) as u64;
        let want = drained.clamp(
            u64::from(UNSENT_MIN),
            u64::from(fastwire_io::tcp::NOTSENT_LOWAT),
        ) as u32;
        if want.abs_diff(self.current) <= self.current / 8 {
            return None;
        }
        self.current = want;
        Some(want)
    }
}

/// Keeps only the frames of `frames` (length-prefixed messages, as [`super::handoff::Outbox`] wrote them)
/// whose message is at most [`SMALL_MESSAGE`] long, in order, and returns how many were kept.
fn keep_small_frames(frames: &mut Vec<u8>) -> u32 {
    let (mut read, mut write, mut kept) = (0, 0, 0);
    while let Some(prefix) = frames.get(read..read + PREFIX_LEN) {
        let end = read + PREFIX_LEN + usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if end > frames.len() {
            // Our own framing never ends mid-frame; were it to, the stub is not kept.
            break;
        }
        if end - read - PREFIX_LEN <= SMALL_MESSAGE {
            frames.copy_within(read..end, write);
            write += end - read;
            kept += 1;
        }
        read = end;
    }
    frames.truncate(write);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    use super::super::handoff::test_handoff as handoff;

    /// A connected pair over loopback: ours (non-blocking, as the owner holds it) and the far end.
    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ours = std::net::TcpStream::connect(addr).unwrap();
        ours.set_nonblocking(true).unwrap();
        let (far, _) = listener.accept().unwrap();
        far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = Conn::new(
            mio::net::TcpStream::from_std(ours),
            addr,
            Role::Dialed { connected: true },
            Instant::now(),
        );
        (conn, far)
    }

    #[test]
    fn queued_buffers_arrive_in_order_and_return_to_the_pool() {
        let (_poll, h) = handoff();
        let (mut conn, mut far) = pair();
        let mut expected = Vec::new();
        for i in 0..5u8 {
            let mut buf = h.take_buffer().unwrap();
            buf.extend(std::iter::repeat_n(i, 10_000));
            expected.extend_from_slice(&buf);
            assert_eq!(conn.enqueue(buf, 1, &h), 0);
        }
        conn.writable = true;
        conn.flush(&h).unwrap();
        let mut got = vec![0u8; expected.len()];
        far.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);
        // All five buffers are back: the whole pool can be taken again.
        let taken: Vec<_> = std::iter::from_fn(|| h.take_buffer()).collect();
        assert_eq!(taken.len(), super::super::handoff::POOL_BUFFERS);
    }

    #[test]
    fn small_batches_share_a_buffer() {
        let (_poll, h) = handoff();
        let (mut conn, _far) = pair();
        for _ in 0..1000 {
            let mut buf = h.take_buffer().unwrap();
            buf.extend_from_slice(&[1; 100]);
            assert_eq!(conn.enqueue(buf, 1, &h), 0);
        }
        assert_eq!(conn.queue.len(), 2, "100 000 bytes in two 64 KiB buffers");
        conn.release(&h);
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let (_poll, h) = handoff();
        let (mut conn, _far) = pair();
        let mut accepted = 0;
        for _ in 0..32 {
            let buf = bulk_batch(&h);
            let len = buf.len();
            match conn.enqueue(buf, BULK_FRAMES, &h) {
                0 => accepted += 1,
                BULK_FRAMES => {}
                partly => panic!("{partly} of a bulk batch dropped"),
            }
            assert!(conn.queued_bytes <= SEND_QUEUE_LIMIT.max(len));
        }
        assert_eq!(
            accepted,
            (SEND_QUEUE_LIMIT / (BULK_FRAMES as usize * (PREFIX_LEN + 1400)))
                .min(MAX_QUEUED_BUFFERS)
        );
        conn.release(&h);
        let taken: Vec<_> = std::iter::from_fn(|| h.take_buffer()).collect();
        assert_eq!(taken.len(), super::super::handoff::POOL_BUFFERS);
    }

    const BULK_FRAMES: u32 = 42;

    /// Appends one frame of a `len`-byte message whose bytes are all `fill`.
    fn frame(buf: &mut Vec<u8>, len: usize, fill: u8) {
        buf.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        buf.extend(std::iter::repeat_n(fill, len));
    }

    /// A worker's batch of a bulk flow: 42 full-size messages.
    fn bulk_batch(h: &TcpHandoff) -> Vec<u8> {
        let mut buf = h.take_buffer().unwrap();
        for _ in 0..BULK_FRAMES {
            frame(&mut buf, 1400, 0xb0);
        }
        buf
    }

    #[test]
    fn a_full_queue_drops_the_bulk_frames_and_keeps_the_small_ones_in_order() {
        let (_poll, h) = handoff();
        let (mut conn, mut far) = pair();
        while conn.enqueue(bulk_batch(&h), BULK_FRAMES, &h) == 0 {}
        let one_bulk_frame = |h: &TcpHandoff| {
            let mut buf = h.take_buffer().unwrap();
            frame(&mut buf, 1400, 0xb0);
            buf
        };
        while conn.enqueue(one_bulk_frame(&h), 1, &h) == 0 {}
        let full_bytes = conn.queued_bytes;
        assert!(full_bytes > SEND_QUEUE_LIMIT - 1402);
        // A batch with a ping and an acknowledgement among bulk frames: only those two are queued.
        let mut mixed = h.take_buffer().unwrap();
        frame(&mut mixed, 1400, 0xb1);
        frame(&mut mixed, 128, 1);
        frame(&mut mixed, 1400, 0xb2);
        frame(&mut mixed, SMALL_MESSAGE, 2);
        frame(&mut mixed, SMALL_MESSAGE + 1, 0xb3);
        assert_eq!(conn.enqueue(mixed, 5, &h), 3);
        assert_eq!(
            conn.queued_bytes,
            full_bytes + 2 * PREFIX_LEN + 128 + SMALL_MESSAGE
        );
        // Bulk alone is still refused whole; small frames only within their room.
        assert_eq!(conn.enqueue(bulk_batch(&h), BULK_FRAMES, &h), BULK_FRAMES);
        let mut small_taken = 2;
        for i in 0..2_000u32 {
            let mut buf = h.take_buffer().unwrap();
            frame(&mut buf, 96, (i % 200) as u8);
            match conn.enqueue(buf, 1, &h) {
                0 => small_taken += 1,
                1 => break,
                _ => unreachable!(),
            }
            assert!(conn.queued_bytes <= SEND_QUEUE_LIMIT + SMALL_FRAMES_ROOM);
        }
        assert!(
            (2..2_000).contains(&small_taken),
            "the small frames' room is bounded: {small_taken}"
        );
        // On the wire: the bulk that fitted, then exactly the small frames, in the order queued.
        let expected_len = conn.queued_bytes;
        let mut got = vec![0u8; expected_len];
        let mut read = 0;
        while read < expected_len {
            conn.writable = true;
            conn.flush(&h).unwrap();
            read += far.read(&mut got[read..]).unwrap();
        }
        let mut messages = Vec::new();
        let mut at = 0;
        while at < got.len() {
            let len = usize::from(u16::from_be_bytes([got[at], got[at + 1]]));
            messages.push((len, got[at + PREFIX_LEN]));
            at += PREFIX_LEN + len;
        }
        let small: Vec<_> = messages.iter().filter(|m| m.0 != 1400).collect();
        assert_eq!(small.len(), small_taken);
        assert_eq!(*small[0], (128, 1));
        assert_eq!(*small[1], (SMALL_MESSAGE, 2));
        assert!(
            small[2..]
                .iter()
                .enumerate()
                .all(|(i, m)| **m == (96, (i % 200) as u8))
        );
        // Every full-size message is one of the bulk batches that fitted (0xb0), none of the mixed one's.
        assert!(
            messages
                .iter()
                .all(|m| m.0 == 1400 && m.1 == 0xb0 || m.0 <= SMALL_MESSAGE)
        );
        conn.release(&h);
    }

    #[test]
    fn the_unsent_limit_follows_the_path_rate_and_keeps_its_peak() {
        let t0 = Instant::now();
        let mut limit = UnsentLimit::new(t0);
        let max = fastwire_io::tcp::NOTSENT_LOWAT;
        // A fast path (2.5 Gbit/s): 1 ms of it is more than the maximum, which it starts at.
        assert_eq!(limit.update(312_000_000, false, t0), None);
        // A dip (the receiver was not scheduled) within the peak's window changes nothing.
        let ms = Duration::from_millis(1);
        assert_eq!(limit.update(10_000_000, false, t0 + ms * 500), None);
        // A path that stays slow (200 Mbit/s): 25 KB once the peak is a second old.
        assert_eq!(
            limit.update(25_000_000, false, t0 + ms * 1_100),
            Some(25_000)
        );
        // Nearly the same rate: no system call for it.
        assert_eq!(limit.update(26_000_000, false, t0 + ms * 1_150), None);
        // A path that became idle: the floor, never zero.
        assert_eq!(limit.update(0, false, t0 + ms * 2_500), Some(UNSENT_MIN));
        // Fast again: back to the maximum at once.
        assert_eq!(limit.update(400_000_000, false, t0 + ms * 2_550), Some(max));
    }

    #[test]
    fn the_queue_limit_is_five_ms_of_the_path_within_its_bounds() {
        let t0 = Instant::now();
        let mut limit = UnsentLimit::new(t0);
        // Unknown: the most.
        assert_eq!(limit.queue_limit(), SEND_QUEUE_LIMIT);
        let later = t0 + Duration::from_secs(2);
        // 200 Mbit/s: 125 KB.
        limit.update(25_000_000, false, later);
        assert_eq!(limit.queue_limit(), 125_000);
        // 20 Mbit/s would be 12.5 KB: the floor.
        limit.update(2_500_000, false, later + Duration::from_secs(2));
        assert_eq!(limit.queue_limit(), QUEUE_MIN);
        // 2.5 Gbit/s would be 1.5 MB: the ceiling.
        limit.update(312_000_000, false, later + Duration::from_secs(3));
        assert_eq!(limit.queue_limit(), SEND_QUEUE_LIMIT);
    }

    #[test]
    fn a_sender_with_nothing_to_send_keeps_its_limit() {
        let t0 = Instant::now();
        let mut limit = UnsentLimit::new(t0);
        let s = Duration::from_secs(1);
        // Small replies (inner ACKs): every sample app-limited and slow, for a long time.
        for i in 1..10 {
            assert_eq!(limit.update(5_000_000, true, t0 + s * i), None);
        }
        // A path-limited sample still lowers it.
        assert_eq!(limit.update(25_000_000, false, t0 + s * 10), Some(25_000));
        // An app-limited sample above the estimate raises it: the path is at least that fast.
        assert_eq!(limit.update(50_000_000, true, t0 + s * 11), Some(50_000));
    }
}
