//! The timer thread: sleeps until the earliest protocol deadline (or a wake-up) and acts on the peers
//! that are due — only those: the schedule (`fastwire_proto::TimerSchedule`) costs O(log N) per event
//! with N peers. With no timer armed there is no deadline and it sleeps until woken.
//!
//! It wakes on a grid of [`TIMER_SLACK`] slots rather than at each deadline, so the timers of many
//! peers that fall due close together (a server's persistent keepalives) are served in one wake-up:
//! at most one per slot, where an exact wake per deadline took ~500 a second with 1,000 peers.

use crate::shared::{Shared, Transmit};
use crate::stats::SendDrop;
use crate::tcp::Outbox;
use fastwire_proto::{DATA_HEADER_LEN, TAILROOM, TimerSchedule};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How late a timer may fire: protocol timers are seconds long and the protocol adds up to 333 ms of
/// jitter to its own, so 10 ms is not observable (the kernel's timer wheel coalesces more).
pub(crate) const TIMER_SLACK: Duration = Duration::from_millis(10);

/// The end of the slot `deadline` falls in: the first multiple of [`TIMER_SLACK`] after `origin` that
/// is not before it.
pub(crate) fn coalesced(deadline: Instant, origin: Instant) -> Instant {
    let slack = TIMER_SLACK.as_nanos();
    let since = deadline.saturating_duration_since(origin).as_nanos();
    let slots = since.div_ceil(slack);
    u64::try_from(slots * slack)
        .ok()
        .and_then(|ns| origin.checked_add(Duration::from_nanos(ns)))
        .unwrap_or(deadline)
}

pub(crate) fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; DATA_HEADER_LEN + 65535 + TAILROOM];
    let stats = &shared.control_stats;
    let mut outbox = Outbox::default();
    let mut schedule = TimerSchedule::default();
    let origin = Instant::now();
    loop {
        let now = Instant::now();
        let socket = shared.socket(0);
        let mut tx = Transmit {
            udp: socket.as_deref(),
            outbox: &mut outbox,
        };
        let next = shared.device.run_timers(&mut schedule, now, |peer, ev| {
            if ev.send_initiation {
                shared.initiate(&mut tx, peer, ev.retry, now, stats);
            }
            if ev.send_keepalive {
                shared.seal_and_send(&mut tx, peer, &mut buf, 0, now, stats);
            }
            if ev.gave_up {
                let n = peer.clear_staged() as u64;
                if n > 0 {
                    stats.send_drop(SendDrop::HandshakeGaveUp, n);
                }
            }
        });
        let next = next.map(|deadline| coalesced(deadline, origin));
        drop(socket);
        outbox.flush(&shared.tcp);
        shared.device.take_timers_dirty();
        {
            let (lock, cv) = &shared.timer_wake;
            let mut woken = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !*woken && !shared.stop.load(Ordering::Relaxed) {
                // A peer queued since `run_timers` looked: go round again rather than sleep past it.
                if !shared.device.park_timer_driver(next) {
                    break;
                }
                match next {
                    Some(deadline) => {
                        let now = Instant::now();
                        if deadline <= now {
                            break;
                        }
                        woken = cv
                            .wait_timeout(woken, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    None => woken = cv.wait(woken).unwrap_or_else(|p| p.into_inner()),
                }
            }
            *woken = false;
        }
        // Awake and about to run: arming a timer now needs no wake-up (the queue says it).
        shared.device.set_driver_deadline(Some(Instant::now()));
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_the_end_of_their_slot() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        assert_eq!(coalesced(at(0), origin), at(0));
        assert_eq!(coalesced(at(1), origin), at(10));
        assert_eq!(coalesced(at(10), origin), at(10));
        assert_eq!(coalesced(at(10) + Duration::from_nanos(1), origin), at(20));
        assert_eq!(coalesced(at(12_345), origin), at(12_350));
        // Never earlier than asked, never later than one slot.
        for ns in [1u64, 999_999, 10_000_001, 7_777_777_777] {
            let d = origin + Duration::from_nanos(ns);
            let c = coalesced(d, origin);
            assert!(c >= d && c - d < TIMER_SLACK, "{ns}");
        }
        // A deadline already past (before the origin) is due now, not in a slot's time.
        let later = at(5);
        assert_eq!(coalesced(origin, later), later);
    }
}
