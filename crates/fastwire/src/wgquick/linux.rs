//! `fastwire up` on Linux: wg-quick's linux.bash — `ip` for addresses, MTU and routes, a default route
//! the wg-quick way (fwmark + its own table + policy rules, so the tunnel's own packets do not loop),
//! DNS through resolvconf.

use super::{RouteContext, Undo, query, run, tunnel_mtu, word_after};
use crate::config::{InterfaceAddress, InterfaceSection, Table};
use fastwire_engine::config::{AllowedIp, DeviceUpdate};
use fastwire_proto::allowed_ips::masked;
use std::io::Read;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// wg-quick's first choice of table and fwmark for default routes.
const FIRST_DEFAULT_ROUTE_TABLE: u32 = 51820;
/// How many tables to probe for a free one before giving up.
const TABLE_PROBE_LIMIT: u32 = 1000;
/// Where a daemon started as `fastwire IFACE` serves its UAPI socket.
const UAPI_DIR: &str = "/var/run/wireguard";

pub(super) const HOOK_SHELL: (&str, &str) = ("bash", "-c");

pub(super) fn pid_dir() -> PathBuf {
    PathBuf::from("/run/fastwire")
}

/// The device is named as the file.
pub(super) fn device_name(iface: &str) -> String {
    iface.to_string()
}

pub(super) fn after_create(
    _iface: &str,
    _device: &str,
    _undo: &mut Vec<Undo>,
) -> Result<(), String> {
    Ok(())
}

pub(super) fn interface_exists(iface: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", iface])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub(super) fn add_address(device: &str, address: &InterfaceAddress) -> Result<(), String> {
    let address = address.to_string();
    run(&[
        "ip",
        family_flag(&address),
        "address",
        "add",
        &address,
        "dev",
        device,
    ])
}

pub(super) fn set_mtu_up(device: &str, mtu: u16) -> Result<(), String> {
    run(&[
        "ip",
        "link",
        "set",
        "mtu",
        &mtu.to_string(),
        "up",
        "dev",
        device,
    ])
}

/// wg-quick's `set_dns`: nameservers (and search domains) through resolvconf, if there are
/// nameservers at all.
pub(super) fn set_dns(
    device: &str,
    interface: &InterfaceSection,
    undo: &mut Vec<Undo>,
) -> Result<(), String> {
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
    let name = format!("{}{device}", resolvconf_interface_prefix(&resolvconf));
    run_with_input(&["resolvconf", "-a", &name, "-m", "0", "-x"], &input)?;
    undo.push(Undo::new(&["resolvconf", "-d", &name, "-f"], false));
    Ok(())
}

/// wg-quick's `add_route` for each allowed IP. The routes go to `ip` in batches (`ip -batch -`: one
/// process and one netlink socket for all of them), and whether a prefix is already covered by a route
/// through us is decided here from one listing of the device's routes, so 10,000 allowed IPs cost two
/// processes, not 20,000.
pub(super) fn add_routes(mut ctx: RouteContext<'_>, routes: &[AllowedIp]) -> Result<(), String> {
    let mut fwmark = ctx.config.interface.fwmark.filter(|&mark| mark != 0);
    let mut batch = RouteBatch::default();
    let mut through_us: Option<Vec<(IpAddr, u8)>> = None;
    for &allowed in routes {
        let prefix = format!("{}/{}", allowed.addr, allowed.cidr);
        let family = family_flag(&prefix);
        let device = ctx.device;
        match &ctx.config.interface.table {
            Table::Off => {}
            Table::Named(table) => batch.add(
                &mut ctx,
                &[
                    "ip", family, "route", "add", &prefix, "dev", device, "table", table,
                ],
                &[
                    "ip", family, "route", "delete", &prefix, "dev", device, "table", table,
                ],
            ),
            Table::Auto if allowed.cidr == 0 => {
                batch.run()?;
                add_default_route(&mut ctx, &mut fwmark, family, &prefix)?;
            }
            Table::Auto => {
                // Already covered by a route through us (the subnet of an Address, a wider prefix):
                // what `ip route show dev DEV match PREFIX` would list.
                let known = through_us.get_or_insert_with(|| routes_through(device));
                if known.iter().any(|&route| covers(route, allowed)) {
                    continue;
                }
                known.push((allowed.addr, allowed.cidr));
                batch.add(
                    &mut ctx,
                    &["ip", family, "route", "add", &prefix, "dev", device],
                    &["ip", family, "route", "delete", &prefix, "dev", device],
                );
            }
        }
    }
    batch.run()
}

/// `ip route` commands waiting to run together.
#[derive(Default)]
struct RouteBatch {
    /// Each command without its `ip -4`/`ip -6` (the address tells the family).
    lines: String,
}

impl RouteBatch {
    fn add(&mut self, ctx: &mut RouteContext<'_>, command: &[&str], undo: &[&str]) {
        // Printed as wg-quick prints each command.
        eprintln!("[#] {}", command.join(" "));
        self.lines.push_str(&command[2..].join(" "));
        self.lines.push('\n');
        // Pushed before it runs: a batch that fails half-way leaves routes that the undo must find.
        ctx.undo.push(Undo::new(undo, true));
    }

    fn run(&mut self) -> Result<(), String> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.lines);
        run_with_input(&["ip", "-batch", "-"], &lines).map_err(|e| format!("adding routes: {e}"))
    }
}

/// The prefixes of the main table's routes through `device`, both families.
fn routes_through(device: &str) -> Vec<(IpAddr, u8)> {
    let mut routes = Vec::new();
    for (family, default) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
        let listing = query(&["ip", family, "route", "show", "dev", device]).unwrap_or_default();
        routes.extend(listing.lines().filter_map(|line| {
            let first = line.split_whitespace().next()?;
            let prefix = if first == "default" { default } else { first };
            parse_prefix(prefix)
        }));
    }
    routes
}

/// `10.0.0.0/8`, or a host address (`10.0.0.5`: /32, `fd00::5`: /128), as `ip route` prints them.
fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    match text.split_once('/') {
        Some((addr, cidr)) => Some((addr.parse().ok()?, cidr.parse().ok()?)),
        None => {
            let addr: IpAddr = text.parse().ok()?;
            Some((addr, if addr.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// Whether `route` contains all of `allowed` (same family, no longer, same leading bits).
fn covers(route: (IpAddr, u8), allowed: AllowedIp) -> bool {
    let (addr, cidr) = route;
    addr.is_ipv4() == allowed.addr.is_ipv4()
        && cidr <= allowed.cidr
        && masked(allowed.addr, cidr) == masked(addr, cidr)
}

/// wg-quick's `add_default`: the default route goes into its own table, used by every packet that
/// does not carry the tunnel's fwmark (so the tunnel's own UDP still leaves by the main table), and
/// the main table is consulted first for everything but its default route.
///
/// wg-quick also installs nftables/iptables rules here (drop spoofed packets to the tunnel
/// address, save/restore the fwmark through conntrack for reverse-path filtering). fastwire does
/// not: it would need a firewall dependency and wg-quick's exact rule sets, and the routing works
/// without them.
fn add_default_route(
    ctx: &mut RouteContext<'_>,
    fwmark: &mut Option<u32>,
    family: &'static str,
    prefix: &str,
) -> Result<(), String> {
    let table = match *fwmark {
        Some(mark) => mark,
        None => {
            let table = free_table()?;
            eprintln!("[#] fastwire: set {} fwmark {table}", ctx.device);
            ctx.apply(&DeviceUpdate {
                fwmark: Some(table),
                ..DeviceUpdate::default()
            })?;
            *fwmark = Some(table);
            table
        }
    };
    let table_text = table.to_string();
    let not_marked = ["not", "fwmark", &table_text, "table", &table_text];
    run(&[&["ip", family, "rule", "add"][..], &not_marked[..]].concat())?;
    ctx.undo.push(Undo::new(
        &[&["ip", family, "rule", "delete"][..], &not_marked[..]].concat(),
        false,
    ));
    let suppress = ["table", "main", "suppress_prefixlength", "0"];
    run(&[&["ip", family, "rule", "add"][..], &suppress[..]].concat())?;
    ctx.undo.push(Undo::new(
        &[&["ip", family, "rule", "delete"][..], &suppress[..]].concat(),
        false,
    ));
    let device = ctx.device;
    run(&[
        "ip",
        family,
        "route",
        "add",
        prefix,
        "dev",
        device,
        "table",
        &table_text,
    ])?;
    ctx.undo.push(Undo::new(
        &[
            "ip",
            family,
            "route",
            "delete",
            prefix,
            "dev",
            device,
            "table",
            &table_text,
        ],
        true,
    ));
    if family == "-4" && !src_valid_mark_enabled() {
        run(&["sysctl", "-q", "net.ipv4.conf.all.src_valid_mark=1"])?;
    }
    Ok(())
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

fn family_flag(address: &str) -> &'static str {
    if address.contains(':') { "-6" } else { "-4" }
}

/// wg-quick's `set_mtu_up` when no MTU is given: the smallest MTU on the way to any endpoint (else of
/// the default route's device, else 1500), less 80 bytes of tunnel overhead.
pub(super) fn automatic_mtu(update: &DeviceUpdate) -> u16 {
    let mut smallest: Option<u64> = None;
    for endpoint in udp_endpoint_addresses(update) {
        let route = query(&["ip", "route", "get", &endpoint.to_string()]).unwrap_or_default();
        if let Some(mtu) = route_mtu(&route) {
            smallest = Some(smallest.map_or(mtu, |s| s.min(mtu)));
        }
    }
    if smallest.is_none() {
        let default_route = query(&["ip", "route", "show", "default"]).unwrap_or_default();
        smallest = default_route.lines().next().and_then(route_mtu);
    }
    tunnel_mtu(smallest)
}

/// The UDP endpoints' addresses (TCP endpoints do not constrain the MTU: TCP re-segments the stream to
/// fit its own path, so a tunnel packet never has to fit in one underlay packet).
fn udp_endpoint_addresses(update: &DeviceUpdate) -> Vec<std::net::IpAddr> {
    update
        .peers
        .iter()
        .filter_map(|peer| peer.endpoint)
        .filter(|endpoint| !endpoint.is_tcp())
        .map(|endpoint| endpoint.addr.ip())
        .collect()
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

/// Whether `pid` is alive and is this program running `up` (guards against a recycled pid).
pub(super) fn is_fastwire_up(pid: u32) -> bool {
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
pub(super) fn process_alive(pid: u32) -> bool {
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

pub(super) fn ask_to_stop(pid: u32, _iface: &str) -> Result<(), String> {
    run(&["kill", "-TERM", &pid.to_string()])
}

/// `down` of a daemon started as `fastwire IFACE`: deleting its interface stops it. `None` when there is
/// no such daemon.
pub(super) fn stop_daemon(iface: &str) -> Option<Result<(), String>> {
    let socket = Path::new(UAPI_DIR).join(format!("{iface}.sock"));
    if !socket.exists() {
        return None;
    }
    if !interface_exists(iface) {
        return Some(Err(format!(
            "`{iface}' does not exist here, yet {} does: a stale socket, or a daemon in another network namespace",
            socket.display()
        )));
    }
    if let Err(e) = run(&["ip", "link", "delete", "dev", iface]) {
        return Some(Err(e));
    }
    if !super::wait_until(super::DOWN_TIMEOUT, || !socket.exists()) {
        eprintln!(
            "[!] `{iface}' is deleted, but {} is still there after {} s",
            socket.display(),
            super::DOWN_TIMEOUT.as_secs()
        );
    }
    Some(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_mtu_reads_an_explicit_mtu() {
        assert_eq!(
            route_mtu("10.77.0.2 dev veth0 src 10.77.0.1 uid 0 \n    cache mtu 1400"),
            Some(1400)
        );
    }

    #[test]
    fn process_liveness_uses_proc() {
        assert!(process_alive(std::process::id()));
        assert!(!is_fastwire_up(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn route_listing_prefixes_and_coverage() {
        assert_eq!(
            parse_prefix("10.78.0.0/24"),
            Some(("10.78.0.0".parse().unwrap(), 24))
        );
        assert_eq!(
            parse_prefix("10.0.0.5"),
            Some(("10.0.0.5".parse().unwrap(), 32))
        );
        assert_eq!(
            parse_prefix("fd00::5"),
            Some(("fd00::5".parse().unwrap(), 128))
        );
        assert_eq!(parse_prefix("unreachable"), None);
        let allowed = |text: &str| {
            let (addr, cidr) = parse_prefix(text).unwrap();
            AllowedIp { addr, cidr }
        };
        let subnet = parse_prefix("10.78.0.0/24").unwrap();
        assert!(covers(subnet, allowed("10.78.0.5/32")));
        assert!(
            covers(subnet, allowed("10.78.0.0/24")),
            "an equal route matches too"
        );
        assert!(
            !covers(subnet, allowed("10.78.0.0/16")),
            "a wider prefix is not covered"
        );
        assert!(!covers(subnet, allowed("10.79.0.5/32")));
        assert!(
            !covers(subnet, allowed("fd78::/64")),
            "families never cover each other"
        );
        assert!(covers(
            parse_prefix("::/0").unwrap(),
            allowed("fd78::5/128")
        ));
    }

    #[test]
    fn family_follows_the_address() {
        assert_eq!(family_flag("10.0.0.1/24"), "-4");
        assert_eq!(family_flag("fd78::1/64"), "-6");
    }
}
