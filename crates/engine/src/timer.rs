//! The timer thread: sleeps until the earliest protocol deadline (or a wake-up) and acts on the peers
//! that are due — only those: the schedule (`fastwire_proto::TimerSchedule`) costs O(log N) per event
//! with N peers. With no timer armed there is no deadline and it sleeps until woken.

use crate::shared::{Shared, Transmit};
use crate::stats::SendDrop;
use crate::tcp::Outbox;
use fastwire_proto::{DATA_HEADER_LEN, TAILROOM, TimerSchedule};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(crate) fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; DATA_HEADER_LEN + 65535 + TAILROOM];
    let stats = &shared.control_stats;
    let mut outbox = Outbox::default();
    let mut schedule = TimerSchedule::default();
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
