//! WireGuard wire formats: message types, sizes and field offsets, and a classifier that never panics.
//!
//! Messages are handled as fixed-size byte arrays with named offsets (smoltcp style) rather than parsed
//! into owned structs: no allocation, and the MAC checks run over the exact bytes received.

pub const TYPE_INITIATION: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;
pub const TYPE_COOKIE_REPLY: u8 = 3;
pub const TYPE_DATA: u8 = 4;

pub const INITIATION_LEN: usize = 148;
pub const RESPONSE_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
/// Type, reserved, receiver index, counter.
pub const DATA_HEADER_LEN: usize = 16;
/// Smallest data message: header and the tag of an empty (keepalive) payload.
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + crate::crypto::TAG_LEN;

/// Handshake initiation field offsets.
pub mod init {
    pub const SENDER: usize = 4;
    pub const EPHEMERAL: usize = 8;
    pub const STATIC: usize = 40; // 32 + 16 tag
    pub const TIMESTAMP: usize = 88; // 12 + 16 tag
    pub const MAC1: usize = 116;
    pub const MAC2: usize = 132;
}

/// Handshake response field offsets.
pub mod resp {
    pub const SENDER: usize = 4;
    pub const RECEIVER: usize = 8;
    pub const EPHEMERAL: usize = 12;
    pub const EMPTY: usize = 44; // 0 + 16 tag
    pub const MAC1: usize = 60;
    pub const MAC2: usize = 76;
}

/// Cookie reply field offsets.
pub mod cookie {
    pub const RECEIVER: usize = 4;
    pub const NONCE: usize = 8;
    pub const COOKIE: usize = 32; // 16 + 16 tag
}

/// Data message field offsets.
pub mod data {
    pub const RECEIVER: usize = 4;
    pub const COUNTER: usize = 8;
}

/// What a datagram claims to be, judged by its type byte, reserved bytes and length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Initiation,
    Response,
    CookieReply,
    Data,
}

/// Classifies a datagram; `None` for anything that is not a well-formed WireGuard message shape.
pub fn classify(packet: &[u8]) -> Option<Kind> {
    let (&ty, rest) = packet.split_first()?;
    if rest.get(..3)? != [0, 0, 0] {
        return None;
    }
    match (ty, packet.len()) {
        (TYPE_INITIATION, INITIATION_LEN) => Some(Kind::Initiation),
        (TYPE_RESPONSE, RESPONSE_LEN) => Some(Kind::Response),
        (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN) => Some(Kind::CookieReply),
        (TYPE_DATA, n) if n >= DATA_MIN_LEN => Some(Kind::Data),
        _ => None,
    }
}

/// Reads a little-endian u32 at `at`; 0 when the packet is too short (callers normally checked the
/// length through [`classify`], but public functions built on this must be safe on any input).
pub(crate) fn le32(packet: &[u8], at: usize) -> u32 {
    match packet.get(at..at.saturating_add(4)) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

pub(crate) fn le64(packet: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&packet[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The receiver index of a response, cookie reply or data message (the index we chose).
pub fn receiver_index(kind: Kind, packet: &[u8]) -> u32 {
    match kind {
        Kind::Initiation => 0,
        Kind::Response => le32(packet, resp::RECEIVER),
        Kind::CookieReply => le32(packet, cookie::RECEIVER),
        Kind::Data => le32(packet, data::RECEIVER),
    }
}

pub(crate) fn fixed<const N: usize>(packet: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&packet[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classify_shapes() {
        let mut init = [0u8; INITIATION_LEN];
        init[0] = 1;
        assert_eq!(classify(&init), Some(Kind::Initiation));
        init[2] = 1;
        assert_eq!(classify(&init), None, "reserved bytes must be zero");
        assert_eq!(classify(&[4, 0, 0, 0]), None, "short data");
        let mut d = [0u8; DATA_MIN_LEN];
        d[0] = 4;
        assert_eq!(classify(&d), Some(Kind::Data));
        assert_eq!(classify(&d[..DATA_MIN_LEN - 1]), None);
        assert_eq!(classify(&[]), None);
        let mut r = [0u8; RESPONSE_LEN + 1];
        r[0] = 2;
        assert_eq!(classify(&r), None, "wrong length response");
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(kind) = classify(&bytes) {
                let _ = receiver_index(kind, &bytes);
            }
        }
    }
}
