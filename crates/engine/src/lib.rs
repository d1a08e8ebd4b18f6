//! fastwire's data plane: workers that wire TUN <-> WireGuard <-> UDP.

pub mod config;
