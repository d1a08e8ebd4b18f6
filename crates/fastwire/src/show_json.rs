//! `fastwire show --json [IFACE]`: what `fastwire show` says, for scripts. One object:
//! `{"interfaces": [...]}`, keys in base64, times in UNIX seconds, byte counts and counters as numbers.
//! The private key is never printed (a script that needs it has `wg showconf`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_engine::config::{DeviceSnapshot, PeerSnapshot};
use fastwire_engine::stats::{TCP_OPEN_PREFIX, WORKER_PREFIX};
use serde_json::{Map, Value, json};

use crate::show::{DROP_PREFIX, public_key};
use crate::uapi::client;

/// Prints one interface, or every interface with a UAPI socket. An interface that cannot be read is an
/// object with an `error` (and, for a named interface, the command fails).
pub fn show_json(iface: Option<&str>) -> Result<(), String> {
    let names = match iface {
        Some(name) => vec![name.to_string()],
        None => client::list_interfaces().map_err(|e| format!("cannot list interfaces: {e}"))?,
    };
    let mut first_error = None;
    let interfaces: Vec<Value> = names
        .iter()
        .map(|name| match client::get(name) {
            Ok(snapshot) => {
                let stats = client::stats(name).unwrap_or_default();
                interface_json(name, &snapshot, &stats)
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.clone());
                json!({ "name": name, "error": e })
            }
        })
        .collect();
    let text = serde_json::to_string_pretty(&json!({ "interfaces": interfaces }))
        .map_err(|e| format!("cannot write JSON: {e}"))?;
    println!("{text}");
    match (iface, first_error) {
        (Some(_), Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// One interface as JSON.
pub(crate) fn interface_json(
    name: &str,
    snapshot: &DeviceSnapshot,
    stats: &[(String, u64)],
) -> Value {
    let mut dropped = Map::new();
    let mut counters = Map::new();
    let mut tcp_open = Map::new();
    let mut workers = Map::new();
    for (stat, value) in stats {
        if let Some(reason) = stat.strip_prefix(DROP_PREFIX) {
            dropped.insert(reason.to_string(), json!(value));
        } else if let Some(state) = stat.strip_prefix(TCP_OPEN_PREFIX) {
            tcp_open.insert(state.to_string(), json!(value));
        } else if let Some((worker, counter)) = stat
            .strip_prefix(WORKER_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        {
            let entry = workers
                .entry(worker.to_string())
                .or_insert_with(|| json!({}));
            entry[counter] = json!(value);
        } else {
            counters.insert(stat.clone(), json!(value));
        }
    }
    json!({
        "name": name,
        "public_key": snapshot.private_key.as_ref().map(|k| BASE64.encode(public_key(k))),
        "listen_port": nonzero(snapshot.listen_port.into()),
        "listen_tcp_port": nonzero(snapshot.listen_tcp_port.into()),
        "fwmark": nonzero(snapshot.fwmark.into()),
        "peers": snapshot.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "dropped": dropped,
        "counters": counters,
        "tcp_connections_open": tcp_open,
        "workers": workers,
    })
}

fn peer_json(peer: &PeerSnapshot) -> Value {
    json!({
        "public_key": BASE64.encode(peer.public_key),
        "has_preshared_key": peer.preshared_key.is_some(),
        // Display marks TCP endpoints (`tcp://1.2.3.4:443`).
        "endpoint": peer.endpoint.map(|e| e.to_string()),
        "allowed_ips": peer.allowed_ips.iter().map(|a| format!("{}/{}", a.addr, a.cidr)).collect::<Vec<_>>(),
        "latest_handshake": peer.last_handshake.and_then(unix_seconds),
        "transfer_rx": peer.rx_bytes,
        "transfer_tx": peer.tx_bytes,
        "persistent_keepalive": nonzero(peer.persistent_keepalive.into()),
    })
}

fn unix_seconds(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// `null` for the 0 that means "not set".
fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwire_engine::config::AllowedIp;
    use std::time::Duration;

    #[test]
    fn an_interface_in_json() {
        let mut peer = PeerSnapshot::new([7; 32]);
        peer.rx_bytes = 10;
        peer.preshared_key = Some([1; 32]);
        peer.last_handshake = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        peer.allowed_ips = vec![AllowedIp {
            addr: [10, 0, 0, 2].into(),
            cidr: 32,
        }];
        let snapshot = DeviceSnapshot {
            private_key: Some([9; 32]),
            listen_port: 51820,
            peers: vec![peer],
            ..DeviceSnapshot::default()
        };
        let stats = vec![
            ("rx_packets".to_string(), 5),
            ("drop_rx_bad_mac1".to_string(), 2),
            ("worker_0_rx_batches".to_string(), 4),
            ("worker_tcp_tx_packets".to_string(), 3),
            ("tcp_open_connected".to_string(), 1),
        ];
        let v = interface_json("wg0", &snapshot, &stats);
        assert_eq!(v["name"], "wg0");
        assert_eq!(v["listen_port"], 51820);
        assert!(v["listen_tcp_port"].is_null());
        assert_eq!(
            v["public_key"],
            BASE64.encode(public_key(&[9; 32])).as_str()
        );
        let p = &v["peers"][0];
        assert_eq!(p["public_key"], BASE64.encode([7; 32]).as_str());
        assert_eq!(p["has_preshared_key"], true);
        assert_eq!(p["allowed_ips"][0], "10.0.0.2/32");
        assert_eq!(p["latest_handshake"], 1_700_000_000u64);
        assert_eq!(p["transfer_rx"], 10);
        assert!(p["endpoint"].is_null() && p["persistent_keepalive"].is_null());
        assert_eq!(v["dropped"]["rx_bad_mac1"], 2);
        assert_eq!(v["counters"]["rx_packets"], 5);
        assert_eq!(v["workers"]["0"]["rx_batches"], 4);
        assert_eq!(v["workers"]["tcp"]["tx_packets"], 3);
        assert_eq!(v["tcp_connections_open"]["connected"], 1);
        assert!(v["counters"].get("worker_0_rx_batches").is_none());
        let text = v.to_string();
        assert!(!text.contains(&BASE64.encode([9; 32])), "no private key");
        assert!(!text.contains(&BASE64.encode([1; 32])), "no preshared key");
    }
}
