//! Running one interface: TUN + engine + UAPI socket, signals, and cleanup.

use fastwire_engine::config::{DeviceUpdate, SetError};

/// How to start a device.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub iface: String,
    pub workers: Option<usize>,
    pub mtu: u16,
}

/// Why a running device stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    Signal,
    InterfaceRemoved,
}

/// A running device: its TUN interface exists and its UAPI socket is served.
pub struct Daemon {}

impl Daemon {
    /// Creates the interface and UAPI socket and starts the data plane. Errors are one clear line.
    pub fn start(_opts: DaemonOptions) -> Result<Daemon, String> {
        todo!()
    }
    /// Applies a configuration change, as a UAPI `set=1` would.
    pub fn apply(&self, _update: &DeviceUpdate) -> Result<(), SetError> {
        todo!()
    }
    /// Blocks until SIGINT/SIGTERM arrives or the interface is deleted.
    pub fn wait_for_shutdown(&self) -> ShutdownReason {
        todo!()
    }
    /// Stops the data plane, removes the UAPI socket and the interface.
    pub fn stop(self) {}
}

/// `fastwire [-f] IFACE`.
pub fn run_wireguard_go_style(
    _iface: &str,
    _foreground: bool,
    _workers: Option<usize>,
) -> Result<(), String> {
    todo!()
}
