//! WireGuard messages over a TCP stream: each message preceded by its length as a big-endian u16
//! (seed 001's framing, and that of the common udp-over-tcp relays).
//!
//! [`FrameBuffer`] is the receive side: reads land in one large buffer and frames are handed out where they
//! lie, mutable, so the caller decrypts them in place — no per-frame copy. Only the unfinished tail of a
//! stream is ever moved (to the front, when the buffer runs out of room). [`length_prefix`] is the send
//! side: the caller writes prefix and message with one vectored write.

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 2;
/// Largest message a frame can carry.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// Why a stream must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame of length 0: never sent by a WireGuard peer, so the stream is not one.
    ZeroLength,
}

/// The 2-byte prefix for a message of `len` bytes; `None` if it does not fit a frame.
pub fn length_prefix(len: usize) -> Option<[u8; PREFIX_LEN]> {
    (1..=MAX_FRAME)
        .contains(&len)
        .then(|| (len as u16).to_be_bytes())
}

/// A receive buffer that parses frames in place.
pub struct FrameBuffer {
    buf: Box<[u8]>,
    /// First byte not yet handed out.
    start: usize,
    /// One past the last byte received.
    end: usize,
}

impl Default for FrameBuffer {
    fn default() -> Self {
        Self::with_capacity(4 * (PREFIX_LEN + MAX_FRAME))
    }
}

impl FrameBuffer {
    /// `capacity` is raised to hold at least one largest frame.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(PREFIX_LEN + MAX_FRAME);
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes received but not yet handed out as frames.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Where the next read should write. Never empty: if the free tail is shorter than one largest
    /// frame, the unfinished frame is first moved to the front.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < PREFIX_LEN + MAX_FRAME && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that a read wrote `n` bytes into [`FrameBuffer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, mutable in place, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, FrameError> {
        Ok(self.next_frame_at()?.map(move |range| &mut self.buf[range]))
    }

    /// Where the next complete message lies in [`FrameBuffer::bytes_mut`], or `None` until more bytes
    /// arrive. The range (and every earlier one) keeps its bytes until the next [`FrameBuffer::spare`]:
    /// a caller may hand several messages on where they lie, each with the prefix and whatever it
    /// no longer needs of the messages before it in front.
    pub fn next_frame_at(&mut self) -> Result<Option<std::ops::Range<usize>>, FrameError> {
        let avail = &self.buf[self.start..self.end];
        let Some(prefix) = avail.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let len = u16::from_be_bytes([prefix[0], prefix[1]]) as usize;
        if len == 0 {
            return Err(FrameError::ZeroLength);
        }
        if avail.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let from = self.start + PREFIX_LEN;
        self.start = from + len;
        if self.start == self.end {
            // Everything handed out: the next read reuses the buffer from the front, nothing to move.
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(from..from + len))
    }

    /// The whole buffer, which the ranges of [`FrameBuffer::next_frame_at`] index.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(&length_prefix(m.len()).unwrap());
            out.extend_from_slice(m);
        }
        out
    }

    /// Feeds `bytes` in chunks of the given sizes and collects the frames.
    fn feed(
        fb: &mut FrameBuffer,
        bytes: &[u8],
        chunks: &[usize],
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut sizes = chunks.iter().copied().cycle();
        while at < bytes.len() {
            let spare = fb.spare();
            let n = sizes
                .next()
                .unwrap_or(1)
                .clamp(1, spare.len())
                .min(bytes.len() - at);
            spare[..n].copy_from_slice(&bytes[at..at + n]);
            fb.filled(n);
            at += n;
            while let Some(frame) = fb.next_frame()? {
                out.push(frame.to_vec());
            }
        }
        Ok(out)
    }

    #[test]
    fn many_frames_in_one_read_and_one_split_across_reads() {
        let msgs = vec![vec![1; 148], vec![2; 92], vec![3; 32]];
        let bytes = stream(&msgs);
        assert_eq!(
            feed(&mut FrameBuffer::default(), &bytes, &[bytes.len()]).unwrap(),
            msgs
        );
        assert_eq!(
            feed(&mut FrameBuffer::default(), &bytes, &[1]).unwrap(),
            msgs
        );
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut fb = FrameBuffer::default();
        assert_eq!(feed(&mut fb, &[0, 0, 1], &[3]), Err(FrameError::ZeroLength));
    }

    #[test]
    fn largest_frame_fits_after_compaction() {
        let msgs = vec![
            vec![7; 10],
            vec![8; MAX_FRAME],
            vec![9; MAX_FRAME],
            vec![1; 3],
        ];
        let bytes = stream(&msgs);
        let mut fb = FrameBuffer::with_capacity(0);
        assert_eq!(feed(&mut fb, &bytes, &[4096, 65_000, 17]).unwrap(), msgs);
        assert_eq!(fb.pending(), 0);
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(length_prefix(0), None);
        assert_eq!(length_prefix(MAX_FRAME + 1), None);
        assert_eq!(length_prefix(0x0102), Some([1, 2]));
    }

    proptest! {
        /// Any split of a valid frame stream yields the same messages.
        #[test]
        fn any_split_yields_the_same_messages(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..2000), 0..20),
            chunks in proptest::collection::vec(1usize..5000, 1..10),
            capacity in 0usize..200_000,
        ) {
            let bytes = stream(&msgs);
            let got = feed(&mut FrameBuffer::with_capacity(capacity), &bytes, &chunks).unwrap();
            prop_assert_eq!(got, msgs);
        }

        /// Any byte string is handled without a panic, and never yields more bytes than it holds.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            chunks in proptest::collection::vec(1usize..700, 1..6),
        ) {
            let mut fb = FrameBuffer::default();
            if let Ok(frames) = feed(&mut fb, &bytes, &chunks) {
                let total: usize = frames.iter().map(|f| f.len() + PREFIX_LEN).sum();
                prop_assert!(total + fb.pending() == bytes.len());
            }
        }
    }
}
