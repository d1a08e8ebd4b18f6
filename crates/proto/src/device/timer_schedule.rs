//! Which peer's timers come due next, so the driver touches only those: a min-heap of (deadline, peer)
//! with lazy deletion, fed by a lock-free queue of peers whose timers were armed earlier than the heap
//! knew. An event costs O(log N) whatever the number of peers, and a server whose peers have no armed
//! timer has an empty heap and sleeps.
//!
//! The data path never touches the heap. Postponing a timer (the common case: every packet pushes the
//! persistent keepalive back) changes only the peer's atomics; the driver finds out when the old entry
//! comes due, sees the later deadline and files that instead. Only a timer armed *earlier* than the
//! peer's entry puts the peer on the queue, once until the driver has looked.

use super::Device;
use crate::crypto::Key;
use crate::peer::Peer;
use crate::timers::PeerTimers;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use super::timer_events::TimerEvents;

/// The timer driver's own state (one driver per device). Entries that no longer match their peer's
/// `scheduled_at` (postponed, removed, replaced) are stale and skipped when they come up.
#[derive(Default)]
pub struct TimerSchedule {
    heap: BinaryHeap<Reverse<(u64, Key)>>,
}

impl TimerSchedule {
    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Files `peer` at its earliest armed timer. `held`: the deadline of an entry for it that is still in
    /// the heap (not re-filed when it is the same).
    fn file(&mut self, peer: &Peer, held: Option<u64>) {
        let timers = &peer.timers;
        let mut at = earliest(timers);
        loop {
            timers.scheduled_at.store(at, Ordering::Relaxed);
            // Pairs with the fence in `Device::arm`: either the arming thread sees this entry (and queues
            // the peer when it is earlier), or this second look sees its timer.
            fence(Ordering::SeqCst);
            let again = earliest(timers);
            if again == 0 || (at != 0 && again >= at) {
                break;
            }
            at = again;
        }
        if at != 0 && held != Some(at) {
            self.heap.push(Reverse((at, peer.public_key)));
        }
    }
}

fn earliest(timers: &PeerTimers) -> u64 {
    timers.earliest().unwrap_or(0)
}

impl Device {
    /// The data path armed a timer of `peer` at `at` (`fresh`: it was idle, or moved earlier). If that is
    /// earlier than what the driver holds for the peer, queue the peer for it, and flag the driver when
    /// it would otherwise sleep past `at`. Not fresh (a postponement) costs nothing.
    pub(super) fn arm(&self, peer: &Peer, fresh: bool, at: u64) {
        if !fresh {
            return;
        }
        // Pairs with the fence in `TimerSchedule::file` (store the deadline, then read the entry).
        fence(Ordering::SeqCst);
        let timers = &peer.timers;
        let scheduled = timers.scheduled_at.load(Ordering::Relaxed);
        if scheduled != 0 && at >= scheduled {
            return;
        }
        if !timers.queued.swap(true, Ordering::AcqRel) {
            self.timer_queue.push(peer.public_key);
        }
        // Pairs with the fence in `park_timer_driver` (store the driver's deadline, then look at the queue).
        fence(Ordering::SeqCst);
        if at < self.driver_deadline.load(Ordering::Relaxed) {
            self.timers_dirty.store(true, Ordering::Release);
        }
    }

    /// Takes the queued peers into the schedule and returns the next deadline (stale entries at the top
    /// are dropped on the way).
    pub fn next_timer(&self, schedule: &mut TimerSchedule) -> Option<Instant> {
        let peers = self.peers.load();
        while let Some(key) = self.timer_queue.pop() {
            if let Some(peer) = peers.get(&key) {
                peer.timers.queued.store(false, Ordering::Release);
                let held = peer.timers.scheduled_at.load(Ordering::Relaxed);
                schedule.file(peer, (held != 0).then_some(held));
            }
        }
        while let Some(Reverse((at, key))) = schedule.heap.peek() {
            let live = peers
                .get(key)
                .is_some_and(|p| p.timers.scheduled_at.load(Ordering::Relaxed) == *at);
            if live {
                return Some(self.clock.to_instant(*at));
            }
            schedule.heap.pop();
        }
        None
    }

    /// The driver's turn at `now`: fires the timers of every peer that is due (calling `act` with what
    /// they ask for, if anything), re-files those peers, and returns the next deadline.
    pub fn run_timers(
        &self,
        schedule: &mut TimerSchedule,
        now: Instant,
        mut act: impl FnMut(&Arc<Peer>, TimerEvents),
    ) -> Option<Instant> {
        let t = self.clock.to_nanos(now);
        // Queued peers first: one armed at or before `now` is due in this turn.
        self.next_timer(schedule);
        let peers = self.peers.load();
        while let Some(&Reverse((at, key))) = schedule.heap.peek() {
            if at > t {
                break;
            }
            schedule.heap.pop();
            let Some(peer) = peers.get(&key) else {
                continue;
            };
            if peer.timers.scheduled_at.load(Ordering::Relaxed) != at {
                continue;
            }
            let events = self.poll_timers(peer, now);
            if events != TimerEvents::default() {
                act(peer, events);
            }
            schedule.file(peer, None);
        }
        // Stale entries pile up only as fast as timers are moved earlier; keep them a fraction.
        if schedule.heap.len() > 2 * peers.len() + 64 {
            schedule.heap.retain(|Reverse((at, key))| {
                peers
                    .get(key)
                    .is_some_and(|p| p.timers.scheduled_at.load(Ordering::Relaxed) == *at)
            });
        }
        drop(peers);
        self.next_timer(schedule)
    }

    /// The driver is about to sleep until `next` (`None`: until woken). False if a peer was queued
    /// meanwhile: run the timers again instead of sleeping. From here until it wakes, arming a timer
    /// before `next` flags it (`take_timers_dirty`).
    pub fn park_timer_driver(&self, next: Option<Instant>) -> bool {
        self.set_driver_deadline(next);
        fence(Ordering::SeqCst);
        self.timer_queue.is_empty()
    }
}
