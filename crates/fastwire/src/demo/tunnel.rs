//! The two tunnel ends: started as `fastwire -f IFACE` inside the namespaces, keyed and configured
//! through their UAPI sockets exactly as `wg` would, then given overlay addresses.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use fastwire_engine::config::{AllowedIp, DeviceUpdate, Key, PeerUpdate};
use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

use super::interrupt::Interrupt;
use super::process::Spawned;
use super::testbed::ip;
use crate::uapi::client;

/// Runs another tunnel implementation in place of this binary, e.g. `/usr/bin/wireguard-go`.
pub const TUNNEL_BIN_ENV: &str = "FASTWIRE_DEMO_TUNNEL_BIN";
const UAPI_DIR: &str = "/var/run/wireguard";
pub const LISTEN_PORT: u16 = 51820;
pub const MTU: u16 = 1420;
const STARTUP: Duration = Duration::from_secs(5);

/// One side of the tunnel: where it runs and what it is called there.
#[derive(Clone, Copy)]
pub struct End {
    pub namespace: &'static str,
    pub iface: &'static str,
    pub underlay: Ipv4Addr,
    pub overlay: Ipv4Addr,
}

/// The program that provides the tunnel.
pub struct TunnelProgram {
    path: PathBuf,
}

impl TunnelProgram {
    /// This binary, unless `FASTWIRE_DEMO_TUNNEL_BIN` names another.
    pub fn from_env() -> Result<Self, String> {
        let path = match std::env::var_os(TUNNEL_BIN_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => this_binary()?,
        };
        Ok(Self { path })
    }

    /// A short name for output: `fastwire`, `wireguard-go`, ...
    pub fn label(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

pub fn this_binary() -> Result<PathBuf, String> {
    let path =
        std::env::current_exe().map_err(|e| format!("cannot find the fastwire binary: {e}"))?;
    // Replaced while we run (a rebuild, an upgrade): the kernel still holds our own image.
    Ok(if path.exists() {
        path
    } else {
        PathBuf::from(format!("/proc/{}/exe", std::process::id()))
    })
}

/// `ip netns exec NS PROGRAM ARGS`: `ip` execs the program, so the child's pid is the program's.
pub fn in_namespace(namespace: &str, program: impl Into<OsString>, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(program.into())
        .args(args);
    command
}

pub fn socket_path(iface: &str) -> PathBuf {
    PathBuf::from(format!("{UAPI_DIR}/{iface}.sock"))
}

/// Removes a UAPI socket a killed daemon left behind; a missing one is fine.
pub fn remove_socket(iface: &str) {
    let _ = std::fs::remove_file(socket_path(iface));
}

/// Starts the tunnel daemon for `end` and waits until its UAPI socket answers.
pub fn start(program: &TunnelProgram, end: End, interrupt: &Interrupt) -> Result<Spawned, String> {
    remove_socket(end.iface);
    let mut command = in_namespace(end.namespace, &program.path, &["-f", end.iface]);
    // wireguard-go refuses to run on Linux without it; fastwire ignores it.
    command.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
    let name = format!("{} -f {}", program.label(), end.iface);
    let mut daemon = Spawned::start(&name, command)?;
    let ready = interrupt.wait_for(STARTUP, || {
        if let Some(status) = daemon.exit_status()? {
            return Err(daemon.failure(status));
        }
        // Probe the socket only once it exists: connecting early would just fail.
        Ok(socket_path(end.iface)
            .exists()
            .then(|| client::get(end.iface).ok())
            .flatten())
    })?;
    match ready {
        Some(_) => Ok(daemon),
        None => Err(format!(
            "{name} did not open {} within {} s",
            socket_path(end.iface).display(),
            STARTUP.as_secs()
        )),
    }
}

pub struct Keypair {
    secret: StaticSecret,
    pub public: Key,
}

impl Keypair {
    pub fn generate() -> Self {
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }
}

/// Gives `end` its key and `peer` as its only peer, reachable over the underlay.
pub fn configure(end: End, keys: &Keypair, peer: End, peer_public: Key) -> Result<(), String> {
    let peer_update = PeerUpdate {
        endpoint: Some(SocketAddr::new(IpAddr::V4(peer.underlay), LISTEN_PORT).into()),
        replace_allowed_ips: true,
        allowed_ips: vec![AllowedIp {
            addr: IpAddr::V4(peer.overlay),
            cidr: 32,
        }],
        ..PeerUpdate::new(peer_public)
    };
    let update = DeviceUpdate {
        private_key: Some(Some(keys.secret.to_bytes())),
        listen_port: Some(LISTEN_PORT),
        replace_peers: true,
        peers: vec![peer_update],
        ..DeviceUpdate::default()
    };
    client::set(end.iface, &update).map_err(|e| format!("configuring {}: {e}", end.iface))
}

/// Overlay address, MTU and link up, as wg-quick would.
pub fn bring_up(end: End) -> Result<(), String> {
    let address = format!("{}/24", end.overlay);
    ip(&[
        "-n",
        end.namespace,
        "addr",
        "add",
        &address,
        "dev",
        end.iface,
    ])?;
    ip(&[
        "-n",
        end.namespace,
        "link",
        "set",
        "dev",
        end.iface,
        "mtu",
        &MTU.to_string(),
        "up",
    ])
    .map(drop)
}

/// When `end` last completed a handshake with its peer.
pub fn last_handshake(end: End) -> Result<Option<SystemTime>, String> {
    let snapshot = client::get(end.iface).map_err(|e| format!("reading {}: {e}", end.iface))?;
    Ok(snapshot.peers.first().and_then(|peer| peer.last_handshake))
}
