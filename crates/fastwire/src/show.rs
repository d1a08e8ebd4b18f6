//! `fastwire show [IFACE]`: `wg show`'s human output, plus fastwire's packet-drop counters.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_engine::config::{DeviceSnapshot, Key, PeerSnapshot};
use fastwire_engine::stats::WORKER_PREFIX;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::uapi::client;

/// Counters named `drop_REASON` are packets dropped for REASON.
pub(crate) const DROP_PREFIX: &str = "drop_";

/// Shows one interface, or every interface with a UAPI socket.
pub fn show(iface: Option<&str>) -> Result<(), String> {
    let hide_keys = std::env::var("WG_HIDE_KEYS").map_or(true, |v| v != "never");
    let Some(iface) = iface else {
        return show_all(hide_keys);
    };
    print!("{}", render_iface(iface, hide_keys)?);
    Ok(())
}

fn show_all(hide_keys: bool) -> Result<(), String> {
    let ifaces = client::list_interfaces().map_err(|e| format!("cannot list interfaces: {e}"))?;
    if ifaces.is_empty() {
        eprintln!(
            "no interfaces: nothing serves a UAPI socket in {}",
            crate::uapi::SOCKET_DIR
        );
        return Ok(());
    }
    let mut first_error = None;
    for (i, iface) in ifaces.iter().enumerate() {
        match render_iface(iface, hide_keys) {
            Ok(text) => {
                if i > 0 {
                    println!();
                }
                print!("{text}");
            }
            Err(e) => {
                eprintln!("fastwire: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn render_iface(iface: &str, hide_keys: bool) -> Result<String, String> {
    let snapshot = client::get(iface)?;
    // wireguard-go and older daemons do not know the verb: then there is simply no drop section.
    let stats = client::stats(iface).unwrap_or_default();
    Ok(render(
        iface,
        &snapshot,
        &stats,
        SystemTime::now(),
        hide_keys,
    ))
}

/// The whole text for one interface.
pub(crate) fn render(
    iface: &str,
    snapshot: &DeviceSnapshot,
    stats: &[(String, u64)],
    now: SystemTime,
    hide_keys: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "interface: {iface}");
    if let Some(private_key) = &snapshot.private_key {
        let _ = writeln!(
            out,
            "  public key: {}",
            base64_key(&public_key(private_key))
        );
        let _ = writeln!(out, "  private key: {}", masked(private_key, hide_keys));
    }
    if snapshot.listen_port != 0 {
        let _ = writeln!(out, "  listening port: {}", snapshot.listen_port);
    }
    if snapshot.listen_tcp_port != 0 {
        let _ = writeln!(out, "  listening TCP port: {}", snapshot.listen_tcp_port);
    }
    if snapshot.fwmark != 0 {
        let _ = writeln!(out, "  fwmark: {:#x}", snapshot.fwmark);
    }
    render_stats(&mut out, stats);

    let mut peers: Vec<&PeerSnapshot> = snapshot.peers.iter().collect();
    // Like `wg show`: most recent handshake first, peers that never shook hands last.
    peers.sort_by_key(|peer| std::cmp::Reverse(peer.last_handshake));
    for peer in peers {
        out.push('\n');
        render_peer(&mut out, peer, now, hide_keys);
    }
    out
}

fn render_stats(out: &mut String, stats: &[(String, u64)]) {
    let drops: Vec<(&str, u64)> = stats
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix(DROP_PREFIX)?, *value)))
        .filter(|&(_, value)| value != 0)
        .collect();
    if !drops.is_empty() {
        let total = drops
            .iter()
            .fold(0u64, |sum, &(_, value)| sum.saturating_add(value));
        let _ = writeln!(out, "  dropped packets: {total}");
        for (reason, value) in drops {
            let _ = writeln!(out, "    {}: {value}", reason.replace('_', " "));
        }
    }
    // Each thread's share is `fastwire top`'s to show; here, the totals.
    for (name, value) in stats {
        if *value != 0 && !name.starts_with(DROP_PREFIX) && !name.starts_with(WORKER_PREFIX) {
            let _ = writeln!(out, "  {}: {value}", name.replace('_', " "));
        }
    }
}

fn render_peer(out: &mut String, peer: &PeerSnapshot, now: SystemTime, hide_keys: bool) {
    let _ = writeln!(out, "peer: {}", base64_key(&peer.public_key));
    if let Some(psk) = &peer.preshared_key {
        let _ = writeln!(out, "  preshared key: {}", masked(psk, hide_keys));
    }
    // Display marks TCP endpoints (`tcp://1.2.3.4:443`).
    if let Some(endpoint) = peer.endpoint {
        let _ = writeln!(out, "  endpoint: {endpoint}");
    }
    let allowed: Vec<String> = peer
        .allowed_ips
        .iter()
        .map(|ip| format!("{}/{}", ip.addr, ip.cidr))
        .collect();
    let allowed = if allowed.is_empty() {
        "(none)".to_string()
    } else {
        allowed.join(", ")
    };
    let _ = writeln!(out, "  allowed ips: {allowed}");
    if let Some(when) = peer.last_handshake {
        let _ = writeln!(out, "  latest handshake: {}", ago(when, now));
    }
    if peer.rx_bytes != 0 || peer.tx_bytes != 0 {
        let _ = writeln!(
            out,
            "  transfer: {} received, {} sent",
            bytes(peer.rx_bytes),
            bytes(peer.tx_bytes)
        );
    }
    if peer.persistent_keepalive != 0 {
        let _ = writeln!(
            out,
            "  persistent keepalive: every {}",
            duration_words(peer.persistent_keepalive.into())
        );
    }
}

pub(crate) fn public_key(private_key: &Key) -> Key {
    PublicKey::from(&StaticSecret::from(*private_key)).to_bytes()
}

fn base64_key(key: &Key) -> String {
    BASE64.encode(key)
}

fn masked(key: &Key, hide_keys: bool) -> String {
    if hide_keys {
        "(hidden)".into()
    } else {
        base64_key(key)
    }
}

/// "1 minute, 3 seconds ago", at whole-second resolution as `wg show` prints it.
fn ago(when: SystemTime, now: SystemTime) -> String {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (then, now) = (secs(when), secs(now));
    match now.checked_sub(then) {
        Some(0) => "Now".into(),
        Some(elapsed) => format!("{} ago", duration_words(elapsed)),
        None => "(System clock wound backward; connection problems may ensue.)".into(),
    }
}

/// "1 year, 2 days, 3 hours, 4 minutes, 5 seconds", leaving out zero parts.
fn duration_words(mut left: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (365 * 24 * 60 * 60, "year"),
        (24 * 60 * 60, "day"),
        (60 * 60, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let count = left / size;
        left %= size;
        if count != 0 {
            let plural = if count == 1 { "" } else { "s" };
            parts.push(format!("{count} {name}{plural}"));
        }
    }
    parts.join(", ")
}

/// "1.23 MiB", with `wg show`'s units and rounding.
fn bytes(b: u64) -> String {
    const KIB: u64 = 1024;
    let value = b as f64;
    match b {
        _ if b < KIB => format!("{b} B"),
        _ if b < KIB.pow(2) => format!("{:.2} KiB", value / KIB as f64),
        _ if b < KIB.pow(3) => format!("{:.2} MiB", value / KIB.pow(2) as f64),
        _ if b < KIB.pow(4) => format!("{:.2} GiB", value / KIB.pow(3) as f64),
        _ => format!("{:.2} TiB", value / KIB.pow(4) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwire_engine::config::{AllowedIp, Endpoint};
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn show_duration_words_like_wg() {
        assert_eq!(duration_words(63), "1 minute, 3 seconds");
        assert_eq!(duration_words(1), "1 second");
        assert_eq!(duration_words(3600 * 2 + 5), "2 hours, 5 seconds");
        assert_eq!(
            duration_words(365 * 86400 + 86400 + 1),
            "1 year, 1 day, 1 second"
        );
        assert_eq!(ago(at(100), at(163)), "1 minute, 3 seconds ago");
        assert_eq!(ago(at(100), at(100)), "Now");
        assert!(ago(at(200), at(100)).contains("wound backward"));
    }

    #[test]
    fn show_bytes_like_wg() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1_289_748), "1.23 MiB");
        assert_eq!(bytes(5 << 30), "5.00 GiB");
        assert_eq!(bytes(3 << 40), "3.00 TiB");
    }

    #[test]
    fn show_renders_interface_peers_and_drops() {
        let private_key = [7u8; 32];
        let recent = PeerSnapshot {
            public_key: [2; 32],
            preshared_key: Some([9; 32]),
            endpoint: Some("[fd78::2]:51820".parse().unwrap()),
            last_handshake: Some(at(1000)),
            rx_bytes: 1_289_748,
            tx_bytes: 4_781_506,
            persistent_keepalive: 25,
            allowed_ips: vec![
                AllowedIp {
                    addr: "10.78.0.2".parse().unwrap(),
                    cidr: 32,
                },
                AllowedIp {
                    addr: "fd78::2".parse().unwrap(),
                    cidr: 128,
                },
            ],
        };
        let silent = PeerSnapshot::new([1; 32]);
        let over_tcp = PeerSnapshot {
            endpoint: Some(Endpoint::tcp("10.77.0.3:40001".parse().unwrap())),
            last_handshake: Some(at(900)),
            ..PeerSnapshot::new([3; 32])
        };
        let snapshot = DeviceSnapshot {
            private_key: Some(private_key),
            listen_port: 51820,
            listen_tcp_port: 443,
            fwmark: 0x1234,
            peers: vec![silent, over_tcp, recent],
        };
        let stats = vec![
            ("drop_replay".to_string(), 3),
            ("drop_no_peer".to_string(), 0),
            ("drop_bad_mac".to_string(), 4),
            ("handshakes_sent".to_string(), 2),
        ];
        let text = render("wg0", &snapshot, &stats, at(1063), true);
        let public = BASE64.encode(public_key(&private_key));
        let expected = format!(
            "interface: wg0
  public key: {public}
  private key: (hidden)
  listening port: 51820
  listening TCP port: 443
  fwmark: 0x1234
  dropped packets: 7
    replay: 3
    bad mac: 4
  handshakes sent: 2

peer: {}
  preshared key: (hidden)
  endpoint: [fd78::2]:51820
  allowed ips: 10.78.0.2/32, fd78::2/128
  latest handshake: 1 minute, 3 seconds ago
  transfer: 1.23 MiB received, 4.56 MiB sent
  persistent keepalive: every 25 seconds

peer: {}
  endpoint: tcp://10.77.0.3:40001
  allowed ips: (none)
  latest handshake: 2 minutes, 43 seconds ago

peer: {}
  allowed ips: (none)
",
            BASE64.encode([2u8; 32]),
            BASE64.encode([3u8; 32]),
            BASE64.encode([1u8; 32]),
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn show_public_key_matches_x25519() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let mut private_key = [0u8; 32];
        let hex = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        for (i, b) in private_key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let expected = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let got: String = public_key(&private_key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn show_missing_interface_is_one_clear_line() {
        let err = show(Some("fwnone0")).unwrap_err();
        // /var/run/wireguard/fwnone0.sock (Windows: the pipe).
        let path =
            crate::uapi::socket_path(std::path::Path::new(crate::uapi::SOCKET_DIR), "fwnone0")
                .unwrap();
        assert!(
            err.contains("no fastwire interface fwnone0")
                && err.contains(&format!("{} not found", path.display())),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }
}
