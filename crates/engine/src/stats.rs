//! Per-worker counters: each worker writes only its own (plain load+store, no contended RMW); readers sum.

use fastwire_proto::RecvDrop;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an outgoing packet (from the TUN device) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDrop {
    /// No peer's allowed IPs cover the destination.
    NoRoute,
    /// A keepalive for a peer with no endpoint yet (data packets wait for one, staged).
    NoEndpoint,
    /// The peer's queue of packets waiting for a handshake was full.
    StagedOverflow,
    /// Handshake attempts gave up with packets still waiting.
    HandshakeGaveUp,
    /// The UDP send failed (network unreachable, buffer full...).
    SendFailed,
    /// Not an IPv4/IPv6 packet.
    NotIp,
    /// No free buffer to hand a frame to the TCP owner (it is behind).
    TcpQueueFull,
    /// Larger than a frame can carry (65535 bytes: an MTU near 64 KiB).
    TcpFrameTooBig,
    /// The TCP connection to the peer's endpoint is closed (or still reconnecting).
    TcpNotConnected,
    /// The connection's send queue was full (the path is slower than the tunnel's input).
    TcpBackpressure,
    /// A decrypted packet found the TUN device's queue full (Windows: the Wintun ring).
    TunFull,
}

impl SendDrop {
    pub const ALL: [SendDrop; 11] = [
        SendDrop::NoRoute,
        SendDrop::NoEndpoint,
        SendDrop::StagedOverflow,
        SendDrop::HandshakeGaveUp,
        SendDrop::SendFailed,
        SendDrop::NotIp,
        SendDrop::TcpQueueFull,
        SendDrop::TcpFrameTooBig,
        SendDrop::TcpNotConnected,
        SendDrop::TcpBackpressure,
        SendDrop::TunFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SendDrop::NoRoute => "tx_no_route",
            SendDrop::NoEndpoint => "tx_no_endpoint",
            SendDrop::StagedOverflow => "tx_handshake_queue_full",
            SendDrop::HandshakeGaveUp => "tx_handshake_gave_up",
            SendDrop::SendFailed => "tx_udp_send_failed",
            SendDrop::NotIp => "tx_not_ip",
            SendDrop::TcpQueueFull => "tx_tcp_handoff_full",
            SendDrop::TcpFrameTooBig => "tx_tcp_frame_too_big",
            SendDrop::TcpNotConnected => "tx_tcp_not_connected",
            SendDrop::TcpBackpressure => "tx_tcp_backpressure",
            SendDrop::TunFull => "rx_tun_full",
        }
    }
}

/// Other counters worth showing.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    RxPackets,
    TxPackets,
    TunWriteFailed,
    HandshakesSent,
    CookieRepliesSent,
    TcpAccepted,
    TcpConnected,
}

const COUNTERS: [(Counter, &str); 7] = [
    (Counter::RxPackets, "rx_packets"),
    (Counter::TxPackets, "tx_packets"),
    (Counter::TunWriteFailed, "rx_tun_write_failed"),
    (Counter::HandshakesSent, "handshake_initiations_sent"),
    (Counter::CookieRepliesSent, "cookie_replies_sent"),
    (Counter::TcpAccepted, "tcp_connections_accepted"),
    (Counter::TcpConnected, "tcp_connections_established"),
];

/// Why a TCP connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// The other side closed it (FIN).
    ByPeer,
    /// A socket error (reset, timeout).
    Error,
    /// An outgoing connection could not be established.
    ConnectFailed,
    /// A frame of length 0.
    ZeroLength,
    /// A frame that is no WireGuard message.
    Malformed,
    /// An unauthenticated connection sent a message that did not authenticate.
    Unauthenticated,
    /// No valid handshake in time after accepting.
    AuthTimeout,
    /// Authenticated but silent for too long.
    Idle,
    /// The oldest unauthenticated connection, closed to admit a new one over the cap.
    Evicted,
    /// Refused at accept: the connection table is full.
    TableFull,
    /// The least recently used accepted connection of a peer that opened more than its share.
    PeerOverCap,
    /// No longer configured (peer removed, endpoint changed, listener closed).
    Unconfigured,
}

impl TcpClose {
    pub const ALL: [TcpClose; 12] = [
        TcpClose::ByPeer,
        TcpClose::Error,
        TcpClose::ConnectFailed,
        TcpClose::ZeroLength,
        TcpClose::Malformed,
        TcpClose::Unauthenticated,
        TcpClose::AuthTimeout,
        TcpClose::Idle,
        TcpClose::Evicted,
        TcpClose::TableFull,
        TcpClose::PeerOverCap,
        TcpClose::Unconfigured,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TcpClose::ByPeer => "by_peer",
            TcpClose::Error => "error",
            TcpClose::ConnectFailed => "connect_failed",
            TcpClose::ZeroLength => "zero_length_frame",
            TcpClose::Malformed => "malformed_frame",
            TcpClose::Unauthenticated => "unauthenticated_message",
            TcpClose::AuthTimeout => "no_handshake_in_time",
            TcpClose::Idle => "idle",
            TcpClose::Evicted => "evicted_unauthenticated",
            TcpClose::TableFull => "table_full",
            TcpClose::PeerOverCap => "peer_over_cap",
            TcpClose::Unconfigured => "unconfigured",
        }
    }
}

#[derive(Default)]
pub struct WorkerStats {
    recv_drops: [AtomicU64; RecvDrop::ALL.len()],
    send_drops: [AtomicU64; SendDrop::ALL.len()],
    counters: [AtomicU64; COUNTERS.len()],
    tcp_closes: [AtomicU64; TcpClose::ALL.len()],
}

fn bump(c: &AtomicU64, by: u64) {
    // Single writer per counter set: a load and a store, no locked instruction.
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl WorkerStats {
    pub fn recv_drop(&self, reason: RecvDrop) {
        let i = RecvDrop::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        bump(&self.recv_drops[i], 1);
    }

    pub fn send_drop(&self, reason: SendDrop, n: u64) {
        let i = SendDrop::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        bump(&self.send_drops[i], n);
    }

    pub fn tcp_closed(&self, reason: TcpClose) {
        let i = TcpClose::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        bump(&self.tcp_closes[i], 1);
    }

    pub fn count(&self, c: Counter, n: u64) {
        bump(&self.counters[c as usize], n);
    }
}

/// Sums the workers' counters into named values, drops by reason included (zeros too).
pub fn summarize<'a>(all: impl Iterator<Item = &'a WorkerStats> + Clone) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| all.clone().map(f).sum::<u64>();
    for (i, (_, name)) in COUNTERS.iter().enumerate() {
        out.push((
            name.to_string(),
            sum(&|w| w.counters[i].load(Ordering::Relaxed)),
        ));
    }
    for (i, r) in RecvDrop::ALL.iter().enumerate() {
        out.push((
            format!("drop_{}", r.name()),
            sum(&|w| w.recv_drops[i].load(Ordering::Relaxed)),
        ));
    }
    for (i, r) in SendDrop::ALL.iter().enumerate() {
        out.push((
            format!("drop_{}", r.name()),
            sum(&|w| w.send_drops[i].load(Ordering::Relaxed)),
        ));
    }
    for (i, r) in TcpClose::ALL.iter().enumerate() {
        out.push((
            format!("tcp_closed_{}", r.name()),
            sum(&|w| w.tcp_closes[i].load(Ordering::Relaxed)),
        ));
    }
    out
}
