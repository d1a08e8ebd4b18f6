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
//! - `[Interface] ListenTcpPort = N`: also accept WireGuard-over-TCP connections on TCP port N.
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
    let mode = file.metadata().map(|m| permission_bits(&m)).ok();
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

fn permission_bits(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o777
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
            "workers" => self.interface.workers = Some(parse_workers(value)?),
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

fn parse_workers(value: &str) -> Result<usize, String> {
    parse_decimal(value)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_WORKERS).contains(n))
        .ok_or_else(|| format!("Workers {} is not a number 1-{MAX_WORKERS}", quoted(value)))
}

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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PEER_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PEER_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const PSK: &str = "/UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=";

    fn key(text: &str) -> Key {
        decode_key(text).unwrap()
    }

    fn ok(text: &str) -> QuickConfig {
        parse("wg0.conf", text).unwrap_or_else(|e| panic!("refused: {e}"))
    }

    fn err(text: &str) -> String {
        parse("wg0.conf", text).expect_err("accepted a bad config")
    }

    fn allowed(text: &str) -> AllowedIp {
        let (addr, cidr) = text.split_once('/').unwrap();
        AllowedIp {
            addr: addr.parse().unwrap(),
            cidr: cidr.parse().unwrap(),
        }
    }

    /// A file with `[Interface]` + key on lines 1-2, then `extra` from line 3.
    fn with_interface(extra: &str) -> String {
        format!("[Interface]\nPrivateKey = {PRIVATE}\n{extra}")
    }

    #[test]
    fn every_interface_key() {
        let config = ok(&with_interface(
            "ListenPort = 51820\n\
             FwMark = 0x1234\n\
             Address = 10.78.0.1/24, fd78::1/64\n\
             Address = 10.78.1.1\n\
             MTU = 1380\n\
             DNS = 10.78.0.53, fd78::53, example.com\n\
             DNS = corp.example\n\
             Table = 1234\n\
             PreUp = echo pre-up %i\n\
             PostUp = echo post-up %i\n\
             PreDown = echo pre-down\n\
             PostDown = echo post-down\n\
             SaveConfig = false\n\
             Workers = 3\n",
        ));
        let i = &config.interface;
        assert_eq!(i.private_key, key(PRIVATE));
        assert_eq!(i.listen_port, Some(51820));
        assert_eq!(i.fwmark, Some(0x1234));
        let addresses: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["10.78.0.1/24", "fd78::1/64", "10.78.1.1"]);
        assert_eq!(i.mtu, Some(1380));
        assert_eq!(
            i.dns_servers,
            [
                "10.78.0.53".parse::<IpAddr>().unwrap(),
                "fd78::53".parse().unwrap()
            ]
        );
        assert_eq!(i.dns_search, ["example.com", "corp.example"]);
        assert_eq!(i.table, Table::Named("1234".into()));
        assert_eq!(i.pre_up, ["echo pre-up %i"]);
        assert_eq!(i.post_up, ["echo post-up %i"]);
        assert_eq!(i.pre_down, ["echo pre-down"]);
        assert_eq!(i.post_down, ["echo post-down"]);
        assert!(!i.save_config);
        assert_eq!(i.workers, Some(3));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn every_peer_key() {
        let config = ok(&with_interface(&format!(
            "[Peer]\n\
             PublicKey = {PEER_A}\n\
             PresharedKey = {PSK}\n\
             Endpoint = 10.77.0.2:51820\n\
             AllowedIPs = 10.78.0.2/32, fd78::2/128\n\
             AllowedIPs = 192.168.7.0/24\n\
             PersistentKeepalive = 25\n"
        )));
        assert_eq!(config.peers.len(), 1);
        let peer = &config.peers[0];
        assert_eq!(peer.line, 3);
        assert_eq!(peer.public_key, key(PEER_A));
        assert_eq!(peer.preshared_key, Some(key(PSK)));
        assert_eq!(
            peer.endpoint,
            Some(Endpoint {
                transport: Transport::Udp,
                host: "10.77.0.2".into(),
                port: 51820,
                line: 6
            })
        );
        assert_eq!(
            peer.allowed_ips,
            [
                allowed("10.78.0.2/32"),
                allowed("fd78::2/128"),
                allowed("192.168.7.0/24")
            ]
        );
        assert_eq!(peer.persistent_keepalive, Some(25));
    }

    #[test]
    fn keys_are_case_insensitive_and_whitespace_is_free() {
        let config = ok(&format!(
            "  [ interface ]  \r\n\
             privatekey={PRIVATE}\r\n\
             LISTENPORT =   51820   # the port\r\n\
             \taddress=10.78.0.1/24\r\n\
             [PEER]\r\n\
             Public Key = {PEER_A}\r\n\
             allowedips = 10.78.0.2 / 32 ,fd78::2\r\n\
             ENDPOINT = [fd77::2] : 51820\r\n"
        ));
        assert_eq!(config.interface.listen_port, Some(51820));
        assert_eq!(config.interface.addresses.len(), 1);
        let peer = &config.peers[0];
        assert_eq!(peer.public_key, key(PEER_A));
        assert_eq!(
            peer.allowed_ips,
            [allowed("10.78.0.2/32"), allowed("fd78::2/128")]
        );
        assert_eq!(peer.endpoint.as_ref().unwrap().host, "fd77::2");
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let config = ok(&format!(
            "# a comment\n\n[Interface] # trailing\n# PrivateKey = nope\nPrivateKey = {PRIVATE} # mine\n   \n"
        ));
        assert_eq!(config.interface.private_key, key(PRIVATE));
    }

    #[test]
    fn hooks_keep_their_text_and_order() {
        let config = ok(&with_interface(
            "PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo '#not a comment'\n\
             PostUp = echo second = still here\n\
             PreDown =\n\
             preup=  echo a  \n",
        ));
        let i = &config.interface;
        assert_eq!(
            i.post_up,
            [
                "iptables -A FORWARD -i %i -j ACCEPT; echo '#not a comment'",
                "echo second = still here"
            ]
        );
        assert!(i.pre_down.is_empty());
        assert_eq!(i.pre_up, ["echo a"]);
    }

    #[test]
    fn fwmark_forms() {
        let mark = |v: &str| {
            ok(&with_interface(&format!("FwMark = {v}\n")))
                .interface
                .fwmark
        };
        assert_eq!(mark("off"), Some(0));
        assert_eq!(mark("OFF"), Some(0));
        assert_eq!(mark("0"), Some(0));
        assert_eq!(mark("51820"), Some(51820));
        assert_eq!(mark("0xca6c"), Some(0xca6c));
        assert_eq!(mark("4294967295"), Some(u32::MAX));
        assert_eq!(mark("010"), Some(10));
    }

    #[test]
    fn keepalive_forms() {
        let keepalive = |v: &str| {
            ok(&with_interface(&format!(
                "[Peer]\nPublicKey = {PEER_A}\nPersistentKeepalive = {v}\n"
            )))
            .peers[0]
                .persistent_keepalive
        };
        assert_eq!(keepalive("off"), Some(0));
        assert_eq!(keepalive("0"), Some(0));
        assert_eq!(keepalive("65535"), Some(65535));
    }

    #[test]
    fn table_forms() {
        let table = |v: &str| {
            ok(&with_interface(&format!("Table = {v}\n")))
                .interface
                .table
        };
        assert_eq!(table("off"), Table::Off);
        assert_eq!(table("auto"), Table::Auto);
        assert_eq!(table(""), Table::Auto);
        assert_eq!(table("51820"), Table::Named("51820".into()));
        assert_eq!(table("vpn_table"), Table::Named("vpn_table".into()));
        assert_eq!(ok(&with_interface("")).interface.table, Table::Auto);
    }

    #[test]
    fn empty_wg_quick_values_do_nothing() {
        let config = ok(&with_interface("Address =\nDNS =\nMTU =\n"));
        assert!(config.interface.addresses.is_empty());
        assert!(config.interface.dns_servers.is_empty());
        assert_eq!(config.interface.mtu, None);
    }

    #[test]
    fn endpoint_forms() {
        let endpoint = |v: &str| {
            ok(&with_interface(&format!(
                "[Peer]\nPublicKey = {PEER_A}\nEndpoint = {v}\n"
            )))
            .peers[0]
                .endpoint
                .clone()
                .unwrap()
        };
        let e = endpoint("vpn.example.com:51820");
        assert_eq!(
            (e.host.as_str(), e.port, e.line),
            ("vpn.example.com", 51820, 5)
        );
        assert_eq!(e.to_string(), "vpn.example.com:51820");
        let e = endpoint("[fd77::2]:4500");
        assert_eq!((e.host.as_str(), e.port), ("fd77::2", 4500));
        assert_eq!(e.to_string(), "[fd77::2]:4500");
        // Like `wg`: without brackets the port follows the last colon.
        let e = endpoint("fd77::2:4500");
        assert_eq!((e.host.as_str(), e.port), ("fd77::2", 4500));
        assert_eq!(e.transport, Transport::Udp);
    }

    #[test]
    fn tcp_endpoint_forms() {
        let endpoint = |v: &str| {
            ok(&with_interface(&format!(
                "[Peer]\nPublicKey = {PEER_A}\nEndpoint = {v}\n"
            )))
            .peers[0]
                .endpoint
                .clone()
                .unwrap()
        };
        for (written, host, port, shown) in [
            (
                "tcp://vpn.example.com:443",
                "vpn.example.com",
                443,
                "tcp://vpn.example.com:443",
            ),
            (
                "tcp://10.77.0.2:8443",
                "10.77.0.2",
                8443,
                "tcp://10.77.0.2:8443",
            ),
            ("tcp://[fd77::2]:443", "fd77::2", 443, "tcp://[fd77::2]:443"),
            (
                "TCP://10.77.0.2:443",
                "10.77.0.2",
                443,
                "tcp://10.77.0.2:443",
            ),
            (
                "tcp :// 10.77.0.2 : 443",
                "10.77.0.2",
                443,
                "tcp://10.77.0.2:443",
            ),
        ] {
            let e = endpoint(written);
            assert_eq!(e.transport, Transport::Tcp, "{written}");
            assert_eq!(
                (e.host.as_str(), e.port, e.line),
                (host, port, 5),
                "{written}"
            );
            assert_eq!(e.to_string(), shown);
        }
    }

    #[test]
    fn listen_tcp_port_forms() {
        let port = |v: &str| {
            ok(&with_interface(&format!("ListenTcpPort = {v}\n")))
                .interface
                .listen_tcp_port
        };
        assert_eq!(port("443"), Some(443));
        assert_eq!(port("65535"), Some(65535));
        assert_eq!(port("1"), Some(1));
        let config = ok(&with_interface("listentcpport=80\nListenTcpPort = 8443\n"));
        assert_eq!(
            config.interface.listen_tcp_port,
            Some(8443),
            "the last one wins"
        );
        assert_eq!(ok(&with_interface("")).interface.listen_tcp_port, None);
    }

    #[test]
    fn tcp_errors_name_file_and_line() {
        let peer = format!("[Peer]\nPublicKey = {PEER_A}\n");
        let cases: Vec<(String, &str)> = vec![
            (
                with_interface("ListenTcpPort = 0\n"),
                "wg0.conf:3: ListenTcpPort '0' is not a port number (1-65535)",
            ),
            (
                with_interface("ListenTcpPort = 65536\n"),
                "wg0.conf:3: ListenTcpPort '65536' is not a port number (1-65535)",
            ),
            (
                with_interface("ListenTcpPort = https\n"),
                "wg0.conf:3: ListenTcpPort 'https' is not a port number (1-65535)",
            ),
            (
                with_interface("ListenTcpPort = -443\n"),
                "wg0.conf:3: ListenTcpPort '-443' is not a port number (1-65535)",
            ),
            (
                with_interface("ListenTcpPort =\n"),
                "wg0.conf:3: 'ListenTcpPort' has no value",
            ),
            (
                with_interface(&format!("{peer}ListenTcpPort = 443\n")),
                "wg0.conf:5: unknown key 'ListenTcpPort' in [Peer]",
            ),
            (
                with_interface(&format!("{peer}Endpoint = udp://10.77.0.2:51820\n")),
                "wg0.conf:5: Endpoint 'udp://10.77.0.2:51820' has an unknown scheme 'udp://': use host:port (UDP) or tcp://host:port (TCP)",
            ),
            (
                with_interface(&format!("{peer}Endpoint = https://vpn.example:443\n")),
                "wg0.conf:5: Endpoint 'https://vpn.example:443' has an unknown scheme 'https://': use host:port (UDP) or tcp://host:port (TCP)",
            ),
            (
                with_interface(&format!("{peer}Endpoint = tcp://10.77.0.2\n")),
                "wg0.conf:5: Endpoint 'tcp://10.77.0.2' has no :port",
            ),
            (
                with_interface(&format!("{peer}Endpoint = tcp://\n")),
                "wg0.conf:5: Endpoint 'tcp://' has no :port",
            ),
            (
                with_interface(&format!("{peer}Endpoint = tcp://:443\n")),
                "wg0.conf:5: Endpoint 'tcp://:443' has no host",
            ),
            (
                with_interface(&format!("{peer}Endpoint = tcp://[fd77::2:443\n")),
                "wg0.conf:5: Endpoint 'tcp://[fd77::2:443' has no matching ']'",
            ),
            (
                with_interface(&format!("{peer}Endpoint = tcp://10.77.0.2:0\n")),
                "wg0.conf:5: Endpoint 'tcp://10.77.0.2:0' has no valid port (1-65535)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(&text), expected, "for config:\n{text}");
        }
    }

    #[test]
    fn device_update_carries_tcp_port_and_tcp_endpoints() {
        let config = ok(&with_interface(&format!(
            "ListenTcpPort = 443\n\
             [Peer]\nPublicKey = {PEER_A}\nEndpoint = tcp://vpn.example:443\n\
             [Peer]\nPublicKey = {PEER_B}\nEndpoint = [fd77::3]:51820\n"
        )));
        let mut asked = Vec::new();
        let update = config
            .device_update_with(|endpoint| {
                asked.push(endpoint.to_string());
                Ok(SocketAddr::from(([10, 77, 0, 2], endpoint.port)))
            })
            .unwrap();
        assert_eq!(asked, ["tcp://vpn.example:443", "[fd77::3]:51820"]);
        assert_eq!(update.listen_tcp_port, Some(443));
        assert_eq!(
            update.peers[0].endpoint,
            Some(PeerEndpoint::tcp("10.77.0.2:443".parse().unwrap()))
        );
        assert_eq!(
            update.peers[1].endpoint,
            Some(PeerEndpoint::udp("10.77.0.2:51820".parse().unwrap()))
        );

        // Literal addresses resolve without a lookup, keeping their transport.
        let literal = ok(&with_interface(&format!(
            "[Peer]\nPublicKey = {PEER_A}\nEndpoint = tcp://[fd77::2]:443\n"
        )));
        let update = literal.device_update().unwrap();
        assert_eq!(update.listen_tcp_port, Some(0));
        assert_eq!(
            update.peers[0].endpoint,
            Some(PeerEndpoint::tcp("[fd77::2]:443".parse().unwrap()))
        );
        let failure = literal
            .device_update_with(|_| Err("cannot resolve endpoint".into()))
            .unwrap_err();
        assert_eq!(failure, "wg0.conf:5: cannot resolve endpoint");
    }

    #[test]
    fn warnings_for_save_config_and_host_bits() {
        let config = ok(&with_interface(&format!(
            "SaveConfig = true\n[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.192.124.1/24\n"
        )));
        assert!(config.interface.save_config);
        assert_eq!(config.peers[0].allowed_ips, [allowed("10.192.124.0/24")]);
        assert_eq!(config.warnings.len(), 2);
        assert!(
            config.warnings[0].starts_with("Warning: wg0.conf:3: SaveConfig = true is ignored")
        );
        assert_eq!(
            config.warnings[1],
            "Warning: wg0.conf:6: AllowedIP has nonzero host part: 10.192.124.1/24 (using 10.192.124.0/24)"
        );
    }

    /// Every refusal, with the exact `FILE:LINE: reason`.
    #[test]
    fn errors_name_file_and_line() {
        let peer = format!("[Peer]\nPublicKey = {PEER_A}\n");
        let cases: Vec<(String, &str)> = vec![
            (
                with_interface(&format!("{peer}\n\nEndpont = 10.77.0.2:51820\n")),
                "wg0.conf:7: unknown key 'Endpont' in [Peer]",
            ),
            (
                with_interface("Adress = 10.0.0.1\n"),
                "wg0.conf:3: unknown key 'Adress' in [Interface]",
            ),
            (
                with_interface(&format!("{peer}Address = 10.0.0.1\n")),
                "wg0.conf:5: unknown key 'Address' in [Peer]",
            ),
            (
                with_interface("[Peers]\n"),
                "wg0.conf:3: unknown section '[Peers]': expected [Interface] or [Peer]",
            ),
            (
                format!("PrivateKey = {PRIVATE}\n[Interface]\n"),
                "wg0.conf:1: key 'PrivateKey' is outside a section: put it under [Interface] or [Peer]",
            ),
            (
                with_interface("just words\n"),
                "wg0.conf:3: 'just words' is neither a [Section] header nor 'Key = Value'",
            ),
            (
                with_interface(" = 5\n"),
                "wg0.conf:3: a value without a key",
            ),
            (
                "[Interface]\nPrivateKey = abc\n".to_string(),
                "wg0.conf:2: PrivateKey is not a base64 WireGuard key",
            ),
            (
                "[Interface]\nPrivateKey =\n".to_string(),
                "wg0.conf:2: 'PrivateKey' has no value",
            ),
            (
                with_interface("ListenPort = 65536\n"),
                "wg0.conf:3: ListenPort '65536' is not a port number (0-65535)",
            ),
            (
                with_interface("ListenPort = -1\n"),
                "wg0.conf:3: ListenPort '-1' is not a port number (0-65535)",
            ),
            (
                with_interface("FwMark = 0x\n"),
                "wg0.conf:3: FwMark '0x' is neither off nor a number 0-0xffffffff",
            ),
            (
                with_interface("FwMark = 4294967296\n"),
                "wg0.conf:3: FwMark '4294967296' is neither off nor a number 0-0xffffffff",
            ),
            (
                with_interface("FwMark = on\n"),
                "wg0.conf:3: FwMark 'on' is neither off nor a number 0-0xffffffff",
            ),
            (
                with_interface("Address = 10.0.0.1/33\n"),
                "wg0.conf:3: Address '10.0.0.1/33' is not an IP address with an optional /prefix",
            ),
            (
                with_interface("Address = 10.0.0.1, vpn.example\n"),
                "wg0.conf:3: Address 'vpn.example' is not an IP address with an optional /prefix",
            ),
            (
                with_interface("MTU = 1500x\n"),
                "wg0.conf:3: MTU '1500x' is not a number 68-65535",
            ),
            (
                with_interface("MTU = 20\n"),
                "wg0.conf:3: MTU '20' is not a number 68-65535",
            ),
            (
                with_interface("DNS = 10.0.0.300\n"),
                "wg0.conf:3: DNS server '10.0.0.300' is not an IP address",
            ),
            (
                with_interface("DNS = fe80::1%eth0\n"),
                "wg0.conf:3: DNS server 'fe80::1%eth0' is not an IP address",
            ),
            (
                with_interface("Table = -5\n"),
                "wg0.conf:3: Table '-5' is not off, auto, a table number 1-4294967295 or a table name",
            ),
            (
                with_interface("Table = 0\n"),
                "wg0.conf:3: Table '0' is not off, auto, a table number 1-4294967295 or a table name",
            ),
            (
                with_interface("Table = my table\n"),
                "wg0.conf:3: Table 'my table' is not off, auto, a table number 1-4294967295 or a table name",
            ),
            (
                with_interface("SaveConfig = yes\n"),
                "wg0.conf:3: 'yes' is neither true nor false",
            ),
            (
                with_interface("Workers = 0\n"),
                "wg0.conf:3: Workers '0' is not a number 1-1024",
            ),
            (
                with_interface("Workers = many\n"),
                "wg0.conf:3: Workers 'many' is not a number 1-1024",
            ),
            (
                with_interface("[Peer]\nPublicKey = nope\n"),
                "wg0.conf:4: PublicKey 'nope' is not a base64 WireGuard key",
            ),
            (
                with_interface(&format!("{peer}PresharedKey = short=\n")),
                "wg0.conf:5: PresharedKey is not a base64 WireGuard key",
            ),
            (
                with_interface(&format!("{peer}Endpoint = 10.77.0.2\n")),
                "wg0.conf:5: Endpoint '10.77.0.2' has no :port",
            ),
            (
                with_interface(&format!("{peer}Endpoint = 10.77.0.2:\n")),
                "wg0.conf:5: Endpoint '10.77.0.2:' has no :port",
            ),
            (
                with_interface(&format!("{peer}Endpoint = [fd77::2:51820\n")),
                "wg0.conf:5: Endpoint '[fd77::2:51820' has no matching ']'",
            ),
            (
                with_interface(&format!("{peer}Endpoint = [fd77::2]51820\n")),
                "wg0.conf:5: Endpoint '[fd77::2]51820' has no :port",
            ),
            (
                with_interface(&format!("{peer}Endpoint = :51820\n")),
                "wg0.conf:5: Endpoint ':51820' has no host",
            ),
            (
                with_interface(&format!("{peer}Endpoint = host:http\n")),
                "wg0.conf:5: Endpoint 'host:http' has no valid port (1-65535)",
            ),
            (
                with_interface(&format!("{peer}Endpoint = host:0\n")),
                "wg0.conf:5: Endpoint 'host:0' has no valid port (1-65535)",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs = 10.0.0.0/8,\n")),
                "wg0.conf:5: AllowedIPs has an empty entry (a stray comma?)",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs = 10.0.0.0/8, fd78::/129\n")),
                "wg0.conf:5: AllowedIP 'fd78::/129' is not ADDRESS[/PREFIX]",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs = 10.0.0.0/\n")),
                "wg0.conf:5: AllowedIP '10.0.0.0/' is not ADDRESS[/PREFIX]",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs = 10.0.0/8\n")),
                "wg0.conf:5: AllowedIP '10.0.0/8' is not ADDRESS[/PREFIX]",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs = -10.0.0.0/8\n")),
                "wg0.conf:5: AllowedIP '-10.0.0.0/8': +/- prefixes are for `wg set`, not for a config file",
            ),
            (
                with_interface(&format!("{peer}AllowedIPs =\n")),
                "wg0.conf:5: 'AllowedIPs' has no value",
            ),
            (
                with_interface(&format!("{peer}PersistentKeepalive = 65536\n")),
                "wg0.conf:5: PersistentKeepalive '65536' is neither off nor a number of seconds 0-65535",
            ),
            (
                with_interface(&format!("{peer}PersistentKeepalive = on\n")),
                "wg0.conf:5: PersistentKeepalive 'on' is neither off nor a number of seconds 0-65535",
            ),
            (
                "# nothing\n".to_string(),
                "wg0.conf:1: there is no [Interface] section with a PrivateKey",
            ),
            (
                "\n[Interface]\nListenPort = 1\n".to_string(),
                "wg0.conf:2: [Interface] has no PrivateKey",
            ),
            (
                with_interface("[Peer]\nAllowedIPs = 10.0.0.0/8\n"),
                "wg0.conf:3: [Peer] has no PublicKey",
            ),
            (
                with_interface(&format!(
                    "{peer}\n[Peer]\n# same again\nPublicKey = {PEER_A}\n"
                )),
                "wg0.conf:8: duplicate peer: this PublicKey is already used at line 4",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(&text), expected, "for config:\n{text}");
        }
    }

    #[test]
    fn long_values_are_cut_short_in_errors() {
        let message = err(&with_interface(&format!("MTU = {}\n", "9".repeat(10_000))));
        assert!(message.len() < 200, "{message}");
        assert!(message.starts_with("wg0.conf:3: MTU '999"));
    }

    #[test]
    fn private_keys_never_appear_in_errors() {
        let secret = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm==";
        let message = err(&format!("[Interface]\nPrivateKey = {secret}\n"));
        assert!(!message.contains(secret));
        let message = err(&with_interface(&format!(
            "[Peer]\nPublicKey = {PEER_A}\nPresharedKey = {secret}\n"
        )));
        assert!(!message.contains(secret));
    }

    /// The examples of wg-quick(8), with the kill-switch hooks in [Interface].
    #[test]
    fn man_page_examples() {
        let client = ok("[Interface]\n\
            Address = 10.200.100.8/24\n\
            DNS = 10.200.100.1\n\
            PrivateKey = oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=\n\
            PostUp = iptables -I OUTPUT ! -o %i -m mark ! --mark $(wg show %i fwmark) -m addrtype ! --dst-type LOCAL -j REJECT\n\
            PreDown = iptables -D OUTPUT ! -o %i -m mark ! --mark $(wg show %i fwmark) -m addrtype ! --dst-type LOCAL -j REJECT\n\
            \n\
            [Peer]\n\
            PublicKey = GtL7fZc/bLnqZldpVofMCD6hDjrK28SsdLxevJ+qtKU=\n\
            PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=\n\
            AllowedIPs = 0.0.0.0/0\n\
            Endpoint = demo.wireguard.com:51820\n");
        assert_eq!(
            client.interface.dns_servers,
            ["10.200.100.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(client.interface.post_up.len(), 1);
        assert_eq!(client.peers[0].allowed_ips, [allowed("0.0.0.0/0")]);
        let endpoint = client.peers[0].endpoint.clone().unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.line),
            ("demo.wireguard.com", 12)
        );

        let server = ok("[Interface]\n\
            Address = 10.192.122.1/24\n\
            Address = 10.10.0.1/16\n\
            SaveConfig = true\n\
            PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
            ListenPort = 51820\n\
            \n\
            [Peer]\n\
            PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
            AllowedIPs = 10.192.122.3/32, 10.192.124.1/24\n\
            \n\
            [Peer]\n\
            PublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\n\
            AllowedIPs = 10.192.122.4/32, 192.168.0.0/16\n\
            \n\
            [Peer]\n\
            PublicKey = gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=\n\
            AllowedIPs = 10.10.10.230/32\n");
        assert_eq!(server.interface.addresses.len(), 2);
        assert_eq!(server.interface.listen_port, Some(51820));
        assert_eq!(server.peers.len(), 3);
        assert_eq!(server.peers[0].allowed_ips[1], allowed("10.192.124.0/24"));
        // SaveConfig and the nonzero host part of 10.192.124.1/24.
        assert_eq!(server.warnings.len(), 2);
    }

    #[test]
    fn device_update_replaces_everything() {
        let config = ok(&with_interface(&format!(
            "ListenPort = 51820\n\
             [Peer]\nPublicKey = {PEER_A}\nPresharedKey = {PSK}\nEndpoint = vpn.example:51820\n\
             AllowedIPs = 10.78.0.2/32\nPersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {PEER_B}\nAllowedIPs = 10.78.0.3/32\n"
        )));
        let update = config
            .device_update_with(|endpoint| {
                assert_eq!(endpoint.host, "vpn.example");
                Ok(SocketAddr::from(([10, 77, 0, 2], endpoint.port)))
            })
            .unwrap();
        assert_eq!(update.private_key, Some(Some(key(PRIVATE))));
        assert_eq!(update.listen_port, Some(51820));
        assert_eq!(
            update.listen_tcp_port,
            Some(0),
            "a fresh device has no TCP listener"
        );
        assert_eq!(update.fwmark, Some(0));
        assert!(update.replace_peers);
        assert_eq!(update.peers.len(), 2);
        let a = &update.peers[0];
        assert_eq!(a.public_key, key(PEER_A));
        assert_eq!(a.preshared_key, Some(Some(key(PSK))));
        assert_eq!(a.endpoint, Some("10.77.0.2:51820".parse().unwrap()));
        assert_eq!(a.persistent_keepalive, Some(25));
        assert!(a.replace_allowed_ips && !a.remove && !a.update_only);
        assert_eq!(a.allowed_ips, [allowed("10.78.0.2/32")]);
        let b = &update.peers[1];
        assert_eq!(
            (b.endpoint, b.preshared_key, b.persistent_keepalive),
            (None, None, None)
        );
        assert!(b.replace_allowed_ips);

        let failure = config
            .device_update_with(|_| Err("cannot resolve endpoint 'vpn.example:51820'".into()))
            .unwrap_err();
        assert_eq!(
            failure,
            "wg0.conf:7: cannot resolve endpoint 'vpn.example:51820'"
        );
    }

    #[test]
    fn literal_endpoints_resolve_without_a_lookup() {
        let v4 = Endpoint {
            transport: Transport::Udp,
            host: "10.77.0.2".into(),
            port: 51820,
            line: 1,
        };
        assert_eq!(v4.resolve(), Ok("10.77.0.2:51820".parse().unwrap()));
        let v6 = Endpoint {
            transport: Transport::Tcp,
            host: "fd77::2".into(),
            port: 51820,
            line: 1,
        };
        assert_eq!(v6.resolve(), Ok("[fd77::2]:51820".parse().unwrap()));
    }

    #[test]
    fn interface_names_follow_wg_quick() {
        assert!(is_valid_interface_name("wg0"));
        assert!(is_valid_interface_name("a_=+.-Z9"));
        assert!(is_valid_interface_name("fifteen-chars-x"));
        assert!(!is_valid_interface_name("sixteen-chars-xx"));
        assert!(!is_valid_interface_name(""));
        assert!(!is_valid_interface_name("wg 0"));
        assert!(!is_valid_interface_name("wg/0"));

        assert_eq!(
            interface_name(Path::new("/etc/wireguard/wg0.conf")),
            Ok("wg0".into())
        );
        assert_eq!(interface_name(Path::new("fwc0.conf")), Ok("fwc0".into()));
        assert!(interface_name(Path::new("/tmp/wg0.cfg")).is_err());
        assert!(interface_name(Path::new("/tmp/.conf")).is_err());
        assert!(interface_name(Path::new("/tmp/much-too-long-name.conf")).is_err());

        assert_eq!(
            config_path(Path::new("wg0")),
            Path::new("/etc/wireguard/wg0.conf")
        );
        assert_eq!(config_path(Path::new("wg0.conf")), Path::new("wg0.conf"));
        assert_eq!(
            config_path(Path::new("/tmp/x/fwc0.conf")),
            Path::new("/tmp/x/fwc0.conf")
        );
    }

    #[test]
    fn permission_warnings() {
        let path = Path::new("/nonexistent/wg0.conf");
        assert_eq!(permission_warning(path, 0o600), None);
        assert_eq!(permission_warning(path, 0o400), None);
        assert_eq!(
            permission_warning(path, 0o644).as_deref(),
            Some("Warning: `/nonexistent/wg0.conf' is world accessible")
        );
        assert_eq!(
            permission_warning(path, 0o640).as_deref(),
            Some("Warning: `/nonexistent/wg0.conf' is group accessible")
        );
    }

    #[test]
    fn load_reads_checks_and_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fastwire-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fwt0.conf");
        std::fs::write(&path, with_interface("ListenPort = 7\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.interface.listen_port, Some(7));
        assert!(config.warnings.is_empty());
        assert_eq!(config.source, path.display().to_string());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = load(&path).unwrap();
        assert!(config.warnings[0].ends_with("' is world accessible"));

        let mut bytes = with_interface("").into_bytes();
        bytes.extend_from_slice(b"# caf\xe9\n");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            load(&path).unwrap_err(),
            format!("{}:3: the line is not valid UTF-8", path.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load(&path).unwrap_err().starts_with("cannot open"));
    }

    /// Lines built from the real vocabulary reach deep into the parser.
    fn config_line() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "PrivateKey",
            "ListenPort",
            "FwMark",
            "Address",
            "MTU",
            "DNS",
            "Table",
            "PreUp",
            "PostDown",
            "SaveConfig",
            "Workers",
            "ListenTcpPort",
            "PublicKey",
            "PresharedKey",
            "Endpoint",
            "AllowedIPs",
            "PersistentKeepalive",
            "Bogus",
        ]);
        let values = prop::sample::select(vec![
            PRIVATE,
            PEER_A,
            PEER_B,
            "off",
            "0x",
            "0xffffffff",
            "65535",
            "99999999999999999999999",
            "10.0.0.1/24",
            "fd78::1/64",
            "::/0",
            "0.0.0.0/0",
            "[fd77::2]:51820",
            "tcp://",
            "udp://",
            "h:1",
            "[",
            "]:",
            ",",
            "/",
            "true",
            "%i",
            "#",
            "=",
            "",
            "\u{00e9}\u{1f600}",
            "1.2.3.4, ::1, a.b",
        ]);
        prop_oneof![
            Just("[Interface]".to_string()),
            Just("[Peer]".to_string()),
            "\\PC{0,20}",
            (keys, prop::collection::vec(values, 0..3))
                .prop_map(|(key, values)| format!("{key} = {}", values.join(""))),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = parse("fuzz.conf", &text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse("fuzz.conf", &String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn plausible_configs_never_panic(lines in prop::collection::vec(config_line(), 0..24)) {
            let text = lines.join("\n");
            if let Ok(config) = parse("fuzz.conf", &text) {
                let _ = config.device_update_with(|e| Ok(SocketAddr::from(([127, 0, 0, 1], e.port))));
            }
        }
    }
}
