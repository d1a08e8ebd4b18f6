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
    /// Initiations from peers answered with a response (the handshake as responder).
    HandshakeResponsesSent,
    /// Responses to our initiations accepted (the handshake as initiator).
    HandshakesCompleted,
    CookieRepliesSent,
    TcpAccepted,
    TcpConnected,
    /// Batches of datagrams received from the UDP socket (one recvmmsg that returned some).
    RxBatches,
    /// Datagrams in those batches, whatever they held (a GRO train counts each of its datagrams).
    RxDatagrams,
    /// Batches of encrypted packets sent (one round of sendmmsg / GSO sends).
    TxBatches,
}

const COUNTERS: [(Counter, &str); 12] = [
    (Counter::RxPackets, "rx_packets"),
    (Counter::TxPackets, "tx_packets"),
    (Counter::TunWriteFailed, "rx_tun_write_failed"),
    (Counter::HandshakesSent, "handshake_initiations_sent"),
    (Counter::HandshakeResponsesSent, "handshake_responses_sent"),
    (Counter::HandshakesCompleted, "handshakes_completed"),
    (Counter::CookieRepliesSent, "cookie_replies_sent"),
    (Counter::TcpAccepted, "tcp_connections_accepted"),
    (Counter::TcpConnected, "tcp_connections_established"),
    (Counter::RxBatches, "rx_batches"),
    (Counter::RxDatagrams, "rx_datagrams"),
    (Counter::TxBatches, "tx_batches"),
];

/// The counters shown per worker (`worker_N_NAME`): how the load spreads and how full the batches are.
const PER_WORKER: [Counter; 5] = [
    Counter::RxPackets,
    Counter::TxPackets,
    Counter::RxBatches,
    Counter::RxDatagrams,
    Counter::TxBatches,
];

/// Datagrams the kernel dropped because a UDP socket's receive queue was full (fastwire never saw them):
/// read from the sockets when stats are asked for, not counted by a worker.
pub const KERNEL_QUEUE_DROPS: &str = "drop_rx_kernel_queue_full";

/// Stats named `worker_LABEL_NAME` are one thread's share of counter NAME: LABEL is a data-path worker's
/// index, or `tcp` (the TCP owner) or `handshake` (the handshake thread).
pub const WORKER_PREFIX: &str = "worker_";

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

/// Each thread's own [`PER_WORKER`] counters, named `worker_LABEL_NAME` (a label has no `_`).
pub fn per_worker<'a>(
    workers: impl Iterator<Item = (&'a str, &'a WorkerStats)>,
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (n, w) in workers {
        for c in PER_WORKER {
            let name = COUNTERS[c as usize].1;
            out.push((
                format!("{WORKER_PREFIX}{n}_{name}"),
                w.counters[c as usize].load(Ordering::Relaxed),
            ));
        }
    }
    out
}

/// Open TCP transport connections by state: a gauge the TCP owner thread alone writes.
#[derive(Default)]
pub struct TcpStates {
    open: [AtomicU64; TcpState::ALL.len()],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Accepted; no authenticated message yet.
    AcceptedUnauthenticated,
    /// Accepted and authenticated by a peer's message.
    Accepted,
    /// Ours, the TCP handshake still under way.
    Connecting,
    /// Ours, connected.
    Connected,
}

impl TcpState {
    pub const ALL: [TcpState; 4] = [
        TcpState::AcceptedUnauthenticated,
        TcpState::Accepted,
        TcpState::Connecting,
        TcpState::Connected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TcpState::AcceptedUnauthenticated => "accepted_unauthenticated",
            TcpState::Accepted => "accepted",
            TcpState::Connecting => "connecting",
            TcpState::Connected => "connected",
        }
    }
}

/// Stats named `tcp_open_STATE` are the connections open in STATE now (a gauge, unlike the rest).
pub const TCP_OPEN_PREFIX: &str = "tcp_open_";

impl TcpStates {
    /// A connection entered `to` (from `from`, or newly opened when `None`).
    pub fn moved(&self, from: Option<TcpState>, to: Option<TcpState>) {
        // Single writer (the owner thread): load and store.
        if let Some(from) = from {
            let c = &self.open[from as usize];
            c.store(
                c.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
        }
        if let Some(to) = to {
            bump(&self.open[to as usize], 1);
        }
    }

    pub fn summarize(&self) -> Vec<(String, u64)> {
        TcpState::ALL
            .iter()
            .map(|s| {
                (
                    format!("{TCP_OPEN_PREFIX}{}", s.name()),
                    self.open[*s as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_names_carry_the_thread_label() {
        let a = WorkerStats::default();
        let b = WorkerStats::default();
        a.count(Counter::RxBatches, 2);
        b.count(Counter::TxPackets, 7);
        let named = per_worker([("0", &a), ("tcp", &b)].into_iter());
        assert!(named.contains(&("worker_0_rx_batches".into(), 2)));
        assert!(named.contains(&("worker_tcp_tx_packets".into(), 7)));
        assert_eq!(named.len(), 2 * PER_WORKER.len());
    }

    #[test]
    fn tcp_states_follow_a_connection_through_its_life() {
        let states = TcpStates::default();
        let open = |s: &TcpStates, state: TcpState| {
            s.summarize()
                .into_iter()
                .find(|(n, _)| *n == format!("{TCP_OPEN_PREFIX}{}", state.name()))
                .map(|(_, v)| v)
        };
        states.moved(None, Some(TcpState::Connecting));
        assert_eq!(open(&states, TcpState::Connecting), Some(1));
        states.moved(Some(TcpState::Connecting), Some(TcpState::Connected));
        assert_eq!(open(&states, TcpState::Connecting), Some(0));
        assert_eq!(open(&states, TcpState::Connected), Some(1));
        states.moved(Some(TcpState::Connected), None);
        // A gauge never wraps below zero, even if a move were counted twice.
        states.moved(Some(TcpState::Connected), None);
        assert_eq!(open(&states, TcpState::Connected), Some(0));
    }
}
