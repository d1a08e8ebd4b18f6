//! Transport sessions (keypairs): immutable keys, an atomic send counter and a tiny replay-window lock,
//! so any worker can encrypt or decrypt for any peer without waiting on another.

use crate::crypto::{AeadKey, TAG_LEN};
use crate::messages::{DATA_HEADER_LEN, TYPE_DATA, data, le64};
use crate::noise::SessionKeys;
use crate::replay::ReplayWindow;
use crate::timers::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Keypair {
    send: AeadKey,
    recv: AeadKey,
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
    /// Our index: the receiver index of data the peer sends us with this keypair.
    pub local_index: u32,
    /// The peer's index: what we put in the header of data we send.
    pub remote_index: u32,
    pub created: Instant,
    /// Whether we initiated the handshake that made this keypair (only the initiator rekeys on age).
    pub we_initiated: bool,
}

/// Why a data message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The keypair is older than REJECT_AFTER_TIME.
    Expired,
    /// Authentication failed: tampered, truncated or not for this key.
    Auth,
    /// Counter already seen, too old, or beyond REJECT_AFTER_MESSAGES.
    Replay,
}

impl Keypair {
    pub fn new(
        keys: &SessionKeys,
        local_index: u32,
        remote_index: u32,
        we_initiated: bool,
        now: Instant,
    ) -> Self {
        Self {
            send: AeadKey::new(&keys.send),
            recv: AeadKey::new(&keys.recv),
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
            local_index,
            remote_index,
            created: now,
            we_initiated,
        }
    }

    /// Messages sent with this keypair so far.
    pub fn sent(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    pub fn age(&self, now: Instant) -> std::time::Duration {
        now.saturating_duration_since(self.created)
    }

    /// Whether this keypair may still encrypt.
    pub fn can_send(&self, now: Instant) -> bool {
        self.sent() < REJECT_AFTER_MESSAGES && self.age(now) < REJECT_AFTER_TIME
    }

    /// Encrypts in place. `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` holds the plaintext; the buffer
    /// must have room for the padding to a multiple of 16 (capped at `mtu`) and the tag. Returns the
    /// message length, or `None` when the keypair is exhausted or expired.
    pub fn seal(&self, buf: &mut [u8], len: usize, mtu: usize, now: Instant) -> Option<usize> {
        if self.age(now) >= REJECT_AFTER_TIME {
            return None;
        }
        let counter = self.send_counter.fetch_add(1, Ordering::Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            return None;
        }
        let padded = len.next_multiple_of(16).min(mtu.max(len));
        let total = DATA_HEADER_LEN + padded + TAG_LEN;
        let buf = buf.get_mut(..total)?;
        buf[DATA_HEADER_LEN + len..DATA_HEADER_LEN + padded].fill(0);
        buf[..4].copy_from_slice(&[TYPE_DATA, 0, 0, 0]);
        buf[data::RECEIVER..data::RECEIVER + 4].copy_from_slice(&self.remote_index.to_le_bytes());
        buf[data::COUNTER..data::COUNTER + 8].copy_from_slice(&counter.to_le_bytes());
        let (body, tag) = buf[DATA_HEADER_LEN..].split_at_mut(padded);
        tag.copy_from_slice(&self.send.seal(counter, &[], body));
        Some(total)
    }

    /// Authenticates and decrypts a data message in place, then checks the replay window. On success the
    /// plaintext (with any padding) is `msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n]` for the returned `n`.
    pub fn open(&self, msg: &mut [u8], now: Instant) -> Result<usize, OpenError> {
        if self.age(now) >= REJECT_AFTER_TIME {
            return Err(OpenError::Expired);
        }
        let counter = le64(msg, data::COUNTER);
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(OpenError::Replay);
        }
        let n = self
            .recv
            .open(counter, &[], &mut msg[DATA_HEADER_LEN..])
            .ok_or(OpenError::Auth)?;
        // The only shared mutable state per packet: a few instructions under the lock, after authentication.
        let fresh = self
            .replay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .check_and_update(counter, REJECT_AFTER_MESSAGES);
        if fresh { Ok(n) } else { Err(OpenError::Replay) }
    }
}
