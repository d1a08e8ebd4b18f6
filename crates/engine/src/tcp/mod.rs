//! The TCP transport: WireGuard messages over TCP, each framed by a u16 big-endian length (seed 001).
//!
//! One thread — the TCP owner — holds the listener and every connection, accepted or dialed. It reads
//! into one large buffer per connection and decrypts frames where they lie, writes plaintext to the TUN
//! device (through worker 0's queue, which it shares), and writes queued frames with one `writev` per
//! connection per round. Workers and the timer thread never touch a TCP socket: they hand frames over
//! through [`TcpHandoff`] (a bounded, lock-free pool; full = counted drop).

mod conn;
mod dial;
mod handoff;
mod owner;

pub(crate) use handoff::{Outbox, TcpHandoff};
pub(crate) use owner::{WAKER_TOKEN, run};

use std::net::SocketAddr;

/// What the control plane asks of the owner; taken whole when `Shared::tcp_control_dirty` is set.
#[derive(Default)]
pub(crate) struct Control {
    /// `Some(None)` closes the listener; `Some(Some(l))` replaces it.
    pub listener: Option<Option<std::net::TcpListener>>,
    pub fwmark: Option<u32>,
    /// Every `tcp://` endpoint configured for a peer: the owner keeps a connection to each.
    pub dial_targets: Option<Vec<SocketAddr>>,
}

/// Tuning of the owner, from [`crate::EngineOptions`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_unauthenticated: usize,
}
