//! The real `wg` tool against our server with a fake device: proves `wg`/`wg-quick` can drive
//! fastwire exactly as they drive wireguard-go. They need root (the socket must live in
//! /var/run/wireguard, where `wg` looks) and `wg`, so they are `#[ignore]`d for a plain `cargo test`;
//! scripts/test.sh (root, wireguard-tools installed) runs them with `--include-ignored`, and there a
//! missing prerequisite fails them.

use std::io::Write as _;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_engine::config::{
    AllowedIp, DeviceSnapshot, DeviceUpdate, Endpoint, PeerSnapshot, PeerUpdate, SetError,
};
use x25519_dalek::{PublicKey, StaticSecret};

use super::test_support::{FakeDevice, TempDir};
use super::{UapiServer, serve};

/// A socket name of our own in /var/run/wireguard, so parallel runs and real interfaces are safe.
fn test_iface(suffix: char) -> String {
    format!("fwt{}{suffix}", std::process::id())
}

/// Fails (never skips) when what the test needs is missing.
fn require_wg() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the wg compatibility tests need root for /var/run/wireguard"
    );
    assert!(
        Command::new("wg").arg("--version").output().is_ok(),
        "wg is not installed (apt-get install wireguard-tools)"
    );
}

fn start(iface: &str) -> (Arc<FakeDevice>, UapiServer) {
    let device = Arc::new(FakeDevice::default());
    let server = serve(iface, device.clone()).expect("serve in /var/run/wireguard");
    (device, server)
}

fn wg(args: &[&str]) -> Output {
    Command::new("wg")
        .args(args)
        .env_remove("WG_HIDE_KEYS")
        .output()
        .expect("run wg")
}

fn wg_ok(args: &[&str]) -> String {
    let out = wg(args);
    assert!(
        out.status.success(),
        "wg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn b64(key: &[u8; 32]) -> String {
    BASE64.encode(key)
}

fn ip(addr: &str, cidr: u8) -> AllowedIp {
    AllowedIp {
        addr: addr.parse().unwrap(),
        cidr,
    }
}

#[test]
#[ignore = "needs root and wg (wireguard-tools): scripts/test.sh runs it"]
fn uapi_wg_show_dump_and_showconf_read_our_get() {
    require_wg();
    let iface = test_iface('a');
    let (device, server) = start(&iface);
    let private_key = [0x11u8; 32];
    let public_key = PublicKey::from(&StaticSecret::from(private_key)).to_bytes();
    let (peer_a, peer_b, psk) = ([0x22u8; 32], [0x33u8; 32], [0x44u8; 32]);
    *device.snapshot.lock().unwrap() = DeviceSnapshot {
        private_key: Some(private_key),
        listen_port: 51820,
        listen_tcp_port: 0,
        fwmark: 0x2a,
        peers: vec![
            PeerSnapshot {
                public_key: peer_a,
                preshared_key: Some(psk),
                endpoint: Some("127.0.0.1:51821".parse().unwrap()),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                rx_bytes: 1000,
                tx_bytes: 2000,
                persistent_keepalive: 25,
                allowed_ips: vec![ip("10.78.0.2", 32), ip("fd78::2", 128)],
            },
            PeerSnapshot {
                public_key: peer_b,
                preshared_key: None,
                endpoint: Some("[::1]:51822".parse().unwrap()),
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: 0,
                allowed_ips: vec![],
            },
        ],
    };

    let dump = wg_ok(&["show", &iface, "dump"]);
    let expected = format!(
        "{}\t{}\t51820\t0x2a\n\
         {}\t{}\t127.0.0.1:51821\t10.78.0.2/32,fd78::2/128\t1700000000\t1000\t2000\t25\n\
         {}\t(none)\t[::1]:51822\t(none)\t0\t0\t0\toff\n",
        b64(&private_key),
        b64(&public_key),
        b64(&peer_a),
        b64(&psk),
        b64(&peer_b),
    );
    assert_eq!(dump, expected);

    let showconf = wg_ok(&["showconf", &iface]);
    assert!(showconf.contains("ListenPort = 51820\n"), "{showconf}");
    assert!(showconf.contains("FwMark = 0x2a\n"), "{showconf}");
    assert!(
        showconf.contains("AllowedIPs = 10.78.0.2/32, fd78::2/128\n"),
        "{showconf}"
    );

    let interfaces = wg_ok(&["show", "interfaces"]);
    assert!(
        interfaces.split_whitespace().any(|name| name == iface),
        "{interfaces}"
    );

    // Our own `show` reads the same socket.
    let ours = crate::uapi::client::get(&iface).unwrap();
    assert_eq!(ours, device.snapshot.lock().unwrap().clone());
    server.shutdown();
    assert!(!std::path::Path::new(&format!("/var/run/wireguard/{iface}.sock")).exists());
}

#[test]
#[ignore = "needs root and wg (wireguard-tools): scripts/test.sh runs it"]
fn uapi_wg_set_and_setconf_reach_our_handler() {
    require_wg();
    let iface = test_iface('b');
    let (device, _server) = start(&iface);
    let keys = TempDir::new();
    let private_key = [0x55u8; 32];
    let (peer, psk) = ([0x66u8; 32], [0x77u8; 32]);
    let private_key_file = keys.path().join("private");
    let psk_file = keys.path().join("psk");
    std::fs::write(&private_key_file, b64(&private_key)).unwrap();
    std::fs::write(&psk_file, b64(&psk)).unwrap();

    wg_ok(&[
        "set",
        &iface,
        "listen-port",
        "51999",
        "fwmark",
        "0x10",
        "private-key",
        private_key_file.to_str().unwrap(),
        "peer",
        &b64(&peer),
        "preshared-key",
        psk_file.to_str().unwrap(),
        "endpoint",
        "127.0.0.1:51820",
        "persistent-keepalive",
        "25",
        "allowed-ips",
        "10.78.0.0/24,fd78::/64",
    ]);
    let mut expected_peer = PeerUpdate::new(peer);
    expected_peer.preshared_key = Some(Some(psk));
    expected_peer.endpoint = Some("127.0.0.1:51820".parse().unwrap());
    expected_peer.persistent_keepalive = Some(25);
    expected_peer.replace_allowed_ips = true;
    expected_peer.allowed_ips = vec![ip("10.78.0.0", 24), ip("fd78::", 64)];
    let expected = DeviceUpdate {
        private_key: Some(Some(private_key)),
        listen_port: Some(51999),
        fwmark: Some(16),
        replace_peers: false,
        peers: vec![expected_peer],
        ..DeviceUpdate::default()
    };
    assert_eq!(device.updates(), vec![expected]);

    wg_ok(&["set", &iface, "peer", &b64(&peer), "remove"]);
    let mut removal = PeerUpdate::new(peer);
    removal.remove = true;
    assert_eq!(device.updates()[1].peers, vec![removal]);

    let conf = keys.path().join("wg.conf");
    let mut file = std::fs::File::create(&conf).unwrap();
    write!(
        file,
        "[Interface]\nPrivateKey = {}\nListenPort = 51998\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.78.1.0/24\nEndpoint = [::1]:51820\n",
        b64(&private_key),
        b64(&peer)
    )
    .unwrap();
    drop(file);
    wg_ok(&["setconf", &iface, conf.to_str().unwrap()]);
    let setconf = device.updates()[2].clone();
    assert!(setconf.replace_peers);
    assert_eq!(setconf.listen_port, Some(51998));
    assert_eq!(
        setconf.peers[0].endpoint,
        Some("[::1]:51820".parse().unwrap())
    );
    assert_eq!(setconf.peers[0].allowed_ips, vec![ip("10.78.1.0", 24)]);

    // Errors reach `wg` with the sign wireguard-go uses, so it prints the right message.
    *device.fail_with.lock().unwrap() = Some(SetError::PortInUse(51000));
    let out = wg(&["set", &iface, "listen-port", "51000"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");
}

/// A TCP listener and TCP peers must not stop `wg` from driving the device: `wg show`, `wg show dump`
/// and `wg showconf` work and show TCP endpoints as plain IP:PORT, while our own client sees TCP.
#[test]
#[ignore = "needs root and wg (wireguard-tools): scripts/test.sh runs it"]
fn uapi_wg_show_works_with_tcp_listener_and_tcp_peers() {
    require_wg();
    let iface = test_iface('c');
    let (device, _server) = start(&iface);
    let private_key = [0x12u8; 32];
    let public_key = PublicKey::from(&StaticSecret::from(private_key)).to_bytes();
    let (client, server_peer) = ([0x23u8; 32], [0x34u8; 32]);
    let snapshot = DeviceSnapshot {
        private_key: Some(private_key),
        listen_port: 51820,
        listen_tcp_port: 443,
        fwmark: 0,
        peers: vec![
            PeerSnapshot {
                endpoint: Some(Endpoint::tcp("127.0.0.1:40001".parse().unwrap())),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 0)),
                rx_bytes: 10,
                tx_bytes: 20,
                allowed_ips: vec![ip("10.78.0.2", 32)],
                ..PeerSnapshot::new(client)
            },
            PeerSnapshot {
                endpoint: Some(Endpoint::tcp("[::1]:8443".parse().unwrap())),
                persistent_keepalive: 25,
                allowed_ips: vec![ip("fd78::3", 128)],
                ..PeerSnapshot::new(server_peer)
            },
        ],
    };
    *device.snapshot.lock().unwrap() = snapshot.clone();

    let dump = wg_ok(&["show", &iface, "dump"]);
    let expected = format!(
        "{}\t{}\t51820\toff\n\
         {}\t(none)\t127.0.0.1:40001\t10.78.0.2/32\t1700000000\t10\t20\toff\n\
         {}\t(none)\t[::1]:8443\tfd78::3/128\t0\t0\t0\t25\n",
        b64(&private_key),
        b64(&public_key),
        b64(&client),
        b64(&server_peer),
    );
    assert_eq!(dump, expected);

    let show = wg_ok(&["show", &iface]);
    assert!(show.contains("listening port: 51820"), "{show}");
    assert!(show.contains("endpoint: 127.0.0.1:40001"), "{show}");
    assert!(show.contains("endpoint: [::1]:8443"), "{show}");

    let showconf = wg_ok(&["showconf", &iface]);
    assert!(showconf.contains("Endpoint = [::1]:8443\n"), "{showconf}");
    assert!(!showconf.contains("tcp"), "{showconf}");

    // Our own client reads the TCP facts back from the same answer.
    assert_eq!(crate::uapi::client::get(&iface).unwrap(), snapshot);
}
