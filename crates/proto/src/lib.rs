//! fastwire-proto: the WireGuard protocol as sans-IO state machines.
//!
//! Bytes and a `now: Instant` go in; bytes, events and the next deadline come out. No sockets, threads,
//! clock reads or logging live here. [`Device`] is the entry point: it is shared by all workers.

pub mod allowed_ips;
pub mod cookie;
pub mod crypto;
pub mod device;
pub mod endpoint;
pub mod framing;
pub mod messages;
pub mod noise;
pub mod peer;
pub mod ratelimit;
pub mod replay;
pub mod session;
pub mod timers;

pub use device::{
    ConfigBatch, Device, Incoming, RecvDrop, Sealed, SendError, TimerEvents, TimerSchedule,
};
pub use endpoint::{Endpoint, Transport};
pub use messages::DATA_HEADER_LEN;
pub use peer::Peer;

/// Room a buffer needs after the plaintext: padding to 16 bytes and the AEAD tag.
pub const TAILROOM: usize = 16 + crypto::TAG_LEN;
