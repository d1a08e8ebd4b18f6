//! fastwire-proto: the WireGuard protocol as sans-IO state machines.
//!
//! Bytes and a `now: Instant` go in; bytes, events and the next deadline come out. No sockets, threads,
//! clock reads or logging live here.

pub mod allowed_ips;
