//! Token buckets for handshake traffic under load.
//!
//! - [`RateLimiter`]: per source address, as wireguard-go's and the kernel's ratelimiter: a source that
//!   holds a valid cookie may still send at most ~20 handshake messages per second (burst 5), so one
//!   address cannot make us do a Diffie-Hellman per packet.
//! - [`CookieReplyLimiter`]: cookie replies, per source (address and port: a cookie is bound to both, and
//!   clients behind one NAT must not starve each other) and in total, so a flood with valid mac1 cannot
//!   turn us into a reflector or cost a core in replies.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Sources tracked at once; past this, entries idle for a second are swept, and if that frees nothing
/// the table is cleared (an attacker spraying sources gains a fresh burst, never unbounded memory).
const MAX_ENTRIES: usize = 4096;

/// A token bucket measured in nanoseconds of credit: `rate` tokens per second, at most `burst` saved.
#[derive(Clone, Copy)]
struct Bucket {
    credit: u64,
    last: Instant,
}

#[derive(Clone, Copy)]
struct Rate {
    nanos_per_token: u64,
    max_credit: u64,
}

impl Rate {
    const fn new(per_second: u64, burst: u64) -> Self {
        let nanos_per_token = 1_000_000_000 / per_second;
        Self {
            nanos_per_token,
            max_credit: nanos_per_token * burst,
        }
    }

    fn full(self, now: Instant) -> Bucket {
        Bucket {
            credit: self.max_credit,
            last: now,
        }
    }

    /// True if `bucket` holds a token now; takes nothing.
    fn holds_token(self, bucket: &Bucket, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        bucket.credit.saturating_add(elapsed).min(self.max_credit) >= self.nanos_per_token
    }

    fn take(self, bucket: &mut Bucket, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        bucket.credit = bucket.credit.saturating_add(elapsed).min(self.max_credit);
        bucket.last = now;
        if bucket.credit >= self.nanos_per_token {
            bucket.credit -= self.nanos_per_token;
            true
        } else {
            false
        }
    }
}

/// Buckets keyed by source, bounded in number.
struct Buckets<K> {
    rate: Rate,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            map: HashMap::new(),
        }
    }

    fn allow(&mut self, key: K, now: Instant) -> bool {
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(&key) {
            self.map
                .retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(1));
            if self.map.len() >= MAX_ENTRIES {
                self.map.clear();
            }
        }
        let rate = self.rate;
        let bucket = self.map.entry(key).or_insert_with(|| rate.full(now));
        rate.take(bucket, now)
    }

    /// True if `allow(key, now)` would succeed; changes nothing. A source not yet tracked starts full.
    fn would_allow(&self, key: K, now: Instant) -> bool {
        self.map
            .get(&key)
            .is_none_or(|bucket| self.rate.holds_token(bucket, now))
    }
}

/// Handshakes with a valid cookie, per source address: 20/s, burst 5.
pub struct RateLimiter {
    buckets: Buckets<IpAddr>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            buckets: Buckets::new(Rate::new(20, 5)),
        }
    }
}

impl RateLimiter {
    /// Takes one token for `src`; false if it has none left.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        self.buckets.allow(src, now)
    }
}

/// Cookie replies per source (address and port) per second, and the burst a source may save.
pub const COOKIE_REPLIES_PER_SOURCE: (u64, u64) = (10, 5);
/// Cookie replies per second in total, and the burst.
pub const COOKIE_REPLIES_TOTAL: (u64, u64) = (5_000, 500);

/// Cookie replies, per source and in total.
pub struct CookieReplyLimiter {
    per_source: Buckets<SocketAddr>,
    total_rate: Rate,
    total: Option<Bucket>,
}

impl Default for CookieReplyLimiter {
    fn default() -> Self {
        let (per_second, burst) = COOKIE_REPLIES_PER_SOURCE;
        let (total_per_second, total_burst) = COOKIE_REPLIES_TOTAL;
        Self {
            per_source: Buckets::new(Rate::new(per_second, burst)),
            total_rate: Rate::new(total_per_second, total_burst),
            total: None,
        }
    }
}

impl CookieReplyLimiter {
    /// True if a cookie reply may go to `src` now (and takes the tokens for it).
    pub fn allow(&mut self, src: SocketAddr, now: Instant) -> bool {
        let rate = self.total_rate;
        let total = self.total.get_or_insert_with(|| rate.full(now));
        // The per-source check first: a source over its own budget does not spend the shared one.
        self.per_source.allow(src, now) && rate.take(total, now)
    }

    /// True if [`allow`](Self::allow) would succeed now; takes nothing. Lets a caller skip the work of
    /// checking a message that could only have earned a reply the budget no longer has.
    pub fn would_allow(&self, src: SocketAddr, now: Instant) -> bool {
        let total_holds = self
            .total
            .as_ref()
            .is_none_or(|total| self.total_rate.holds_token(total, now));
        total_holds && self.per_source.would_allow(src, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut rl = RateLimiter::default();
        let now = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let allowed = (0..20).filter(|_| rl.allow(a, now)).count();
        assert_eq!(allowed, 5);
        assert!(
            rl.allow(a, now + Duration::from_millis(60)),
            "a token per 50 ms"
        );
        assert!(
            rl.allow([10, 0, 0, 2].into(), now),
            "other sources are independent"
        );
    }

    #[test]
    fn table_stays_bounded() {
        let mut rl = RateLimiter::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 * 3) {
            rl.allow(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(rl.buckets.map.len() <= MAX_ENTRIES);
    }

    #[test]
    fn would_allow_predicts_allow_and_takes_nothing() {
        let mut cl = CookieReplyLimiter::default();
        let now = Instant::now();
        let src = SocketAddr::from(([10, 0, 0, 1], 1));
        let (_, burst) = COOKIE_REPLIES_PER_SOURCE;
        for _ in 0..burst {
            assert!(cl.would_allow(src, now) && cl.would_allow(src, now));
            assert!(cl.allow(src, now));
        }
        assert!(!cl.would_allow(src, now));
        assert!(!cl.allow(src, now));
        assert!(cl.would_allow(src, now + Duration::from_millis(110)));
        assert!(cl.would_allow(SocketAddr::from(([10, 0, 0, 1], 2)), now));
    }

    #[test]
    fn cookie_replies_are_limited_per_source_and_in_total() {
        let mut cl = CookieReplyLimiter::default();
        let now = Instant::now();
        let src = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        let (per_second, burst) = COOKIE_REPLIES_PER_SOURCE;
        let one = (0..100).filter(|_| cl.allow(src(1), now)).count() as u64;
        assert_eq!(one, burst, "one source gets its burst");
        assert!(
            cl.allow(src(2), now),
            "another port of the same host is its own source"
        );
        let later = now + Duration::from_millis(1000 / per_second + 1);
        assert!(cl.allow(src(1), later), "the source refills at its rate");

        // Many sources at once: the total caps them all, and a second later it has refilled.
        let (total_per_second, total_burst) = COOKIE_REPLIES_TOTAL;
        let mut cl = CookieReplyLimiter::default();
        let sent = (0..4000u16).filter(|&p| cl.allow(src(p), now)).count() as u64;
        assert_eq!(sent, total_burst);
        let second = now + Duration::from_secs(1);
        let sent = (0..4000u16).filter(|&p| cl.allow(src(p), second)).count() as u64;
        assert!(sent <= total_burst, "{sent} > burst {total_burst}");
        assert!(total_per_second >= total_burst);
    }
}
