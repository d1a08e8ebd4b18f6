//! The protocol's constants (whitepaper section 6) and per-peer timers.
//!
//! Timers are deadlines kept in atomics (nanoseconds since the device's epoch, 0 = not armed), so the data
//! path can arm and disarm them without a lock. Whoever drives the timers keeps a
//! [`crate::TimerSchedule`] and calls [`crate::Device::run_timers`], which fires the due peers' timers
//! and says when the next one is due. Arming a timer that was idle reports `true`, the signal that the
//! driver may need to hear of it: it happens once per quiet period, not per packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the random jitter added to handshake retries.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(334);
/// Handshake attempts before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
pub const MAX_TIMER_HANDSHAKES: u32 =
    (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// Initiations from one peer arriving faster than this are dropped (as wireguard-go does).
pub const HANDSHAKE_INITIATION_RATE: Duration = Duration::from_millis(20);

/// A point in time as nanoseconds since an epoch `Instant`, for storing in atomics.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new(epoch: Instant) -> Self {
        Self { epoch }
    }

    /// Never returns 0, which means "unset".
    pub fn to_nanos(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.epoch).as_nanos() as u64).max(1)
    }

    pub fn to_instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }
}

/// A one-shot deadline that any thread may arm, postpone or disarm.
#[derive(Default, Debug)]
pub struct Deadline(AtomicU64);

impl Deadline {
    /// Arms at `at` unless already armed; true if it was idle (the driver may need waking).
    pub fn arm_if_idle(&self, at: u64) -> bool {
        self.0
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Sets the deadline to `at`; true if it was idle before.
    pub fn set(&self, at: u64) -> bool {
        let old = self.0.load(Ordering::Relaxed);
        if old == at {
            return false;
        }
        self.0.store(at, Ordering::Relaxed);
        old == 0
    }

    pub fn disarm(&self) {
        if self.0.load(Ordering::Relaxed) != 0 {
            self.0.store(0, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    /// Disarms and returns true if the deadline has passed.
    pub fn fire(&self, now: u64) -> bool {
        match self.get() {
            Some(at) if at <= now => self
                .0
                .compare_exchange(at, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok(),
            _ => false,
        }
    }
}

/// The whitepaper's per-peer timers.
#[derive(Default, Debug)]
pub struct PeerTimers {
    /// Retry an unanswered initiation (REKEY_TIMEOUT + jitter).
    pub retransmit_handshake: Deadline,
    /// We received data and have not sent anything back: send a keepalive (KEEPALIVE_TIMEOUT).
    pub send_keepalive: Deadline,
    /// We sent data and heard nothing back: start a new handshake (KEEPALIVE + REKEY_TIMEOUT + jitter).
    pub new_handshake: Deadline,
    /// Erase keys after REJECT_AFTER_TIME * 3 without a new session.
    pub zero_key_material: Deadline,
    /// The user's persistent keepalive.
    pub persistent_keepalive: Deadline,
    /// Another keepalive is owed once the current send_keepalive fires.
    pub keepalive_again: std::sync::atomic::AtomicBool,
    /// Receiving on a session about to expire asked for a handshake; not again until one completes
    /// (wireguard-go's sentLastMinuteHandshake).
    pub sent_last_minute_handshake: std::sync::atomic::AtomicBool,
    /// The deadline the driver's schedule holds for this peer (0 = none): arming a timer earlier than
    /// this must tell the driver; arming one later need not (it looks again when this one comes).
    pub(crate) scheduled_at: AtomicU64,
    /// On the driver's queue of peers to look at (so a peer is queued at most once).
    pub(crate) queued: std::sync::atomic::AtomicBool,
}

impl PeerTimers {
    pub fn earliest(&self) -> Option<u64> {
        [
            &self.retransmit_handshake,
            &self.send_keepalive,
            &self.new_handshake,
            &self.zero_key_material,
            &self.persistent_keepalive,
        ]
        .iter()
        .filter_map(|d| d.get())
        .min()
    }

    pub fn disarm_all(&self) {
        self.retransmit_handshake.disarm();
        self.send_keepalive.disarm();
        self.new_handshake.disarm();
        self.zero_key_material.disarm();
        self.persistent_keepalive.disarm();
    }
}

/// Uniform random jitter in [0, REKEY_TIMEOUT_JITTER_MAX).
pub fn jitter() -> Duration {
    let r = crate::crypto::random_u32() as u64;
    Duration::from_nanos(r % REKEY_TIMEOUT_JITTER_MAX.as_nanos() as u64)
}
