//! Typed configuration changes and read-outs of a running device.
//!
//! These are the shapes behind the UAPI `set=1` / `get=1` verbs and behind `fastwire up FILE`: the UAPI
//! text and the wg-quick file are both parsed into a [`DeviceUpdate`], and `get=1` is formatted from a
//! [`DeviceSnapshot`]. Keeping them here means the engine never sees text.

pub use fastwire_proto::{Endpoint, Transport};
use std::net::IpAddr;
use std::time::SystemTime;

/// A 32-byte Curve25519 key or preshared key.
pub type Key = [u8; 32];

/// An allowed-IPs entry: address and prefix length (0..=32 for IPv4, 0..=128 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedIp {
    pub addr: IpAddr,
    pub cidr: u8,
}

/// One `set=1` transaction. Fields left `None` are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// `Some(None)` removes the private key (UAPI: all-zero key).
    pub private_key: Option<Option<Key>>,
    /// `Some(0)` picks a random port.
    pub listen_port: Option<u16>,
    /// TCP listener for WireGuard-over-TCP clients; `Some(0)` closes it (there is no random TCP port).
    pub listen_tcp_port: Option<u16>,
    /// `Some(0)` removes the mark.
    pub fwmark: Option<u32>,
    /// Remove every peer before applying `peers`.
    pub replace_peers: bool,
    pub peers: Vec<PeerUpdate>,
}

/// The changes to one peer, in the order the UAPI gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpdate {
    pub public_key: Key,
    /// Remove this peer.
    pub remove: bool,
    /// Only change the peer if it already exists.
    pub update_only: bool,
    /// `Some(None)` removes the preshared key (UAPI: all-zero key).
    pub preshared_key: Option<Option<Key>>,
    /// A TCP endpoint makes this side connect (and keep reconnecting) to it.
    pub endpoint: Option<Endpoint>,
    /// Seconds; `Some(0)` turns it off.
    pub persistent_keepalive: Option<u16>,
    /// Clear the peer's allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<AllowedIp>,
}

impl PeerUpdate {
    pub fn new(public_key: Key) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// What `get=1` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    pub private_key: Option<Key>,
    pub listen_port: u16,
    /// 0 = no TCP listener.
    pub listen_tcp_port: u16,
    pub fwmark: u32,
    pub peers: Vec<PeerSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: Option<Endpoint>,
    /// Wall-clock time of the latest completed handshake.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds, 0 = off.
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<AllowedIp>,
}

impl PeerSnapshot {
    /// A peer with nothing known about it yet but its key.
    pub fn new(public_key: Key) -> Self {
        Self {
            public_key,
            preshared_key: None,
            endpoint: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive: 0,
            allowed_ips: Vec::new(),
        }
    }
}

/// Why a `set` was refused; maps onto the errno the UAPI reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// The listen port could not be bound (UAPI errno EADDRINUSE).
    PortInUse(u16),
    /// The TCP listen port could not be bound (UAPI errno EADDRINUSE).
    TcpPortInUse(u16),
    /// Anything else the device could not apply (UAPI errno EINVAL), with a reason.
    Invalid(String),
    /// An I/O failure while applying (UAPI errno EIO).
    Io(String),
}

impl SetError {
    /// The positive errno value the UAPI `errno=` line carries.
    pub fn errno(&self) -> i32 {
        match self {
            SetError::PortInUse(_) | SetError::TcpPortInUse(_) => 98, // EADDRINUSE
            SetError::Invalid(_) => 22,                               // EINVAL
            SetError::Io(_) => 5,                                     // EIO
        }
    }
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::PortInUse(p) => write!(f, "UDP port {p} is already in use"),
            SetError::TcpPortInUse(p) => write!(f, "TCP port {p} is already in use"),
            SetError::Invalid(s) => write!(f, "invalid configuration: {s}"),
            SetError::Io(s) => write!(f, "I/O error: {s}"),
        }
    }
}

impl std::error::Error for SetError {}
