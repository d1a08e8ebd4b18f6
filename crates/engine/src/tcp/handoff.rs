//! How threads that are not the TCP owner get frames onto its connections: a fixed pool of buffers and a
//! bounded queue, both lock-free. A sender takes a free buffer, writes length-prefixed frames into it
//! (its only copy, made outside any lock), and queues it; the owner writes the buffer to the socket as it
//! is and returns it to the pool. No free buffer means the packet is dropped and counted: the queue never
//! grows, so a slow connection backs up into drops the inner TCP can see, not into latency.

use crate::stats::SendDrop;
use crossbeam_queue::ArrayQueue;
use fastwire_proto::framing::{PREFIX_LEN, length_prefix};
use std::net::SocketAddr;

/// Capacity of one buffer: about one worker round of full-size packets.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;
/// Buffers in the pool: everything queued to or held by the TCP owner is one of these.
pub(crate) const POOL_BUFFERS: usize = 64;

/// Frames for one connection, back to back (`u16` length + message, repeated).
pub(crate) struct Batch {
    pub to: SocketAddr,
    pub frames: Vec<u8>,
    pub packets: u32,
}

pub(crate) struct TcpHandoff {
    free: ArrayQueue<Vec<u8>>,
    full: ArrayQueue<Batch>,
    waker: mio::Waker,
}

impl TcpHandoff {
    pub fn new(waker: mio::Waker) -> Self {
        let free = ArrayQueue::new(POOL_BUFFERS);
        for _ in 0..POOL_BUFFERS {
            let _ = free.push(Vec::with_capacity(BATCH_BYTES));
        }
        Self {
            free,
            full: ArrayQueue::new(POOL_BUFFERS),
            waker,
        }
    }

    pub fn take_buffer(&self) -> Option<Vec<u8>> {
        self.free.pop()
    }

    pub fn give_back(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        // Only pool buffers circulate, so there is always room; a stray one is simply freed.
        let _ = self.free.push(buffer);
    }

    /// Queues a batch for the owner and wakes it.
    pub fn submit(&self, batch: Batch) {
        if let Err(batch) = self.full.push(batch) {
            self.give_back(batch.frames);
        }
        self.wake();
    }

    pub fn pop(&self) -> Option<Batch> {
        self.full.pop()
    }

    pub fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// One thread's batch being filled; frames for the same connection share a buffer until it is full or
/// the thread flushes at the end of its round.
#[derive(Default)]
pub(crate) struct Outbox {
    current: Option<Batch>,
}

impl Outbox {
    /// Frames `msg` for the connection to `to`; on failure, why it was dropped: no free buffer (the
    /// owner is behind) or a message no frame can carry (an MTU near 64 KiB).
    pub fn push(
        &mut self,
        handoff: &TcpHandoff,
        to: SocketAddr,
        msg: &[u8],
    ) -> Result<(), SendDrop> {
        let Some(prefix) = length_prefix(msg.len()) else {
            return Err(SendDrop::TcpFrameTooBig);
        };
        let need = PREFIX_LEN + msg.len();
        if self
            .current
            .as_ref()
            .is_some_and(|b| b.to != to || b.frames.len() + need > BATCH_BYTES.max(need))
        {
            self.flush(handoff);
        }
        let batch = match &mut self.current {
            Some(batch) => batch,
            None => {
                let Some(frames) = handoff.take_buffer() else {
                    return Err(SendDrop::TcpQueueFull);
                };
                self.current.insert(Batch {
                    to,
                    frames,
                    packets: 0,
                })
            }
        };
        batch.frames.extend_from_slice(&prefix);
        batch.frames.extend_from_slice(msg);
        batch.packets += 1;
        Ok(())
    }

    pub fn flush(&mut self, handoff: &TcpHandoff) {
        if let Some(batch) = self.current.take() {
            handoff.submit(batch);
        }
    }
}

/// A handoff for tests, with the poll instance its waker belongs to.
#[cfg(test)]
pub(crate) fn test_handoff() -> (mio::Poll, TcpHandoff) {
    let poll = mio::Poll::new().unwrap();
    let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
    (poll, TcpHandoff::new(waker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff() -> (mio::Poll, TcpHandoff) {
        test_handoff()
    }

    #[test]
    fn frames_for_one_connection_share_a_buffer() {
        let (_poll, h) = handoff();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let mut out = Outbox::default();
        assert!(out.push(&h, a, &[1; 10]).is_ok());
        assert!(out.push(&h, a, &[2; 20]).is_ok());
        assert!(out.push(&h, b, &[3; 5]).is_ok());
        out.flush(&h);
        let first = h.pop().unwrap();
        assert_eq!((first.to, first.packets, first.frames.len()), (a, 2, 34));
        assert_eq!(&first.frames[..2], &[0, 10]);
        let second = h.pop().unwrap();
        assert_eq!((second.to, second.packets, second.frames.len()), (b, 1, 7));
        assert!(h.pop().is_none());
    }

    #[test]
    fn an_exhausted_pool_drops_instead_of_growing() {
        let (_poll, h) = handoff();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut out = Outbox::default();
        let big = vec![7u8; BATCH_BYTES - PREFIX_LEN];
        for _ in 0..POOL_BUFFERS {
            assert!(out.push(&h, a, &big).is_ok());
        }
        assert_eq!(out.push(&h, a, &big), Err(SendDrop::TcpQueueFull));
        assert_eq!(
            out.push(&h, a, &vec![0; 70_000]),
            Err(SendDrop::TcpFrameTooBig)
        );
        let taken = h.pop().unwrap();
        h.give_back(taken.frames);
        assert!(out.push(&h, a, &big).is_ok());
    }
}
