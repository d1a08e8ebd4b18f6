//! The deterministic pseudo-random byte stream the bulk transfer carries, and its verifier.
//!
//! The stream is one pseudo-random block repeated. Its length is prime, so it never lines up with
//! segment, MSS or buffer sizes: a dropped, duplicated, reordered or corrupted piece shows up as a
//! mismatch at its offset. Repeating a precomputed block keeps generation and checking at memcpy/memcmp
//! cost, so the two ends steal almost no CPU from the tunnel they are measuring.

/// Largest prime below 2^20.
const PERIOD: usize = 1_048_573;

/// The most bytes [`Pattern::chunk`] hands out at once.
pub const MAX_CHUNK: usize = 256 * 1024;

/// The stream both ends of the transfer derive from the same seed.
pub struct Pattern {
    /// One period followed by its first `MAX_CHUNK` bytes, so any chunk is one contiguous slice.
    bytes: Vec<u8>,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut bytes = Vec::with_capacity(PERIOD + MAX_CHUNK);
        while bytes.len() < PERIOD {
            bytes.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        bytes.truncate(PERIOD);
        bytes.extend_from_within(..MAX_CHUNK);
        Self { bytes }
    }

    /// The `len` stream bytes starting at stream position `offset` (`len` is capped at `MAX_CHUNK`).
    pub fn chunk(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.bytes[start..start + len.min(MAX_CHUNK)]
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast and well distributed; not cryptographic.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Checks received bytes against the stream, in order.
pub struct Verifier {
    pattern: Pattern,
    offset: u64,
}

impl Verifier {
    pub fn new(seed: u64) -> Self {
        Self {
            pattern: Pattern::new(seed),
            offset: 0,
        }
    }

    /// Bytes verified so far.
    pub fn verified(&self) -> u64 {
        self.offset
    }

    /// Verifies the next received bytes; on a mismatch, returns the stream offset of the first bad byte.
    pub fn check(&mut self, mut received: &[u8]) -> Result<(), u64> {
        while !received.is_empty() {
            let expected = self.pattern.chunk(self.offset, received.len());
            let (piece, rest) = received.split_at(expected.len());
            if piece != expected {
                let first_bad = piece
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(self.offset + first_bad as u64);
            }
            self.offset += piece.len() as u64;
            received = rest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produces `total` stream bytes the way the source does, in writes of `write_len`.
    fn stream(pattern: &Pattern, total: usize, write_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let want = write_len.min(total - out.len());
            out.extend_from_slice(pattern.chunk(out.len() as u64, want));
        }
        out
    }

    #[test]
    fn same_seed_same_stream_other_seed_differs() {
        let a = Pattern::new(7);
        let b = Pattern::new(7);
        let c = Pattern::new(8);
        assert_eq!(a.chunk(12345, 1000), b.chunk(12345, 1000));
        assert_ne!(a.chunk(12345, 1000), c.chunk(12345, 1000));
    }

    #[test]
    fn stream_is_continuous_across_the_period() {
        let pattern = Pattern::new(1);
        let data = stream(&pattern, 3 * PERIOD + 17, 100_003);
        assert_eq!(&data[PERIOD..PERIOD + 4096], &data[..4096]);
        let odd = stream(&pattern, 3 * PERIOD + 17, 65_536);
        assert_eq!(data, odd);
    }

    #[test]
    fn verifier_accepts_the_stream_in_any_read_sizes() {
        let pattern = Pattern::new(3);
        let data = stream(&pattern, 2 * PERIOD + 999, MAX_CHUNK);
        let mut verifier = Verifier::new(3);
        let mut rest = &data[..];
        let mut sizes = [1usize, 1448, 7, MAX_CHUNK + 5, 65_536, 3 * MAX_CHUNK]
            .iter()
            .cycle();
        while !rest.is_empty() {
            let (head, tail) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
            assert_eq!(verifier.check(head), Ok(()));
            rest = tail;
        }
        assert_eq!(verifier.verified(), data.len() as u64);
    }

    #[test]
    fn verifier_reports_first_corrupt_byte() {
        let pattern = Pattern::new(5);
        let mut data = stream(&pattern, 500_000, MAX_CHUNK);
        data[300_001] ^= 0x40;
        let mut verifier = Verifier::new(5);
        assert_eq!(verifier.check(&data), Err(300_001));
    }

    #[test]
    fn verifier_detects_a_dropped_segment() {
        let pattern = Pattern::new(9);
        let mut data = stream(&pattern, 200_000, MAX_CHUNK);
        data.drain(10_000..11_448);
        let mut verifier = Verifier::new(9);
        assert!(verifier.check(&data).is_err());
    }

    #[test]
    fn verifier_rejects_the_wrong_seed() {
        let data = stream(&Pattern::new(1), 10_000, MAX_CHUNK);
        assert!(Verifier::new(2).check(&data).is_err());
    }
}
