//! `fastwire up FILE` and `fastwire down FILE|IFACE`: what wg-quick's `cmd_up` / `cmd_down` do around an
//! interface (hooks, addresses, MTU, DNS, routes, the default-route rules), with fastwire's daemon in
//! place of the kernel module. `up` stays in the foreground and undoes its own work when it stops.
//!
//! Each system change is shown on stderr as `[#] command`, as wg-quick shows it. Every change that
//! outlives the interface (policy rules, DNS) is recorded and undone in reverse order, both on a normal
//! shutdown and when a step of `up` fails.

use crate::config::{self, QuickConfig, Table};
use crate::daemon::{Daemon, DaemonOptions, DataPlane, ShutdownReason};
use fastwire_engine::config::{AllowedIp, DeviceUpdate};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `up` writes `IFACE.pid` here so `down` can find it.
const PID_DIR: &str = "/run/fastwire";
/// Where a daemon started as `fastwire IFACE` serves its UAPI socket.
const UAPI_DIR: &str = "/var/run/wireguard";
/// wg-quick's first choice of table and fwmark for default routes.
const FIRST_DEFAULT_ROUTE_TABLE: u32 = 51820;
/// How many tables to probe for a free one before giving up.
const TABLE_PROBE_LIMIT: u32 = 1000;
/// How long `down` waits for the tunnel to go.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// wg-quick's overhead allowance when it derives the MTU from the underlay (IPv6 + UDP + WireGuard).
const MTU_OVERHEAD: u64 = 80;
const FALLBACK_LINK_MTU: u64 = 1500;

/// `fastwire up FILE`: brings the tunnel up, runs until SIGINT/SIGTERM or until the interface is
/// deleted, then takes everything down again. `ListenTcpPort` and `tcp://` endpoints reach the device
/// through the same `set` as the rest of the file.
pub fn up(file: &Path, plane: DataPlane, tcp_max_unauthenticated: usize) -> Result<(), String> {
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
    if interface_exists(&iface) {
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
        .unwrap_or_else(|| automatic_mtu(&update));
    let options = DaemonOptions {
        iface: iface.clone(),
        plane: plane.or(DataPlane {
            workers: config.interface.workers,
            tun_queues: config.interface.tun_queues,
            ring_capacity: config.interface.ring_capacity,
        }),
        mtu,
        // The file's `set` below opens it, with the rest of the configuration.
        listen_tcp_port: None,
        tcp_max_unauthenticated,
    };

    let mut tunnel = Tunnel::new(iface, &config);
    if let Err(reason) = tunnel.bring_up(&path, options, &update) {
        tunnel.undo_after_failure();
        return Err(reason);
    }
    if tunnel.wait() == ShutdownReason::InterfaceRemoved {
        eprintln!("[!] `{}' was deleted; cleaning up", tunnel.iface);
    }
    tunnel.take_down();
    Ok(())
}

/// `fastwire down TARGET`: stops the `fastwire up` that runs TARGET (a config file or an interface
/// name), or deletes the interface of a daemon started as `fastwire IFACE`.
pub fn down(target: &str) -> Result<(), String> {
    let iface = target_interface(target)?;
    let pid_file = pid_file_path(&iface);
    let mut stale_pid_file = false;
    if let Some(pid) = read_pid_file(&pid_file) {
        if is_fastwire_up(pid) {
            return stop_up_process(pid, &iface);
        }
        eprintln!("[#] rm {} (stale: pid {pid} is gone)", pid_file.display());
        let _ = std::fs::remove_file(&pid_file);
        stale_pid_file = true;
    }
    let socket = Path::new(UAPI_DIR).join(format!("{iface}.sock"));
    if socket.exists() {
        if !interface_exists(&iface) {
            return Err(format!(
                "`{iface}' does not exist here, yet {} does: a stale socket, or a daemon in another network namespace",
                socket.display()
            ));
        }
        // The daemon exits when its interface goes away.
        run(&["ip", "link", "delete", "dev", &iface])?;
        if !wait_until(DOWN_TIMEOUT, || !socket.exists()) {
            eprintln!(
                "[!] `{iface}' is deleted, but {} is still there after {} s",
                socket.display(),
                DOWN_TIMEOUT.as_secs()
            );
        }
        return Ok(());
    }
    if interface_exists(&iface) {
        Err(format!(
            "`{iface}' was not started by fastwire (no {} and no {})",
            pid_file.display(),
            socket.display()
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
    if target.contains('/') || target.ends_with(".conf") {
        config::interface_name(Path::new(target))
    } else if config::is_valid_interface_name(target) {
        Ok(target.to_string())
    } else {
        Err(format!(
            "`{target}' is neither a config file (NAME.conf) nor an interface name"
        ))
    }
}

/// A change `up` made that does not vanish with the interface by itself (or that it removes early for
/// tidiness), and so must be undone.
enum Undo {
    Route {
        family: &'static str,
        prefix: String,
        table: Option<String>,
    },
    Rule {
        family: &'static str,
        selector: Vec<String>,
    },
    Dns {
        resolvconf_name: String,
    },
}

/// One tunnel being brought up, run and taken down.
struct Tunnel<'a> {
    iface: String,
    config: &'a QuickConfig,
    daemon: Option<Daemon>,
    /// The fwmark (= table) used for default routes, once known.
    fwmark: Option<u32>,
    undo: Vec<Undo>,
    pid_file: Option<PathBuf>,
}

impl<'a> Tunnel<'a> {
    fn new(iface: String, config: &'a QuickConfig) -> Self {
        Tunnel {
            iface,
            config,
            daemon: None,
            fwmark: config.interface.fwmark.filter(|&mark| mark != 0),
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
        let iface = self.iface.clone();
        let interface = &self.config.interface;
        let mtu = options.mtu;
        let daemon = Daemon::start(options)?;
        eprintln!(
            "[#] fastwire: create {iface} (mtu {mtu}, {})",
            daemon.data_path()
        );
        self.daemon = Some(daemon);
        self.run_hooks(&interface.pre_up)?;
        eprintln!(
            "[#] fastwire: configure {iface} from {} ({} peer{})",
            path.display(),
            update.peers.len(),
            if update.peers.len() == 1 { "" } else { "s" }
        );
        self.apply(update)?;
        for address in &interface.addresses {
            let address = address.to_string();
            run(&[
                "ip",
                family_flag(&address),
                "address",
                "add",
                &address,
                "dev",
                &iface,
            ])?;
        }
        run(&[
            "ip",
            "link",
            "set",
            "mtu",
            &mtu.to_string(),
            "up",
            "dev",
            &iface,
        ])?;
        self.set_dns()?;
        for allowed in route_order(self.config) {
            self.add_route(allowed)?;
        }
        self.run_hooks(&interface.post_up)?;
        self.pid_file = Some(write_pid_file(&iface)?);
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
            .map_err(|e| format!("cannot configure `{}': {e}", self.iface))
    }

    fn stop_daemon(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            eprintln!("[#] fastwire: delete {}", self.iface);
            daemon.stop();
        }
    }

    fn remove_pid_file(&mut self) {
        if let Some(pid_file) = self.pid_file.take() {
            let _ = std::fs::remove_file(pid_file);
        }
    }

    fn undo_system_changes(&mut self) {
        // Routes through the interface disappear with it; delete them only while it is still there.
        let interface_there = interface_exists(&self.iface);
        while let Some(change) = self.undo.pop() {
            match change {
                Undo::Route {
                    family,
                    prefix,
                    table,
                } => {
                    if interface_there {
                        let mut args = vec!["ip", family, "route", "delete", &prefix];
                        args.extend(["dev", &self.iface]);
                        if let Some(table) = &table {
                            args.extend(["table", table]);
                        }
                        run_best_effort(&args);
                    }
                }
                Undo::Rule { family, selector } => {
                    let mut args = vec!["ip", family, "rule", "delete"];
                    args.extend(selector.iter().map(String::as_str));
                    run_best_effort(&args);
                }
                Undo::Dns { resolvconf_name } => {
                    run_best_effort(&["resolvconf", "-d", &resolvconf_name, "-f"]);
                }
            }
        }
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

    /// wg-quick's `set_dns`: nameservers (and search domains) through resolvconf, if there are
    /// nameservers at all.
    fn set_dns(&mut self) -> Result<(), String> {
        let interface = &self.config.interface;
        if interface.dns_servers.is_empty() {
            return Ok(());
        }
        let Some(resolvconf) = find_in_path("resolvconf") else {
            eprintln!(
                "[!] Warning: DNS was not applied: resolvconf is not installed (set DNS in PostUp/PostDown instead)"
            );
            return Ok(());
        };
        let mut input = String::new();
        for server in &interface.dns_servers {
            input.push_str(&format!("nameserver {server}\n"));
        }
        if !interface.dns_search.is_empty() {
            input.push_str(&format!("search {}\n", interface.dns_search.join(" ")));
        }
        let name = format!("{}{}", resolvconf_interface_prefix(&resolvconf), self.iface);
        run_with_input(&["resolvconf", "-a", &name, "-m", "0", "-x"], &input)?;
        self.undo.push(Undo::Dns {
            resolvconf_name: name,
        });
        Ok(())
    }

    /// wg-quick's `add_route`.
    fn add_route(&mut self, allowed: AllowedIp) -> Result<(), String> {
        let prefix = format!("{}/{}", allowed.addr, allowed.cidr);
        let family = family_flag(&prefix);
        let iface = self.iface.clone();
        match &self.config.interface.table {
            Table::Off => Ok(()),
            Table::Named(table) => {
                run(&[
                    "ip", family, "route", "add", &prefix, "dev", &iface, "table", table,
                ])?;
                self.undo.push(Undo::Route {
                    family,
                    prefix,
                    table: Some(table.clone()),
                });
                Ok(())
            }
            Table::Auto if allowed.cidr == 0 => self.add_default_route(family, prefix),
            Table::Auto => {
                // Already covered by a route through us (the subnet of an Address, a wider prefix).
                let covered = query(&[
                    "ip", family, "route", "show", "dev", &iface, "match", &prefix,
                ])
                .is_some_and(|out| !out.trim().is_empty());
                if covered {
                    return Ok(());
                }
                run(&["ip", family, "route", "add", &prefix, "dev", &iface])?;
                self.undo.push(Undo::Route {
                    family,
                    prefix,
                    table: None,
                });
                Ok(())
            }
        }
    }

    /// wg-quick's `add_default`: the default route goes into its own table, used by every packet that
    /// does not carry the tunnel's fwmark (so the tunnel's own UDP still leaves by the main table), and
    /// the main table is consulted first for everything but its default route.
    ///
    /// wg-quick also installs nftables/iptables rules here (drop spoofed packets to the tunnel
    /// address, save/restore the fwmark through conntrack for reverse-path filtering). fastwire does
    /// not: it would need a firewall dependency and wg-quick's exact rule sets, and the routing works
    /// without them.
    fn add_default_route(&mut self, family: &'static str, prefix: String) -> Result<(), String> {
        let table = match self.fwmark {
            Some(mark) => mark,
            None => {
                let table = free_table()?;
                eprintln!("[#] fastwire: set {} fwmark {table}", self.iface);
                self.apply(&DeviceUpdate {
                    fwmark: Some(table),
                    ..DeviceUpdate::default()
                })?;
                self.fwmark = Some(table);
                table
            }
        };
        let table_text = table.to_string();
        let not_marked = ["not", "fwmark", &table_text, "table", &table_text];
        run(&[&["ip", family, "rule", "add"][..], &not_marked[..]].concat())?;
        self.undo.push(Undo::Rule {
            family,
            selector: not_marked.iter().map(|s| s.to_string()).collect(),
        });
        let suppress = ["table", "main", "suppress_prefixlength", "0"];
        run(&[&["ip", family, "rule", "add"][..], &suppress[..]].concat())?;
        self.undo.push(Undo::Rule {
            family,
            selector: suppress.iter().map(|s| s.to_string()).collect(),
        });
        let iface = self.iface.clone();
        run(&[
            "ip",
            family,
            "route",
            "add",
            &prefix,
            "dev",
            &iface,
            "table",
            &table_text,
        ])?;
        self.undo.push(Undo::Route {
            family,
            prefix,
            table: Some(table_text),
        });
        if family == "-4" && !src_valid_mark_enabled() {
            run(&["sysctl", "-q", "net.ipv4.conf.all.src_valid_mark=1"])?;
        }
        Ok(())
    }
}

/// The first table from 51820 up that has no IPv4 or IPv6 routes, as wg-quick picks it.
fn free_table() -> Result<u32, String> {
    let in_use = |family: &str, table: &str| {
        query(&["ip", family, "route", "show", "table", table])
            .is_some_and(|out| !out.trim().is_empty())
    };
    (FIRST_DEFAULT_ROUTE_TABLE..FIRST_DEFAULT_ROUTE_TABLE + TABLE_PROBE_LIMIT)
        .find(|table| {
            let table = table.to_string();
            !in_use("-4", &table) && !in_use("-6", &table)
        })
        .ok_or_else(|| {
            format!(
                "no free routing table for the default route in {FIRST_DEFAULT_ROUTE_TABLE}..{}",
                FIRST_DEFAULT_ROUTE_TABLE + TABLE_PROBE_LIMIT
            )
        })
}

fn src_valid_mark_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/src_valid_mark")
        .is_ok_and(|value| value.trim() == "1")
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

fn family_flag(address: &str) -> &'static str {
    if address.contains(':') { "-6" } else { "-4" }
}

/// wg-quick's `set_mtu_up` when no MTU is given: the smallest MTU on the way to any endpoint (else of
/// the default route's device, else 1500), less 80 bytes of tunnel overhead.
fn automatic_mtu(update: &DeviceUpdate) -> u16 {
    // TCP endpoints do not constrain the MTU: TCP re-segments the stream to fit its own path, so a
    // tunnel packet never has to fit in one underlay packet.
    let endpoints: Vec<IpAddr> = update
        .peers
        .iter()
        .filter_map(|peer| peer.endpoint)
        .filter(|endpoint| !endpoint.is_tcp())
        .map(|endpoint| endpoint.addr.ip())
        .collect();
    let mut smallest: Option<u64> = None;
    for endpoint in endpoints {
        let route = query(&["ip", "route", "get", &endpoint.to_string()]).unwrap_or_default();
        if let Some(mtu) = route_mtu(&route) {
            smallest = Some(smallest.map_or(mtu, |s| s.min(mtu)));
        }
    }
    if smallest.is_none() {
        let default_route = query(&["ip", "route", "show", "default"]).unwrap_or_default();
        smallest = default_route.lines().next().and_then(route_mtu);
    }
    let link_mtu = smallest
        .filter(|&mtu| mtu > MTU_OVERHEAD)
        .unwrap_or(FALLBACK_LINK_MTU);
    u16::try_from(link_mtu - MTU_OVERHEAD).unwrap_or(u16::MAX)
}

/// The `mtu N` of a route, else the MTU of its `dev`.
fn route_mtu(route: &str) -> Option<u64> {
    if let Some(mtu) = word_after(route, "mtu").and_then(|n| n.parse().ok()) {
        return Some(mtu);
    }
    let device = word_after(route, "dev")?;
    let link = query(&["ip", "link", "show", "dev", device])?;
    word_after(&link, "mtu").and_then(|n| n.parse().ok())
}

fn word_after<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == word)?;
    words.next()
}

/// wg-quick's `resolvconf_iface_prefix`: Debian's resolvconf orders interfaces by a name prefix
/// (`tun.` for tunnels) taken from its interface-order file.
fn resolvconf_interface_prefix(resolvconf: &Path) -> String {
    const ORDER_FILE: &str = "/etc/resolvconf/interface-order";
    let is_symlink = std::fs::symlink_metadata(resolvconf).is_ok_and(|m| m.is_symlink());
    if is_symlink || !Path::new(ORDER_FILE).is_file() {
        return String::new();
    }
    let order = std::fs::read_to_string(ORDER_FILE).unwrap_or_default();
    order
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_suffix('*'))
        .find(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(|name| format!("{name}."))
        .unwrap_or_default()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
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

fn run_best_effort(args: &[&str]) {
    if let Err(reason) = run(args) {
        eprintln!("[!] {reason}");
    }
}

fn run_with_input(args: &[&str], input: &str) -> Result<(), String> {
    eprintln!("[#] {}", args.join(" "));
    let (program, rest) = args.split_first().ok_or("internal error: empty command")?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}': {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits without reading is reported by its status below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let status = child
        .wait()
        .map_err(|e| format!("`{}' failed: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}' failed ({status})", args.join(" ")))
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

/// Hooks run under bash, as wg-quick runs them.
fn run_hook(command: &str) -> Result<(), String> {
    eprintln!("[#] {command}");
    let status = Command::new("bash")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not run bash: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status})"))
    }
}

fn interface_exists(iface: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", iface])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn pid_file_path(iface: &str) -> PathBuf {
    Path::new(PID_DIR).join(format!("{iface}.pid"))
}

fn write_pid_file(iface: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let cannot = |what: &Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(PID_DIR)
        .map_err(|e| cannot(Path::new(PID_DIR), e))?;
    let path = pid_file_path(iface);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| cannot(&path, e))?;
    // The umask may have narrowed the mode; `down` run by another admin tool should still read it.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| cannot(&path, e))?;
    Ok(path)
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
    read_pid_file(&pid_file_path(iface)).filter(|&pid| is_fastwire_up(pid))
}

/// Whether `pid` is alive and is this program running `up` (guards against a recycled pid).
fn is_fastwire_up(pid: u32) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let same_program = match (
        std::fs::read_link(proc_dir.join("exe")),
        std::env::current_exe(),
    ) {
        (Ok(theirs), Ok(ours)) => theirs.file_name() == ours.file_name(),
        _ => false,
    };
    let mut cmdline = Vec::new();
    let read = std::fs::File::open(proc_dir.join("cmdline"))
        .and_then(|file| file.take(64 * 1024).read_to_end(&mut cmdline));
    same_program && read.is_ok() && cmdline.split(|&b| b == 0).any(|arg| arg == b"up")
}

/// Alive and not a zombie.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain ") ".
    let state = stat
        .rfind(')')
        .and_then(|end| stat.get(end + 1..))
        .and_then(|rest| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

fn stop_up_process(pid: u32, iface: &str) -> Result<(), String> {
    run(&["kill", "-TERM", &pid.to_string()])?;
    let stopped = wait_until(DOWN_TIMEOUT, || {
        !process_alive(pid) && !interface_exists(iface)
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
mod tests {
    use super::*;

    fn sample_config(text: &str) -> QuickConfig {
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
    fn route_mtu_reads_an_explicit_mtu() {
        assert_eq!(
            route_mtu("10.77.0.2 dev veth0 src 10.77.0.1 uid 0 \n    cache mtu 1400"),
            Some(1400)
        );
        assert_eq!(word_after("a b c", "c"), None);
        assert_eq!(word_after("dev eth0 proto", "dev"), Some("eth0"));
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

    #[test]
    fn process_liveness_uses_proc() {
        assert!(process_alive(std::process::id()));
        assert!(!is_fastwire_up(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn family_follows_the_address() {
        assert_eq!(family_flag("10.0.0.1/24"), "-4");
        assert_eq!(family_flag("fd78::1/64"), "-6");
    }
}
