//! fastwire, a fast userspace WireGuard tunnel: the binary's parts as a library, so the pieces that read
//! hostile input — the wg-quick file parser ([`config`]), the UAPI protocol ([`uapi::protocol`]), what
//! `fastwire up` derives from a file ([`wgquick::dry_plans`]) — can be fuzzed and tested from outside.
//! `src/main.rs` only calls [`cli::main`].

mod assets;
pub mod cli;
pub mod config;
mod daemon;
#[cfg(target_os = "linux")]
mod demo;
pub mod keys;
pub mod metrics;
mod sd_notify;
mod show;
mod show_json;
mod syncconf;
mod top;
pub mod uapi;
pub mod wgquick;
