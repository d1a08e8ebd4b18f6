//! What `fastwire top` shows, computed from two readings of the UAPI socket a moment apart: rates are
//! differences over the time between them. No I/O here, so the arithmetic is tested on its own.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_engine::config::{DeviceSnapshot, Key};
use fastwire_engine::stats::WORKER_PREFIX;

use crate::show::DROP_PREFIX;

/// One reading: `get=1` and `fastwire-stats=1` of one interface.
pub struct Sample {
    /// Seconds on a monotonic clock when the reading was taken.
    pub at: Duration,
    /// Wall-clock time of the reading (handshake ages are wall-clock).
    pub wall: SystemTime,
    pub snapshot: DeviceSnapshot,
    pub stats: Vec<(String, u64)>,
}

/// The order of the peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Fastest receive rate first.
    Rx,
    /// Fastest transmit rate first.
    Tx,
    /// Most recent handshake first; peers with none last.
    Handshake,
    /// By public key (stable, like `wg show`).
    Key,
}

impl SortBy {
    pub const ALL: [SortBy; 4] = [SortBy::Rx, SortBy::Tx, SortBy::Handshake, SortBy::Key];

    pub fn next(self) -> SortBy {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            SortBy::Rx => "receive rate",
            SortBy::Tx => "transmit rate",
            SortBy::Handshake => "latest handshake",
            SortBy::Key => "public key",
        }
    }
}

pub struct PeerRow {
    pub public_key: String,
    /// `udp 192.0.2.1:51820`, `tcp 192.0.2.1:443`, or `-` before the peer has one.
    pub endpoint: String,
    pub rx_bits_per_second: f64,
    pub tx_bits_per_second: f64,
    pub handshake_age: Option<Duration>,
}

impl PeerRow {
    /// A public key as it is shown (base64, as `wg show`).
    pub fn key_text(key: &Key) -> String {
        BASE64.encode(key)
    }
}

pub struct WorkerRow {
    /// A data-path worker's index, `tcp` or `handshake`.
    pub label: String,
    pub rx_packets_per_second: f64,
    pub tx_packets_per_second: f64,
    /// Datagrams per receive batch (whatever they held) and packets per send batch over the
    /// interval (0: no batch).
    pub rx_batch: f64,
    pub tx_batch: f64,
}

pub struct View {
    pub peer_count: usize,
    pub peers_with_session: usize,
    /// Sorted, and cut to the rows asked for.
    pub peers: Vec<PeerRow>,
    /// Reasons with drops in the interval, the most frequent first.
    pub drops_per_second: Vec<(String, f64)>,
    pub workers: Vec<WorkerRow>,
    pub sort: SortBy,
}

/// A session older than this (REJECT_AFTER_TIME) carries nothing.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// The view of the interval from `before` to `now` (no `before`: the first reading, all rates zero).
pub fn view(before: Option<&Sample>, now: &Sample, sort: SortBy, max_peers: usize) -> View {
    let seconds = before
        .map(|b| now.at.saturating_sub(b.at).as_secs_f64())
        .filter(|s| *s > 0.0);
    let rate = |delta: u64| seconds.map_or(0.0, |s| delta as f64 / s);
    let previous: HashMap<Key, (u64, u64)> = before
        .map(|b| {
            b.snapshot
                .peers
                .iter()
                .map(|p| (p.public_key, (p.rx_bytes, p.tx_bytes)))
                .collect()
        })
        .unwrap_or_default();
    let mut peers: Vec<PeerRow> = now
        .snapshot
        .peers
        .iter()
        .map(|p| {
            // A peer that is new (or was replaced) since the last reading starts from zero.
            let (rx0, tx0) = previous.get(&p.public_key).copied().unwrap_or((0, 0));
            PeerRow {
                public_key: PeerRow::key_text(&p.public_key),
                endpoint: p.endpoint.map_or_else(
                    || "-".to_string(),
                    |e| match e.to_string().strip_prefix("tcp://") {
                        Some(addr) => format!("tcp {addr}"),
                        None => format!("udp {e}"),
                    },
                ),
                rx_bits_per_second: 8.0 * rate(p.rx_bytes.saturating_sub(rx0)),
                tx_bits_per_second: 8.0 * rate(p.tx_bytes.saturating_sub(tx0)),
                handshake_age: p
                    .last_handshake
                    .map(|t| now.wall.duration_since(t).unwrap_or_default()),
            }
        })
        .collect();
    let peers_with_session = peers
        .iter()
        .filter(|p| p.handshake_age.is_some_and(|a| a < SESSION_LIFETIME))
        .count();
    sort_peers(&mut peers, sort);
    let peer_count = peers.len();
    peers.truncate(max_peers);

    let old_stats: HashMap<&str, u64> = before
        .map(|b| b.stats.iter().map(|(n, v)| (n.as_str(), *v)).collect())
        .unwrap_or_default();
    // Counters only grow; one that went down means the daemon restarted: count from zero.
    let delta = |name: &str, value: u64| match old_stats.get(name) {
        Some(&old) if old <= value => value - old,
        _ => value,
    };
    let mut drops_per_second: Vec<(String, f64)> = if seconds.is_none() {
        Vec::new()
    } else {
        now.stats
            .iter()
            .filter_map(|(name, value)| {
                let reason = name.strip_prefix(DROP_PREFIX)?;
                let n = delta(name, *value);
                (n > 0).then(|| (reason.replace('_', " "), rate(n)))
            })
            .collect()
    };
    drops_per_second.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let mut workers: Vec<(String, HashMap<&str, u64>)> = Vec::new();
    for (name, value) in &now.stats {
        let Some((label, counter)) = name
            .strip_prefix(WORKER_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            continue;
        };
        let n = delta(name, *value);
        match workers.iter_mut().find(|(l, _)| l == label) {
            Some((_, counters)) => {
                counters.insert(counter, n);
            }
            None => workers.push((label.to_string(), HashMap::from([(counter, n)]))),
        }
    }
    let workers = workers
        .into_iter()
        .map(|(label, c)| {
            let get = |name: &str| c.get(name).copied().unwrap_or(0);
            let per = |packets: u64, batches: u64| {
                if batches == 0 {
                    0.0
                } else {
                    packets as f64 / batches as f64
                }
            };
            WorkerRow {
                label,
                rx_packets_per_second: rate(get("rx_packets")),
                tx_packets_per_second: rate(get("tx_packets")),
                rx_batch: per(get("rx_datagrams"), get("rx_batches")),
                tx_batch: per(get("tx_packets"), get("tx_batches")),
            }
        })
        .collect();
    View {
        peer_count,
        peers_with_session,
        peers,
        drops_per_second,
        workers,
        sort,
    }
}

fn sort_peers(peers: &mut [PeerRow], sort: SortBy) {
    match sort {
        SortBy::Rx => peers.sort_by(|a, b| {
            b.rx_bits_per_second
                .total_cmp(&a.rx_bits_per_second)
                .then_with(|| a.public_key.cmp(&b.public_key))
        }),
        SortBy::Tx => peers.sort_by(|a, b| {
            b.tx_bits_per_second
                .total_cmp(&a.tx_bits_per_second)
                .then_with(|| a.public_key.cmp(&b.public_key))
        }),
        SortBy::Handshake => peers.sort_by(|a, b| {
            (a.handshake_age.is_none(), a.handshake_age, &a.public_key).cmp(&(
                b.handshake_age.is_none(),
                b.handshake_age,
                &b.public_key,
            ))
        }),
        SortBy::Key => peers.sort_by(|a, b| a.public_key.cmp(&b.public_key)),
    }
}

/// `12.3 Mbit/s`: decimal units, as link speeds are given.
pub fn bits_per_second(rate: f64) -> String {
    const UNITS: [&str; 5] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut value = rate.max(0.0);
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `5 s`, `3 min`, `2 h`, `4 d`; `never` without a handshake.
pub fn age(age: Option<Duration>) -> String {
    let Some(age) = age else {
        return "never".into();
    };
    let s = age.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}
