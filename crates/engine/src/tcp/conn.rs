//! One TCP connection of the owner: its socket, receive buffer and queue of frames to send.

use super::handoff::TcpHandoff;
use crate::stats::TcpState;
use fastwire_proto::framing::FrameBuffer;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::time::Instant;

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
    /// Batches waiting for the socket, oldest first; the first is written from `sent_of_first`.
    queue: VecDeque<Vec<u8>>,
    sent_of_first: usize,
    queued_bytes: usize,
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

    /// Queues a buffer of frames; gives it back and returns false when the queue is full. Small batches
    /// are copied into the room left in the last queued buffer, so sparse traffic (handshake replies,
    /// single packets) never ties up many pool buffers: a connection holds at most
    /// [`MAX_QUEUED_BUFFERS`] of them, and the pool stays available to every other connection.
    pub fn enqueue(&mut self, frames: Vec<u8>, handoff: &TcpHandoff) -> bool {
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
        if !fits(self) && (self.flush(handoff).is_err() || !fits(self)) {
            handoff.give_back(frames);
            return false;
        }
        self.queued_bytes += frames.len();
        if self.tail_room() >= frames.len()
            && let Some(tail) = self.queue.back_mut()
        {
            tail.extend_from_slice(&frames);
            handoff.give_back(frames);
        } else {
            self.queue.push_back(frames);
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

    /// Returns every queued buffer to the pool (the connection is closing).
    pub fn release(&mut self, handoff: &TcpHandoff) {
        for buf in self.queue.drain(..) {
            handoff.give_back(buf);
        }
        self.queued_bytes = 0;
        self.sent_of_first = 0;
    }
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
            assert!(conn.enqueue(buf, &h));
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
            assert!(conn.enqueue(buf, &h));
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
            if conn.enqueue(buf, &h) {
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
}
