//! The anti-replay sliding window (RFC 6479 style, as wireguard-go and the kernel do it).
//!
//! A ring of 64-bit blocks: advancing the window clears whole blocks instead of shifting bits, so a check
//! is a few instructions and no loop in the common case.

const BLOCK_BITS: u64 = 64;
const RING_BLOCKS: usize = 128;
/// How far behind the newest counter a packet may arrive and still be accepted.
pub const WINDOW_SIZE: u64 = (RING_BLOCKS as u64 - 1) * BLOCK_BITS;

#[derive(Clone)]
pub struct ReplayWindow {
    /// One past the greatest counter seen so far (0 = nothing seen).
    next: u64,
    ring: [u64; RING_BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            next: 0,
            ring: [0; RING_BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Marks `counter` as seen; false if it was seen before or is too old. `limit` is the first counter
    /// that is never valid (REJECT_AFTER_MESSAGES).
    pub fn check_and_update(&mut self, counter: u64, limit: u64) -> bool {
        if counter >= limit {
            return false;
        }
        let block = counter / BLOCK_BITS;
        if counter >= self.next {
            // The ring is all zeros until the first packet; after it, clear every block between the
            // newest seen counter's block and this one (at most the whole ring).
            if self.next > 0 {
                let newest = (self.next - 1) / BLOCK_BITS;
                let advance = (block - newest).min(RING_BLOCKS as u64);
                for i in 1..=advance {
                    self.ring[((newest + i) % RING_BLOCKS as u64) as usize] = 0;
                }
            }
            self.next = counter + 1;
        } else if self.next - counter > WINDOW_SIZE {
            return false;
        }
        let index = (block % RING_BLOCKS as u64) as usize;
        let bit = 1u64 << (counter % BLOCK_BITS);
        let seen = self.ring[index] & bit != 0;
        self.ring[index] |= bit;
        !seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const LIMIT: u64 = u64::MAX - (1 << 13);

    #[test]
    fn accepts_each_once() {
        let mut w = ReplayWindow::default();
        assert!(w.check_and_update(0, LIMIT));
        assert!(!w.check_and_update(0, LIMIT));
        assert!(w.check_and_update(5, LIMIT));
        assert!(w.check_and_update(3, LIMIT));
        assert!(!w.check_and_update(3, LIMIT));
        assert!(!w.check_and_update(5, LIMIT));
    }

    #[test]
    fn window_is_at_least_2048_wide() {
        let mut w = ReplayWindow::default();
        assert!(w.check_and_update(10_000, LIMIT));
        assert!(w.check_and_update(10_000 - 2048, LIMIT));
        assert!(w.check_and_update(10_000 - WINDOW_SIZE + 1, LIMIT));
        assert!(
            !w.check_and_update(10_000 - WINDOW_SIZE - 1, LIMIT),
            "older than the window"
        );
        assert!(
            !w.check_and_update(LIMIT, LIMIT),
            "past REJECT_AFTER_MESSAGES"
        );
    }

    #[test]
    fn in_order_stream_survives_ring_wrap() {
        let mut w = ReplayWindow::default();
        for c in 0..(RING_BLOCKS as u64 * BLOCK_BITS * 5) {
            assert!(w.check_and_update(c, LIMIT), "counter {c} rejected");
        }
    }

    #[test]
    fn big_jump_clears_ring() {
        let mut w = ReplayWindow::default();
        for c in 0..200 {
            assert!(w.check_and_update(c, LIMIT));
        }
        assert!(w.check_and_update(1_000_000, LIMIT));
        assert!(
            w.check_and_update(1_000_000 - 64 * 100, LIMIT),
            "stale bits were cleared"
        );
    }

    proptest! {
        /// Agrees with a naive model: accept iff unseen, below the limit and within the window.
        #[test]
        fn agrees_with_reference(counters in proptest::collection::vec(0u64..40_000, 1..3000)) {
            let mut w = ReplayWindow::default();
            let mut seen = HashSet::new();
            let mut max: Option<u64> = None;
            for c in counters {
                let expected = !seen.contains(&c) && max.is_none_or(|m| c > m || m - c < WINDOW_SIZE);
                prop_assert_eq!(w.check_and_update(c, LIMIT), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
