//! The Prometheus text exposition (format 0.0.4) of one interface: prometheus_wireguard_exporter's
//! per-peer series first, under its names and labels so its Grafana dashboards work unchanged, then
//! fastwire's own counters. Written straight into the response, so a scrape of 100,000 peers never builds
//! the whole text in memory.

use std::collections::BTreeMap;
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
use fastwire_engine::stats::{TCP_OPEN_PREFIX, WORKER_PREFIX};

/// Counters named `tcp_closed_REASON` are connections closed for REASON (`drop_REASON`: packets dropped).
const TCP_CLOSED_PREFIX: &str = "tcp_closed_";

/// The drop reasons of handshake messages that were well-formed and carried a valid mac1 but failed
/// the handshake itself.
const HANDSHAKE_FAILURES: [&str; 4] = [
    "rx_handshake_auth_failed",
    "rx_handshake_replayed_timestamp",
    "rx_handshake_flood",
    "rx_handshake_unexpected",
];

/// Writes every series of `iface`. `stats` are the engine's named values: counters, but for the
/// `tcp_open_STATE` gauges.
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
    write_labelled(
        out,
        &iface,
        stats,
        Labelled {
            prefix: DROP_PREFIX,
            name: "fastwire_dropped_packets_total",
            kind: "counter",
            label: "reason",
            help: "Packets and messages dropped, by reason (the reasons of fastwire show)",
        },
    )?;
    write_labelled(
        out,
        &iface,
        stats,
        Labelled {
            prefix: TCP_CLOSED_PREFIX,
            name: "fastwire_tcp_connections_closed_total",
            kind: "counter",
            label: "reason",
            help: "TCP transport connections closed, by reason",
        },
    )?;
    write_labelled(
        out,
        &iface,
        stats,
        Labelled {
            prefix: TCP_OPEN_PREFIX,
            name: "fastwire_tcp_connections",
            kind: "gauge",
            label: "state",
            help: "TCP transport connections open now, by state",
        },
    )?;
    let failed: u64 = stats
        .iter()
        .filter(|(name, _)| {
            name.strip_prefix(DROP_PREFIX)
                .is_some_and(|reason| HANDSHAKE_FAILURES.contains(&reason))
        })
        .map(|(_, value)| value)
        .sum();
    family(
        out,
        "fastwire_handshakes_failed_total",
        "counter",
        "Handshake messages that passed the MACs and failed the handshake (the sum of their drop reasons)",
    )?;
    writeln!(
        out,
        "fastwire_handshakes_failed_total{{interface=\"{iface}\"}} {failed}"
    )?;
    write_per_worker(out, &iface, stats)?;
    for (name, value) in stats {
        if [
            DROP_PREFIX,
            TCP_CLOSED_PREFIX,
            TCP_OPEN_PREFIX,
            WORKER_PREFIX,
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
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

/// A family whose samples are the stats named `PREFIX` + a label value.
struct Labelled<'a> {
    prefix: &'a str,
    name: &'a str,
    kind: &'a str,
    label: &'a str,
    help: &'a str,
}

fn write_labelled(
    out: &mut impl Write,
    iface: &str,
    stats: &[(String, u64)],
    family_of: Labelled<'_>,
) -> io::Result<()> {
    let Labelled {
        prefix,
        name,
        kind,
        label,
        help,
    } = family_of;
    family(out, name, kind, help)?;
    for (stat, value) in stats {
        if let Some(which) = stat.strip_prefix(prefix) {
            writeln!(
                out,
                "{name}{{interface=\"{iface}\",{label}=\"{}\"}} {value}",
                escape_label(which)
            )?;
        }
    }
    Ok(())
}

/// `worker_LABEL_NAME` stats as `fastwire_worker_NAME_total{worker="LABEL"}`, one family per NAME.
fn write_per_worker(out: &mut impl Write, iface: &str, stats: &[(String, u64)]) -> io::Result<()> {
    let mut by_counter: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (stat, value) in stats {
        if let Some((worker, counter)) = stat
            .strip_prefix(WORKER_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        {
            by_counter
                .entry(counter)
                .or_default()
                .push((worker, *value));
        }
    }
    for (counter, samples) in by_counter {
        let Some(metric) = metric_name(&format!("worker_{counter}")) else {
            continue;
        };
        family(
            out,
            &metric,
            "counter",
            &format!(
                "{} per thread (worker index, tcp or handshake)",
                counter_help(counter)
            ),
        )?;
        for (worker, value) in samples {
            writeln!(
                out,
                "{metric}{{interface=\"{iface}\",worker=\"{}\"}} {value}",
                escape_label(worker)
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
