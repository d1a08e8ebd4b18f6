//! Why a received datagram was dropped: one [`RecvDrop`] reason per drop, and the counter name of each.

/// Why a received datagram was dropped. Every drop has exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvDrop {
    /// Not a WireGuard message shape (type, reserved bytes, length).
    Malformed,
    /// We have no private key yet.
    NoIdentity,
    /// mac1 does not match our public key.
    BadMac1,
    /// Under load without a valid mac2: we answered with a cookie reply.
    CookieSent,
    /// Under load without a valid mac2, and the source (or all sources together) had used up its
    /// budget of cookie replies: dropped without an answer.
    CookieRateLimited,
    /// A handshake message that arrived while the handshake queue was full (half full, for
    /// initiations): dropped before any work was spent on it. Counted by the engine.
    HandshakeQueueFull,
    /// Under load, more handshakes from one source address than its budget (20/s, burst 5).
    RateLimited,
    /// The handshake did not decrypt, names an unknown peer, used a low-order key, or lost a race
    /// with the removal of its peer or a change of our private key.
    HandshakeAuth,
    /// The initiation's timestamp is not newer than the last one from that peer.
    ReplayedTimestamp,
    /// Initiations from one peer faster than 50 per second.
    HandshakeFlood,
    /// A response or cookie reply for no handshake of ours.
    UnexpectedHandshake,
    /// A cookie reply that does not authenticate.
    BadCookie,
    /// A data message whose receiver index names no session.
    UnknownSession,
    /// The session is older than REJECT_AFTER_TIME.
    ExpiredSession,
    /// A data message that fails authentication (tampered, truncated, wrong key).
    DataAuth,
    /// A replayed or too-old counter.
    Replay,
    /// The decrypted packet is not IPv4/IPv6 or its header is inconsistent.
    BadInnerPacket,
    /// The inner source address is not in the sending peer's allowed IPs.
    DisallowedSource,
}

impl RecvDrop {
    pub const ALL: [RecvDrop; 18] = [
        RecvDrop::Malformed,
        RecvDrop::NoIdentity,
        RecvDrop::BadMac1,
        RecvDrop::CookieSent,
        RecvDrop::CookieRateLimited,
        RecvDrop::HandshakeQueueFull,
        RecvDrop::RateLimited,
        RecvDrop::HandshakeAuth,
        RecvDrop::ReplayedTimestamp,
        RecvDrop::HandshakeFlood,
        RecvDrop::UnexpectedHandshake,
        RecvDrop::BadCookie,
        RecvDrop::UnknownSession,
        RecvDrop::ExpiredSession,
        RecvDrop::DataAuth,
        RecvDrop::Replay,
        RecvDrop::BadInnerPacket,
        RecvDrop::DisallowedSource,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecvDrop::Malformed => "rx_malformed",
            RecvDrop::NoIdentity => "rx_no_private_key",
            RecvDrop::BadMac1 => "rx_bad_mac1",
            RecvDrop::CookieSent => "rx_under_load_cookie_sent",
            RecvDrop::CookieRateLimited => "rx_cookie_reply_rate_limited",
            RecvDrop::HandshakeQueueFull => "rx_handshake_queue_full",
            RecvDrop::RateLimited => "rx_handshake_rate_limited",
            RecvDrop::HandshakeAuth => "rx_handshake_auth_failed",
            RecvDrop::ReplayedTimestamp => "rx_handshake_replayed_timestamp",
            RecvDrop::HandshakeFlood => "rx_handshake_flood",
            RecvDrop::UnexpectedHandshake => "rx_handshake_unexpected",
            RecvDrop::BadCookie => "rx_bad_cookie_reply",
            RecvDrop::UnknownSession => "rx_unknown_session",
            RecvDrop::ExpiredSession => "rx_expired_session",
            RecvDrop::DataAuth => "rx_data_auth_failed",
            RecvDrop::Replay => "rx_replayed_counter",
            RecvDrop::BadInnerPacket => "rx_bad_inner_packet",
            RecvDrop::DisallowedSource => "rx_disallowed_source",
        }
    }
}
