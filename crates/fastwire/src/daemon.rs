//! Running one interface: TUN + engine + UAPI socket, signals, and cleanup — and the wireguard-go
//! calling convention (`fastwire [-f] IFACE`) on top.

use crate::uapi::{self, UapiHandler, UapiServer};
use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate, SetError};
use fastwire_engine::{Engine, EngineOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the data plane is laid out (command line, or a file's fastwire-only keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataPlane {
    /// Worker threads (default: one per online CPU).
    pub workers: Option<usize>,
    /// TUN queues (default: one per worker on Linux; always 1 elsewhere).
    pub tun_queues: Option<usize>,
    /// Windows: Wintun ring capacity in bytes.
    pub ring_capacity: Option<u32>,
    /// Linux: data-path workers SCHED_FIFO (`--realtime`, `Realtime = true`).
    pub realtime: Option<bool>,
}

impl DataPlane {
    /// Fills what `self` leaves open from `fallback` (the command line wins over the file).
    pub fn or(self, fallback: DataPlane) -> DataPlane {
        DataPlane {
            workers: self.workers.or(fallback.workers),
            tun_queues: self.tun_queues.or(fallback.tun_queues),
            ring_capacity: self.ring_capacity.or(fallback.ring_capacity),
            realtime: self.realtime.or(fallback.realtime),
        }
    }

    /// The same choices as command-line arguments, for a child process.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.workers {
            out.extend(["--workers".to_string(), n.to_string()]);
        }
        if let Some(n) = self.tun_queues {
            out.extend(["--tun-queues".to_string(), n.to_string()]);
        }
        if let Some(n) = self.ring_capacity {
            out.extend(["--ring-capacity".to_string(), n.to_string()]);
        }
        if self.realtime == Some(true) {
            out.push("--realtime".to_string());
        }
        out
    }
}

/// The Prometheus endpoint, if asked for (`--metrics-listen`, or `MetricsListen` in a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsOptions {
    pub listen: std::net::SocketAddr,
    /// Leave the per-peer series out (`--metrics-no-peers`: with 100,000 peers they are most of a scrape).
    pub peers: crate::metrics::PeerSeries,
}

impl MetricsOptions {
    /// The same choice as command-line arguments, for a child process.
    pub fn args(&self) -> Vec<String> {
        let mut out = vec!["--metrics-listen".to_string(), self.listen.to_string()];
        if self.peers == crate::metrics::PeerSeries::Omit {
            out.push("--metrics-no-peers".to_string());
        }
        out
    }
}

/// How to start a device.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub iface: String,
    pub plane: DataPlane,
    pub mtu: u16,
    /// Open this TCP listener before the UAPI socket appears, as a `listen_tcp_port=N` set would.
    pub listen_tcp_port: Option<u16>,
    /// Cap on TCP connections not yet authenticated by a handshake (0 = the engine's default).
    pub tcp_max_unauthenticated: usize,
    pub metrics: Option<MetricsOptions>,
}

/// What `fastwire [-f] IFACE` was asked for beyond the interface name.
#[derive(Debug, Clone, Default)]
pub struct GoStyleOptions {
    pub foreground: bool,
    /// Set by the background launcher on the child it starts.
    pub detach_after_start: bool,
    pub plane: DataPlane,
    pub listen_tcp_port: Option<u16>,
    pub tcp_max_unauthenticated: usize,
    pub metrics: Option<MetricsOptions>,
}

/// wireguard-go's default MTU.
pub const DEFAULT_MTU: u16 = 1420;

/// Whether to ask the kernel for TUN offloads (`--no-offload` or `FASTWIRE_OFFLOAD=0` turn them off).
static OFFLOAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Called once from `main` with the command line's choice; the environment can also turn it off.
pub fn set_offload(enabled: bool) {
    let env_off = std::env::var("FASTWIRE_OFFLOAD")
        .is_ok_and(|v| matches!(v.as_str(), "0" | "off" | "false"));
    OFFLOAD.store(enabled && !env_off, std::sync::atomic::Ordering::Relaxed);
}

fn offload_enabled() -> bool {
    OFFLOAD.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why a running device stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// SIGINT/SIGTERM, or the UAPI socket was removed.
    Signal,
    /// The interface was deleted, or the data plane failed.
    InterfaceRemoved,
}

struct Handler(Arc<Engine>);

/// An update of this many peers is large: after it, free memory goes back to the system.
const LARGE_UPDATE_PEERS: usize = 100;

impl UapiHandler for Handler {
    fn get(&self) -> DeviceSnapshot {
        self.0.snapshot()
    }
    fn set(&self, update: DeviceUpdate) -> Result<(), SetError> {
        let large = update.peers.len() >= LARGE_UPDATE_PEERS || update.replace_peers;
        let result = self.0.apply(&update);
        // A large update leaves free memory behind: its own parse, and the peers it removed. Hand it
        // back now that both are gone, or the server's RSS stays at its peak.
        drop(update);
        if large {
            fastwire_io::sys::return_free_memory();
        }
        result
    }
    fn stats(&self) -> Vec<(String, u64)> {
        self.0.stats()
    }
    fn socket_removed(&self) {
        self.0
            .request_shutdown(fastwire_engine::ShutdownReason::Requested);
    }
    fn shutdown_requested(&self) {
        self.0
            .request_shutdown(fastwire_engine::ShutdownReason::Requested);
    }
}

/// A running device: its TUN interface exists and its UAPI socket is served.
pub struct Daemon {
    engine: Arc<Engine>,
    uapi: Option<UapiServer>,
    metrics: Option<crate::metrics::MetricsServer>,
}

impl Daemon {
    /// Creates the interface and UAPI socket and starts the data plane. Errors are one clear line.
    pub fn start(opts: DaemonOptions) -> Result<Daemon, String> {
        if !crate::uapi::valid_iface(&opts.iface) {
            return Err(format!(
                "invalid interface name {:?}: use 1 to 15 characters without '/'",
                opts.iface
            ));
        }
        let engine = Arc::new(Engine::start(EngineOptions {
            iface: opts.iface.clone(),
            workers: opts.plane.workers.unwrap_or(0),
            tun_queues: opts.plane.tun_queues.unwrap_or(0),
            mtu: opts.mtu,
            offload: offload_enabled(),
            ring_capacity: opts.plane.ring_capacity.unwrap_or(0),
            tcp_max_unauthenticated: opts.tcp_max_unauthenticated,
            realtime: opts.plane.realtime.unwrap_or(false),
        })?);
        // Before the socket is served, so a taken port fails the start (and nobody sees a device that
        // lacks its listener).
        if let Some(port) = opts.listen_tcp_port {
            let update = DeviceUpdate {
                listen_tcp_port: Some(port),
                ..DeviceUpdate::default()
            };
            if let Err(e) = engine.apply(&update) {
                engine.stop();
                return Err(match e {
                    SetError::TcpPortInUse(_) => {
                        format!("{e}: pick another --listen-tcp-port, or stop what listens on it")
                    }
                    _ => format!("cannot listen on TCP port {port}: {e}"),
                });
            }
        }
        // The system may have named the device (macOS: `utun` becomes `utunN`): the UAPI socket is
        // named after the device, and WG_TUN_NAME_FILE says which one it is, as wireguard-go does.
        let device = engine.iface().to_string();
        if device != opts.iface
            && let Some(file) = std::env::var_os("WG_TUN_NAME_FILE").filter(|f| !f.is_empty())
            && let Err(e) = std::fs::write(&file, format!("{device}\n"))
        {
            engine.stop();
            return Err(format!(
                "cannot write WG_TUN_NAME_FILE {}: {e}",
                file.to_string_lossy()
            ));
        }
        let handler = Arc::new(Handler(engine.clone()));
        // Also before the UAPI socket: a taken metrics port fails the start with its reason.
        let metrics = match opts.metrics {
            Some(m) => match crate::metrics::serve(m.listen, &device, handler.clone(), m.peers) {
                Ok(server) => Some(server),
                Err(e) => {
                    engine.stop();
                    return Err(format!(
                        "cannot serve metrics on {}: {e}: pick another --metrics-listen (or MetricsListen), \
                         or stop what listens on it",
                        m.listen
                    ));
                }
            },
            None => None,
        };
        let uapi = match uapi::serve(&device, handler) {
            Ok(s) => s,
            Err(e) => {
                engine.stop();
                return Err(format!("cannot serve the UAPI socket for {device}: {e}"));
            }
        };
        install_signal_handler(&engine)?;
        tracing::info!(iface = %device, socket = %uapi.path().display(), "interface up");
        if let Some(m) = &metrics {
            tracing::info!(iface = %device, listen = %m.local_addr(), "metrics at http://{}/metrics", m.local_addr());
        }
        Ok(Daemon {
            engine,
            uapi: Some(uapi),
            metrics,
        })
    }

    /// The interface as the system named it (macOS: `utunN` for `utun`).
    pub fn iface(&self) -> &str {
        self.engine.iface()
    }

    /// How the data plane was laid out.
    pub fn data_path(&self) -> fastwire_engine::DataPath {
        self.engine.data_path()
    }

    /// Applies a configuration change, as a UAPI `set=1` would.
    pub fn apply(&self, update: &DeviceUpdate) -> Result<(), SetError> {
        self.engine.apply(update)
    }

    /// Blocks until SIGINT/SIGTERM arrives or the interface is deleted.
    pub fn wait_for_shutdown(&self) -> ShutdownReason {
        match self.engine.wait() {
            fastwire_engine::ShutdownReason::Requested => ShutdownReason::Signal,
            fastwire_engine::ShutdownReason::InterfaceRemoved
            | fastwire_engine::ShutdownReason::Failed => ShutdownReason::InterfaceRemoved,
        }
    }

    /// Stops the data plane, removes the UAPI socket and the interface.
    pub fn stop(mut self) {
        if let Some(u) = self.uapi.take() {
            u.shutdown();
        }
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
        self.engine.stop();
    }
}

/// SIGINT/SIGTERM/SIGHUP (Windows: Ctrl-C, Ctrl-Break, closing the console) request a clean shutdown
/// instead of killing the process mid-cleanup. The process has one handler; every engine started in
/// it is told.
fn install_signal_handler(engine: &Arc<Engine>) -> Result<(), String> {
    static ENGINES: std::sync::Mutex<Vec<fastwire_engine::ShutdownHandle>> =
        std::sync::Mutex::new(Vec::new());
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let engines = || ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    engines().push(engine.shutdown_handle());
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(move || {
                for handle in engines().iter() {
                    handle.request(fastwire_engine::ShutdownReason::Requested);
                }
            })
            .map_err(|e| format!("cannot install signal handlers: {e}"))
        })
        .clone()
}

/// `fastwire [-f] IFACE`: like wireguard-go, create the interface and serve its UAPI socket; without
/// `-f`, return once the daemon is up and leave it running in the background.
pub fn run_wireguard_go_style(iface: &str, opts: &GoStyleOptions) -> Result<(), String> {
    if !opts.foreground {
        return spawn_background(iface, opts);
    }
    let daemon = Daemon::start(DaemonOptions {
        iface: iface.to_string(),
        plane: opts.plane,
        mtu: DEFAULT_MTU,
        listen_tcp_port: opts.listen_tcp_port,
        tcp_max_unauthenticated: opts.tcp_max_unauthenticated,
        metrics: opts.metrics,
    })?;
    if opts.detach_after_start {
        // Start-up errors went to our starter's stderr; from here on nothing should hold it open.
        #[cfg(unix)]
        let _ = fastwire_io::sys::detach_stdio();
    }
    crate::wgquick::tell_service_manager("READY=1");
    let reason = daemon.wait_for_shutdown();
    crate::wgquick::tell_service_manager("STOPPING=1");
    tracing::info!(iface, ?reason, "shutting down");
    daemon.stop();
    Ok(())
}

/// Re-runs this binary with `-f` in its own process group (so the terminal's Ctrl-C does not reach it)
/// and waits until its UAPI socket answers, or it exits with its own error on stderr.
fn spawn_background(iface: &str, opts: &GoStyleOptions) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-f").arg("--detach-after-start");
    if !offload_enabled() {
        cmd.arg("--no-offload");
    }
    cmd.args(opts.plane.args());
    if let Some(port) = opts.listen_tcp_port {
        cmd.arg("--listen-tcp-port").arg(port.to_string());
    }
    if opts.tcp_max_unauthenticated != 0 {
        cmd.arg("--tcp-max-unauthenticated")
            .arg(opts.tcp_max_unauthenticated.to_string());
    }
    if let Some(m) = &opts.metrics {
        cmd.args(m.args());
    }
    cmd.arg(iface).stdin(Stdio::null()).stdout(Stdio::null());
    fastwire_io::sys::detach_child(&mut cmd);
    // Where the child says which device it got, when the system names it (macOS `utun`).
    let name_file = std::env::var_os("WG_TUN_NAME_FILE")
        .filter(|f| !f.is_empty())
        .map(std::path::PathBuf::from);
    if let Some(file) = &name_file {
        let _ = std::fs::remove_file(file);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            // The daemon shares our stderr and has already said why in one line; do not add another.
            return Err(String::new());
        }
        let device = name_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| iface.to_string());
        if uapi::client::request(&device, "get=1\n\n").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "the daemon for {iface} did not come up within 10 s"
    ))
}
