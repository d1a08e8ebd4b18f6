//! CoDel (RFC 8289): which packets to drop so a queue's delay stays near a target instead of
//! standing at whatever the buffer holds. Sans-IO: the caller measures each packet's sojourn time (how
//! long it waited) and asks at dequeue; nothing here reads a clock.
//!
//! Why our own: the algorithm is ~40 lines of state and the crates that carry it are qdiscs built
//! around their own queues; here the queue is the kernel's (a TCP socket's receive queue) and only the
//! drop decision is needed.

use std::time::{Duration, Instant};

/// Target delay and interval. The defaults are RFC 8289's (5 ms, 100 ms): the interval is about the
/// round trip of the flows inside, so they see a drop and back off before the next one comes.
#[derive(Debug, Clone, Copy)]
pub struct CodelParams {
    /// Delay allowed to stand: below it, nothing is dropped.
    pub target: Duration,
    /// How long the delay must stay above target before the first drop, and the base of the spacing
    /// between drops (interval / sqrt(drops so far)).
    pub interval: Duration,
}

impl Default for CodelParams {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

/// One queue's CoDel state.
#[derive(Debug, Clone)]
pub struct Codel {
    params: CodelParams,
    /// When the delay, above target since then, will have stood for an interval.
    first_above: Option<Instant>,
    dropping: bool,
    /// Next drop while dropping.
    drop_next: Option<Instant>,
    count: u32,
    last_count: u32,
}

impl Codel {
    pub fn new(params: CodelParams) -> Self {
        Self {
            params,
            first_above: None,
            dropping: false,
            drop_next: None,
            count: 0,
            last_count: 0,
        }
    }

    /// Whether the packet leaving the queue now, after waiting `sojourn`, should be dropped.
    pub fn should_drop(&mut self, sojourn: Duration, now: Instant) -> bool {
        let ok_to_drop = self.above_target_long_enough(sojourn, now);
        if self.dropping {
            if !ok_to_drop {
                self.dropping = false;
                return false;
            }
            let due = self.drop_next.is_none_or(|next| now >= next);
            if due {
                self.count = self.count.saturating_add(1);
                let from = self.drop_next.unwrap_or(now);
                self.drop_next = Some(self.control_law(from));
            }
            return due;
        }
        if !ok_to_drop {
            return false;
        }
        // Enter the dropping state. If it was left recently, resume near the drop rate it had
        // reached (the RFC's "count - lastcount" rule), so a persistent overload is not relearned.
        self.dropping = true;
        let delta = self.count.saturating_sub(self.last_count);
        let recent = self
            .drop_next
            .is_some_and(|next| now.saturating_duration_since(next) < self.params.interval * 16);
        self.count = if delta > 1 && recent { delta } else { 1 };
        self.last_count = self.count;
        self.drop_next = Some(self.control_law(now));
        true
    }

    /// Whether the controller is in its dropping state.
    #[cfg(test)]
    pub fn dropping(&self) -> bool {
        self.dropping
    }

    fn above_target_long_enough(&mut self, sojourn: Duration, now: Instant) -> bool {
        if sojourn < self.params.target {
            self.first_above = None;
            return false;
        }
        match self.first_above {
            None => {
                self.first_above = Some(now + self.params.interval);
                false
            }
            Some(at) => now >= at,
        }
    }

    /// The time of the next drop: `t + interval / sqrt(count)`.
    fn control_law(&self, t: Instant) -> Instant {
        let count = f64::from(self.count.max(1));
        t + self.params.interval.div_f64(count.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Packets leaving every millisecond with the given sojourn; which of them were dropped.
    fn run(codel: &mut Codel, start: Instant, millis: u64, sojourn: Duration) -> Vec<u64> {
        (0..millis)
            .filter(|&i| codel.should_drop(sojourn, start + MS * i as u32))
            .collect()
    }

    #[test]
    fn a_short_queue_is_never_touched() {
        let mut codel = Codel::new(CodelParams::default());
        let drops = run(&mut codel, Instant::now(), 10_000, MS * 4);
        assert!(drops.is_empty());
    }

    #[test]
    fn a_burst_shorter_than_an_interval_is_let_through() {
        let mut codel = Codel::new(CodelParams::default());
        let t0 = Instant::now();
        assert!(run(&mut codel, t0, 90, MS * 50).is_empty());
        // Back below target: the clock starts again.
        assert!(run(&mut codel, t0 + MS * 90, 10, MS).is_empty());
        assert!(run(&mut codel, t0 + MS * 100, 90, MS * 50).is_empty());
    }

    #[test]
    fn a_standing_queue_is_dropped_ever_faster() {
        let mut codel = Codel::new(CodelParams::default());
        let t0 = Instant::now();
        let drops = run(&mut codel, t0, 1_000, MS * 20);
        // First drop one interval after the delay rose above target (it was first seen at 0 ms).
        assert_eq!(drops[0], 100);
        // Then at interval / sqrt(n): 100 ms, 70.7 ms, 57.7 ms, ... apart.
        let gaps: Vec<u64> = drops.windows(2).map(|w| w[1] - w[0]).collect();
        assert!((99..=101).contains(&gaps[0]), "{gaps:?}");
        assert!((70..=72).contains(&gaps[1]), "{gaps:?}");
        assert!(gaps.windows(2).all(|w| w[1] <= w[0]), "{gaps:?}");
        assert!(codel.dropping());
    }

    #[test]
    fn dropping_stops_once_the_delay_is_below_target() {
        let mut codel = Codel::new(CodelParams::default());
        let t0 = Instant::now();
        assert!(!run(&mut codel, t0, 500, MS * 20).is_empty());
        assert!(!codel.should_drop(MS * 2, t0 + MS * 500));
        assert!(!codel.dropping());
        assert!(run(&mut codel, t0 + MS * 501, 1_000, MS * 2).is_empty());
    }

    #[test]
    fn a_return_soon_after_resumes_near_the_old_rate() {
        let mut codel = Codel::new(CodelParams::default());
        let t0 = Instant::now();
        let first = run(&mut codel, t0, 2_000, MS * 20).len();
        assert!(first > 10);
        // A short dip below target, then the queue is back.
        assert!(!codel.should_drop(MS, t0 + MS * 2_000));
        let again = run(&mut codel, t0 + MS * 2_001, 1_000, MS * 20);
        let gaps: Vec<u64> = again.windows(2).map(|w| w[1] - w[0]).collect();
        // Not 100 ms apart as from scratch: the count carried over.
        assert!(gaps[0] < 50, "{gaps:?}");
    }
}
