//! fastwire-io: platform I/O for the data plane — the TUN device, UDP sockets, readiness waits.
//!
//! Every `unsafe` block and every `cfg(target_os)` of the project lives in this crate.

#[cfg(target_os = "linux")]
pub mod poll;
#[cfg(target_os = "linux")]
pub mod sys;
pub mod tcp;
#[cfg(target_os = "linux")]
pub mod tun;
pub mod udp;
