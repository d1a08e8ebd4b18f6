//! The whole engine over fake TUN devices (`fastwire_io::tun::fake`) and real UDP sockets on loopback:
//! two engines, real handshakes, real encryption, real datagrams. These run wherever the engine builds —
//! on Linux beside the namespace tests, and under Wine for the Windows build, where no TUN driver exists.
//! Both data paths are covered: one queue with one worker (run to completion) and one queue with several
//! workers (the single-queue pipeline that Windows and macOS use).

use fastwire_engine::config::{AllowedIp, DeviceUpdate, Endpoint, Key, PeerUpdate};
use fastwire_engine::{DataPath, Engine, EngineOptions};
use fastwire_io::tun::fake::{self, FakeHost};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const WAIT: Duration = Duration::from_secs(10);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);

struct Side {
    engine: Engine,
    host: FakeHost,
    private: Key,
    public: Key,
}

fn keypair() -> (Key, Key) {
    let secret = StaticSecret::random();
    (secret.to_bytes(), PublicKey::from(&secret).to_bytes())
}

fn side(name: &str, workers: usize) -> Side {
    let (device, host) = fake::create(name, 1420).expect("fake device");
    let mut opts = EngineOptions::new(name);
    opts.workers = workers;
    let engine = Engine::start_on(device, opts).expect("engine starts on a fake device");
    let (private, public) = keypair();
    engine
        .apply(&DeviceUpdate {
            private_key: Some(Some(private)),
            listen_port: Some(0),
            ..DeviceUpdate::default()
        })
        .unwrap();
    Side {
        engine,
        host,
        private,
        public,
    }
}

fn port(side: &Side) -> u16 {
    side.engine.snapshot().listen_port
}

fn loopback(port: u16) -> Endpoint {
    Endpoint::udp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// `me` learns `peer` with allowed IP `addr`/32, and its endpoint if given.
fn add_peer(me: &Side, peer: &Side, addr: Ipv4Addr, endpoint: Option<Endpoint>) {
    let mut update = PeerUpdate::new(peer.public);
    update.endpoint = endpoint;
    update.replace_allowed_ips = true;
    update.allowed_ips = vec![AllowedIp {
        addr: IpAddr::V4(addr),
        cidr: 32,
    }];
    me.engine
        .apply(&DeviceUpdate {
            peers: vec![update],
            ..DeviceUpdate::default()
        })
        .unwrap();
}

/// A and B with each other as peers; A knows B's endpoint, B learns A's from the handshake.
fn pair(workers: usize) -> (Side, Side) {
    let a = side("fake-a", workers);
    let b = side("fake-b", workers);
    add_peer(&a, &b, B_ADDR, Some(loopback(port(&b))));
    add_peer(&b, &a, A_ADDR, None);
    (a, b)
}

/// An IPv4/UDP packet from `src` to `dst` carrying `payload` (checksums are not checked by the tunnel).
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Injects `packet` at `from` until it arrives at `to` (the first one may wait for the handshake).
fn deliver(from: &Side, to: &Side, packet: &[u8]) {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        from.host.inject(packet).unwrap();
        if let Some(got) = to.host.receive(Duration::from_millis(300)) {
            assert_eq!(got, packet, "the packet arrives unchanged");
            return;
        }
    }
    panic!("packet not delivered within {WAIT:?}");
}

fn stat(side: &Side, name: &str) -> u64 {
    side.engine
        .stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {WAIT:?}");
}

fn handshake_and_data_both_ways(workers: usize) {
    let (a, b) = pair(workers);
    let expected = if workers == 1 {
        DataPath::MultiQueue { queues: 1 }
    } else {
        DataPath::SingleQueue { workers }
    };
    assert_eq!(a.engine.data_path(), expected);
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"hello from a"));
    deliver(&b, &a, &ipv4_udp(B_ADDR, A_ADDR, b"hello from b"));
    // Many packets in a row, each arriving once and in order (the pipeline keeps order).
    let packets: Vec<Vec<u8>> = (0..300u32)
        .map(|i| ipv4_udp(A_ADDR, B_ADDR, &i.to_be_bytes().repeat(100)))
        .collect();
    for p in &packets {
        a.host.inject(p).unwrap();
    }
    for (i, p) in packets.iter().enumerate() {
        let got = b
            .host
            .receive(WAIT)
            .unwrap_or_else(|| panic!("packet {i} lost"));
        assert_eq!(&got, p, "packet {i} in order");
    }
    let snapshot = b.engine.snapshot();
    let peer_a = &snapshot.peers[0];
    assert!(peer_a.last_handshake.is_some());
    assert_eq!(
        peer_a.endpoint.map(|e| e.addr.port()),
        Some(port(&a)),
        "B learned A's endpoint"
    );
    assert!(
        peer_a.rx_bytes > 300 * 400,
        "B counted what it received: {}",
        peer_a.rx_bytes
    );
    assert!(stat(&a, "handshake_initiations_sent") >= 1);
    a.engine.stop();
    b.engine.stop();
}

#[test]
fn run_to_completion_handshake_and_data_both_ways() {
    handshake_and_data_both_ways(1);
}

#[test]
fn single_queue_pipeline_handshake_and_data_both_ways_in_order() {
    handshake_and_data_both_ways(3);
}

#[test]
fn a_fresh_handshake_mid_stream_replaces_the_session_without_losing_the_tunnel() {
    let (a, b) = pair(2);
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"before"));
    let first = b.engine.snapshot().peers[0].last_handshake;
    // B forgets A and learns it again: the next packet needs a new handshake, initiated by A when B's
    // answer to its data fails (as after a rekey, the old session is gone on one side).
    std::thread::sleep(Duration::from_millis(1100));
    b.engine
        .apply(&DeviceUpdate {
            peers: vec![PeerUpdate {
                remove: true,
                ..PeerUpdate::new(a.public)
            }],
            ..DeviceUpdate::default()
        })
        .unwrap();
    add_peer(&b, &a, A_ADDR, Some(loopback(port(&a))));
    deliver(&b, &a, &ipv4_udp(B_ADDR, A_ADDR, b"after"));
    let second = b.engine.snapshot().peers[0].last_handshake;
    assert!(
        second.is_some() && second != first,
        "a new handshake completed"
    );
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"and back"));
}

#[test]
fn roaming_follows_the_peer_to_its_new_port() {
    let (a, b) = pair(2);
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"first"));
    let old = port(&a);
    a.engine
        .apply(&DeviceUpdate {
            listen_port: Some(old.wrapping_add(1).max(1024)),
            ..DeviceUpdate::default()
        })
        .or_else(|_| {
            // That port was taken: any other port roams just as well.
            a.engine.apply(&DeviceUpdate {
                listen_port: Some(0),
                ..DeviceUpdate::default()
            })
        })
        .unwrap();
    let new = port(&a);
    assert_ne!(new, old);
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"from the new port"));
    wait_for("B follows A to its new port", || {
        b.engine.snapshot().peers[0].endpoint.map(|e| e.addr.port()) == Some(new)
    });
    deliver(&b, &a, &ipv4_udp(B_ADDR, A_ADDR, b"answered there"));
}

/// B knows A only by key (a server does not know where its clients are): what B sends A before A
/// connects waits, and arrives once A's handshake told B where A is.
#[test]
fn packets_for_a_peer_without_endpoint_wait_for_it_to_connect() {
    let (a, b) = pair(2);
    let early = ipv4_udp(B_ADDR, A_ADDR, b"sent before A connected");
    b.host.inject(&early).unwrap();
    assert!(a.host.receive(Duration::from_millis(300)).is_none());
    assert_eq!(stat(&b, "drop_tx_no_endpoint"), 0, "staged, not dropped");
    // A connects (its first packet starts the handshake and may wait for it as well).
    let hello = ipv4_udp(A_ADDR, B_ADDR, b"hello");
    deliver(&a, &b, &hello);
    let got = a
        .host
        .receive(WAIT)
        .expect("B's early packet arrives once A has connected");
    assert_eq!(got, early);
}

#[test]
fn drops_are_counted_by_reason() {
    let (a, b) = pair(2);
    deliver(&a, &b, &ipv4_udp(A_ADDR, B_ADDR, b"up"));
    // No peer's allowed IPs cover 10.99.0.1.
    a.host
        .inject(&ipv4_udp(A_ADDR, Ipv4Addr::new(10, 99, 0, 1), b"nowhere"))
        .unwrap();
    wait_for("tx_no_route counted", || stat(&a, "drop_tx_no_route") >= 1);
    // Not an IP packet at all.
    a.host.inject(&[0x00, 1, 2, 3]).unwrap();
    wait_for("tx_not_ip counted", || stat(&a, "drop_tx_not_ip") >= 1);
    // B's peer A sends a packet from an address that is not A's: B must not deliver it.
    a.engine
        .apply(&DeviceUpdate {
            peers: vec![PeerUpdate {
                allowed_ips: vec![AllowedIp {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 78, 0, 0)),
                    cidr: 24,
                }],
                ..PeerUpdate::new(b.public)
            }],
            ..DeviceUpdate::default()
        })
        .unwrap();
    let spoofed = ipv4_udp(Ipv4Addr::new(10, 78, 0, 77), B_ADDR, b"spoofed");
    a.host.inject(&spoofed).unwrap();
    wait_for("rx_disallowed_source counted at B", || {
        stat(&b, "drop_rx_disallowed_source") >= 1
    });
    // Garbage at B's port from a stranger.
    let stranger = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b_port = SocketAddr::from((Ipv4Addr::LOCALHOST, port(&b)));
    stranger.send_to(&[4, 0, 0, 0, 9, 9, 9, 9], b_port).unwrap();
    stranger.send_to(b"\xffjunk", b_port).unwrap();
    wait_for("malformed datagrams counted at B", || {
        stat(&b, "drop_rx_malformed") >= 2
    });
    assert!(
        b.host.receive(Duration::from_millis(200)).is_none(),
        "nothing of it reached B's TUN"
    );
    let _ = a.private;
}

#[test]
fn removing_the_interface_stops_the_engine() {
    let a = side("fake-gone", 2);
    a.host.remove_interface();
    let started = Instant::now();
    let reason = a.engine.wait();
    assert_eq!(reason, fastwire_engine::ShutdownReason::InterfaceRemoved);
    assert!(started.elapsed() < WAIT);
    a.engine.stop();
}
