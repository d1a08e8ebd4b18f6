//! The single-queue data path: one TUN queue and one UDP socket (Windows' Wintun ring, macOS' utun, or
//! Linux with `--tun-queues 1`) shared by N workers, with the crypto spread over all of them and every
//! peer's packets kept in order.
//!
//! Leader/followers: one worker at a time (the leader) sleeps on the sources. When one is ready it
//! reads a batch, stamps it with the next sequence number of its direction, hands leadership to an idle
//! follower, and seals or opens the batch on its own core while the new leader reads the next one.
//! A finished batch is committed in sequence order ([`Lane`]): whoever finishes the batch that is next
//! sends or writes it, and then any later ones already waiting — so the wire and the TUN device see
//! batches in the order they were read, and each peer's packets (a subset) keep their order too. The
//! hand-offs cost two short lock sections per batch (one per up to 128 packets), never a copy under a
//! lock: batches move between workers as boxes from a fixed pool.
//!
//! Why not hand each packet to a crypto pool, as wireguard-go does: a batch is already the unit of every
//! system call here (a GSO run, a recvmmsg, a coalesced TUN write), so ordering whole batches keeps the
//! system calls as large as on the multi-queue path and the hand-off cost per packet near zero.

use crate::rx_batch::{RX_BUFFERS, RxBatch};
use crate::shared::{Shared, ShutdownReason, Transmit};
use crate::stats::WorkerStats;
use crate::tun_sink::TunSink;
use crate::tx_batch::TxBatch;
use crate::worker::{Scratch, wait_timeout};
use crossbeam_queue::ArrayQueue;
use fastwire_io::tun::TunQueue;
use fastwire_io::wait::{Ready, wait};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What the workers of one single-queue device share.
pub(crate) struct Pipeline {
    tun: Arc<dyn TunQueue>,
    /// TUN -> network.
    out: Lane<TxBatch>,
    /// Network -> TUN.
    inn: Lane<RxBatch>,
    /// The TUN writer; only the committer of `inn` holds it, so the lock is never contended.
    sink: Mutex<TunSink>,
    roles: Mutex<Roles>,
    /// The last read of a source stopped before it was empty (see [`crate::worker`]).
    tun_pending: AtomicBool,
    udp_pending: AtomicBool,
}

#[derive(Default)]
struct Roles {
    leader: Option<usize>,
    /// Workers asleep on their own waker, waiting to lead.
    idle: Vec<usize>,
    /// Workers asleep waiting for a free batch.
    starved: Vec<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Batches of one direction: a fixed pool, sequence numbers in read order, and the in-order commit.
struct Lane<B> {
    free: ArrayQueue<Box<B>>,
    next_seq: AtomicU64,
    order: Mutex<Order<B>>,
}

struct Order<B> {
    /// The sequence number to commit next.
    next: u64,
    /// Someone is committing: others only park their batch.
    committing: bool,
    /// Finished batches waiting for their turn, at `seq % len` (a seq is only handed out with a pool
    /// batch, so at most `len` are outstanding and slots never collide).
    parked: Vec<Option<Box<B>>>,
}

impl<B> Lane<B> {
    fn new(batches: impl Iterator<Item = B>) -> Self {
        let batches: Vec<Box<B>> = batches.map(Box::new).collect();
        let free = ArrayQueue::new(batches.len());
        let parked = (0..batches.len()).map(|_| None).collect();
        for b in batches {
            let _ = free.push(b);
        }
        Self {
            free,
            next_seq: AtomicU64::new(0),
            order: Mutex::new(Order {
                next: 0,
                committing: false,
                parked,
            }),
        }
    }

    /// Commits batch `seq`: parks it, and if nobody is committing, commits every batch that is next in
    /// line (`deliver` each, outside the lock) and returns them to the pool. Returns whether batches
    /// were returned, and false from `deliver` stops (the interface is gone).
    fn commit(
        &self,
        seq: u64,
        batch: Box<B>,
        mut deliver: impl FnMut(&mut B) -> bool,
    ) -> Result<bool, ()> {
        let mut order = lock(&self.order);
        let len = order.parked.len() as u64;
        order.parked[(seq % len) as usize] = Some(batch);
        if order.committing {
            return Ok(false);
        }
        order.committing = true;
        let mut returned = false;
        loop {
            let slot = (order.next % len) as usize;
            let Some(mut batch) = order.parked[slot].take() else {
                order.committing = false;
                return Ok(returned);
            };
            order.next += 1;
            drop(order);
            let alive = deliver(&mut batch);
            let _ = self.free.push(batch);
            returned = true;
            if !alive {
                return Err(());
            }
            order = lock(&self.order);
        }
    }
}

impl Pipeline {
    pub fn new(tun: Arc<dyn TunQueue>, workers: usize, mtu: usize) -> Self {
        // Each worker holds at most one batch of each direction; as many again may wait for their turn.
        let pool = 2 * workers.max(1);
        Self {
            sink: Mutex::new(TunSink::new(tun.clone())),
            tun,
            out: Lane::new((0..pool).map(|_| TxBatch::new(mtu))),
            inn: Lane::new((0..pool).map(|_| RxBatch::new())),
            roles: Mutex::new(Roles::default()),
            tun_pending: AtomicBool::new(false),
            udp_pending: AtomicBool::new(false),
        }
    }

    /// Becomes the leader if there is none; otherwise goes on the idle list (atomically, so a leader
    /// that steps down always finds someone to wake or leaves the post free for the next to come).
    fn lead_or_idle(&self, me: usize) -> bool {
        let mut roles = lock(&self.roles);
        roles.idle.retain(|&w| w != me);
        match roles.leader {
            None => {
                roles.leader = Some(me);
                true
            }
            Some(_) => {
                roles.idle.push(me);
                false
            }
        }
    }

    /// Leaves the post and wakes an idle worker to take it, so someone listens while this one works.
    /// (Waking only while a source is known to hold more was measured: it spares a wake-up per batch but
    /// loses the overlap of reading and crypto, 3.55 against 3.97 Gbit/s over three A/B pairs.)
    fn step_down(&self, shared: &Shared) {
        let mut roles = lock(&self.roles);
        roles.leader = None;
        if let Some(next) = roles.idle.pop() {
            shared.worker_wakers[next].wake();
        }
    }

    /// Takes one free batch of each direction, or registers to be woken when one returns.
    fn take_batches(
        &self,
        me: usize,
        tx: &mut Option<Box<TxBatch>>,
        rx: &mut Option<Box<RxBatch>>,
    ) -> bool {
        let take = |tx: &mut Option<Box<TxBatch>>, rx: &mut Option<Box<RxBatch>>| {
            if tx.is_none() {
                *tx = self.out.free.pop();
            }
            if rx.is_none() {
                *rx = self.inn.free.pop();
            }
            tx.is_some() && rx.is_some()
        };
        if take(tx, rx) {
            return true;
        }
        let mut roles = lock(&self.roles);
        // Checked again under the lock that `batches_returned` takes after returning batches.
        if take(tx, rx) {
            return true;
        }
        if !roles.starved.contains(&me) {
            roles.starved.push(me);
        }
        false
    }

    fn batches_returned(&self, shared: &Shared) {
        let mut roles = lock(&self.roles);
        for w in roles.starved.drain(..) {
            shared.worker_wakers[w].wake();
        }
    }
}

/// One worker of the pipeline.
pub(crate) struct PipelineWorker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub pipeline: Arc<Pipeline>,
    pub stats: Arc<WorkerStats>,
}

/// What the leader read.
enum Taken {
    Out(u64, Box<TxBatch>),
    In(u64, Box<RxBatch>),
    Nothing,
    Stop,
}

impl PipelineWorker {
    pub fn run(self) {
        let shared = &*self.shared;
        let p = &*self.pipeline;
        let stats = &*self.stats;
        let waker = &shared.worker_wakers[self.index];
        let mut scratch = Scratch::new();
        let mut mtu_checked = Instant::now();
        let (mut tx, mut rx): (Option<Box<TxBatch>>, Option<Box<RxBatch>>) = (None, None);
        // Alternates which source a leader serves first when both are ready.
        let mut tun_first = true;
        let mut ready = [Ready::default(); 3];
        while !shared.stop.load(Ordering::Relaxed) {
            if !p.take_batches(self.index, &mut tx, &mut rx) || !p.lead_or_idle(self.index) {
                // Asleep until a batch comes back, leadership is offered, or the engine stops.
                if wait(&[waker.wait_handle()], &mut ready[..1], None).is_err() {
                    shared.request_shutdown(ShutdownReason::Failed);
                    return;
                }
                waker.drain();
                continue;
            }
            let taken = self.lead(
                &mut tx,
                &mut rx,
                &mut scratch,
                &mut tun_first,
                &mut mtu_checked,
            );
            p.step_down(shared);
            let socket = shared.socket(0);
            let now = Instant::now();
            let mut out = Transmit {
                udp: socket.as_deref(),
                outbox: &mut scratch.outbox,
            };
            let committed = match taken {
                Taken::Stop => return,
                Taken::Nothing => continue,
                Taken::Out(seq, mut batch) => {
                    batch.seal(shared, &mut out, &mut scratch.packet, now, stats);
                    p.out.commit(seq, batch, |b| {
                        b.send(socket.as_deref(), stats);
                        true
                    })
                }
                Taken::In(seq, mut batch) => {
                    batch.open(
                        shared,
                        &mut out,
                        &mut scratch.packet,
                        &mut scratch.reply,
                        now,
                        stats,
                    );
                    p.inn
                        .commit(seq, batch, |b| b.deliver(&mut lock(&p.sink), shared, stats))
                }
            };
            scratch.outbox.flush(&shared.tcp);
            match committed {
                Ok(true) => p.batches_returned(shared),
                Ok(false) => {}
                Err(()) => return,
            }
            if shared.device.take_timers_dirty() {
                shared.wake_timer();
            }
        }
    }

    /// As the leader: sleeps until a source is ready and reads one batch from it.
    fn lead(
        &self,
        tx: &mut Option<Box<TxBatch>>,
        rx: &mut Option<Box<RxBatch>>,
        scratch: &mut Scratch,
        tun_first: &mut bool,
        mtu_checked: &mut Instant,
    ) -> Taken {
        let shared = &*self.shared;
        let p = &*self.pipeline;
        let waker = &shared.worker_wakers[self.index];
        let socket = shared.socket(0);
        let handles = [
            p.tun.wait_handle(),
            waker.wait_handle(),
            socket
                .as_ref()
                .map_or(waker.wait_handle(), |s| s.wait_handle()),
        ];
        let mut ready = [Ready::default(); 3];
        let pending =
            p.tun_pending.load(Ordering::Relaxed) || p.udp_pending.load(Ordering::Relaxed);
        if wait(&handles, &mut ready, wait_timeout(pending)).is_err() {
            shared.request_shutdown(ShutdownReason::Failed);
            return Taken::Stop;
        }
        if ready[0].failed {
            shared.request_shutdown(ShutdownReason::InterfaceRemoved);
            return Taken::Stop;
        }
        if ready[1].readable {
            waker.drain();
        }
        shared.check_mtu(&*p.tun, mtu_checked);
        let Some(socket) = socket else {
            // Being rebound: leave the packets for the next leader, and remember they are there (a
            // consumed auto-reset event would not say so again).
            p.tun_pending.fetch_or(ready[0].readable, Ordering::Relaxed);
            return Taken::Nothing;
        };
        let tun_ready = ready[0].readable || p.tun_pending.load(Ordering::Relaxed);
        let udp_ready = ready[2].readable || p.udp_pending.load(Ordering::Relaxed);
        // The source not served now stays pending, so the next leader looks at it without sleeping.
        let serve_tun = tun_ready && (*tun_first || !udp_ready);
        *tun_first = !*tun_first;
        if serve_tun {
            p.udp_pending.fetch_or(udp_ready, Ordering::Relaxed);
            let Some(mut batch) = tx.take() else {
                return Taken::Nothing;
            };
            batch.fit(shared.mtu());
            let Some(drained) = batch.fill(&*p.tun, &mut scratch.read, shared, &self.stats) else {
                return Taken::Stop;
            };
            p.tun_pending.store(!drained, Ordering::Relaxed);
            if batch.is_empty() {
                *tx = Some(batch);
                return Taken::Nothing;
            }
            // Every sequence number handed out is committed: only a batch with packets gets one.
            return Taken::Out(p.out.next_seq.fetch_add(1, Ordering::Relaxed), batch);
        }
        if udp_ready {
            p.tun_pending.fetch_or(tun_ready, Ordering::Relaxed);
            let Some(mut batch) = rx.take() else {
                return Taken::Nothing;
            };
            match batch.receive(&socket) {
                Ok(n) => p.udp_pending.store(n == RX_BUFFERS, Ordering::Relaxed),
                Err(e) => p
                    .udp_pending
                    .store(e.kind() == ErrorKind::Interrupted, Ordering::Relaxed),
            }
            if batch.is_empty() {
                *rx = Some(batch);
                return Taken::Nothing;
            }
            return Taken::In(p.inn.next_seq.fetch_add(1, Ordering::Relaxed), batch);
        }
        Taken::Nothing
    }
}
