//! The WireGuard cross-platform UAPI (<https://www.wireguard.com/xplatform/>): the `set=1` / `get=1`
//! protocol on `/var/run/wireguard/IFACE.sock` (Windows: the named pipe
//! `\\.\pipe\ProtectedPrefix\Administrators\WireGuard\IFACE`), served for `wg`/`wg-quick` and spoken by
//! our own CLI. The transport itself (permissions, stale sockets, removal watch, pipes) is
//! [`fastwire_io::ipc`].
//!
//! - [`protocol`]: text <-> [`DeviceUpdate`] / [`DeviceSnapshot`], byte-compatible with wireguard-go.
//! - [`server`]: the endpoint's lifetime and bounded per-connection handling.
//! - [`client`]: requests to a running daemon (ours or wireguard-go).

pub mod client;
pub mod protocol;
mod server;
#[cfg(test)]
pub(crate) mod test_support;
// Drives the real `wg` tool over /var/run/wireguard.
#[cfg(all(test, unix))]
mod wg_compat_tests;

use std::io;
use std::path::{Path, PathBuf};

use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate, SetError};

// The crate's UAPI API; not every part has a caller in the binary yet.
#[allow(unused_imports)]
pub use protocol::{UapiError, format_get, format_set, parse_set};
#[allow(unused_imports)]
pub use server::{UapiServer, serve, serve_at};

/// Where every userspace WireGuard implementation puts its endpoints: `/var/run/wireguard` on Unix,
/// the pipe-name prefix `\\.\pipe\ProtectedPrefix\Administrators\WireGuard` on Windows.
pub const SOCKET_DIR: &str = fastwire_io::ipc::DEFAULT_DIR;

/// What the UAPI server asks of a running device.
pub trait UapiHandler: Send + Sync {
    fn get(&self) -> DeviceSnapshot;
    /// Applies one whole `set=1` transaction; it was fully parsed before this call.
    fn set(&self, update: DeviceUpdate) -> Result<(), SetError>;
    /// fastwire's private verb `fastwire-stats=1`: extra "key=value" lines (drop counters by reason
    /// etc.). Counters named `drop_REASON` are shown by `fastwire show` as packets dropped by reason.
    fn stats(&self) -> Vec<(String, u64)>;
    /// The socket file was deleted or replaced. `wg-quick down` stops a userspace daemon this way and
    /// wireguard-go then exits, so a daemon should shut down. Called once, on the UAPI thread: signal
    /// the shutdown, do not block.
    fn socket_removed(&self) {}
    /// fastwire's private verb `fastwire-shutdown=1`: stop the daemon, as SIGTERM does. It is how
    /// `fastwire down` stops a tunnel on Windows, where a named pipe cannot be deleted and a console
    /// program in another console gets no signal; only Administrators and SYSTEM may open the endpoint.
    /// Signal the shutdown, do not block.
    fn shutdown_requested(&self) {}
}

/// An interface name that is safe to put in a socket path: 1 to 15 bytes (IFNAMSIZ - 1), no `/`.
pub(crate) fn valid_iface(iface: &str) -> bool {
    (1..=15).contains(&iface.len())
        && iface != "."
        && iface != ".."
        && !iface.bytes().any(|b| b == b'/' || b == 0)
}

pub(crate) fn socket_path(dir: &Path, iface: &str) -> io::Result<PathBuf> {
    if !valid_iface(iface) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {iface:?}: use 1 to 15 characters without '/'"),
        ));
    }
    // Refuses what the platform cannot name besides (a `\\` on Windows).
    fastwire_io::ipc::endpoint_path(dir, iface)
}
