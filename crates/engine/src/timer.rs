//! The timer thread: sleeps until the earliest protocol deadline (or a wake-up) and acts on it.
//! With no traffic and no persistent keepalive there is no deadline and it sleeps indefinitely.

use crate::shared::{Shared, Transmit};
use crate::stats::SendDrop;
use crate::tcp::Outbox;
use fastwire_proto::{DATA_HEADER_LEN, TAILROOM};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(crate) fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; DATA_HEADER_LEN + 65535 + TAILROOM];
    let stats = &shared.control_stats;
    let mut outbox = Outbox::default();
    loop {
        {
            let (lock, cv) = &shared.timer_wake;
            let mut woken = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !*woken && !shared.stop.load(Ordering::Relaxed) {
                let next = shared.device.next_deadline();
                shared.device.set_driver_deadline(next);
                // A timer armed between the computation and the store would be missed: recheck.
                if shared.device.next_deadline() != next {
                    continue;
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
        // Awake and about to recompute: arming a timer now needs no wake-up.
        shared.device.set_driver_deadline(Some(Instant::now()));
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let socket = shared.socket(0);
        let mut tx = Transmit {
            udp: socket.as_deref(),
            outbox: &mut outbox,
        };
        for peer in shared.device.peers() {
            let ev = shared.device.poll_timers(&peer, now);
            if ev.send_initiation {
                shared.initiate(&mut tx, &peer, ev.retry, now, stats);
            }
            if ev.send_keepalive {
                shared.seal_and_send(&mut tx, &peer, &mut buf, 0, now, stats);
            }
            if ev.gave_up {
                let n = peer.clear_staged() as u64;
                if n > 0 {
                    stats.send_drop(SendDrop::HandshakeGaveUp, n);
                }
            }
        }
        outbox.flush(&shared.tcp);
        shared.device.take_timers_dirty();
    }
}
