use super::*;
use fastwire_engine::config::PeerSnapshot;
use proptest::prelude::*;
use std::net::SocketAddr;

const K1: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
const K2: &str = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33";
const K3: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";

fn key(hex: &str) -> Key {
    parse_key_hex(hex).unwrap()
}

fn ip(text: &str) -> AllowedIp {
    parse_allowed_ip(text).unwrap()
}

/// What `wg setconf` sends for a typical configuration.
fn full_transaction() -> String {
    format!(
        "set=1
private_key={K1}
listen_port=51820
fwmark=4660
replace_peers=true
public_key={K2}
preshared_key={K3}
endpoint=10.77.0.2:51820
persistent_keepalive_interval=25
replace_allowed_ips=true
allowed_ip=10.78.0.2/32
allowed_ip=fd78::2/128
public_key={K3}
endpoint=[fd78::3]:51821
replace_allowed_ips=true
allowed_ip=0.0.0.0/0

"
    )
}

fn full_update() -> DeviceUpdate {
    let mut first = PeerUpdate::new(key(K2));
    first.preshared_key = Some(Some(key(K3)));
    first.endpoint = Some("10.77.0.2:51820".parse().unwrap());
    first.persistent_keepalive = Some(25);
    first.replace_allowed_ips = true;
    first.allowed_ips = vec![ip("10.78.0.2/32"), ip("fd78::2/128")];
    let mut second = PeerUpdate::new(key(K3));
    second.endpoint = Some("[fd78::3]:51821".parse().unwrap());
    second.replace_allowed_ips = true;
    second.allowed_ips = vec![ip("0.0.0.0/0")];
    DeviceUpdate {
        private_key: Some(Some(key(K1))),
        listen_port: Some(51820),
        fwmark: Some(4660),
        replace_peers: true,
        peers: vec![first, second],
        ..DeviceUpdate::default()
    }
}

#[test]
fn uapi_parse_set_every_device_and_peer_key() {
    assert_eq!(parse_set(&full_transaction()).unwrap(), full_update());
}

#[test]
fn uapi_format_set_is_what_wg_sends() {
    assert_eq!(format_set(&full_update()), full_transaction());
}

#[test]
fn uapi_set_round_trip_with_flags() {
    let mut peer = PeerUpdate::new(key(K2));
    peer.remove = true;
    let mut other = PeerUpdate::new(key(K3));
    other.update_only = true;
    other.preshared_key = Some(None);
    other.persistent_keepalive = Some(0);
    let update = DeviceUpdate {
        private_key: Some(None),
        listen_port: Some(0),
        listen_tcp_port: Some(0),
        fwmark: Some(0),
        replace_peers: false,
        peers: vec![peer, other],
    };
    let text = format_set(&update);
    assert!(text.contains(&format!("private_key={}\n", "0".repeat(64))));
    assert!(text.contains(&format!(
        "public_key={K2}\nremove=true\npublic_key={K3}\nupdate_only=true\n"
    )));
    assert_eq!(parse_set(&text).unwrap(), update);
}

#[test]
fn uapi_set_body_without_header_or_blank_line() {
    let text = format!("public_key={K2}\nallowed_ip=10.78.0.0/24");
    let update = parse_set(&text).unwrap();
    assert_eq!(update.peers.len(), 1);
    assert_eq!(update.peers[0].allowed_ips, vec![ip("10.78.0.0/24")]);
    assert_eq!(parse_set("set=1\n\n").unwrap(), DeviceUpdate::default());
    assert_eq!(parse_set("").unwrap(), DeviceUpdate::default());
}

#[test]
fn uapi_zero_keys_mean_remove() {
    let zero = "0".repeat(64);
    let update = parse_set(&format!(
        "private_key={zero}\npublic_key={K2}\npreshared_key={zero}\n"
    ))
    .unwrap();
    assert_eq!(update.private_key, Some(None));
    assert_eq!(update.peers[0].preshared_key, Some(None));
}

#[test]
fn uapi_keys_accept_either_hex_case_like_go() {
    let upper = K1.to_uppercase();
    let update = parse_set(&format!("private_key={upper}\n")).unwrap();
    assert_eq!(update.private_key, Some(Some(key(K1))));
}

#[test]
fn uapi_replace_allowed_ips_drops_earlier_entries() {
    let update = parse_set(&format!(
        "public_key={K2}\nallowed_ip=10.0.0.1/32\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\n"
    ))
    .unwrap();
    let peer = &update.peers[0];
    assert!(peer.replace_allowed_ips);
    assert_eq!(peer.allowed_ips, vec![ip("10.0.0.2/32")]);
}

#[test]
fn uapi_same_peer_twice_keeps_both_sections_in_order() {
    let update = parse_set(&format!(
        "public_key={K2}\nremove=true\npublic_key={K2}\nallowed_ip=10.0.0.2/32\n"
    ))
    .unwrap();
    assert_eq!(update.peers.len(), 2);
    assert!(update.peers[0].remove);
    assert!(!update.peers[1].remove);
}

#[test]
fn uapi_set_accepts_crlf_and_protocol_version_1() {
    let update = parse_set(&format!(
        "listen_port=1\r\npublic_key={K2}\r\nprotocol_version=1\r\n"
    ))
    .unwrap();
    assert_eq!(update.listen_port, Some(1));
    assert_eq!(update.peers.len(), 1);
}

#[test]
fn uapi_endpoints_and_prefixes() {
    let endpoints = [
        ("1.2.3.4:51820", "1.2.3.4:51820", false),
        ("[::1]:1", "[::1]:1", false),
        ("[fe80::1%2]:51820", "[fe80::1%2]:51820", false),
        ("[::ffff:1.2.3.4]:9", "[::ffff:1.2.3.4]:9", false),
        ("tcp://1.2.3.4:443", "tcp://1.2.3.4:443", true),
        ("tcp://[fd78::2]:443", "tcp://[fd78::2]:443", true),
    ];
    for (text, shown, tcp) in endpoints {
        let endpoint = parse_endpoint(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(endpoint.to_string(), shown);
        assert_eq!(endpoint.is_tcp(), tcp, "{text}");
    }
    for (text, cidr) in [
        ("0.0.0.0/0", 0),
        ("10.0.0.0/32", 32),
        ("::/0", 0),
        ("fd78::/128", 128),
    ] {
        assert_eq!(parse_allowed_ip(text).unwrap().cidr, cidr);
    }
}

#[test]
fn uapi_every_malformed_line_is_einval() {
    let zero = "0".repeat(64);
    let device_cases = [
        "private_key=".to_string(),
        format!("private_key={}", &K1[..63]),
        format!("private_key={K1}0"),
        format!("private_key={}g", &K1[..63]),
        format!("private_key= {}", &K1[..63]),
        "listen_port=65536".into(),
        "listen_port=-1".into(),
        "listen_port=+1".into(),
        "listen_port= 1".into(),
        "listen_port=".into(),
        "listen_port=0x10".into(),
        "listen_tcp_port=65536".into(),
        "listen_tcp_port=-1".into(),
        "listen_tcp_port=".into(),
        "listen_tcp_port=tcp".into(),
        "fwmark=4294967296".into(),
        "fwmark=abc".into(),
        "replace_peers=false".into(),
        "replace_peers=TRUE".into(),
        "unknown_key=1".into(),
        "no equals sign".into(),
        "=value".into(),
        "Private_key=1".into(),
        "endpoint=1.2.3.4:1".into(),
        "allowed_ip=10.0.0.0/8".into(),
        "remove=true".into(),
        format!("preshared_key={zero}"),
        "get=1".into(),
    ];
    for line in &device_cases {
        let err = parse_set(&format!("{line}\n")).expect_err(line);
        assert_eq!(err.errno(), 22);
        assert_eq!(err.line, 1);
    }
    let peer_cases = [
        "remove=false",
        "update_only=1",
        "preshared_key=abc",
        "endpoint=1.2.3.4",
        "endpoint=1.2.3.4:65536",
        "endpoint=[1.2.3.4]:1",
        "endpoint=::1:51820",
        "endpoint=host.example:51820",
        "endpoint=",
        "endpoint=tcp://host.example:443",
        "endpoint=tcp://1.2.3.4",
        "endpoint=tcp://1.2.3.4:65536",
        "endpoint=tcp://fd78::2:443",
        "endpoint=TCP://1.2.3.4:443",
        "endpoint=udp://1.2.3.4:443",
        "endpoint=tcp:1.2.3.4:443",
        "endpoint_transport=tcp",
        "listen_tcp_port=443",
        "persistent_keepalive_interval=65536",
        "persistent_keepalive_interval=-1",
        "replace_allowed_ips=yes",
        "allowed_ip=10.0.0.0/33",
        "allowed_ip=::/129",
        "allowed_ip=10.0.0.0",
        "allowed_ip=10.0.0.0/",
        "allowed_ip=10.0.0.0/08",
        "allowed_ip=10.0.0.0/+8",
        "allowed_ip=10.0.0.256/8",
        "allowed_ip=010.0.0.0/8",
        "allowed_ip=fe80::1%2/64",
        "allowed_ip=/8",
        "protocol_version=2",
        "protocol_version=",
        "private_key=0000000000000000000000000000000000000000000000000000000000000000",
        "listen_port=1",
        "fwmark=1",
        "replace_peers=true",
        "last_handshake_time_sec=0",
        "tx_bytes=0",
        "bogus=1",
    ];
    for line in peer_cases {
        let err = parse_set(&format!("public_key={K2}\n{line}\n")).expect_err(line);
        assert_eq!(err.errno(), 22, "{line}");
        assert_eq!(err.line, 2, "{line}");
    }
    let err = parse_set(&format!("public_key={K2}\n\nlisten_port=1\n")).unwrap_err();
    assert!(err.reason.contains("after the blank line"), "{err}");
}

#[test]
fn uapi_errors_stay_short_for_huge_input() {
    let huge = "x".repeat(1 << 20);
    let err = parse_set(&format!("listen_port={huge}\n")).unwrap_err();
    assert!(err.to_string().len() < 200, "{}", err.to_string().len());
    let err = parse_set(&format!("{huge}\n")).unwrap_err();
    assert!(err.to_string().len() < 200);
    let multibyte = "é".repeat(1000);
    let err = parse_set(&format!("{multibyte}\n")).unwrap_err();
    assert!(err.to_string().len() < 300);
}

fn snapshot() -> DeviceSnapshot {
    DeviceSnapshot {
        private_key: Some(key(K1)),
        listen_port: 51820,
        listen_tcp_port: 0,
        fwmark: 0,
        peers: vec![
            PeerSnapshot {
                public_key: key(K2),
                preshared_key: None,
                endpoint: Some("[fd78::2]:51820".parse().unwrap()),
                // 100 ns steps: the resolution of SystemTime on Windows.
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700)),
                rx_bytes: 2048,
                tx_bytes: 1024,
                persistent_keepalive: 25,
                allowed_ips: vec![ip("10.78.0.2/32"), ip("fd78::/64")],
            },
            PeerSnapshot {
                public_key: key(K3),
                preshared_key: Some(key(K1)),
                endpoint: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: 0,
                allowed_ips: vec![],
            },
        ],
    }
}

#[test]
fn uapi_format_get_matches_wireguard_go_byte_for_byte() {
    let zero = "0".repeat(64);
    let expected = format!(
        "private_key={K1}
listen_port=51820
public_key={K2}
preshared_key={zero}
protocol_version=1
endpoint=[fd78::2]:51820
last_handshake_time_sec=1700000000
last_handshake_time_nsec=123456700
tx_bytes=1024
rx_bytes=2048
persistent_keepalive_interval=25
allowed_ip=10.78.0.2/32
allowed_ip=fd78::/64
public_key={K3}
preshared_key={K1}
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
errno=0

"
    );
    assert_eq!(format_get(&snapshot()), expected);
}

#[test]
fn uapi_format_get_of_empty_device_and_fwmark() {
    assert_eq!(format_get(&DeviceSnapshot::default()), "errno=0\n\n");
    let device = DeviceSnapshot {
        fwmark: 7,
        ..Default::default()
    };
    assert_eq!(format_get(&device), "fwmark=7\nerrno=0\n\n");
}

#[test]
fn uapi_set_tcp_port_and_tcp_endpoint() {
    let text = format!(
        "set=1\nlisten_tcp_port=443\npublic_key={K2}\nendpoint=tcp://10.77.0.2:443\n\
         public_key={K3}\nendpoint=tcp://[fd77::3]:8443\n\n"
    );
    let update = parse_set(&text).unwrap();
    assert_eq!(update.listen_tcp_port, Some(443));
    assert_eq!(
        update.peers[0].endpoint,
        Some(Endpoint::tcp("10.77.0.2:443".parse().unwrap()))
    );
    assert_eq!(
        update.peers[1].endpoint,
        Some(Endpoint::tcp("[fd77::3]:8443".parse().unwrap()))
    );
    assert_eq!(format_set(&update), text);
    let close = parse_set("listen_tcp_port=0\n").unwrap();
    assert_eq!(close.listen_tcp_port, Some(0));
    let untouched = parse_set("listen_port=1\n").unwrap();
    assert_eq!(untouched.listen_tcp_port, None);
}

/// The TCP facts are extra lines `wg` skips; the endpoint value stays a plain IP:PORT that `wg` parses.
#[test]
fn uapi_format_get_with_tcp() {
    let mut device = snapshot();
    device.listen_tcp_port = 443;
    device.fwmark = 7;
    device.peers[0].endpoint = Some(Endpoint::tcp("[fd78::2]:51820".parse().unwrap()));
    let text = format_get(&device);
    assert!(
        text.starts_with(&format!(
            "private_key={K1}\nlisten_port=51820\nfwmark=7\nlisten_tcp_port=443\npublic_key={K2}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("protocol_version=1\nendpoint=[fd78::2]:51820\nendpoint_transport=tcp\nlast_handshake_time_sec="),
        "{text}"
    );
    assert!(!text.contains("tcp://"), "{text}");
    assert_eq!(text.matches("endpoint_transport").count(), 1, "{text}");
    assert_eq!(parse_get(&text).unwrap(), device);
}

#[test]
fn uapi_parse_get_tcp_forms() {
    // Order does not matter, and a `tcp://` endpoint (not what we send) is understood too.
    let text = format!(
        "listen_tcp_port=8443\npublic_key={K2}\nendpoint_transport=tcp\nendpoint=10.77.0.2:1\n\
         public_key={K3}\nendpoint=tcp://10.77.0.3:2\nerrno=0\n\n"
    );
    let device = parse_get(&text).unwrap();
    assert_eq!(device.listen_tcp_port, 8443);
    assert_eq!(
        device.peers[0].endpoint,
        Some(Endpoint::tcp("10.77.0.2:1".parse().unwrap()))
    );
    assert_eq!(
        device.peers[1].endpoint,
        Some(Endpoint::tcp("10.77.0.3:2".parse().unwrap()))
    );
    let no_endpoint = format!("public_key={K2}\nendpoint_transport=tcp\nerrno=0\n\n");
    assert_eq!(parse_get(&no_endpoint).unwrap().peers[0].endpoint, None);
    for bad in ["endpoint_transport=quic", "endpoint_transport="] {
        let text = format!("public_key={K2}\nendpoint=10.77.0.2:1\n{bad}\nerrno=0\n\n");
        assert!(parse_get(&text).is_err(), "{bad}");
    }
    assert!(parse_get("listen_tcp_port=65536\nerrno=0\n\n").is_err());
}

#[test]
fn uapi_get_round_trip() {
    let snapshot = snapshot();
    assert_eq!(parse_get(&format_get(&snapshot)).unwrap(), snapshot);
    let with_mark = DeviceSnapshot {
        fwmark: 0xffff_ffff,
        ..snapshot
    };
    assert_eq!(parse_get(&format_get(&with_mark)).unwrap(), with_mark);
}

#[test]
fn uapi_parse_get_errors_and_unknown_keys() {
    assert_eq!(
        parse_get("errno=-22\n\n").unwrap_err(),
        "invalid argument (errno 22)"
    );
    assert!(parse_get("listen_port=1\n").is_err());
    assert!(parse_get("listen_port=1\n\n").is_err(), "no errno line");
    assert!(parse_get("listen_port=x\nerrno=0\n\n").is_err());
    let with_extras = format!("jc=4\npublic_key={K2}\nnew_future_key=1\nerrno=0\n\n");
    assert_eq!(parse_get(&with_extras).unwrap().peers.len(), 1);
}

#[test]
fn uapi_stats_round_trip_skips_unprintable_names() {
    let stats = vec![
        ("drop_replay".to_string(), 3),
        ("bad=name".to_string(), 1),
        ("bad\nname".to_string(), 1),
        (String::new(), 1),
        ("rx_packets".to_string(), u64::MAX),
    ];
    let text = format_stats(&stats);
    assert_eq!(
        text,
        format!("drop_replay=3\nrx_packets={}\nerrno=0\n\n", u64::MAX)
    );
    assert_eq!(
        parse_stats(&text).unwrap(),
        vec![
            ("drop_replay".to_string(), 3),
            ("rx_packets".to_string(), u64::MAX)
        ]
    );
}

#[test]
fn uapi_set_answers() {
    assert_eq!(parse_set_answer("errno=0\n\n"), Ok(0));
    assert_eq!(parse_set_answer("errno=-98\n\n"), Ok(98));
    assert_eq!(parse_set_answer("errno=22\n\n"), Ok(22));
    assert!(parse_set_answer("errno=0\n").is_err());
    assert!(parse_set_answer("\n\n").is_err());
}

fn arb_key() -> impl Strategy<Value = Key> {
    any::<[u8; 32]>()
}

fn arb_allowed_ip() -> impl Strategy<Value = AllowedIp> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, cidr)| AllowedIp {
            addr: IpAddr::from(a),
            cidr
        }),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, cidr)| AllowedIp {
            addr: IpAddr::from(a),
            cidr
        }),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    let addr = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
    ];
    (addr, any::<bool>()).prop_map(|(addr, tcp)| {
        if tcp {
            Endpoint::tcp(addr)
        } else {
            Endpoint::udp(addr)
        }
    })
}

fn arb_peer() -> impl Strategy<Value = PeerUpdate> {
    (
        arb_key(),
        any::<(bool, bool, bool)>(),
        proptest::option::of(proptest::option::of(arb_key())),
        proptest::option::of(arb_endpoint()),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(arb_allowed_ip(), 0..4),
    )
        .prop_map(
            |(public_key, (remove, update_only, replace), psk, endpoint, keepalive, ips)| {
                PeerUpdate {
                    public_key,
                    remove,
                    update_only,
                    preshared_key: psk.map(|k| k.filter(|k| *k != [0; 32])),
                    endpoint,
                    persistent_keepalive: keepalive,
                    replace_allowed_ips: replace,
                    allowed_ips: ips,
                }
            },
        )
}

fn arb_update() -> impl Strategy<Value = DeviceUpdate> {
    (
        proptest::option::of(proptest::option::of(arb_key())),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::collection::vec(arb_peer(), 0..4),
    )
        .prop_map(
            |(private_key, listen_port, listen_tcp_port, fwmark, replace_peers, peers)| {
                DeviceUpdate {
                    private_key: private_key.map(|k| k.filter(|k| *k != [0; 32])),
                    listen_port,
                    listen_tcp_port,
                    fwmark,
                    replace_peers,
                    peers,
                }
            },
        )
}

fn arb_peer_snapshot() -> impl Strategy<Value = PeerSnapshot> {
    (
        arb_key(),
        proptest::option::of(arb_key()),
        proptest::option::of(arb_endpoint()),
        // Times SystemTime can hold everywhere (Windows: up to year 30828, in 100 ns steps).
        proptest::option::of((1u64..=1 << 38, (0u32..10_000_000).prop_map(|n| n * 100))),
        any::<(u64, u64, u16)>(),
        proptest::collection::vec(arb_allowed_ip(), 0..4),
    )
        .prop_map(
            |(public_key, psk, endpoint, handshake, (rx, tx, ka), ips)| PeerSnapshot {
                public_key,
                preshared_key: psk.filter(|k| *k != [0; 32]),
                endpoint,
                last_handshake: handshake.map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
                rx_bytes: rx,
                tx_bytes: tx,
                persistent_keepalive: ka,
                allowed_ips: ips,
            },
        )
}

proptest! {
    #[test]
    fn uapi_parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_set(&text);
        let _ = parse_get(&text);
        let _ = parse_stats(&text);
        let _ = parse_set_answer(&text);
    }

    #[test]
    fn uapi_parsers_never_panic_on_plausible_lines(
        lines in proptest::collection::vec(
            (prop_oneof![
                Just("private_key"), Just("listen_port"), Just("fwmark"), Just("replace_peers"),
                Just("public_key"), Just("remove"), Just("update_only"), Just("preshared_key"),
                Just("endpoint"), Just("persistent_keepalive_interval"), Just("replace_allowed_ips"),
                Just("allowed_ip"), Just("protocol_version"), Just("errno"),
                Just("last_handshake_time_sec"), Just("last_handshake_time_nsec"),
                Just("listen_tcp_port"), Just("endpoint_transport"),
            ], "(tcp://)?[0-9a-fA-F:.\\[\\]/%=-]{0,70}"),
            0..12)
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let _ = parse_set(&text);
        let _ = parse_get(&format!("{text}\n"));
    }

    #[test]
    fn uapi_set_round_trips(update in arb_update()) {
        prop_assert_eq!(parse_set(&format_set(&update)).unwrap(), update);
    }

    #[test]
    fn uapi_get_round_trips(
        private_key in proptest::option::of(arb_key()),
        listen_port in any::<u16>(),
        listen_tcp_port in any::<u16>(),
        fwmark in any::<u32>(),
        peers in proptest::collection::vec(arb_peer_snapshot(), 0..4),
    ) {
        let snapshot = DeviceSnapshot {
            private_key: private_key.filter(|k| *k != [0; 32]),
            listen_port,
            listen_tcp_port,
            fwmark,
            peers,
        };
        prop_assert_eq!(parse_get(&format_get(&snapshot)).unwrap(), snapshot);
    }
}
