//! Reconnecting to a `tcp://` endpoint: exponential backoff with jitter, capped near 10 s.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A connection that lived this long was healthy: the next failure starts the backoff over.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// The wait before attempt number `failures + 1`: `FIRST_DELAY * 2^failures`, capped, then a random
/// point in its upper half (so clients cut off together do not come back together).
pub(crate) fn backoff(failures: u32) -> Duration {
    let full = FIRST_DELAY
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_DELAY);
    // Jitter needs no cryptographic randomness: a fresh RandomState is seeded from the OS.
    let random = RandomState::new().hash_one(failures);
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    full.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_near_ten_seconds() {
        assert!(backoff(0) <= FIRST_DELAY && backoff(0) >= FIRST_DELAY / 2);
        assert!(
            backoff(3) >= Duration::from_millis(400) && backoff(3) <= Duration::from_millis(800)
        );
        for failures in [7, 8, 20, 1000] {
            let d = backoff(failures);
            assert!(d >= MAX_DELAY / 2 && d <= MAX_DELAY, "{d:?}");
        }
    }
}
