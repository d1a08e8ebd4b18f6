//! Handshake messages off the data path.
//!
//! A worker that receives an initiation, a response or a cookie reply screens it where it arrives
//! ([`fastwire_proto::Device::screen_handshake`]: shape, mac1, and under load mac2 or a budgeted cookie
//! reply) and copies what passes into a bounded queue; one handshake thread does the rest (the Noise
//! handshake, flushing staged packets). So a flood of handshakes costs the data path a MAC check per
//! message (and a cookie reply within a budget of a few thousand a second), never a Diffie-Hellman, and
//! under load it never reaches the queue or wakes the thread; data never waits behind a handshake.
//! As in the kernel: the queue drops initiations once it is half full (responses and cookie replies,
//! which answer our own initiations, may fill the rest), and a queue that holds an eighth of its
//! capacity puts the device under load (cookies demanded) for a second.

use crate::shared::{Shared, Transmit};
use crate::stats::{SendDrop, WorkerStats};
use crate::tcp::Outbox;
use crossbeam_queue::ArrayQueue;
use fastwire_proto::messages::{INITIATION_LEN, TYPE_INITIATION};
use fastwire_proto::{DATA_HEADER_LEN, Endpoint, Incoming, RecvDrop, TAILROOM};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Handshake messages waiting at once (wireguard-go's QueueHandshakeSize; the kernel uses 4096).
pub(crate) const QUEUE_CAPACITY: usize = 1024;
/// Queue depth from which initiations are dropped on arrival.
const INITIATIONS_UP_TO: usize = QUEUE_CAPACITY / 2;
/// Queue depth that puts the device under load.
const UNDER_LOAD_AT: usize = QUEUE_CAPACITY / 8;
/// Messages handled per look at the clock and the backlog.
const BATCH: usize = 64;
/// How long the thread sleeps between looks at the stop flag when nothing wakes it.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// One queued handshake message (the longest is an initiation).
struct Job {
    src: Endpoint,
    len: usize,
    msg: [u8; INITIATION_LEN],
}

/// The bounded queue between the workers and the handshake thread.
pub(crate) struct HandshakeQueue {
    jobs: ArrayQueue<Job>,
    /// The thread is about to park or parked: the next push must unpark it.
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl HandshakeQueue {
    pub fn new() -> Self {
        Self {
            jobs: ArrayQueue::new(QUEUE_CAPACITY),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Queues a handshake message that passed [`fastwire_proto::Device::screen_handshake`].
    /// Call [`HandshakeQueue::wake`] after the batch.
    pub fn push(&self, src: Endpoint, msg: &[u8]) -> Result<(), Incoming> {
        self.try_push(src, msg).map_err(Incoming::Dropped)
    }

    fn try_push(&self, src: Endpoint, msg: &[u8]) -> Result<(), RecvDrop> {
        let depth = self.jobs.len();
        let initiation = msg.first() == Some(&TYPE_INITIATION);
        if msg.len() > INITIATION_LEN {
            return Err(RecvDrop::Malformed);
        }
        if initiation && depth >= INITIATIONS_UP_TO {
            return Err(RecvDrop::HandshakeQueueFull);
        }
        let mut job = Job {
            src,
            len: msg.len(),
            msg: [0; INITIATION_LEN],
        };
        job.msg[..msg.len()].copy_from_slice(msg);
        self.jobs
            .push(job)
            .map_err(|_| RecvDrop::HandshakeQueueFull)
    }

    /// Wakes the handshake thread if it sleeps (a syscall only when it does).
    pub fn wake(&self) {
        // Pairs with the fence in `sleep`: either the thread sees our jobs, or we see it sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.unpark();
        }
    }

    /// Wakes the thread unconditionally (shutdown).
    pub fn unpark(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    pub fn set_thread(&self, thread: Thread) {
        let _ = self.thread.set(thread);
    }

    fn sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.jobs.is_empty() {
            std::thread::park_timeout(IDLE_CHECK);
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// The handshake thread: drains the queue until told to stop.
pub(crate) fn run(shared: Arc<Shared>, stats: Arc<WorkerStats>) {
    let queue = &shared.handshakes;
    let mut reply = [0u8; 256];
    let mut scratch = vec![0u8; DATA_HEADER_LEN + 65_535 + TAILROOM];
    let mut outbox = Outbox::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if queue.jobs.is_empty() {
            queue.sleep();
            continue;
        }
        let socket = shared.socket(0);
        let mut tx = Transmit {
            udp: socket.as_deref(),
            outbox: &mut outbox,
        };
        // One batch; `now` is read once per batch, as the workers do. Batches are short so that the
        // backlog is looked at often while handshakes are costly (not yet under load).
        let now = Instant::now();
        if queue.jobs.len() >= UNDER_LOAD_AT {
            shared.device.note_handshake_backlog(now);
        }
        for _ in 0..BATCH {
            let Some(mut job) = queue.jobs.pop() else {
                break;
            };
            let msg = &mut job.msg[..job.len];
            let incoming = shared
                .device
                .handle_screened_handshake(job.src, msg, now, &mut reply);
            match &incoming {
                Incoming::Reply { len, .. } => {
                    let sent = tx.udp.is_some_and(|s| {
                        s.send_to(&reply[..*len], job.src.addr, job.src.local)
                            .is_ok()
                    });
                    if !sent {
                        stats.send_drop(SendDrop::SendFailed, 1);
                    }
                }
                Incoming::Dropped(reason) => stats.recv_drop(*reason),
                _ => {}
            }
            shared.follow_up(&mut tx, &incoming, &mut scratch, now, &stats);
        }
        outbox.flush(&shared.tcp);
        if shared.device.take_timers_dirty() {
            shared.wake_timer();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwire_proto::messages::{RESPONSE_LEN, TYPE_RESPONSE};
    use std::net::SocketAddr;

    #[test]
    fn initiations_stop_at_half_answers_fill_the_rest() {
        let q = HandshakeQueue::new();
        let src = Endpoint::udp(SocketAddr::from(([10, 0, 0, 1], 1)));
        let mut init = [0u8; INITIATION_LEN];
        init[0] = TYPE_INITIATION;
        let mut resp = [0u8; RESPONSE_LEN];
        resp[0] = TYPE_RESPONSE;
        let queued = (0..QUEUE_CAPACITY)
            .filter(|_| q.try_push(src, &init).is_ok())
            .count();
        assert_eq!(queued, INITIATIONS_UP_TO);
        assert_eq!(q.try_push(src, &init), Err(RecvDrop::HandshakeQueueFull));
        let answers = (0..QUEUE_CAPACITY)
            .filter(|_| q.try_push(src, &resp).is_ok())
            .count();
        assert_eq!(answers, QUEUE_CAPACITY - INITIATIONS_UP_TO);
        assert_eq!(q.try_push(src, &resp), Err(RecvDrop::HandshakeQueueFull));
        // Queued messages come out whole and in order.
        let first = q.jobs.pop().unwrap();
        assert_eq!(
            (first.len, first.msg[0], first.src),
            (INITIATION_LEN, TYPE_INITIATION, src)
        );
    }

    #[test]
    fn oversized_messages_are_refused() {
        let q = HandshakeQueue::new();
        let big = [1u8; INITIATION_LEN + 1];
        let src = Endpoint::udp(SocketAddr::from(([10, 0, 0, 1], 1)));
        assert_eq!(q.try_push(src, &big), Err(RecvDrop::Malformed));
    }
}
