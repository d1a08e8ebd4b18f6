//! The Prometheus text exposition (format 0.0.4) of one interface: prometheus_wireguard_exporter's
//! per-peer series first, under its names and labels so its Grafana dashboards work unchanged, then
//! fastwire's own counters. Written straight into the response, so a scrape of 100,000 peers never builds
//! the whole text in memory.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_engine::config::{DeviceSnapshot, PeerSnapshot};

/// Whether the per-peer series are written (with 100,000 peers they are most of a scrape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSeries {
    Include,
    Omit,
}

use crate::show::DROP_PREFIX;

/// Counters named `tcp_closed_REASON` are connections closed for REASON (`drop_REASON`: packets dropped).
const TCP_CLOSED_PREFIX: &str = "tcp_closed_";

/// Writes every series of `iface`. `stats` are the engine's named counters (all monotonic).
pub fn write_metrics(
    out: &mut impl Write,
    iface: &str,
    snapshot: &DeviceSnapshot,
    stats: &[(String, u64)],
    now: SystemTime,
    peers: PeerSeries,
) -> io::Result<()> {
    let iface = escape_label(iface);
    if peers == PeerSeries::Include {
        let labels = peer_labels(&iface, snapshot);
        write_peer_family(
            out,
            &labels,
            snapshot,
            "wireguard_sent_bytes_total",
            "counter",
            "Bytes sent to the peer (encrypted payload, as wg show's transfer)",
            |p| p.tx_bytes.to_string(),
        )?;
        write_peer_family(
            out,
            &labels,
            snapshot,
            "wireguard_received_bytes_total",
            "counter",
            "Bytes received from the peer (as wg show's transfer)",
            |p| p.rx_bytes.to_string(),
        )?;
        write_peer_family(
            out,
            &labels,
            snapshot,
            "wireguard_latest_handshake_seconds",
            "gauge",
            "UNIX time of the latest completed handshake with the peer, 0 if none",
            |p| {
                p.last_handshake
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs())
                    .to_string()
            },
        )?;
    }
    family(out, "fastwire_peers", "gauge", "Peers configured")?;
    writeln!(
        out,
        "fastwire_peers{{interface=\"{iface}\"}} {}",
        snapshot.peers.len()
    )?;
    let recent = snapshot
        .peers
        .iter()
        .filter(|p| {
            p.last_handshake
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age.as_secs() < SESSION_LIFETIME_SECONDS)
        })
        .count();
    family(
        out,
        "fastwire_peers_with_session",
        "gauge",
        "Peers whose latest handshake is recent enough for a live session (under 180 s)",
    )?;
    writeln!(
        out,
        "fastwire_peers_with_session{{interface=\"{iface}\"}} {recent}"
    )?;
    write_reasoned(
        out,
        &iface,
        stats,
        DROP_PREFIX,
        "fastwire_dropped_packets_total",
        "Packets and messages dropped, by reason (the reasons of fastwire show)",
    )?;
    write_reasoned(
        out,
        &iface,
        stats,
        TCP_CLOSED_PREFIX,
        "fastwire_tcp_connections_closed_total",
        "TCP transport connections closed, by reason",
    )?;
    for (name, value) in stats {
        if name.starts_with(DROP_PREFIX) || name.starts_with(TCP_CLOSED_PREFIX) {
            continue;
        }
        let Some(metric) = metric_name(name) else {
            continue;
        };
        family(out, &metric, "counter", &counter_help(name))?;
        writeln!(out, "{metric}{{interface=\"{iface}\"}} {value}")?;
    }
    Ok(())
}

/// REJECT_AFTER_TIME: a session older than this carries nothing.
const SESSION_LIFETIME_SECONDS: u64 = 180;

fn family(out: &mut impl Write, name: &str, kind: &str, help: &str) -> io::Result<()> {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// Each peer's label set, `interface=..,public_key=..,allowed_ips=..`, built once for all its families.
fn peer_labels(iface: &str, snapshot: &DeviceSnapshot) -> Vec<String> {
    snapshot
        .peers
        .iter()
        .map(|peer| {
            let allowed_ips = peer
                .allowed_ips
                .iter()
                .map(|a| format!("{}/{}", a.addr, a.cidr))
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "interface=\"{iface}\",public_key=\"{}\",allowed_ips=\"{allowed_ips}\"",
                BASE64.encode(peer.public_key)
            )
        })
        .collect()
}

fn write_peer_family(
    out: &mut impl Write,
    labels: &[String],
    snapshot: &DeviceSnapshot,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&PeerSnapshot) -> String,
) -> io::Result<()> {
    family(out, name, kind, help)?;
    for (peer, labels) in snapshot.peers.iter().zip(labels) {
        writeln!(out, "{name}{{{labels}}} {}", value(peer))?;
    }
    Ok(())
}

fn write_reasoned(
    out: &mut impl Write,
    iface: &str,
    stats: &[(String, u64)],
    prefix: &str,
    name: &str,
    help: &str,
) -> io::Result<()> {
    family(out, name, "counter", help)?;
    for (stat, value) in stats {
        if let Some(reason) = stat.strip_prefix(prefix) {
            writeln!(
                out,
                "{name}{{interface=\"{iface}\",reason=\"{}\"}} {value}",
                escape_label(reason)
            )?;
        }
    }
    Ok(())
}

/// `fastwire_NAME_total` for a counter named NAME; `None` for a name that is not `[a-z0-9_]+` (the engine
/// names them, but a name that would break the format is left out rather than mangled).
fn metric_name(stat: &str) -> Option<String> {
    let valid = !stat.is_empty()
        && stat
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    valid.then(|| format!("fastwire_{stat}_total"))
}

fn counter_help(stat: &str) -> String {
    format!("fastwire's {} counter", stat.replace('_', " "))
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
