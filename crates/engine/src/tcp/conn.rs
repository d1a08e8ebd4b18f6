//! One TCP connection of the owner: its socket, receive buffer and queue of frames to send.

use super::handoff::TcpHandoff;
use crate::codel::{Codel, CodelParams};
use crate::stats::TcpState;
use fastwire_proto::framing::{FrameBuffer, PREFIX_LEN};
use fastwire_proto::messages::{DATA_MIN_LEN, TYPE_DATA};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes queued per connection above what the kernel holds (it holds at most
/// `fastwire_io::tcp::NOTSENT_LOWAT` unsent): beyond, new frames are dropped, never buffered.
pub(crate) const SEND_QUEUE_LIMIT: usize = 512 * 1024;
/// Pool buffers one connection may hold (the pool has `handoff::POOL_BUFFERS`).
pub(crate) const MAX_QUEUED_BUFFERS: usize = 12;
/// Buffers gathered into one `writev`.
const IOVECS: usize = 64;

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
    /// How long the bytes of the latest read waited in the kernel's receive queue (where the platform
    /// says): the delay of the queue in front of this connection's reader.
    pub rx_age: Option<Duration>,
    /// Keeps that delay near its target by dropping data frames before they are decrypted: the flows
    /// inside back off instead of filling the receive buffer (RFC 8289's defaults).
    pub rx_delay: Codel,
    /// Batches waiting for the socket, oldest first; the first is written from `sent_of_first`.
    queue: VecDeque<Queued>,
    sent_of_first: usize,
    /// Where in the first batch the frame that `sent_of_first` falls in begins (equal to it at a frame
    /// boundary); walked forward lazily.
    frame_of_first: usize,
    queued_bytes: usize,
    /// Keeps the send queue's delay near its target by dropping data frames at its head: on a path
    /// slower than the tunnel's input the queue stands here, and the flows inside must see it.
    tx_delay: Codel,
    /// Frames `tx_delay` dropped and nobody counted yet ([`Conn::take_delay_drops`]).
    tx_delay_drops: u64,
    /// CoDel decided a drop while the head frame was partly written: the next whole data frame goes.
    owed_drop: bool,
    pub writable: bool,
    /// Still has bytes to read after this round's budget (edge-triggered readiness will not repeat).
    pub readable: bool,
}

enum Head {
    Start { len: usize, data: bool },
    Within { end: usize },
}

/// A batch of whole frames and when it joined the queue.
struct Queued {
    frames: Vec<u8>,
    since: Instant,
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
            rx_age: None,
            rx_delay: Codel::new(CodelParams::default()),
            queue: VecDeque::new(),
            sent_of_first: 0,
            frame_of_first: 0,
            queued_bytes: 0,
            tx_delay: Codel::new(CodelParams::default()),
            tx_delay_drops: 0,
            owed_drop: false,
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

    /// Queues a buffer of whole frames; gives it back and returns false when the queue is full. Small
    /// batches are copied into the room left in the last queued buffer, so sparse traffic (handshake
    /// replies, single packets) never ties up many pool buffers: a connection holds at most
    /// [`MAX_QUEUED_BUFFERS`] of them, and the pool stays available to every other connection.
    pub fn enqueue(&mut self, frames: Vec<u8>, handoff: &TcpHandoff, now: Instant) -> bool {
        if frames.is_empty() {
            handoff.give_back(frames);
            return true;
        }
        let fits = |c: &Self| {
            c.queue.is_empty()
                || (c.queued_bytes + frames.len() <= SEND_QUEUE_LIMIT
                    && (c.queue.len() < MAX_QUEUED_BUFFERS || c.tail_room() >= frames.len()))
        };
        // The kernel may have room by now (the owner was busy or descheduled): try it first.
        if !fits(self) && (self.flush(handoff, now).is_err() || !fits(self)) {
            handoff.give_back(frames);
            return false;
        }
        self.queued_bytes += frames.len();
        // A merged batch keeps the older time: its frames are judged by the longest wait among them.
        if self.tail_room() >= frames.len()
            && let Some(tail) = self.queue.back_mut()
        {
            tail.frames.extend_from_slice(&frames);
            handoff.give_back(frames);
        } else {
            self.queue.push_back(Queued { frames, since: now });
        }
        true
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

    /// Frames dropped for their wait in the send queue since the last call.
    pub fn take_delay_drops(&mut self) -> u64 {
        std::mem::take(&mut self.tx_delay_drops)
    }

    /// Bytes the last queued buffer can still take without growing.
    fn tail_room(&self) -> usize {
        self.queue
            .back()
            .map_or(0, |tail| tail.frames.capacity() - tail.frames.len())
    }

    /// Writes as much of the queue as the socket takes, many buffers per `writev`; written buffers go
    /// back to the pool. Before each write, CoDel may drop data frames at the head that waited too
    /// long. An error means the connection is dead.
    pub fn flush(&mut self, handoff: &TcpHandoff, now: Instant) -> io::Result<()> {
        while self.writable && !self.queue.is_empty() {
            let stop_at = self.drop_late_frames(handoff, now);
            if self.queue.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let mut n = 0;
            if let Some(end) = stop_at {
                // A drop is owed but the head frame is partly written: finish just that frame.
                slices[0] = IoSlice::new(&self.queue[0].frames[self.sent_of_first..end]);
                n = 1;
            } else {
                for (i, buf) in self.queue.iter().take(IOVECS).enumerate() {
                    let from = if i == 0 { self.sent_of_first } else { 0 };
                    slices[n] = IoSlice::new(&buf.frames[from.min(buf.frames.len())..]);
                    n += 1;
                }
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

    /// Asks CoDel about the head of the queue and drops whole data frames there for as long as it says
    /// so; handshakes and keepalives always go. A drop decided while the head frame is partly written
    /// is owed to the next whole data frame: the returned offset is where that frame ends, the write
    /// must stop there.
    fn drop_late_frames(&mut self, handoff: &TcpHandoff, now: Instant) -> Option<usize> {
        loop {
            let sojourn = now.saturating_duration_since(self.queue.front()?.since);
            match self.head_frame()? {
                Head::Within { end } => {
                    if !self.owed_drop {
                        self.owed_drop = self.tx_delay.should_drop(sojourn, now);
                    }
                    return self.owed_drop.then_some(end);
                }
                Head::Start { data: false, .. } => return None,
                Head::Start { len, data: true } => {
                    if !self.owed_drop && !self.tx_delay.should_drop(sojourn, now) {
                        return None;
                    }
                    self.owed_drop = false;
                    self.tx_delay_drops += 1;
                    self.consume(len, handoff);
                }
            }
        }
    }

    /// Where the next byte to write lies: at the start of a frame (its length with the prefix, and
    /// whether it carries a data packet) or inside one (where that frame ends).
    fn head_frame(&mut self) -> Option<Head> {
        let first = &self.queue.front()?.frames;
        while self.frame_of_first < self.sent_of_first {
            let len = frame_len_at(first, self.frame_of_first)?;
            let end = (self.frame_of_first + len).min(first.len());
            if end > self.sent_of_first {
                return Some(Head::Within { end });
            }
            self.frame_of_first = end;
        }
        let len = frame_len_at(first, self.sent_of_first)?;
        let msg = first.get(self.sent_of_first + PREFIX_LEN..self.sent_of_first + len)?;
        let data = msg.first() == Some(&TYPE_DATA) && msg.len() > DATA_MIN_LEN;
        Some(Head::Start { len, data })
    }

    fn consume(&mut self, mut written: usize, handoff: &TcpHandoff) {
        self.queued_bytes = self.queued_bytes.saturating_sub(written);
        while written > 0 {
            let Some(first) = self.queue.front() else {
                break;
            };
            let left = first.frames.len() - self.sent_of_first;
            if written < left {
                self.sent_of_first += written;
                return;
            }
            written -= left;
            self.sent_of_first = 0;
            self.frame_of_first = 0;
            if let Some(done) = self.queue.pop_front() {
                handoff.give_back(done.frames);
            }
        }
    }

    /// Returns every queued buffer to the pool (the connection is closing).
    pub fn release(&mut self, handoff: &TcpHandoff) {
        for buf in self.queue.drain(..) {
            handoff.give_back(buf.frames);
        }
        self.queued_bytes = 0;
        self.sent_of_first = 0;
        self.frame_of_first = 0;
    }
}

/// Prefix and message length of the frame starting at `at`, if its prefix is there.
fn frame_len_at(frames: &[u8], at: usize) -> Option<usize> {
    let prefix = frames.get(at..at + PREFIX_LEN)?;
    Some(PREFIX_LEN + usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
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
            assert!(conn.enqueue(buf, &h, Instant::now()));
        }
        conn.writable = true;
        conn.flush(&h, Instant::now()).unwrap();
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
            assert!(conn.enqueue(buf, &h, Instant::now()));
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
            let mut buf = h.take_buffer().unwrap();
            buf.resize(60_000, 1);
            if conn.enqueue(buf, &h, Instant::now()) {
                accepted += 1;
            }
        }
        assert_eq!(
            accepted,
            (SEND_QUEUE_LIMIT / 60_000).min(MAX_QUEUED_BUFFERS)
        );
        conn.release(&h);
        let taken: Vec<_> = std::iter::from_fn(|| h.take_buffer()).collect();
        assert_eq!(taken.len(), super::super::handoff::POOL_BUFFERS);
    }

    /// A buffer of `n` framed messages of type `kind`, each `len` bytes.
    fn framed(h: &TcpHandoff, kind: u8, len: usize, n: usize) -> Vec<u8> {
        let mut buf = h.take_buffer().unwrap();
        for i in 0..n {
            buf.extend_from_slice(&(len as u16).to_be_bytes());
            buf.push(kind);
            buf.extend(std::iter::repeat_n(i as u8, len - 1));
        }
        buf
    }

    /// Splits a stream into its frames' lengths, checking that it holds only whole frames.
    fn frame_lengths(mut stream: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::new();
        while !stream.is_empty() {
            let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
            assert!(stream.len() >= 2 + len, "a cut frame");
            lengths.push(len);
            stream = &stream[2 + len..];
        }
        lengths
    }

    #[test]
    fn data_that_waits_too_long_is_dropped_at_the_head_in_whole_frames() {
        let (_poll, h) = handoff();
        let (mut conn, mut far) = pair();
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        assert!(conn.enqueue(framed(&h, TYPE_DATA, 200, 100), &h, t0));
        // Above target from 10 ms on; CoDel waits one interval (100 ms) before its first drop, then
        // spaces drops by interval / sqrt(count).
        assert_eq!(conn.drop_late_frames(&h, t0 + ms * 10), None);
        assert_eq!(conn.take_delay_drops(), 0);
        conn.drop_late_frames(&h, t0 + ms * 109);
        assert_eq!(conn.take_delay_drops(), 0);
        conn.drop_late_frames(&h, t0 + ms * 110);
        assert_eq!(conn.take_delay_drops(), 1);
        conn.drop_late_frames(&h, t0 + ms * 150);
        assert_eq!(conn.take_delay_drops(), 0);
        conn.drop_late_frames(&h, t0 + ms * 210);
        assert_eq!(conn.take_delay_drops(), 1);
        conn.writable = true;
        conn.flush(&h, t0 + ms * 211).unwrap();
        let mut got = vec![0u8; 98 * 202];
        far.read_exact(&mut got).unwrap();
        assert_eq!(frame_lengths(&got), vec![200; 98]);
        // The dropped frames were the first two: the stream goes on from the third.
        assert_eq!(got[3], 2);
        assert_eq!(conn.queued_bytes, 0);
        let taken: Vec<_> = std::iter::from_fn(|| h.take_buffer()).collect();
        assert_eq!(taken.len(), super::super::handoff::POOL_BUFFERS);
    }

    #[test]
    fn handshakes_keepalives_and_partly_written_frames_are_never_dropped() {
        let (_poll, h) = handoff();
        let (mut conn, _far) = pair();
        let t0 = Instant::now();
        let late = |i: u32| t0 + Duration::from_millis(10) * i;
        assert!(conn.enqueue(framed(&h, 1, 148, 1), &h, t0));
        assert!(conn.enqueue(framed(&h, TYPE_DATA, DATA_MIN_LEN, 1), &h, t0));
        assert!(conn.enqueue(framed(&h, TYPE_DATA, 200, 5), &h, t0));
        for i in 1..100 {
            conn.drop_late_frames(&h, late(i));
        }
        assert_eq!(conn.take_delay_drops(), 0, "an initiation at the head");
        conn.consume(150, &h);
        for i in 100..200 {
            conn.drop_late_frames(&h, late(i));
        }
        assert_eq!(conn.take_delay_drops(), 0, "a keepalive at the head");
        // Half of the first data frame already went out: the rest of it must follow. A drop CoDel
        // decides meanwhile is owed to the next whole data frame, and the write stops at the cut
        // frame's end.
        conn.consume(DATA_MIN_LEN + 2 + 50, &h);
        let mut stops = Vec::new();
        for i in 200..300 {
            stops.push(conn.drop_late_frames(&h, late(i)));
        }
        assert_eq!(conn.take_delay_drops(), 0, "a frame cut in the middle");
        // The three batches share one buffer: initiation 150 bytes, keepalive 34, this frame 202.
        assert_eq!(stops.last(), Some(&Some(150 + 34 + 202)), "{stops:?}");
        conn.consume(152, &h);
        assert_eq!(conn.drop_late_frames(&h, late(300)), None);
        // The owed drop, and those CoDel's dropping state has come due for since: whole frames.
        let dropped = conn.take_delay_drops() as usize;
        assert!(dropped >= 1);
        assert_eq!(conn.queued_bytes, (4 - dropped) * 202);
        conn.release(&h);
    }
}
