//! The mac checks every handshake message passes: mac1 always, and, while the device is under load
//! (measured by [`LoadMeter`]), mac2 or a cookie reply within the cookie budget.

use super::{Device, Identity, Incoming, RecvDrop, lock};
use crate::cookie::CookieChecker;
use crate::endpoint::Endpoint;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Whether a handshake already passed [`Device::screen_handshake`] (all of [`Device::check_macs`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Macs {
    Screened,
    Unchecked,
}

/// Decides when to demand cookies. A backlog reported by whoever queues handshake messages (the
/// engine's handshake queue) puts the device under load for a second, as in the kernel and wireguard-go:
/// a burst the handshake thread keeps up with, however large, is answered without a cookie round. Once
/// under load, more messages with a valid mac1 per second than the threshold keep it there: a flood that
/// is screened at the workers no longer reaches the queue, so the backlog alone would let the load lapse
/// each second and the flood back in.
pub(super) struct LoadMeter {
    pub(super) window_start: AtomicU64,
    pub(super) count: AtomicU32,
    pub(super) under_load_until: AtomicU64,
    pub(super) threshold: AtomicU32,
}

impl LoadMeter {
    pub(super) fn backlog(&self, now: u64) {
        self.under_load_until
            .fetch_max(now + 1_000_000_000, Ordering::Relaxed);
    }

    /// True while the device demands cookies; records nothing.
    fn is_under_load(&self, now: u64) -> bool {
        now < self.under_load_until.load(Ordering::Relaxed)
    }

    fn record(&self, now: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) > 1_000_000_000 {
            self.window_start.store(now, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let under_load = self.is_under_load(now);
        if under_load && n > self.threshold.load(Ordering::Relaxed) {
            self.under_load_until
                .fetch_max(now + 1_000_000_000, Ordering::Relaxed);
        }
        under_load
    }
}

impl Device {
    /// Checks mac1 and, under load, mac2; a handshake without a valid mac2 is answered with a cookie
    /// reply (written into `reply`) while the cookie budget lasts. Nothing for a screened message.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_macs(
        &self,
        identity: &Identity,
        src: Endpoint,
        msg: &[u8],
        sender: u32,
        now: Instant,
        reply: &mut [u8],
        macs: Macs,
    ) -> Result<(), Incoming> {
        if macs == Macs::Screened {
            return Ok(());
        }
        let checker = &identity.checker;
        let now_nanos = self.clock.to_nanos(now);
        // Under load, a message without mac2 can earn nothing but a cookie reply: if its source's budget
        // is spent, it is dropped whatever its mac1 says, so mac1 is not computed. Under a valid-mac1
        // flood that skips the two BLAKE2s compressions that were most of what a flood datagram cost.
        // Such drops do not feed the load meter (only a valid mac1 does), so a flood that stops lets the
        // load end on time; one that goes on re-arms it within a threshold's worth of messages.
        if self.load.is_under_load(now_nanos)
            && !CookieChecker::carries_mac2(msg)
            && !lock(&self.cookie_limiter).would_allow(src.addr, now)
        {
            return Err(Incoming::Dropped(RecvDrop::CookieRateLimited));
        }
        if !checker.check_mac1(msg) {
            return Err(Incoming::Dropped(RecvDrop::BadMac1));
        }
        if !self.load.record(now_nanos) {
            return Ok(());
        }
        if checker.check_mac2(msg, &src.addr, now) {
            return if lock(&self.rate_limiter).allow(src.addr.ip(), now) {
                Ok(())
            } else {
                Err(Incoming::Dropped(RecvDrop::RateLimited))
            };
        }
        // The budget first: a source over it costs nothing more than this look-up.
        if !lock(&self.cookie_limiter).allow(src.addr, now) {
            return Err(Incoming::Dropped(RecvDrop::CookieRateLimited));
        }
        let cookie = checker.create_reply(msg, sender, &src.addr, now);
        match cookie.and_then(|c| Some((c, reply.get_mut(..c.len())?))) {
            Some((cookie, out)) => {
                out.copy_from_slice(&cookie);
                Err(Incoming::Reply {
                    len: cookie.len(),
                    peer: None,
                })
            }
            None => Err(Incoming::Dropped(RecvDrop::CookieSent)),
        }
    }
}
