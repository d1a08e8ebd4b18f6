//! The UAPI text format: `set=1` transactions to and from [`DeviceUpdate`], `get=1` answers to and from
//! [`DeviceSnapshot`], and fastwire's private `fastwire-stats=1` answers.
//!
//! Behaviour follows wireguard-go's `device/uapi.go`, which is what `wg` is written against: every
//! unknown key or malformed value is refused with EINVAL, keys are 64 hex digits (either case, as Go's
//! hex decoder allows), numbers are plain decimal digits, and a blank line ends a transaction.
//!
//! fastwire's TCP transport extends the protocol without breaking `wg`:
//! - `set=1` also takes `listen_tcp_port=N` (device; 0 closes the listener) and
//!   `endpoint=tcp://IP:PORT` (peer; literal address, IPv6 in brackets).
//! - `get=1` adds `listen_tcp_port=N` (device, when listening) and, after the `endpoint=IP:PORT` of a
//!   peer reached over TCP, `endpoint_transport=tcp`. The endpoint itself stays a plain `IP:PORT`:
//!   see [`format_get`] for why. A device without TCP answers byte for byte as wireguard-go.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use fastwire_engine::config::{
    AllowedIp, DeviceSnapshot, DeviceUpdate, Endpoint, Key, PeerSnapshot, PeerUpdate, Transport,
};

/// EINVAL: what every malformed `set=1` line is answered with.
pub const EINVAL: i32 = 22;

/// The `get=1` peer key that marks the endpoint printed just before it as a TCP one.
const ENDPOINT_TRANSPORT_KEY: &str = "endpoint_transport";

/// Why a `set=1` transaction was refused before anything was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiError {
    /// 1-based line number within the transaction (the `set=1` line itself not counted).
    pub line: usize,
    pub reason: String,
}

impl UapiError {
    fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }

    /// The positive errno the answer carries (always EINVAL, as in wireguard-go).
    pub fn errno(&self) -> i32 {
        EINVAL
    }
}

impl std::fmt::Display for UapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for UapiError {}

/// Builds a [`DeviceUpdate`] one line at a time, so the server never holds the raw transaction.
#[derive(Debug, Default)]
pub struct SetParser {
    update: DeviceUpdate,
    lines: usize,
}

impl SetParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one `key=value` line, without its newline (a trailing `\r` is ignored, as Go's line
    /// scanner does).
    pub fn feed_line(&mut self, line: &str) -> Result<(), UapiError> {
        self.lines += 1;
        let line_no = self.lines;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(UapiError::new(
                line_no,
                format!("expected key=value, got {:?}", truncated(line)),
            ));
        };
        let bad =
            |what: &str| UapiError::new(line_no, format!("invalid {what}: {:?}", truncated(value)));

        if key == "public_key" {
            let public_key = parse_key_hex(value).ok_or_else(|| bad("public_key"))?;
            self.update.peers.push(PeerUpdate::new(public_key));
            return Ok(());
        }

        let Some(peer) = self.update.peers.last_mut() else {
            return self.device_line(key, value, line_no);
        };
        match key {
            "remove" => peer.remove = parse_true(value).ok_or_else(|| bad("remove"))?,
            "update_only" => {
                peer.update_only = parse_true(value).ok_or_else(|| bad("update_only"))?
            }
            "preshared_key" => {
                let key = parse_key_hex(value).ok_or_else(|| bad("preshared_key"))?;
                peer.preshared_key = Some(nonzero(key));
            }
            "endpoint" => {
                peer.endpoint = Some(parse_endpoint(value).ok_or_else(|| bad("endpoint"))?)
            }
            "persistent_keepalive_interval" => {
                let secs = parse_decimal(value, u16::MAX.into())
                    .ok_or_else(|| bad("persistent_keepalive_interval"))?;
                peer.persistent_keepalive = Some(secs as u16);
            }
            "replace_allowed_ips" => {
                parse_true(value).ok_or_else(|| bad("replace_allowed_ips"))?;
                // Lines apply in order: a replace drops the entries listed before it.
                peer.allowed_ips.clear();
                peer.replace_allowed_ips = true;
            }
            "allowed_ip" => {
                let ip = parse_allowed_ip(value).ok_or_else(|| bad("allowed_ip"))?;
                peer.allowed_ips.push(ip);
            }
            "protocol_version" => {
                if value != "1" {
                    return Err(bad("protocol_version (only 1 is known)"));
                }
            }
            _ => {
                return Err(UapiError::new(
                    line_no,
                    format!("invalid UAPI peer key: {:?}", truncated(key)),
                ));
            }
        }
        Ok(())
    }

    fn device_line(&mut self, key: &str, value: &str, line_no: usize) -> Result<(), UapiError> {
        let bad =
            |what: &str| UapiError::new(line_no, format!("invalid {what}: {:?}", truncated(value)));
        let update = &mut self.update;
        match key {
            "private_key" => {
                let key = parse_key_hex(value).ok_or_else(|| bad("private_key"))?;
                update.private_key = Some(nonzero(key));
            }
            "listen_port" => {
                let port =
                    parse_decimal(value, u16::MAX.into()).ok_or_else(|| bad("listen_port"))?;
                update.listen_port = Some(port as u16);
            }
            "listen_tcp_port" => {
                let port =
                    parse_decimal(value, u16::MAX.into()).ok_or_else(|| bad("listen_tcp_port"))?;
                update.listen_tcp_port = Some(port as u16);
            }
            "fwmark" => {
                let mark = parse_decimal(value, u32::MAX.into()).ok_or_else(|| bad("fwmark"))?;
                update.fwmark = Some(mark as u32);
            }
            "replace_peers" => {
                update.replace_peers = parse_true(value).ok_or_else(|| bad("replace_peers"))?
            }
            _ => {
                return Err(UapiError::new(
                    line_no,
                    format!("invalid UAPI device key: {:?}", truncated(key)),
                ));
            }
        }
        Ok(())
    }

    pub fn finish(self) -> DeviceUpdate {
        self.update
    }
}

/// Parses a whole `set=1` transaction: optionally the `set=1` line, then `key=value` lines, then
/// optionally the blank line that ends it. Nothing may follow that blank line.
#[allow(
    dead_code,
    reason = "API for whole transactions; the server streams lines"
)]
pub fn parse_set(text: &str) -> Result<DeviceUpdate, UapiError> {
    let body = text.strip_prefix("set=1\n").unwrap_or(text);
    let mut parser = SetParser::new();
    let mut lines = body.split('\n').enumerate();
    while let Some((index, line)) = lines.next() {
        if line.is_empty() {
            if lines.any(|(_, rest)| !rest.is_empty()) {
                return Err(UapiError::new(
                    index + 2,
                    "text after the blank line that ends the transaction",
                ));
            }
            break;
        }
        parser.feed_line(line)?;
    }
    Ok(parser.finish())
}

/// Formats a [`DeviceUpdate`] as a complete `set=1` request, blank line included.
pub fn format_set(update: &DeviceUpdate) -> String {
    let mut out = String::from("set=1\n");
    if let Some(private_key) = &update.private_key {
        push_key(&mut out, "private_key", &private_key.unwrap_or([0; 32]));
    }
    if let Some(port) = update.listen_port {
        let _ = writeln!(out, "listen_port={port}");
    }
    if let Some(port) = update.listen_tcp_port {
        let _ = writeln!(out, "listen_tcp_port={port}");
    }
    if let Some(mark) = update.fwmark {
        let _ = writeln!(out, "fwmark={mark}");
    }
    if update.replace_peers {
        out.push_str("replace_peers=true\n");
    }
    for peer in &update.peers {
        push_key(&mut out, "public_key", &peer.public_key);
        if peer.remove {
            out.push_str("remove=true\n");
        }
        if peer.update_only {
            out.push_str("update_only=true\n");
        }
        if let Some(psk) = &peer.preshared_key {
            push_key(&mut out, "preshared_key", &psk.unwrap_or([0; 32]));
        }
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        if let Some(secs) = peer.persistent_keepalive {
            let _ = writeln!(out, "persistent_keepalive_interval={secs}");
        }
        if peer.replace_allowed_ips {
            out.push_str("replace_allowed_ips=true\n");
        }
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={}/{}", ip.addr, ip.cidr);
        }
    }
    out.push('\n');
    out
}

/// Formats the complete answer to `get=1`, byte for byte as wireguard-go writes it: device lines only
/// when set, every peer with `preshared_key` (zeros when none), `protocol_version=1`, the handshake
/// time (0 when none), counters and keepalive always, then `errno=0` and the blank line.
///
/// TCP facts are extra lines, because that is what `wg` (wireguard-tools `ipc-uapi.h`,
/// `userspace_get_device`) tolerates: its key chain has no final `else`, so an unknown key such as
/// `listen_tcp_port` or `endpoint_transport` is skipped (wgctrl-go's parser skips them too). Its
/// `endpoint` branch, however, splits the value at the last `:` and hands the host to `getaddrinfo`
/// (a DNS query for `tcp://1.2.3.4`), which fails: `wg showconf` then errors out and `wg show dump`
/// of wireguard-tools 1.0.20210914 even segfaults. So the endpoint is always a plain `IP:PORT`, and
/// `wg` shows a TCP peer as if it were UDP (`wg showconf` output applied back with `wg setconf`
/// therefore turns TCP peers into UDP ones).
pub fn format_get(snapshot: &DeviceSnapshot) -> String {
    let mut out = String::new();
    if let Some(key) = &snapshot.private_key {
        push_key(&mut out, "private_key", key);
    }
    if snapshot.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", snapshot.listen_port);
    }
    if snapshot.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", snapshot.fwmark);
    }
    if snapshot.listen_tcp_port != 0 {
        let _ = writeln!(out, "listen_tcp_port={}", snapshot.listen_tcp_port);
    }
    for peer in &snapshot.peers {
        push_key(&mut out, "public_key", &peer.public_key);
        push_key(
            &mut out,
            "preshared_key",
            &peer.preshared_key.unwrap_or([0; 32]),
        );
        out.push_str("protocol_version=1\n");
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={}", endpoint.addr);
            if endpoint.is_tcp() {
                let _ = writeln!(out, "{ENDPOINT_TRANSPORT_KEY}=tcp");
            }
        }
        let since_epoch = peer
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since_epoch.as_secs());
        let _ = writeln!(
            out,
            "last_handshake_time_nsec={}",
            since_epoch.subsec_nanos()
        );
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive
        );
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={}/{}", ip.addr, ip.cidr);
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// Parses an answer to `get=1`. Unknown keys are skipped (newer daemons may add some), as `wg` does.
pub fn parse_get(text: &str) -> Result<DeviceSnapshot, String> {
    let mut snapshot = DeviceSnapshot::default();
    let mut pending = PeerLines::default();
    let mut errno = None;
    for line in response_lines(text)? {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("malformed line in get answer: {:?}", truncated(line)))?;
        let bad = || format!("malformed {key} in get answer: {:?}", truncated(value));
        if key == "errno" {
            errno = Some(parse_errno(value).ok_or_else(bad)?);
            continue;
        }
        if key == "public_key" {
            std::mem::take(&mut pending).apply(&mut snapshot)?;
            snapshot
                .peers
                .push(PeerSnapshot::new(parse_key_hex(value).ok_or_else(bad)?));
            continue;
        }
        let Some(peer) = snapshot.peers.last_mut() else {
            match key {
                "private_key" => {
                    snapshot.private_key = nonzero(parse_key_hex(value).ok_or_else(bad)?)
                }
                "listen_port" => {
                    snapshot.listen_port =
                        parse_decimal(value, u16::MAX.into()).ok_or_else(bad)? as u16
                }
                "listen_tcp_port" => {
                    snapshot.listen_tcp_port =
                        parse_decimal(value, u16::MAX.into()).ok_or_else(bad)? as u16
                }
                "fwmark" => {
                    snapshot.fwmark = parse_decimal(value, u32::MAX.into()).ok_or_else(bad)? as u32
                }
                _ => {}
            }
            continue;
        };
        match key {
            "preshared_key" => peer.preshared_key = nonzero(parse_key_hex(value).ok_or_else(bad)?),
            "endpoint" => peer.endpoint = Some(parse_endpoint(value).ok_or_else(bad)?),
            ENDPOINT_TRANSPORT_KEY => {
                pending.transport = Some(match value {
                    "tcp" => Transport::Tcp,
                    "udp" => Transport::Udp,
                    _ => return Err(bad()),
                })
            }
            "last_handshake_time_sec" => {
                pending.handshake_secs = parse_decimal(value, i64::MAX as u64).ok_or_else(bad)?
            }
            "last_handshake_time_nsec" => {
                pending.handshake_nanos = parse_decimal(value, 999_999_999).ok_or_else(bad)?
            }
            "tx_bytes" => peer.tx_bytes = parse_decimal(value, u64::MAX).ok_or_else(bad)?,
            "rx_bytes" => peer.rx_bytes = parse_decimal(value, u64::MAX).ok_or_else(bad)?,
            "persistent_keepalive_interval" => {
                peer.persistent_keepalive =
                    parse_decimal(value, u16::MAX.into()).ok_or_else(bad)? as u16
            }
            "allowed_ip" => peer
                .allowed_ips
                .push(parse_allowed_ip(value).ok_or_else(bad)?),
            _ => {}
        }
    }
    pending.apply(&mut snapshot)?;
    match errno {
        Some(0) => Ok(snapshot),
        Some(n) => Err(errno_message(n)),
        None => Err("get answer without errno line".into()),
    }
}

/// What a peer's `get=1` section says over several lines, applied once the section ends so the
/// lines may come in any order.
#[derive(Debug, Default)]
struct PeerLines {
    handshake_secs: u64,
    handshake_nanos: u64,
    transport: Option<Transport>,
}

impl PeerLines {
    fn apply(self, snapshot: &mut DeviceSnapshot) -> Result<(), String> {
        let Some(peer) = snapshot.peers.last_mut() else {
            return Ok(());
        };
        if let (Some(transport), Some(endpoint)) = (self.transport, peer.endpoint.as_mut()) {
            endpoint.transport = transport;
        }
        let (secs, nanos) = (self.handshake_secs, self.handshake_nanos);
        if secs == 0 && nanos == 0 {
            return Ok(());
        }
        let when = UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos as u32))
            .ok_or_else(|| format!("handshake time {secs}s out of range"))?;
        peer.last_handshake = Some(when);
        Ok(())
    }
}

/// Formats the answer to `fastwire-stats=1`. Names that could break the line format are skipped.
pub fn format_stats(stats: &[(String, u64)]) -> String {
    let mut out = String::new();
    for (name, value) in stats {
        let printable = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'=');
        if printable {
            let _ = writeln!(out, "{name}={value}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// Parses an answer to `fastwire-stats=1`.
pub fn parse_stats(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut stats = Vec::new();
    let mut errno = None;
    for line in response_lines(text)? {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("malformed line in stats answer: {:?}", truncated(line)))?;
        if key == "errno" {
            errno = parse_errno(value);
            continue;
        }
        let value = parse_decimal(value, u64::MAX)
            .ok_or_else(|| format!("malformed stat {key}: {:?}", truncated(value)))?;
        stats.push((key.to_string(), value));
    }
    match errno {
        Some(0) => Ok(stats),
        Some(n) => Err(errno_message(n)),
        None => Err("stats answer without errno line".into()),
    }
}

/// The errno of a `set=1` answer (`errno=N` then a blank line), as a positive number.
pub fn parse_set_answer(text: &str) -> Result<i32, String> {
    let mut errno = None;
    for line in response_lines(text)? {
        if let Some(value) = line.strip_prefix("errno=") {
            errno = parse_errno(value);
        }
    }
    errno.ok_or_else(|| format!("malformed set answer: {:?}", truncated(text)))
}

/// The lines of an answer, which must end with a blank line.
fn response_lines(text: &str) -> Result<impl Iterator<Item = &str>, String> {
    let body = text
        .strip_suffix("\n\n")
        .ok_or_else(|| "answer does not end with a blank line".to_string())?;
    Ok(body.split('\n').filter(|line| !line.is_empty()))
}

/// wireguard-go writes negative errnos (`errno=-22`); accept either sign and return it positive.
fn parse_errno(value: &str) -> Option<i32> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    parse_decimal(digits, i32::MAX as u64).map(|n| n as i32)
}

/// A one-line description of a UAPI errno.
pub fn errno_message(errno: i32) -> String {
    let what = match errno {
        5 => "I/O error",
        22 => "invalid argument",
        71 => "protocol error",
        98 => "address already in use",
        _ => "error",
    };
    format!("{what} (errno {errno})")
}

/// The daemon's view of `value` as a 32-byte key: exactly 64 hex digits.
pub fn parse_key_hex(value: &str) -> Option<Key> {
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = hex_digit(*pair.first()?)?;
        let low = hex_digit(*pair.get(1)?)?;
        *out = (high << 4) | low;
    }
    Some(key)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub fn key_to_hex(key: &Key) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in key {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn push_key(out: &mut String, name: &str, key: &Key) {
    out.push_str(name);
    out.push('=');
    out.push_str(&key_to_hex(key));
    out.push('\n');
}

/// The all-zero key means "none" in the UAPI.
fn nonzero(key: Key) -> Option<Key> {
    (key != [0; 32]).then_some(key)
}

/// Plain decimal digits only (no sign, no spaces), like Go's `strconv.ParseUint(s, 10, n)`.
fn parse_decimal(value: &str, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|&n| n <= max)
}

fn parse_true(value: &str) -> Option<bool> {
    (value == "true").then_some(true)
}

/// `1.2.3.4:51820` or `[v6]:51820` (a numeric scope id is allowed: `[fe80::1%2]:51820`) for UDP;
/// either behind `tcp://` for TCP.
fn parse_endpoint(value: &str) -> Option<Endpoint> {
    value.parse().ok()
}

/// `addr/cidr` with the prefix length checked for the family; no leading zeros in the length, as
/// Go's `netip.ParsePrefix` demands.
fn parse_allowed_ip(value: &str) -> Option<AllowedIp> {
    let (addr, bits) = value.split_once('/')?;
    if bits.len() > 1 && bits.starts_with('0') {
        return None;
    }
    let cidr = parse_decimal(bits, 128)?;
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (cidr <= max).then_some(AllowedIp {
        addr,
        cidr: cidr as u8,
    })
}

/// Keeps error messages one short line even for hostile input.
fn truncated(s: &str) -> &str {
    const MAX_CHARS: usize = 80;
    match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
