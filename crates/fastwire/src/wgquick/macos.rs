//! `fastwire up` on macOS: what wg-quick's darwin.bash does. The kernel names the device `utunN`; the
//! file's name maps to it through `/var/run/wireguard/NAME.name` (as wg-quick and wireguard-go do, so
//! `wg show`, `wg-quick` and `fastwire down NAME` find it). Addresses and MTU through `ifconfig`,
//! routes through `route` (a default route as the two halves 0/1 and 128/1, with each endpoint pinned to
//! the previous default gateway so the tunnel's own packets do not loop), DNS per network service
//! through `networksetup`, restored on exit.
//!
//! Not yet run on a real Mac: the commands follow darwin.bash line by line, and the plans (not their
//! effects) are unit-tested on Linux. wg-quick's route monitor (re-pinning endpoints when the default
//! gateway changes) is not reproduced: endpoints are pinned once, at `up`.

use super::{RouteContext, Undo, query, run, run_plan, tunnel_mtu, word_after};
use crate::config::{InterfaceAddress, InterfaceSection, Table};
use fastwire_engine::config::{AllowedIp, DeviceUpdate};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const UAPI_DIR: &str = "/var/run/wireguard";

pub(super) const HOOK_SHELL: (&str, &str) = ("bash", "-c");

pub(super) fn pid_dir() -> PathBuf {
    PathBuf::from("/var/run/fastwire")
}

/// The kernel picks the unit: ask for `utun`.
pub(super) fn device_name(_iface: &str) -> String {
    "utun".to_string()
}

fn name_file(iface: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{iface}.name"))
}

/// `NAME` -> `utunN` through the name file (a utun name stands for itself).
fn resolve(iface: &str) -> Option<String> {
    if iface.starts_with("utun") {
        return Some(iface.to_string());
    }
    let text = std::fs::read_to_string(name_file(iface)).ok()?;
    Some(text.trim().to_string()).filter(|n| n.starts_with("utun"))
}

/// Writes the name file, as wireguard-go does for `WG_TUN_NAME_FILE`.
pub(super) fn after_create(iface: &str, device: &str, undo: &mut Vec<Undo>) -> Result<(), String> {
    if iface == device {
        return Ok(());
    }
    let file = name_file(iface);
    std::fs::write(&file, format!("{device}\n"))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    undo.push(Undo::new(&["rm", "-f", &file.to_string_lossy()], false));
    Ok(())
}

pub(super) fn interface_exists(iface: &str) -> bool {
    resolve(iface).is_some_and(|device| query(&["ifconfig", &device]).is_some())
}

/// wg-quick darwin's `add_addr`.
pub(super) fn address_command(device: &str, address: &InterfaceAddress) -> Vec<String> {
    let plan: Vec<String> = match address.addr {
        IpAddr::V4(v4) => {
            let prefix = address.prefix.unwrap_or(32);
            [
                "ifconfig",
                device,
                "inet",
                &format!("{v4}/{prefix}"),
                &v4.to_string(),
                "alias",
            ]
            .map(String::from)
            .to_vec()
        }
        IpAddr::V6(v6) => {
            let prefix = address.prefix.unwrap_or(128);
            [
                "ifconfig",
                device,
                "inet6",
                &format!("{v6}/{prefix}"),
                "alias",
            ]
            .map(String::from)
            .to_vec()
        }
    };
    plan
}

pub(super) fn add_address(device: &str, address: &InterfaceAddress) -> Result<(), String> {
    run_plan(&address_command(device, address))
}

pub(super) fn set_mtu_up(device: &str, mtu: u16) -> Result<(), String> {
    run(&["ifconfig", device, "mtu", &mtu.to_string()])?;
    run(&["ifconfig", device, "up"])
}

/// The network services `networksetup` knows, without its header line and the `*` of disabled ones.
pub(super) fn network_services(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip(1)
        .map(|l| l.trim_start_matches('*').trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `networksetup -getdnsservers` prints a sentence when there are none: that is "Empty" to set back.
pub(super) fn saved_setting(answer: &str) -> Vec<String> {
    let values: Vec<String> = answer.split_whitespace().map(String::from).collect();
    if values.is_empty() || answer.trim().contains(' ') {
        vec!["Empty".to_string()]
    } else {
        values
    }
}

/// wg-quick darwin's `set_dns`: the servers and search domains on every network service, the previous
/// ones restored on exit.
pub(super) fn set_dns(
    _device: &str,
    interface: &InterfaceSection,
    undo: &mut Vec<Undo>,
) -> Result<(), String> {
    if interface.dns_servers.is_empty() {
        return Ok(());
    }
    let listing = query(&["networksetup", "-listallnetworkservices"])
        .ok_or("cannot list the network services (networksetup -listallnetworkservices)")?;
    let servers: Vec<String> = interface
        .dns_servers
        .iter()
        .map(|s| s.to_string())
        .collect();
    let domains = if interface.dns_search.is_empty() {
        vec!["Empty".to_string()]
    } else {
        interface.dns_search.clone()
    };
    for service in network_services(&listing) {
        let old_servers = saved_setting(
            &query(&["networksetup", "-getdnsservers", &service]).unwrap_or_default(),
        );
        let old_domains = saved_setting(
            &query(&["networksetup", "-getsearchdomains", &service]).unwrap_or_default(),
        );
        let mut set = vec![
            "networksetup".to_string(),
            "-setdnsservers".into(),
            service.clone(),
        ];
        set.extend(servers.iter().cloned());
        run_plan(&set)?;
        undo.push(Undo {
            command: [
                vec![
                    "networksetup".into(),
                    "-setdnsservers".into(),
                    service.clone(),
                ],
                old_servers,
            ]
            .concat(),
            with_interface: false,
        });
        let mut set = vec![
            "networksetup".to_string(),
            "-setsearchdomains".into(),
            service.clone(),
        ];
        set.extend(domains.iter().cloned());
        run_plan(&set)?;
        undo.push(Undo {
            command: [
                vec!["networksetup".into(), "-setsearchdomains".into(), service],
                old_domains,
            ]
            .concat(),
            with_interface: false,
        });
    }
    Ok(())
}

fn inet(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "-inet" } else { "-inet6" }
}

/// The routes for one allowed IP: a default route becomes its two halves, so the original default
/// route stays (for the endpoints) and ours wins by being more specific. Returns the plans and
/// whether this was a default route.
pub(super) fn route_plan(device: &str, allowed: AllowedIp) -> (Vec<Vec<String>>, bool) {
    let prefixes: Vec<String> = match (allowed.cidr, allowed.addr) {
        (0, IpAddr::V4(_)) => vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()],
        (0, IpAddr::V6(_)) => vec!["::/1".into(), "8000::/1".into()],
        (cidr, addr) => vec![format!("{addr}/{cidr}")],
    };
    let family = inet(&allowed.addr);
    let plans = prefixes
        .iter()
        .map(|p| {
            ["route", "-q", "-n", "add", family, p, "-interface", device]
                .map(String::from)
                .to_vec()
        })
        .collect();
    (plans, allowed.cidr == 0)
}

/// The first default route's gateway in `netstat -nr -f inet|inet6` output that is a real address
/// (not `link#N`), as darwin.bash's `collect_gateways`.
pub(super) fn default_gateway(netstat: &str) -> Option<IpAddr> {
    netstat.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "default").then_some(())?;
        // IPv6 gateways may carry a scope (`fe80::1%en0`).
        words.next()?.split('%').next()?.parse().ok()
    })
}

/// The interface of the first default route (the `Netif` column of `netstat -nr`).
pub(super) fn default_interface(netstat: &str) -> Option<String> {
    let mut column = None;
    for line in netstat.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "Netif") {
            column = Some(i);
            continue;
        }
        if words.first() == Some(&"default") {
            return column.and_then(|i| words.get(i)).map(|s| s.to_string());
        }
    }
    None
}

/// One endpoint pinned to the gateway it had before our default route, or black-holed if there is
/// none (a routing loop through ourselves is worse than no path).
pub(super) fn endpoint_route(endpoint: IpAddr, gateway: Option<IpAddr>) -> Vec<String> {
    let family = inet(&endpoint);
    let ep = endpoint.to_string();
    match gateway {
        Some(gw) => [
            "route",
            "-q",
            "-n",
            "add",
            family,
            &ep,
            "-gateway",
            &gw.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        None => {
            let lo = if endpoint.is_ipv4() {
                "127.0.0.1"
            } else {
                "::1"
            };
            ["route", "-q", "-n", "add", family, &ep, lo, "-blackhole"]
                .map(String::from)
                .to_vec()
        }
    }
}

pub(super) fn add_routes(ctx: RouteContext<'_>, routes: &[AllowedIp]) -> Result<(), String> {
    match &ctx.config.interface.table {
        Table::Off => return Ok(()),
        Table::Auto => {}
        Table::Named(t) if t == "main" => {}
        Table::Named(t) => {
            return Err(format!(
                "Table = {t} is not possible on macOS: use auto, main or off"
            ));
        }
    }
    // Gateways before our routes change them.
    let gateways = (
        query(&["netstat", "-nr", "-f", "inet"]).and_then(|t| default_gateway(&t)),
        query(&["netstat", "-nr", "-f", "inet6"]).and_then(|t| default_gateway(&t)),
    );
    let mut default_route = (false, false);
    for &allowed in routes {
        let (plans, is_default) = route_plan(ctx.device, allowed);
        for plan in plans {
            run_plan(&plan)?;
            let mut undo = plan.clone();
            undo[3] = "delete".into();
            undo.truncate(6);
            ctx.undo.push(Undo {
                command: undo,
                with_interface: true,
            });
        }
        if is_default && allowed.addr.is_ipv4() {
            default_route.0 = true;
        } else if is_default {
            default_route.1 = true;
        }
    }
    for endpoint in super::endpoint_addresses(ctx.update) {
        let (pinned, gateway) = if endpoint.is_ipv4() {
            (default_route.0, gateways.0)
        } else {
            (default_route.1, gateways.1)
        };
        if !pinned {
            continue;
        }
        run_plan(&endpoint_route(endpoint, gateway))?;
        ctx.undo.push(Undo::new(
            &[
                "route",
                "-q",
                "-n",
                "delete",
                inet(&endpoint),
                &endpoint.to_string(),
            ],
            false,
        ));
    }
    Ok(())
}

/// wg-quick darwin's `set_mtu_up` without an MTU: the default interface's MTU less the overhead.
pub(super) fn automatic_mtu(_update: &DeviceUpdate) -> u16 {
    let link = query(&["netstat", "-nr", "-f", "inet"])
        .and_then(|t| default_interface(&t))
        .and_then(|dev| query(&["ifconfig", &dev]))
        .and_then(|out| word_after(&out, "mtu").and_then(|n| n.parse().ok()));
    tunnel_mtu(link)
}

fn ps(pid: u32, field: &str) -> Option<String> {
    query(&["ps", "-p", &pid.to_string(), "-o", field]).map(|s| s.trim().to_string())
}

pub(super) fn process_alive(pid: u32) -> bool {
    ps(pid, "stat=").is_some_and(|state| !state.is_empty() && !state.starts_with('Z'))
}

pub(super) fn is_fastwire_up(pid: u32) -> bool {
    process_alive(pid)
        && ps(pid, "command=").is_some_and(|c| {
            let mut words = c.split_whitespace();
            words.next().is_some_and(|exe| exe.ends_with("fastwire")) && words.any(|w| w == "up")
        })
}

pub(super) fn ask_to_stop(pid: u32, _iface: &str) -> Result<(), String> {
    run(&["kill", "-TERM", &pid.to_string()])
}

/// `down` of a daemon started as `fastwire utun` (or through wg-quick): removing its socket stops it,
/// as wg-quick darwin's `del_if` does.
pub(super) fn stop_daemon(iface: &str) -> Option<Result<(), String>> {
    let device = resolve(iface)?;
    let socket = Path::new(UAPI_DIR).join(format!("{device}.sock"));
    if !socket.exists() {
        return None;
    }
    let result = run(&["rm", "-f", &socket.to_string_lossy()]);
    if iface != device {
        let _ = std::fs::remove_file(name_file(iface));
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_darwin_bash_adds_them() {
        let v4 = InterfaceAddress {
            addr: "10.78.0.2".parse().unwrap(),
            prefix: Some(24),
        };
        assert_eq!(
            address_command("utun7", &v4).join(" "),
            "ifconfig utun7 inet 10.78.0.2/24 10.78.0.2 alias"
        );
        let v6 = InterfaceAddress {
            addr: "fd78::2".parse().unwrap(),
            prefix: None,
        };
        assert_eq!(
            address_command("utun7", &v6).join(" "),
            "ifconfig utun7 inet6 fd78::2/128 alias"
        );
    }

    #[test]
    fn a_default_route_is_split_in_halves_and_pins_endpoints() {
        let all = AllowedIp {
            addr: "0.0.0.0".parse().unwrap(),
            cidr: 0,
        };
        let (plans, default) = route_plan("utun3", all);
        assert!(default);
        let text: Vec<String> = plans.iter().map(|p| p.join(" ")).collect();
        assert_eq!(
            text,
            [
                "route -q -n add -inet 0.0.0.0/1 -interface utun3",
                "route -q -n add -inet 128.0.0.0/1 -interface utun3"
            ]
        );
        let (plans, default) = route_plan(
            "utun3",
            AllowedIp {
                addr: "fd78::".parse().unwrap(),
                cidr: 64,
            },
        );
        assert!(!default);
        assert_eq!(
            plans[0].join(" "),
            "route -q -n add -inet6 fd78::/64 -interface utun3"
        );
        assert_eq!(
            endpoint_route(
                "203.0.113.7".parse().unwrap(),
                Some("192.168.1.1".parse().unwrap())
            )
            .join(" "),
            "route -q -n add -inet 203.0.113.7 -gateway 192.168.1.1"
        );
        assert_eq!(
            endpoint_route("2001:db8::7".parse().unwrap(), None).join(" "),
            "route -q -n add -inet6 2001:db8::7 ::1 -blackhole"
        );
    }

    #[test]
    fn netstat_and_networksetup_are_read_as_macos_prints_them() {
        let netstat = "Routing tables\n\nInternet:\nDestination        Gateway            Flags               Netif Expire\n\
                       default            link#17            UCSIg             bridge100\n\
                       default            192.168.1.1        UGScg                   en0\n";
        assert_eq!(
            default_gateway(netstat),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(default_interface(netstat).as_deref(), Some("bridge100"));
        let v6 =
            "Internet6:\nDestination Gateway Flags Netif Expire\ndefault fe80::1%en0 UGcg en0\n";
        assert_eq!(default_gateway(v6), Some("fe80::1".parse().unwrap()));
        let listing = "An asterisk (*) denotes that a network service is disabled.\nWi-Fi\n*Thunderbolt Bridge\nUSB 10/100/1000 LAN\n";
        assert_eq!(
            network_services(listing),
            ["Wi-Fi", "Thunderbolt Bridge", "USB 10/100/1000 LAN"]
        );
        assert_eq!(
            saved_setting("There aren't any DNS Servers set on Wi-Fi.\n"),
            ["Empty"]
        );
        assert_eq!(saved_setting("1.1.1.1\n9.9.9.9\n"), ["1.1.1.1", "9.9.9.9"]);
    }
}
