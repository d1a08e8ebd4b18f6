//! `fastwire up` on Windows: addresses, MTU, routes and DNS on the Wintun adapter through `netsh`
//! (each command shown as `[#] netsh ...`), hooks through `cmd /c`. A default route is added as its two
//! halves (0/1 and 128/1, ::/1 and 8000::/1) and each endpoint is pinned to the route it had before, so
//! the tunnel's own packets keep leaving by the physical interface. Routes, addresses and DNS of the
//! adapter vanish with it; the endpoint routes are removed on exit.
//!
//! Not yet run on a real Windows machine: the plans (not their effects) are unit-tested on Linux, and
//! the rest of fastwire.exe is tested under Wine, which has no Wintun driver.

use super::{RouteContext, Undo, query, run_plan, tunnel_mtu};
use crate::config::{InterfaceAddress, InterfaceSection, Table};
use fastwire_engine::config::{AllowedIp, DeviceUpdate};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

pub(super) const HOOK_SHELL: (&str, &str) = ("cmd", "/c");

pub(super) fn pid_dir() -> PathBuf {
    let base = std::env::var_os("ProgramData")
        .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
    base.join("fastwire")
}

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

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

pub(super) fn interface_exists(iface: &str) -> bool {
    query(&[
        "netsh",
        "interface",
        "ipv4",
        "show",
        "interfaces",
        &format!("interface={iface}"),
    ])
    .is_some()
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

pub(super) fn address_command(device: &str, address: &InterfaceAddress) -> Vec<String> {
    let name = format!("name={device}");
    match address.addr {
        IpAddr::V4(v4) => {
            let mask = netmask(address.prefix.unwrap_or(32));
            [
                "netsh",
                "interface",
                "ipv4",
                "add",
                "address",
                &name,
                &format!("address={v4}"),
                &format!("mask={mask}"),
            ]
            .map(String::from)
            .to_vec()
        }
        IpAddr::V6(v6) => {
            let prefix = address.prefix.unwrap_or(128);
            [
                "netsh",
                "interface",
                "ipv6",
                "add",
                "address",
                &format!("interface={device}"),
                &format!("address={v6}/{prefix}"),
            ]
            .map(String::from)
            .to_vec()
        }
    }
}

pub(super) fn add_address(device: &str, address: &InterfaceAddress) -> Result<(), String> {
    run_plan(&address_command(device, address))
}

pub(super) fn mtu_commands(device: &str, mtu: u16) -> Vec<Vec<String>> {
    let mut plans = vec![
        [
            "netsh",
            "interface",
            "ipv4",
            "set",
            "subinterface",
            device,
            &format!("mtu={mtu}"),
            "store=active",
        ]
        .map(String::from)
        .to_vec(),
    ];
    // IPv6 needs at least 1280.
    if mtu >= 1280 {
        plans.push(
            [
                "netsh",
                "interface",
                "ipv6",
                "set",
                "subinterface",
                device,
                &format!("mtu={mtu}"),
                "store=active",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    plans
}

/// The Wintun adapter is up while its session runs: only the MTU is set.
pub(super) fn set_mtu_up(device: &str, mtu: u16) -> Result<(), String> {
    mtu_commands(device, mtu)
        .iter()
        .try_for_each(|p| run_plan(p))
}

pub(super) fn dns_commands(device: &str, servers: &[IpAddr]) -> Vec<Vec<String>> {
    let mut plans = Vec::new();
    for fam in ["ipv4", "ipv6"] {
        let of_family = servers.iter().filter(|s| family(s) == fam);
        for (i, server) in of_family.enumerate() {
            let address = format!("address={server}");
            let index = format!("index={}", i + 1);
            let plan = if i == 0 {
                [
                    "netsh",
                    "interface",
                    fam,
                    "set",
                    "dnsservers",
                    device,
                    "source=static",
                    &address,
                    "register=none",
                    "validate=no",
                ]
                .to_vec()
            } else {
                [
                    "netsh",
                    "interface",
                    fam,
                    "add",
                    "dnsservers",
                    device,
                    &address,
                    &index,
                    "validate=no",
                ]
                .to_vec()
            };
            plans.push(plan.iter().map(|s| s.to_string()).collect());
        }
    }
    plans
}

/// DNS servers on the adapter (Windows then prefers them while the tunnel's routes are the better
/// ones); they go with the adapter.
pub(super) fn set_dns(
    device: &str,
    interface: &InterfaceSection,
    _undo: &mut Vec<Undo>,
) -> Result<(), String> {
    if !interface.dns_search.is_empty() {
        eprintln!(
            "[!] Warning: DNS search domains are not applied on Windows yet (only the servers)"
        );
    }
    dns_commands(device, &interface.dns_servers)
        .iter()
        .try_for_each(|p| run_plan(p))
}

/// The routes for one allowed IP: a default route becomes its two halves, as on macOS.
pub(super) fn route_plan(device: &str, allowed: AllowedIp) -> (Vec<Vec<String>>, bool) {
    let prefixes: Vec<String> = match (allowed.cidr, allowed.addr) {
        (0, IpAddr::V4(_)) => vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()],
        (0, IpAddr::V6(_)) => vec!["::/1".into(), "8000::/1".into()],
        (cidr, addr) => vec![format!("{addr}/{cidr}")],
    };
    let fam = family(&allowed.addr);
    let plans = prefixes
        .iter()
        .map(|p| {
            [
                "netsh",
                "interface",
                fam,
                "add",
                "route",
                &format!("prefix={p}"),
                &format!("interface={device}"),
                "store=active",
            ]
            .map(String::from)
            .to_vec()
        })
        .collect();
    (plans, allowed.cidr == 0)
}

/// An endpoint pinned to the interface and next hop it is reached by now.
pub(super) fn endpoint_route(
    endpoint: IpAddr,
    interface_index: u32,
    next_hop: Option<IpAddr>,
) -> Vec<String> {
    let bits = if endpoint.is_ipv4() { 32 } else { 128 };
    let mut plan: Vec<String> = [
        "netsh",
        "interface",
        family(&endpoint),
        "add",
        "route",
        &format!("prefix={endpoint}/{bits}"),
        &format!("interface={interface_index}"),
    ]
    .map(String::from)
    .to_vec();
    if let Some(hop) = next_hop {
        plan.push(format!("nexthop={hop}"));
    }
    plan.push("store=active".into());
    plan
}

pub(super) fn add_routes(ctx: RouteContext<'_>, routes: &[AllowedIp]) -> Result<(), String> {
    match &ctx.config.interface.table {
        Table::Off => return Ok(()),
        Table::Auto => {}
        Table::Named(t) => {
            return Err(format!(
                "Table = {t} is not possible on Windows: use auto or off"
            ));
        }
    }
    // Where each endpoint goes before our routes change it.
    let pins: Vec<(IpAddr, Option<RouteNow>)> = super::endpoint_addresses(ctx.update)
        .into_iter()
        .map(|ep| (ep, route_now(ep)))
        .collect();
    let mut default_route = (false, false);
    for &allowed in routes {
        let (plans, is_default) = route_plan(ctx.device, allowed);
        for plan in plans {
            run_plan(&plan)?;
            let mut undo = plan.clone();
            undo[3] = "delete".into();
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
    for (endpoint, route) in pins {
        let pinned = if endpoint.is_ipv4() {
            default_route.0
        } else {
            default_route.1
        };
        if !pinned {
            continue;
        }
        let Some((index, hop)) = route else {
            eprintln!(
                "[!] Warning: no route to endpoint {endpoint}: it may loop through the tunnel"
            );
            continue;
        };
        let plan = endpoint_route(endpoint, index, hop);
        run_plan(&plan)?;
        let mut undo = plan;
        undo[3] = "delete".into();
        ctx.undo.push(Undo {
            command: undo,
            with_interface: false,
        });
    }
    Ok(())
}

/// The interface index and next hop that reach an address now.
type RouteNow = (u32, Option<IpAddr>);

fn route_now(to: IpAddr) -> Option<RouteNow> {
    #[cfg(windows)]
    return fastwire_io::sys::route_to(to);
    #[cfg(not(windows))]
    {
        let _ = to;
        None
    }
}

/// Without a measured path MTU: 1500 less the overhead (wireguard-windows' default).
pub(super) fn automatic_mtu(_update: &DeviceUpdate) -> u16 {
    tunnel_mtu(None)
}

fn tasklist(pid: u32) -> Option<String> {
    query(&[
        "tasklist",
        "/FI",
        &format!("PID eq {pid}"),
        "/NH",
        "/FO",
        "CSV",
    ])
}

pub(super) fn process_alive(pid: u32) -> bool {
    tasklist(pid).is_some_and(|out| out.contains(&format!("\"{pid}\"")))
}

pub(super) fn is_fastwire_up(pid: u32) -> bool {
    // tasklist shows the image, not the arguments: a live fastwire.exe under this pid is taken as ours.
    tasklist(pid).is_some_and(|out| out.to_ascii_lowercase().contains("\"fastwire.exe\""))
}

/// Windows has no SIGTERM for a console program in another console: the daemon is asked over its
/// UAPI pipe (fastwire's private verb), which only Administrators and SYSTEM may open.
pub(super) fn ask_to_stop(_pid: u32, iface: &str) -> Result<(), String> {
    eprintln!("[#] fastwire: stop {iface} (UAPI fastwire-shutdown=1)");
    crate::uapi::client::shutdown(iface)
}

pub(super) fn stop_daemon(iface: &str) -> Option<Result<(), String>> {
    crate::uapi::client::get(iface).ok()?;
    Some(ask_to_stop(0, iface))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_mtu_and_dns_as_netsh_commands() {
        let v4 = InterfaceAddress {
            addr: "10.78.0.2".parse().unwrap(),
            prefix: Some(24),
        };
        assert_eq!(
            address_command("wg0", &v4).join(" "),
            "netsh interface ipv4 add address name=wg0 address=10.78.0.2 mask=255.255.255.0"
        );
        let v6 = InterfaceAddress {
            addr: "fd78::2".parse().unwrap(),
            prefix: Some(64),
        };
        assert_eq!(
            address_command("wg0", &v6).join(" "),
            "netsh interface ipv6 add address interface=wg0 address=fd78::2/64"
        );
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(mtu_commands("wg0", 1200).len(), 1, "no IPv6 below 1280");
        assert_eq!(mtu_commands("wg0", 1420).len(), 2);
        let dns: Vec<String> = dns_commands(
            "wg0",
            &[
                "10.78.0.53".parse().unwrap(),
                "10.78.0.54".parse().unwrap(),
                "fd78::53".parse().unwrap(),
            ],
        )
        .iter()
        .map(|p| p.join(" "))
        .collect();
        assert_eq!(
            dns,
            [
                "netsh interface ipv4 set dnsservers wg0 source=static address=10.78.0.53 register=none validate=no",
                "netsh interface ipv4 add dnsservers wg0 address=10.78.0.54 index=2 validate=no",
                "netsh interface ipv6 set dnsservers wg0 source=static address=fd78::53 register=none validate=no",
            ]
        );
    }

    #[test]
    fn a_default_route_is_split_and_endpoints_are_pinned() {
        let (plans, default) = route_plan(
            "wg0",
            AllowedIp {
                addr: "::".parse().unwrap(),
                cidr: 0,
            },
        );
        assert!(default);
        assert_eq!(
            plans.iter().map(|p| p.join(" ")).collect::<Vec<_>>(),
            [
                "netsh interface ipv6 add route prefix=::/1 interface=wg0 store=active",
                "netsh interface ipv6 add route prefix=8000::/1 interface=wg0 store=active"
            ]
        );
        assert_eq!(
            endpoint_route(
                "203.0.113.7".parse().unwrap(),
                12,
                Some("192.168.1.1".parse().unwrap())
            )
            .join(" "),
            "netsh interface ipv4 add route prefix=203.0.113.7/32 interface=12 nexthop=192.168.1.1 store=active"
        );
    }
}
