//! When to use UDP GSO on a socket. The kernel probe says whether GSO exists; a send can still fail
//! with EINVAL or EIO for reasons that come and go — a route whose MTU is below the segment size, a
//! device without the offload. quinn-udp then turns GSO off for the socket's lifetime; we keep our own
//! switch instead: off after a failure, tried again after [`GSO_RETRY_AFTER`], so a passing problem
//! (an underlay MTU fixed, a route back) does not cost GSO until the daemon restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a failed GSO send keeps a socket on one datagram per send before GSO is tried again.
pub const GSO_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct GsoSwitch {
    /// Datagrams per send the probe found (1: no GSO on this system).
    probed: usize,
    epoch: Instant,
    /// Nanoseconds since `epoch` until which GSO stays off; 0: on.
    off_until: AtomicU64,
}

impl GsoSwitch {
    pub(crate) fn new(probed: usize, now: Instant) -> Self {
        Self {
            probed: probed.max(1),
            epoch: now,
            off_until: AtomicU64::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.epoch).as_nanos() as u64).max(1)
    }

    /// Datagrams one send may carry now. The clock is read only while GSO is off.
    pub(crate) fn segments(&self, now: impl FnOnce() -> Instant) -> usize {
        let until = self.off_until.load(Ordering::Relaxed);
        if until == 0 {
            return self.probed;
        }
        if self.nanos(now()) < until {
            return 1;
        }
        // Time to try again; one failure more turns it off again.
        self.off_until.store(0, Ordering::Relaxed);
        self.probed
    }

    /// A GSO send failed with an error that names the offload (EINVAL, EIO).
    pub(crate) fn failed(&self, now: Instant) {
        self.off_until
            .store(self.nanos(now + GSO_RETRY_AFTER), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_turns_gso_off_until_the_retry_time() {
        let t0 = Instant::now();
        let gso = GsoSwitch::new(64, t0);
        assert_eq!(gso.segments(|| t0), 64);
        gso.failed(t0);
        assert_eq!(gso.segments(|| t0 + Duration::from_secs(1)), 1);
        assert_eq!(
            gso.segments(|| t0 + GSO_RETRY_AFTER - Duration::from_millis(1)),
            1
        );
        assert_eq!(gso.segments(|| t0 + GSO_RETRY_AFTER), 64, "tried again");
        let t1 = t0 + GSO_RETRY_AFTER;
        gso.failed(t1);
        assert_eq!(
            gso.segments(|| t1 + Duration::from_secs(29)),
            1,
            "and off again"
        );
    }

    #[test]
    fn without_gso_there_is_nothing_to_switch() {
        let t0 = Instant::now();
        let gso = GsoSwitch::new(0, t0);
        assert_eq!(gso.segments(|| t0), 1);
    }
}
