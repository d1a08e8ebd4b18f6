//! `fastwire up FILE` and `fastwire down FILE|IFACE`: what wg-quick's `cmd_up` / `cmd_down` do around an
//! interface (hooks, addresses, MTU, DNS, routes, the default-route bypass), with fastwire's daemon in
//! place of the kernel module. `up` stays in the foreground and undoes its own work when it stops.
//!
//! The sequence is the same everywhere (this file); what each step runs is the operating system's:
//! [`linux`] (`ip`, `resolvconf`, fwmark + policy rules), [`macos`] (`ifconfig`, `route`, `networksetup`,
//! as wg-quick's darwin.bash), [`windows`] (`netsh`, hooks through `cmd /c`). Each system change is shown
//! on stderr as `[#] command`, as wg-quick shows it, and every change that outlives the interface is
//! recorded as the command that reverses it, run in reverse order both on a normal shutdown and when a
//! step of `up` fails.

use crate::config::{self, QuickConfig};
use crate::daemon::{Daemon, DaemonOptions, DataPlane, MetricsOptions, ShutdownReason};
use fastwire_engine::config::{AllowedIp, DeviceUpdate};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
mod linux;
// The macOS and Windows command plans compile (and are unit-tested) everywhere; each runs only on its own.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod macos;
#[cfg_attr(not(windows), allow(dead_code))]
mod windows;

#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(windows)]
use windows as os;

/// How long `down` waits for the tunnel to go.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// wg-quick's overhead allowance when it derives the MTU from the underlay (IPv6 + UDP + WireGuard).
const MTU_OVERHEAD: u64 = 80;
const FALLBACK_LINK_MTU: u64 = 1500;

/// The command that reverses one change `up` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undo {
    pub command: Vec<String>,
    /// The change vanishes with the interface (a route through it): undo it only while it exists.
    pub with_interface: bool,
}

impl Undo {
    fn new(command: &[&str], with_interface: bool) -> Self {
        Self {
            command: command.iter().map(|s| s.to_string()).collect(),
            with_interface,
        }
    }
}

/// What a platform's route planner may use and change.
pub(crate) struct RouteContext<'t> {
    /// The interface as the system names it (macOS: `utunN`).
    pub device: &'t str,
    pub config: &'t QuickConfig,
    pub update: &'t DeviceUpdate,
    // Only Linux changes the device while routing (the fwmark of a default route).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub daemon: &'t Daemon,
    pub undo: &'t mut Vec<Undo>,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl RouteContext<'_> {
    /// Applies a configuration change to the running device (Linux: the fwmark of default routes).
    pub fn apply(&self, update: &DeviceUpdate) -> Result<(), String> {
        self.daemon
            .apply(update)
            .map_err(|e| format!("cannot configure `{}': {e}", self.device))
    }
}

/// The command line's say on the metrics endpoint; the file's `MetricsListen` fills in the address.
#[derive(Debug, Clone, Copy)]
pub struct MetricsChoice {
    pub listen: Option<std::net::SocketAddr>,
    pub peers: crate::metrics::PeerSeries,
}

impl MetricsChoice {
    fn or_file(self, file: Option<std::net::SocketAddr>) -> Option<MetricsOptions> {
        self.listen.or(file).map(|listen| MetricsOptions {
            listen,
            peers: self.peers,
        })
    }
}

/// `fastwire up FILE`: brings the tunnel up, runs until a signal or until the interface is deleted,
/// then takes everything down again. `ListenTcpPort` and `tcp://` endpoints reach the device through
/// the same `set` as the rest of the file.
pub fn up(
    file: &Path,
    plane: DataPlane,
    tcp_max_unauthenticated: usize,
    metrics: MetricsChoice,
) -> Result<(), String> {
    let path = config::config_path(file);
    let iface = config::interface_name(&path)?;
    if !path.exists() {
        return Err(format!("`{}' does not exist", path.display()));
    }
    let config = config::load(&path)?;
    for warning in &config.warnings {
        eprintln!("{warning}");
    }
    let update = config.device_update()?;
    if os::interface_exists(&iface) {
        return Err(format!("`{iface}' already exists"));
    }
    if let Some(pid) = running_up_process(&iface) {
        return Err(format!(
            "`{iface}' is already run by fastwire (pid {pid}); `fastwire down {iface}' stops it"
        ));
    }
    let mtu = config
        .interface
        .mtu
        .unwrap_or_else(|| os::automatic_mtu(&update));
    let options = DaemonOptions {
        iface: os::device_name(&iface),
        plane: plane.or(DataPlane {
            workers: config.interface.workers,
            tun_queues: config.interface.tun_queues,
            ring_capacity: config.interface.ring_capacity,
            realtime: config.interface.realtime,
        }),
        mtu,
        // The file's `set` below opens it, with the rest of the configuration.
        listen_tcp_port: None,
        tcp_max_unauthenticated,
        metrics: metrics.or_file(config.interface.metrics_listen),
    };

    let mut tunnel = Tunnel::new(iface, &config);
    if let Err(reason) = tunnel.bring_up(&path, options, &update) {
        tunnel.undo_after_failure();
        return Err(reason);
    }
    tell_service_manager("READY=1");
    if tunnel.wait() == ShutdownReason::InterfaceRemoved {
        eprintln!("[!] `{}' was deleted; cleaning up", tunnel.iface);
    }
    tell_service_manager("STOPPING=1");
    tunnel.take_down();
    Ok(())
}

/// Under systemd (`Type=notify`): the tunnel is up, or going down. A failure is logged, not fatal: the
/// tunnel works either way, and systemd's own timeout says the rest.
pub(crate) fn tell_service_manager(state: &str) {
    if let Err(e) = crate::sd_notify::notify(state) {
        tracing::warn!("cannot tell the service manager {state}: {e}");
    }
}

/// `fastwire down TARGET`: stops the `fastwire up` that runs TARGET (a config file or an interface
/// name), or stops a daemon started as `fastwire IFACE`.
pub fn down(target: &str) -> Result<(), String> {
    let iface = target_interface(target)?;
    let pid_file = pid_file_path(&iface);
    let mut stale_pid_file = false;
    if let Some(pid) = read_pid_file(&pid_file) {
        if os::is_fastwire_up(pid) {
            return stop_up_process(pid, &iface);
        }
        eprintln!("[#] rm {} (stale: pid {pid} is gone)", pid_file.display());
        let _ = std::fs::remove_file(&pid_file);
        stale_pid_file = true;
    }
    if let Some(result) = os::stop_daemon(&iface) {
        return result;
    }
    if os::interface_exists(&iface) {
        Err(format!(
            "`{iface}' was not started by fastwire (no {} and no UAPI endpoint)",
            pid_file.display(),
        ))
    } else if stale_pid_file {
        Err(format!("`{iface}' is not running (its pid file was stale)"))
    } else {
        Err(format!(
            "`{iface}' is not running (no {})",
            pid_file.display()
        ))
    }
}

/// A file path names its interface by its file name; anything else must be an interface name.
fn target_interface(target: &str) -> Result<String, String> {
    if target.contains('/') || target.contains('\\') || target.ends_with(".conf") {
        config::interface_name(Path::new(target))
    } else if config::is_valid_interface_name(target) {
        Ok(target.to_string())
    } else {
        Err(format!(
            "`{target}' is neither a config file (NAME.conf) nor an interface name"
        ))
    }
}

/// One tunnel being brought up, run and taken down.
struct Tunnel<'a> {
    /// The name from the configuration file (`wg0`).
    iface: String,
    /// The name the system gave the device (macOS: `utunN`; elsewhere the same).
    device: String,
    config: &'a QuickConfig,
    daemon: Option<Daemon>,
    undo: Vec<Undo>,
    pid_file: Option<PathBuf>,
}

impl<'a> Tunnel<'a> {
    fn new(iface: String, config: &'a QuickConfig) -> Self {
        Tunnel {
            device: iface.clone(),
            iface,
            config,
            daemon: None,
            undo: Vec::new(),
            pid_file: None,
        }
    }

    /// wg-quick's `cmd_up`: interface, PreUp, configuration, addresses, MTU and link up, DNS, routes,
    /// PostUp; then the pid file for `down`.
    fn bring_up(
        &mut self,
        path: &Path,
        options: DaemonOptions,
        update: &DeviceUpdate,
    ) -> Result<(), String> {
        let interface = &self.config.interface;
        let mtu = options.mtu;
        let daemon = Daemon::start(options)?;
        self.device = daemon.iface().to_string();
        let named = if self.device == self.iface {
            String::new()
        } else {
            format!(" as {}", self.device)
        };
        eprintln!(
            "[#] fastwire: create {}{named} (mtu {mtu}, {})",
            self.iface,
            daemon.data_path()
        );
        self.daemon = Some(daemon);
        os::after_create(&self.iface, &self.device, &mut self.undo)?;
        self.run_hooks(&interface.pre_up)?;
        eprintln!(
            "[#] fastwire: configure {} from {} ({} peer{})",
            self.device,
            path.display(),
            update.peers.len(),
            if update.peers.len() == 1 { "" } else { "s" }
        );
        self.apply(update)?;
        for address in &interface.addresses {
            os::add_address(&self.device, address)?;
        }
        os::set_mtu_up(&self.device, mtu)?;
        os::set_dns(&self.device, interface, &mut self.undo)?;
        let daemon = self.daemon.as_ref().ok_or("internal error: no daemon")?;
        os::add_routes(
            RouteContext {
                device: &self.device,
                config: self.config,
                update,
                daemon,
                undo: &mut self.undo,
            },
            &route_order(self.config),
        )?;
        self.run_hooks(&interface.post_up)?;
        self.pid_file = Some(write_pid_file(&self.iface)?);
        Ok(())
    }

    fn wait(&self) -> ShutdownReason {
        match &self.daemon {
            Some(daemon) => daemon.wait_for_shutdown(),
            None => ShutdownReason::InterfaceRemoved,
        }
    }

    /// wg-quick's `cmd_down`: PreDown, remove what we added, delete the interface, PostDown.
    fn take_down(mut self) {
        let interface = &self.config.interface;
        self.run_hooks_best_effort(&interface.pre_down);
        self.undo_system_changes();
        self.stop_daemon();
        self.run_hooks_best_effort(&interface.post_down);
        self.remove_pid_file();
    }

    /// A step of `up` failed: remove what the steps before it made (no down hooks, as wg-quick).
    fn undo_after_failure(mut self) {
        self.undo_system_changes();
        self.stop_daemon();
        self.remove_pid_file();
    }

    fn apply(&self, update: &DeviceUpdate) -> Result<(), String> {
        let daemon = self
            .daemon
            .as_ref()
            .ok_or_else(|| format!("`{}' is not running", self.iface))?;
        daemon
            .apply(update)
            .map_err(|e| format!("cannot configure `{}': {e}", self.device))
    }

    fn stop_daemon(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            eprintln!("[#] fastwire: delete {}", self.device);
            daemon.stop();
        }
    }

    fn remove_pid_file(&mut self) {
        if let Some(pid_file) = self.pid_file.take() {
            let _ = std::fs::remove_file(pid_file);
        }
    }

    fn undo_system_changes(&mut self) {
        let interface_there = os::interface_exists(&self.device);
        // Consecutive `ip route delete`s run as one `ip -batch`: 10,000 routes, one process.
        let mut ip_batch = String::new();
        while let Some(change) = self.undo.pop() {
            if change.with_interface && !interface_there {
                continue;
            }
            let args: Vec<&str> = change.command.iter().map(String::as_str).collect();
            if let Some(line) = ip_batch_line(&args) {
                eprintln!("[#] {}", args.join(" "));
                ip_batch.push_str(&line);
                continue;
            }
            run_ip_batch_best_effort(&mut ip_batch);
            run_best_effort(&args);
        }
        run_ip_batch_best_effort(&mut ip_batch);
    }

    fn hook_command(&self, hook: &str) -> String {
        hook.replace("%i", &self.iface)
    }

    fn run_hooks(&self, hooks: &[String]) -> Result<(), String> {
        for hook in hooks {
            let command = self.hook_command(hook);
            run_hook(&command).map_err(|reason| format!("hook `{command}' {reason}"))?;
        }
        Ok(())
    }

    /// Down hooks must not stop the teardown: a failure is reported and the next step runs.
    fn run_hooks_best_effort(&self, hooks: &[String]) {
        for hook in hooks {
            let command = self.hook_command(hook);
            if let Err(reason) = run_hook(&command) {
                eprintln!("[!] hook `{command}' {reason}");
            }
        }
    }
}

/// The system's side of `fastwire up` for `config` on macOS and on Windows, without running anything:
/// address, MTU, DNS and route commands, with endpoint host names resolved by `resolve` (a fuzzer or test
/// passes one that never touches the network). The Linux commands read the live routing table while
/// they run, so they have no dry form.
pub fn dry_plans(
    config: &QuickConfig,
    resolve: impl FnMut(&config::Endpoint) -> Result<std::net::SocketAddr, String>,
) -> Result<Vec<Vec<String>>, String> {
    let update = config.device_update_with(resolve)?;
    let interface = &config.interface;
    let mtu = interface.mtu.unwrap_or_else(|| tunnel_mtu(None));
    let routes = route_order(config);
    let mut plans = Vec::new();
    for address in &interface.addresses {
        plans.push(macos::address_command("utun9", address));
        plans.push(windows::address_command("wg0", address));
    }
    plans.extend(windows::mtu_commands("wg0", mtu));
    plans.extend(windows::dns_commands("wg0", &interface.dns_servers));
    for &allowed in &routes {
        plans.extend(macos::route_plan("utun9", allowed).0);
        plans.extend(windows::route_plan("wg0", allowed).0);
    }
    for endpoint in endpoint_addresses(&update) {
        plans.push(macos::endpoint_route(endpoint, None));
        plans.push(windows::endpoint_route(endpoint, 1, None));
    }
    Ok(plans)
}

/// Every peer's allowed IPs, once each, most specific first (wg-quick: `sort -nr -k 2 -t /`).
fn route_order(config: &QuickConfig) -> Vec<AllowedIp> {
    let mut seen = HashSet::new();
    let mut routes: Vec<AllowedIp> = config
        .peers
        .iter()
        .flat_map(|peer| peer.allowed_ips.iter().copied())
        .filter(|allowed| seen.insert(*allowed))
        .collect();
    routes.sort_by_key(|route| std::cmp::Reverse(route.cidr));
    routes
}

/// Every endpoint's address, UDP and TCP: what a default route through the tunnel must not capture.
fn endpoint_addresses(update: &DeviceUpdate) -> Vec<std::net::IpAddr> {
    let mut seen = HashSet::new();
    update
        .peers
        .iter()
        .filter_map(|peer| peer.endpoint)
        .map(|endpoint| endpoint.addr.ip())
        .filter(|ip| seen.insert(*ip))
        .collect()
}

/// A link MTU less the tunnel's overhead (the fallback when none is known).
fn tunnel_mtu(link_mtu: Option<u64>) -> u16 {
    let link_mtu = link_mtu
        .filter(|&mtu| mtu > MTU_OVERHEAD)
        .unwrap_or(FALLBACK_LINK_MTU);
    u16::try_from(link_mtu - MTU_OVERHEAD).unwrap_or(u16::MAX)
}

fn word_after<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == word)?;
    words.next()
}

/// Runs a command shown as `[#] command`, as wg-quick's `cmd` does; its own output goes to ours.
fn run(args: &[&str]) -> Result<(), String> {
    eprintln!("[#] {}", args.join(" "));
    let (program, rest) = args.split_first().ok_or("internal error: empty command")?;
    let status = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `{program}': {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}' failed ({status})", args.join(" ")))
    }
}

/// [`run`] for owned arguments (command plans).
fn run_plan(command: &[String]) -> Result<(), String> {
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    run(&args)
}

fn run_best_effort(args: &[&str]) {
    if let Err(reason) = run(args) {
        eprintln!("[!] {reason}");
    }
}

/// `ip -4 route delete ...` as a line of `ip -batch` (the address tells the family); `None` for any
/// other command.
fn ip_batch_line(args: &[&str]) -> Option<String> {
    match args {
        ["ip", "-4" | "-6", "route", "delete", rest @ ..] => {
            Some(format!("route delete {}\n", rest.join(" ")))
        }
        _ => None,
    }
}

/// Runs the collected lines with `ip -force -batch -` (every line tried, failures reported) and
/// empties them.
fn run_ip_batch_best_effort(lines: &mut String) {
    if lines.is_empty() {
        return;
    }
    let input = std::mem::take(lines);
    let child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn();
    let result = child.map_err(|e| e.to_string()).and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            // A child that exits without reading is reported by its status below.
            let _ = std::io::Write::write_all(&mut stdin, input.as_bytes());
        }
        child.wait().map_err(|e| e.to_string())
    });
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("[!] `ip -force -batch -' failed ({status})"),
        Err(e) => eprintln!("[!] cannot run `ip -batch': {e}"),
    }
}

/// Runs a read-only query silently; `None` if it could not run or failed.
fn query(args: &[&str]) -> Option<String> {
    let (program, rest) = args.split_first()?;
    let output = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Hooks run under the platform's shell (bash on Unix, as wg-quick; `cmd /c` on Windows).
fn run_hook(command: &str) -> Result<(), String> {
    eprintln!("[#] {command}");
    let (shell, flag) = os::HOOK_SHELL;
    let status = Command::new(shell)
        .arg(flag)
        .arg(command)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not run {shell}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status})"))
    }
}

fn pid_file_path(iface: &str) -> PathBuf {
    os::pid_dir().join(format!("{iface}.pid"))
}

fn write_pid_file(iface: &str) -> Result<PathBuf, String> {
    let dir = os::pid_dir();
    let cannot = |what: &Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
    std::fs::create_dir_all(&dir).map_err(|e| cannot(&dir, e))?;
    let path = pid_file_path(iface);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| cannot(&path, e))?;
    // The umask may have narrowed the mode; `down` run by another admin tool should still read it.
    make_world_readable(&file)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| cannot(&path, e))?;
    Ok(path)
}

fn make_world_readable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

fn read_pid_file(path: &Path) -> Option<u32> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

/// The pid of a live `fastwire up` for this interface, if its pid file names one.
fn running_up_process(iface: &str) -> Option<u32> {
    read_pid_file(&pid_file_path(iface)).filter(|&pid| os::is_fastwire_up(pid))
}

fn stop_up_process(pid: u32, iface: &str) -> Result<(), String> {
    os::ask_to_stop(pid, iface)?;
    let stopped = wait_until(DOWN_TIMEOUT, || {
        !os::process_alive(pid) && !os::interface_exists(iface)
    });
    if stopped {
        Ok(())
    } else {
        Err(format!(
            "`{iface}' (pid {pid}) did not stop within {} s",
            DOWN_TIMEOUT.as_secs()
        ))
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_config(text: &str) -> QuickConfig {
        config::parse("t.conf", text).unwrap()
    }

    #[test]
    fn routes_are_deduplicated_and_most_specific_first() {
        let config = sample_config(
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
             [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
             AllowedIPs = 0.0.0.0/0, 10.0.0.0/8, 10.1.2.3/32, ::/0\n\
             [Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\n\
             AllowedIPs = 10.0.0.0/8, fd78::/64\n",
        );
        let order: Vec<String> = route_order(&config)
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.cidr))
            .collect();
        assert_eq!(
            order,
            [
                "fd78::/64",
                "10.1.2.3/32",
                "10.0.0.0/8",
                "0.0.0.0/0",
                "::/0"
            ]
        );
    }

    #[test]
    fn dry_plans_cover_addresses_routes_and_endpoints_without_the_network() {
        let config = sample_config(
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.78.0.2/24\n\
             DNS = 10.78.0.53\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
             Endpoint = vpn.example.org:51820\nAllowedIPs = 0.0.0.0/0\n",
        );
        let plans = dry_plans(&config, |_| Ok("203.0.113.7:51820".parse().unwrap())).unwrap();
        let text: Vec<String> = plans.iter().map(|p| p.join(" ")).collect();
        assert!(text.contains(&"ifconfig utun9 inet 10.78.0.2/24 10.78.0.2 alias".to_string()));
        assert!(text.contains(&"route -q -n add -inet 128.0.0.0/1 -interface utun9".to_string()));
        assert!(
            text.contains(&"route -q -n add -inet 203.0.113.7 127.0.0.1 -blackhole".to_string())
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("netsh interface ipv4 set dnsservers wg0"))
        );
        assert!(dry_plans(&config, |_| Err("no network".into())).is_err());
    }

    #[test]
    fn words_follow_their_keyword() {
        assert_eq!(word_after("a b c", "c"), None);
        assert_eq!(word_after("dev eth0 proto", "dev"), Some("eth0"));
    }

    #[test]
    fn the_tunnel_mtu_leaves_room_for_the_overhead() {
        assert_eq!(tunnel_mtu(Some(1500)), 1420);
        assert_eq!(tunnel_mtu(Some(9000)), 8920);
        assert_eq!(tunnel_mtu(None), 1420);
        assert_eq!(tunnel_mtu(Some(40)), 1420, "nonsense falls back");
    }

    #[test]
    fn route_deletes_batch_and_nothing_else_does() {
        assert_eq!(
            ip_batch_line(&["ip", "-4", "route", "delete", "10.0.0.0/8", "dev", "wg0"]).as_deref(),
            Some("route delete 10.0.0.0/8 dev wg0\n")
        );
        assert_eq!(
            ip_batch_line(&["ip", "-6", "rule", "delete", "table", "51820"]),
            None
        );
        assert_eq!(ip_batch_line(&["resolvconf", "-d", "wg0", "-f"]), None);
    }

    #[test]
    fn down_targets_name_their_interface() {
        assert_eq!(target_interface("wg0").unwrap(), "wg0");
        assert_eq!(target_interface("/etc/wireguard/wg1.conf").unwrap(), "wg1");
        assert_eq!(target_interface("./fwc0.conf").unwrap(), "fwc0");
        assert!(target_interface("a name").is_err());
        assert!(target_interface("/tmp/thisnameistoolong.conf").is_err());
        assert!(target_interface("/tmp/x.txt").is_err());
    }
}
