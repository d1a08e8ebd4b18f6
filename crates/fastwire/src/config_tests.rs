//! Tests of the wg-quick file parser: every key, every refusal with its `FILE:LINE: reason`.

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
         Workers = 3\n\
         TunQueues = 1\n\
         Realtime = true\n\
         ringcapacity = 512 KiB\n",
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
    assert_eq!(i.tun_queues, Some(1));
    assert_eq!(i.ring_capacity, Some(512 << 10));
    assert_eq!(i.realtime, Some(true));
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
    assert!(config.warnings[0].starts_with("Warning: wg0.conf:3: SaveConfig = true is ignored"));
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
            with_interface("Realtime = yes\n"),
            "wg0.conf:3: 'yes' is neither true nor false",
        ),
        (
            with_interface("TunQueues = 0\n"),
            "wg0.conf:3: TunQueues '0' is not a number 1-1024",
        ),
        (
            with_interface("RingCapacity = 3MiB\n"),
            "wg0.conf:3: RingCapacity '3MiB' is not a power of two from 128KiB to 64MiB (e.g. 4MiB)",
        ),
        (
            with_interface("RingCapacity = 64KiB\n"),
            "wg0.conf:3: RingCapacity '64KiB' is not a power of two from 128KiB to 64MiB (e.g. 4MiB)",
        ),
        (
            with_interface("RingCapacity = 99999999999999999999MiB\n"),
            "wg0.conf:3: RingCapacity '99999999999999999999MiB' is not a power of two from 128KiB to 64MiB (e.g. 4MiB)",
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
#[cfg(unix)]
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
        "TunQueues",
        "RingCapacity",
        "Realtime",
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
        "4MiB",
        "131072",
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

#[test]
fn metrics_listen_takes_an_address_and_a_port() {
    let listen = |v: &str| {
        ok(&with_interface(&format!("MetricsListen = {v}\n")))
            .interface
            .metrics_listen
    };
    assert_eq!(
        listen("127.0.0.1:9586"),
        Some("127.0.0.1:9586".parse().unwrap())
    );
    assert_eq!(listen("[::1]:9586"), Some("[::1]:9586".parse().unwrap()));
    assert_eq!(ok(&with_interface("")).interface.metrics_listen, None);
    for bad in [
        "9586",
        "localhost:9586",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "::1:9586",
    ] {
        let e = err(&with_interface(&format!("MetricsListen = {bad}\n")));
        assert!(
            e.starts_with(&format!(
                "wg0.conf:3: MetricsListen '{bad}' is not ADDRESS:PORT"
            )),
            "{bad}: {e}"
        );
    }
}
