//! wg-quick configuration files: the format `wg-quick(8)` reads, which is `wg setconf`'s format plus the
//! keys wg-quick handles itself.
//!
//! Parsing follows wireguard-tools exactly where it matters: keys are case-insensitive, `#` starts a
//! comment, whitespace is insignificant in `wg`'s own values (`AllowedIPs = 10.0.0.1/32, fd00::1/128`),
//! `Address`, `DNS`, `AllowedIPs` and the hooks may repeat and accumulate, and a later `ListenPort` (etc.)
//! overrides an earlier one. Where `wg` would say "Line unrecognized" we say which line and why, as
//! `FILE:LINE: reason`.
//!
//! fastwire adds its own keys where WireGuard has none:
//! - `[Interface] Workers = N`: data-plane worker threads (default: one per online CPU;
//!   `fastwire up --workers N` overrides it).
//! - `[Interface] TunQueues = N`: TUN queues (Linux; 1 selects the single-queue data path that Windows
//!   and macOS always use).
//! - `[Interface] RingCapacity = 4MiB`: the Wintun ring's size (Windows; a power of two, 128KiB-64MiB).
//! - `[Interface] Realtime = true`: data-path workers SCHED_FIFO (Linux; `fastwire up --realtime`).
//! - `[Interface] ListenTcpPort = N`: also accept WireGuard-over-TCP connections on TCP port N.
//! - `[Interface] MetricsListen = 127.0.0.1:9586`: serve Prometheus metrics at http://ADDR:PORT/metrics
//!   (off unless set; `fastwire up --metrics-listen` overrides it).
//! - `[Peer] Endpoint = tcp://host:port`: reach this peer over TCP (fastwire connects, and reconnects).

use crate::keys::decode_key;
use fastwire_engine::config::{
    AllowedIp, DeviceUpdate, Endpoint as PeerEndpoint, Key, PeerUpdate, Transport,
};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Where wg-quick looks for `NAME.conf` when given a bare interface name.
pub const CONFIG_DIR: &str = "/etc/wireguard";

/// Larger files are refused rather than read into memory (tens of thousands of peers still fit).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Upper bound for `Workers`, far above any sensible value, so a typo cannot spawn a thread storm.
const MAX_WORKERS: usize = 1024;

/// A parsed wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickConfig {
    /// How errors name the file (the path as given).
    pub source: String,
    pub interface: InterfaceSection,
    pub peers: Vec<PeerSection>,
    /// Non-fatal remarks, ready to print one per line on stderr.
    pub warnings: Vec<String>,
}

/// `[Interface]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSection {
    pub private_key: Key,
    pub listen_port: Option<u16>,
    /// fastwire's own key: the TCP port to accept WireGuard-over-TCP on (1-65535).
    pub listen_tcp_port: Option<u16>,
    /// `Some(0)` is `FwMark = off`.
    pub fwmark: Option<u32>,
    pub addresses: Vec<InterfaceAddress>,
    pub mtu: Option<u16>,
    pub dns_servers: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub table: Table,
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
    pub save_config: bool,
    /// fastwire's own key: data-plane worker count.
    pub workers: Option<usize>,
    /// fastwire's own key: TUN queues (1 = the single-queue data path; default: one per worker on Linux).
    pub tun_queues: Option<usize>,
    /// fastwire's own key: Wintun ring capacity in bytes (Windows only).
    pub ring_capacity: Option<u32>,
    /// fastwire's own key: data-path workers real-time (Linux).
    pub realtime: Option<bool>,
    /// fastwire's own key: where to serve Prometheus metrics.
    pub metrics_listen: Option<SocketAddr>,
}

/// `Table =`: where routes for allowed IPs go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Table {
    /// The main table, with wg-quick's fwmark/rule scheme for default routes.
    #[default]
    Auto,
    /// No routes at all.
    Off,
    /// A table number or a name from /etc/iproute2/rt_tables, passed to `ip route ... table`.
    Named(String),
}

/// An `Address =` entry; without a prefix length `ip` assigns /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(prefix) => write!(f, "{}/{prefix}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// `[Peer]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSection {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: Option<Endpoint>,
    /// With the host part cleared, as the kernel stores them (so they are also valid routes).
    pub allowed_ips: Vec<AllowedIp>,
    /// Seconds; `Some(0)` is `off`.
    pub persistent_keepalive: Option<u16>,
    /// Line of the `[Peer]` header.
    pub line: usize,
}

/// An `Endpoint =` as written; host names are resolved only when the tunnel comes up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `tcp://host:port` selects TCP; a bare `host:port` is UDP, as in `wg`.
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub line: usize,
}

impl Endpoint {
    /// Resolves the host with the system resolver, taking its first answer as `wg` does.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve endpoint '{self}': {e}"))?;
        addrs
            .next()
            .ok_or_else(|| format!("endpoint '{self}' has no IPv4 or IPv6 address"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.transport == Transport::Tcp {
            f.write_str(fastwire_proto::endpoint::TCP_SCHEME)?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl QuickConfig {
    /// The `set` that configures a fresh device from this file, resolving endpoint host names.
    pub fn device_update(&self) -> Result<DeviceUpdate, String> {
        self.device_update_with(Endpoint::resolve)
    }

    /// As [`QuickConfig::device_update`], with the resolver supplied (tests use a fake one).
    pub fn device_update_with(
        &self,
        mut resolve: impl FnMut(&Endpoint) -> Result<SocketAddr, String>,
    ) -> Result<DeviceUpdate, String> {
        let mut peers = Vec::with_capacity(self.peers.len());
        for peer in &self.peers {
            let mut update = PeerUpdate::new(peer.public_key);
            update.preshared_key = peer.preshared_key.map(Some);
            if let Some(endpoint) = &peer.endpoint {
                let addr = resolve(endpoint)
                    .map_err(|reason| format!("{}:{}: {reason}", self.source, endpoint.line))?;
                update.endpoint = Some(PeerEndpoint {
                    transport: endpoint.transport,
                    addr,
                    local: None,
                });
            }
            update.persistent_keepalive = peer.persistent_keepalive;
            update.replace_allowed_ips = true;
            update.allowed_ips = peer.allowed_ips.clone();
            peers.push(update);
        }
        // Like `wg setconf`: unset port and mark mean "random port" and "no mark"; unset TCP port
        // means no TCP listener.
        Ok(DeviceUpdate {
            private_key: Some(Some(self.interface.private_key)),
            listen_port: Some(self.interface.listen_port.unwrap_or(0)),
            listen_tcp_port: Some(self.interface.listen_tcp_port.unwrap_or(0)),
            fwmark: Some(self.interface.fwmark.unwrap_or(0)),
            replace_peers: true,
            peers,
        })
    }
}

/// Whether `name` is an interface name wg-quick accepts: `^[a-zA-Z0-9_=+.-]{1,15}$`.
pub fn is_valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
}

/// The file `up`/`down` mean: a bare interface name `wg0` is `/etc/wireguard/wg0.conf`, anything else
/// is a path. (wg-quick also treats `wg0.conf` as a bare name, and then looks for `wg0.conf.conf`; we
/// take a name ending in `.conf` as the file it names.)
pub fn config_path(arg: &Path) -> PathBuf {
    match arg.to_str() {
        Some(name) if is_valid_interface_name(name) && !name.ends_with(".conf") => {
            Path::new(CONFIG_DIR).join(format!("{name}.conf"))
        }
        _ => arg.to_path_buf(),
    }
}

/// The interface a config file brings up: its file name without `.conf`.
pub fn interface_name(path: &Path) -> Result<String, String> {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_suffix(".conf"))
        .filter(|name| is_valid_interface_name(name))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "`{}': the config file must be a valid interface name ([a-zA-Z0-9_=+.-], 1-15 characters), followed by .conf",
                path.display()
            )
        })
}

/// Reads and parses a config file. A permission warning, if any, comes first in `warnings`.
pub fn load(path: &Path) -> Result<QuickConfig, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open `{shown}': {e}"))?;
    let mode = file.metadata().ok().and_then(|m| permission_bits(&m));
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{shown}': {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "`{shown}' is larger than {} MiB; is it really a config file?",
            MAX_CONFIG_BYTES >> 20
        ));
    }
    let source = shown.to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        format!("{source}:{line}: the line is not valid UTF-8")
    })?;
    let mut config = parse(&source, &text)?;
    if let Some(warning) = mode.and_then(|mode| permission_warning(path, mode)) {
        config.warnings.insert(0, warning);
    }
    Ok(config)
}

/// The file's mode bits; `None` where access is an ACL (Windows), which `wg` does not check either.
fn permission_bits(metadata: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(metadata.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// The file holds a private key: say so when others can read or change it, in wg's words.
pub fn permission_warning(path: &Path, mode: u32) -> Option<String> {
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let who = if mode & 0o007 != 0 {
        "world"
    } else if mode & 0o070 != 0 {
        "group"
    } else {
        return None;
    };
    Some(format!(
        "Warning: `{}' is {who} accessible",
        shown.display()
    ))
}

/// Parses the text of a config file; `source` names it in errors (`wg0.conf:7: ...`).
pub fn parse(source: &str, text: &str) -> Result<QuickConfig, String> {
    let mut parser = Parser::new(source);
    for (index, line) in text.split('\n').enumerate() {
        parser
            .line(index + 1, line)
            .map_err(|reason| format!("{source}:{}: {reason}", index + 1))?;
    }
    parser.finish()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

struct PeerDraft {
    section: PeerSection,
    public_key_line: Option<usize>,
}

struct Parser<'a> {
    source: &'a str,
    section: Section,
    interface_line: Option<usize>,
    private_key_seen: bool,
    interface: InterfaceSection,
    peers: Vec<PeerDraft>,
    warnings: Vec<String>,
}

/// wireguard-tools' `char_is_space`: space, \t, \n, \v, \f, \r.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t'..='\r')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

fn without_spaces(s: &str) -> String {
    s.chars().filter(|&c| !is_space(c)).collect()
}

/// Quotes user text in an error, cut short so a huge line cannot make a huge message.
fn quoted(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("'{}...'", &s[..cut]),
        None => format!("'{s}'"),
    }
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        Parser {
            source,
            section: Section::None,
            interface_line: None,
            private_key_seen: false,
            interface: InterfaceSection::default(),
            peers: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings
            .push(format!("Warning: {}:{line}: {message}", self.source));
    }

    fn line(&mut self, number: usize, raw: &str) -> Result<(), String> {
        let content = raw.split('#').next().unwrap_or_default();
        if trim(content).is_empty() {
            return Ok(());
        }
        let compact = without_spaces(content);
        if compact.starts_with('[') {
            return self.section_header(number, &compact);
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(format!(
                "{} is neither a [Section] header nor 'Key = Value'",
                quoted(trim(content))
            ));
        };
        let key = trim(key);
        if key.is_empty() {
            return Err("a value without a key".to_string());
        }
        match self.section {
            Section::None => Err(format!(
                "key {} is outside a section: put it under [Interface] or [Peer]",
                quoted(key)
            )),
            Section::Interface => self.interface_key(number, key, trim(value), raw),
            Section::Peer => self.peer_key(number, key, value),
        }
    }

    fn section_header(&mut self, number: usize, header: &str) -> Result<(), String> {
        if header.eq_ignore_ascii_case("[Interface]") {
            self.section = Section::Interface;
            self.interface_line.get_or_insert(number);
        } else if header.eq_ignore_ascii_case("[Peer]") {
            self.section = Section::Peer;
            self.peers.push(PeerDraft {
                section: PeerSection {
                    public_key: [0; 32],
                    preshared_key: None,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    persistent_keepalive: None,
                    line: number,
                },
                public_key_line: None,
            });
        } else {
            return Err(format!(
                "unknown section {}: expected [Interface] or [Peer]",
                quoted(header)
            ));
        }
        Ok(())
    }

    /// `value` is trimmed; `raw` is the whole line, because hooks keep what follows a `#` as wg-quick
    /// does (it is part of the shell snippet).
    fn interface_key(
        &mut self,
        number: usize,
        key: &str,
        value: &str,
        raw: &str,
    ) -> Result<(), String> {
        // wg-quick's own keys match the key as written (trimmed), case-insensitively.
        match key.to_ascii_lowercase().as_str() {
            "address" => {
                for word in list_words(value) {
                    self.interface.addresses.push(parse_address(word)?);
                }
            }
            "dns" => {
                for word in list_words(value) {
                    match parse_dns_entry(word)? {
                        DnsEntry::Server(ip) => self.interface.dns_servers.push(ip),
                        DnsEntry::Search(domain) => self.interface.dns_search.push(domain),
                    }
                }
            }
            "mtu" => self.interface.mtu = optional(value, parse_mtu)?,
            "table" => self.interface.table = parse_table(value)?,
            "preup" => push_hook(&mut self.interface.pre_up, raw),
            "postup" => push_hook(&mut self.interface.post_up, raw),
            "predown" => push_hook(&mut self.interface.pre_down, raw),
            "postdown" => push_hook(&mut self.interface.post_down, raw),
            "saveconfig" => {
                self.interface.save_config = parse_bool(value)?;
                if self.interface.save_config {
                    self.warn(
                        number,
                        "SaveConfig = true is ignored: fastwire does not write configuration files back"
                            .to_string(),
                    );
                }
            }
            "workers" => self.interface.workers = Some(parse_count("Workers", value)?),
            "tunqueues" => self.interface.tun_queues = Some(parse_count("TunQueues", value)?),
            "ringcapacity" => self.interface.ring_capacity = Some(parse_ring_capacity(value)?),
            "realtime" => self.interface.realtime = Some(parse_bool(value)?),
            "metricslisten" => {
                self.interface.metrics_listen = Some(parse_metrics_listen(non_empty(key, value)?)?)
            }
            "listentcpport" => {
                self.interface.listen_tcp_port = Some(parse_tcp_port(non_empty(key, value)?)?)
            }
            // `wg`'s keys: whitespace anywhere in the line is insignificant.
            _ => {
                let value = without_spaces(value);
                match without_spaces(key).to_ascii_lowercase().as_str() {
                    "privatekey" => {
                        self.interface.private_key = decode_key(non_empty(key, &value)?)
                            .map_err(|_| "PrivateKey is not a base64 WireGuard key".to_string())?;
                        self.private_key_seen = true;
                    }
                    "listenport" => {
                        self.interface.listen_port = Some(parse_port(non_empty(key, &value)?)?)
                    }
                    "fwmark" => {
                        self.interface.fwmark = Some(parse_fwmark(non_empty(key, &value)?)?)
                    }
                    _ => return Err(format!("unknown key {} in [Interface]", quoted(key))),
                }
            }
        }
        Ok(())
    }

    fn peer_key(&mut self, number: usize, key: &str, value: &str) -> Result<(), String> {
        let value = without_spaces(value);
        let lower_key = without_spaces(key).to_ascii_lowercase();
        let known = matches!(
            lower_key.as_str(),
            "publickey" | "presharedkey" | "endpoint" | "allowedips" | "persistentkeepalive"
        );
        if !known {
            return Err(format!("unknown key {} in [Peer]", quoted(key)));
        }
        let value = non_empty(key, &value)?;
        let mut warnings = Vec::new();
        let Some(draft) = self.peers.last_mut() else {
            return Err("internal error: [Peer] key without a peer".to_string());
        };
        let peer = &mut draft.section;
        match lower_key.as_str() {
            "publickey" => {
                peer.public_key = decode_key(value).map_err(|_| {
                    format!("PublicKey {} is not a base64 WireGuard key", quoted(value))
                })?;
                draft.public_key_line = Some(number);
            }
            "presharedkey" => {
                let psk = decode_key(value)
                    .map_err(|_| "PresharedKey is not a base64 WireGuard key".to_string())?;
                peer.preshared_key = Some(psk);
            }
            "endpoint" => peer.endpoint = Some(parse_endpoint(value, number)?),
            "allowedips" => {
                for entry in value.split(',') {
                    let (allowed, host_bits_set) = parse_allowed_ip(entry)?;
                    if host_bits_set {
                        warnings.push(format!(
                            "AllowedIP has nonzero host part: {entry} (using {}/{})",
                            allowed.addr, allowed.cidr
                        ));
                    }
                    peer.allowed_ips.push(allowed);
                }
            }
            _ => peer.persistent_keepalive = Some(parse_keepalive(value)?),
        }
        for warning in warnings {
            self.warn(number, warning);
        }
        Ok(())
    }

    fn finish(self) -> Result<QuickConfig, String> {
        let source = self.source;
        if !self.private_key_seen {
            return Err(match self.interface_line {
                Some(line) => format!("{source}:{line}: [Interface] has no PrivateKey"),
                None => format!("{source}:1: there is no [Interface] section with a PrivateKey"),
            });
        }
        let mut first_line_of_key: HashMap<Key, usize> = HashMap::new();
        let mut peers = Vec::with_capacity(self.peers.len());
        for draft in self.peers {
            let Some(key_line) = draft.public_key_line else {
                return Err(format!(
                    "{source}:{}: [Peer] has no PublicKey",
                    draft.section.line
                ));
            };
            if let Some(first) = first_line_of_key.insert(draft.section.public_key, key_line) {
                return Err(format!(
                    "{source}:{key_line}: duplicate peer: this PublicKey is already used at line {first}"
                ));
            }
            peers.push(draft.section);
        }
        Ok(QuickConfig {
            source: source.to_string(),
            interface: self.interface,
            peers,
            warnings: self.warnings,
        })
    }
}

/// wg-quick splits `Address` and `DNS` on commas and whitespace alike.
fn list_words(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || is_space(c))
        .filter(|word| !word.is_empty())
}

/// Hooks take the unstripped text after the first `=`, as wg-quick does; empty ones do nothing.
fn push_hook(hooks: &mut Vec<String>, raw: &str) {
    let snippet = trim(raw.split_once('=').map(|(_, v)| v).unwrap_or_default());
    if !snippet.is_empty() {
        hooks.push(snippet.to_string());
    }
}

fn optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

fn non_empty<'v>(key: &str, value: &'v str) -> Result<&'v str, String> {
    if value.is_empty() {
        Err(format!("{} has no value", quoted(key)))
    } else {
        Ok(value)
    }
}

/// Digits only (strtoul with a leading-digit check, as wireguard-tools parses numbers).
fn parse_decimal(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_port(value: &str) -> Result<u16, String> {
    parse_decimal(value)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "ListenPort {} is not a port number (0-65535)",
                quoted(value)
            )
        })
}

/// Unlike `ListenPort`, 0 is refused: there is no random TCP port (clients must know where to connect).
fn parse_tcp_port(value: &str) -> Result<u16, String> {
    parse_decimal(value)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| {
            format!(
                "ListenTcpPort {} is not a port number (1-65535)",
                quoted(value)
            )
        })
}

fn parse_fwmark(value: &str) -> Result<u32, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    let parsed = match value.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_decimal(value).and_then(|n| u32::try_from(n).ok()),
    };
    parsed.ok_or_else(|| {
        format!(
            "FwMark {} is neither off nor a number 0-0xffffffff",
            quoted(value)
        )
    })
}

fn parse_keepalive(value: &str) -> Result<u16, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    parse_decimal(value)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "PersistentKeepalive {} is neither off nor a number of seconds 0-65535",
                quoted(value)
            )
        })
}

fn parse_mtu(value: &str) -> Result<u16, String> {
    parse_decimal(value)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n >= 68)
        .ok_or_else(|| format!("MTU {} is not a number 68-65535", quoted(value)))
}

fn parse_count(key: &str, value: &str) -> Result<usize, String> {
    parse_decimal(value)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_WORKERS).contains(n))
        .ok_or_else(|| format!("{key} {} is not a number 1-{MAX_WORKERS}", quoted(value)))
}

/// `MetricsListen = 127.0.0.1:9586` (or `[::1]:9586`): an address and a port, no host name (the
/// endpoint must not depend on DNS at start-up).
pub fn parse_metrics_listen(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .ok_or_else(|| {
            format!(
                "MetricsListen '{value}' is not ADDRESS:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:9586 or [::1]:9586)"
            )
        })
}

/// `RingCapacity = 4MiB` (or `4096KiB`, or bytes): a power of two from 128 KiB to 64 MiB, as Wintun takes.
pub fn parse_ring_capacity(value: &str) -> Result<u32, String> {
    let text = value.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        _ => 0,
    };
    parse_decimal(digits)
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| n.is_power_of_two() && (MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| {
            format!(
                "RingCapacity {} is not a power of two from 128KiB to 64MiB (e.g. 4MiB)",
                quoted(value)
            )
        })
}

const MIN_RING_CAPACITY: u64 = 128 << 10;
const MAX_RING_CAPACITY: u64 = 64 << 20;

fn parse_bool(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("{} is neither true nor false", quoted(value)))
    }
}

fn parse_table(value: &str) -> Result<Table, String> {
    if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        return Ok(Table::Auto);
    }
    if value.eq_ignore_ascii_case("off") {
        return Ok(Table::Off);
    }
    let valid = if value.bytes().all(|b| b.is_ascii_digit()) {
        parse_decimal(value)
            .and_then(|n| u32::try_from(n).ok())
            .is_some_and(|n| n != 0)
    } else {
        !value.starts_with('-')
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    if !valid {
        return Err(format!(
            "Table {} is not off, auto, a table number 1-4294967295 or a table name",
            quoted(value)
        ));
    }
    Ok(Table::Named(value.to_string()))
}

/// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6.
fn parse_address(word: &str) -> Result<InterfaceAddress, String> {
    let bad = || {
        format!(
            "Address {} is not an IP address with an optional /prefix",
            quoted(word)
        )
    };
    let (addr, prefix) = match word.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (word, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix = match prefix {
        None => None,
        Some(text) => Some(
            parse_decimal(text)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|&n| n <= max_prefix(addr))
                .ok_or_else(bad)?,
        ),
    };
    Ok(InterfaceAddress { addr, prefix })
}

enum DnsEntry {
    Server(IpAddr),
    Search(String),
}

/// wg-quick's rule: a word of digits and dots, or with a colon, is a server; anything else a search
/// domain.
fn parse_dns_entry(word: &str) -> Result<DnsEntry, String> {
    let looks_like_ip = word.contains(':') || word.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_like_ip {
        word.parse()
            .map(DnsEntry::Server)
            .map_err(|_| format!("DNS server {} is not an IP address", quoted(word)))
    } else {
        Ok(DnsEntry::Search(word.to_string()))
    }
}

/// `host:port` or `[v6-or-host]:port` (UDP), or either behind `tcp://` (TCP; the scheme in any case,
/// as URL schemes are); the port is the part after the last colon, as in `wg`.
fn parse_endpoint(value: &str, line: usize) -> Result<Endpoint, String> {
    let (transport, address) = match value.split_once("://") {
        None => (Transport::Udp, value),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tcp") => (Transport::Tcp, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "Endpoint {} has an unknown scheme {}: use host:port (UDP) or tcp://host:port (TCP)",
                quoted(value),
                quoted(&format!("{scheme}://"))
            ));
        }
    };
    let no_port = || format!("Endpoint {} has no :port", quoted(value));
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("Endpoint {} has no matching ']'", quoted(value)))?;
        (host, after.strip_prefix(':').ok_or_else(no_port)?)
    } else {
        address.rsplit_once(':').ok_or_else(no_port)?
    };
    if host.is_empty() {
        return Err(format!("Endpoint {} has no host", quoted(value)));
    }
    if port.is_empty() {
        return Err(no_port());
    }
    let port = parse_decimal(port)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| format!("Endpoint {} has no valid port (1-65535)", quoted(value)))?;
    Ok(Endpoint {
        transport,
        host: host.to_string(),
        port,
        line,
    })
}

/// One `AllowedIPs` entry; returns it with the host part cleared, and whether it had one.
fn parse_allowed_ip(entry: &str) -> Result<(AllowedIp, bool), String> {
    let bad = || format!("AllowedIP {} is not ADDRESS[/PREFIX]", quoted(entry));
    if entry.is_empty() {
        return Err("AllowedIPs has an empty entry (a stray comma?)".to_string());
    }
    if entry.starts_with('+') || entry.starts_with('-') {
        return Err(format!(
            "AllowedIP {}: +/- prefixes are for `wg set`, not for a config file",
            quoted(entry)
        ));
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let cidr = match prefix {
        None => max_prefix(addr),
        Some(text) => parse_decimal(text)
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n <= max_prefix(addr))
            .ok_or_else(bad)?,
    };
    let network = network_address(addr, cidr);
    Ok((
        AllowedIp {
            addr: network,
            cidr,
        },
        network != addr,
    ))
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past the first `cidr` cleared.
pub fn network_address(addr: IpAddr, cidr: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(cidr.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(cidr.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
