//! fastwire-io: platform I/O for the data plane — TUN devices, UDP and TCP sockets, readiness waits —
//! behind small interfaces that name no descriptor, HANDLE or platform crate.
//!
//! Every `unsafe` block and every `cfg(target_os)` of the project lives in this crate.

pub mod ipc;
mod sockwait;
pub mod sys;
pub mod tcp;
pub mod tun;
pub mod udp;
pub mod wait;
