//! Arming and firing the per-peer timers: the hooks the handshake and data paths call, the wake-up
//! signal to the timer driver, and [`Device::poll_timers`], which turns due timers into [`TimerEvents`].

use super::Device;
use crate::peer::Peer;
use crate::timers::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the timers ask for on one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimerEvents {
    pub send_initiation: bool,
    /// A retry of an unanswered initiation (not rate-limited).
    pub retry: bool,
    pub send_keepalive: bool,
    /// Handshake attempts exhausted: drop the packets waiting for a session.
    pub gave_up: bool,
}

impl Device {
    /// True once after a timer was armed earlier than the driver's own wake-up: wake the driver.
    pub fn take_timers_dirty(&self) -> bool {
        self.timers_dirty.load(Ordering::Relaxed) && self.timers_dirty.swap(false, Ordering::AcqRel)
    }

    /// The timer driver says when it will wake by itself (`None`: not until woken). While it is awake
    /// and about to recompute, it passes `Some(now)`-or-earlier, so arming never flags it.
    pub fn set_driver_deadline(&self, deadline: Option<Instant>) {
        let at = deadline.map_or(u64::MAX, |d| self.clock.to_nanos(d));
        self.driver_deadline.store(at, Ordering::SeqCst);
    }

    pub(super) fn at(&self, now: Instant, after: Duration) -> u64 {
        self.clock.to_nanos(now + after)
    }

    /// Fires the peer's due timers and says what to send.
    pub(super) fn poll_timers(&self, peer: &Arc<Peer>, now: Instant) -> TimerEvents {
        let t = self.clock.to_nanos(now);
        let timers = &peer.timers;
        let mut ev = TimerEvents::default();
        if timers.retransmit_handshake.fire(t) {
            let mut hs = peer.handshake();
            // As wireguard-go and the kernel: MAX_TIMER_HANDSHAKES + 1 retries after the first initiation.
            if hs.attempts > MAX_TIMER_HANDSHAKES {
                let abandoned = hs.initiator.take().map(|s| s.local_index);
                drop(hs);
                if let Some(index) = abandoned {
                    self.index_update(|m| {
                        m.remove(index);
                    });
                }
                timers.send_keepalive.disarm();
                ev.gave_up = true;
                let at = self.at(now, REJECT_AFTER_TIME * 3);
                let fresh = timers.zero_key_material.arm_if_idle(at);
                self.arm(peer, fresh, at);
            } else {
                hs.attempts += 1;
                ev.send_initiation = true;
                ev.retry = true;
            }
        }
        if timers.send_keepalive.fire(t) {
            ev.send_keepalive = true;
            if timers.keepalive_again.swap(false, Ordering::Relaxed) {
                timers
                    .send_keepalive
                    .arm_if_idle(self.at(now, KEEPALIVE_TIMEOUT));
            }
        }
        if timers.new_handshake.fire(t) {
            ev.send_initiation = true;
        }
        if timers.zero_key_material.fire(t) {
            self.zero_peer(peer);
        }
        if timers.persistent_keepalive.fire(t) && peer.persistent_keepalive() > 0 {
            ev.send_keepalive = true;
        }
        ev
    }

    /// The user set (or changed) the persistent keepalive: send one now if it is on, as wg does.
    pub fn persistent_keepalive_changed(&self, peer: &Peer, now: Instant) {
        let secs = peer.persistent_keepalive();
        if secs == 0 {
            peer.timers.persistent_keepalive.disarm();
        } else {
            // Due now: the timer driver must wake whatever it was waiting for.
            let at = self.clock.to_nanos(now);
            peer.timers.persistent_keepalive.set(at);
            self.arm(peer, true, at);
        }
    }

    fn on_authenticated_traversal(&self, peer: &Peer, now: Instant) {
        let secs = peer.persistent_keepalive();
        if secs > 0 {
            let at = self.at(now, Duration::from_secs(secs.into()));
            let fresh = peer.timers.persistent_keepalive.set(at);
            self.arm(peer, fresh, at);
        }
    }

    pub(super) fn on_authenticated_sent(&self, peer: &Peer, now: Instant) {
        peer.timers.send_keepalive.disarm();
        self.on_authenticated_traversal(peer, now);
    }

    pub(super) fn on_authenticated_received(&self, peer: &Peer, now: Instant) {
        peer.timers.new_handshake.disarm();
        self.on_authenticated_traversal(peer, now);
    }

    pub(super) fn on_session_derived(&self, peer: &Peer, now: Instant) {
        let at = self.at(now, REJECT_AFTER_TIME * 3);
        peer.timers.zero_key_material.set(at);
        self.arm(peer, true, at);
    }

    pub(super) fn on_handshake_complete(&self, peer: &Peer, now: Instant) {
        peer.timers.retransmit_handshake.disarm();
        peer.timers
            .sent_last_minute_handshake
            .store(false, Ordering::Relaxed);
        peer.handshake().attempts = 0;
        peer.last_handshake
            .store(self.clock.to_nanos(now), Ordering::Relaxed);
    }
}
