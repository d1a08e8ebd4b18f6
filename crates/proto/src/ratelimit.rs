//! Per-source handshake rate limiting while under load (as wireguard-go's ratelimiter): a source that
//! holds a valid cookie may still send at most ~20 handshake messages per second (burst 5), so one
//! address cannot make us do a Diffie-Hellman per packet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const PACKETS_PER_SECOND: u64 = 20;
const BURST: u64 = 5;
const NANOS_PER_PACKET: u64 = 1_000_000_000 / PACKETS_PER_SECOND;
const MAX_TOKENS: u64 = NANOS_PER_PACKET * BURST;
/// Sources tracked at once; past this, entries idle for a second are swept, and if that frees nothing
/// the table is cleared (an attacker spraying sources gains a fresh burst, never unbounded memory).
const MAX_ENTRIES: usize = 4096;

struct Bucket {
    tokens: u64,
    last: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// Takes one token for `src`; false if it has none left.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_ENTRIES && !self.buckets.contains_key(&src) {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(1));
            if self.buckets.len() >= MAX_ENTRIES {
                self.buckets.clear();
            }
        }
        let bucket = self.buckets.entry(src).or_insert(Bucket {
            tokens: MAX_TOKENS,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos() as u64;
        bucket.tokens = (bucket.tokens + elapsed).min(MAX_TOKENS);
        bucket.last = now;
        if bucket.tokens >= NANOS_PER_PACKET {
            bucket.tokens -= NANOS_PER_PACKET;
            true
        } else {
            false
        }
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
        assert_eq!(allowed, BURST as usize);
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
        assert!(rl.buckets.len() <= MAX_ENTRIES);
    }
}
