use super::exposition::{PeerSeries, write_metrics};
use super::*;
use crate::uapi::test_support::FakeDevice;
use fastwire_engine::config::{AllowedIp, DeviceSnapshot, PeerSnapshot};
use std::time::{Duration, UNIX_EPOCH};

fn device() -> DeviceSnapshot {
    let mut peer = PeerSnapshot::new([7; 32]);
    peer.rx_bytes = 1234;
    peer.tx_bytes = 5678;
    peer.last_handshake = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    peer.allowed_ips = vec![
        AllowedIp {
            addr: [10, 0, 0, 2].into(),
            cidr: 32,
        },
        AllowedIp {
            addr: "fd00::2".parse().unwrap(),
            cidr: 128,
        },
    ];
    DeviceSnapshot {
        peers: vec![peer, PeerSnapshot::new([8; 32])],
        ..DeviceSnapshot::default()
    }
}

fn stats() -> Vec<(String, u64)> {
    vec![
        ("rx_packets".into(), 10),
        ("drop_rx_bad_mac1".into(), 3),
        ("drop_tx_no_route".into(), 0),
        ("tcp_closed_idle".into(), 2),
        ("drop_rx_handshake_auth_failed".into(), 4),
        ("drop_rx_handshake_replayed_timestamp".into(), 1),
        ("tcp_open_accepted".into(), 6),
        ("worker_0_rx_batches".into(), 11),
        ("worker_1_rx_batches".into(), 12),
        ("worker_tcp_rx_packets".into(), 13),
        ("bad name".into(), 9),
    ]
}

fn text(peers: PeerSeries) -> String {
    let mut out = Vec::new();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    write_metrics(&mut out, "wg\"0", &device(), &stats(), now, peers).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn exporter_series_carry_its_names_and_labels() {
    let t = text(PeerSeries::Include);
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let labels =
        format!(r#"interface="wg\"0",public_key="{key}",allowed_ips="10.0.0.2/32,fd00::2/128""#);
    assert!(
        t.contains(&format!("wireguard_sent_bytes_total{{{labels}}} 5678\n")),
        "{t}"
    );
    assert!(t.contains(&format!(
        "wireguard_received_bytes_total{{{labels}}} 1234\n"
    )));
    assert!(t.contains(&format!(
        "wireguard_latest_handshake_seconds{{{labels}}} 1700000000\n"
    )));
    assert!(t.contains("# TYPE wireguard_sent_bytes_total counter\n"));
    assert!(t.contains("# TYPE wireguard_latest_handshake_seconds gauge\n"));
    // A peer that never completed a handshake reports 0, as the exporter does.
    assert!(t.contains(r#"allowed_ips=""} 0"#), "{t}");
}

#[test]
fn fastwire_counters_by_reason_and_by_name() {
    let t = text(PeerSeries::Include);
    assert!(
        t.contains("fastwire_peers{interface=\"wg\\\"0\"} 2\n"),
        "{t}"
    );
    assert!(t.contains("fastwire_peers_with_session{interface=\"wg\\\"0\"} 1\n"));
    assert!(t.contains(
        "fastwire_dropped_packets_total{interface=\"wg\\\"0\",reason=\"rx_bad_mac1\"} 3\n"
    ));
    assert!(
        t.contains("reason=\"tx_no_route\"} 0\n"),
        "zero reasons are series too"
    );
    assert!(t.contains(
        "fastwire_tcp_connections_closed_total{interface=\"wg\\\"0\",reason=\"idle\"} 2\n"
    ));
    assert!(t.contains("fastwire_rx_packets_total{interface=\"wg\\\"0\"} 10\n"));
    assert!(t.contains("fastwire_tcp_connections{interface=\"wg\\\"0\",state=\"accepted\"} 6\n"));
    assert!(t.contains("# TYPE fastwire_tcp_connections gauge\n"));
    assert!(
        t.contains("fastwire_handshakes_failed_total{interface=\"wg\\\"0\"} 5\n"),
        "auth failures and replayed timestamps add up"
    );
    assert!(
        t.contains("fastwire_worker_rx_batches_total{interface=\"wg\\\"0\",worker=\"1\"} 12\n")
    );
    assert!(
        t.contains("fastwire_worker_rx_packets_total{interface=\"wg\\\"0\",worker=\"tcp\"} 13\n")
    );
    assert!(
        !t.contains("fastwire_worker_0_"),
        "per-thread values are labels of one family"
    );
    assert!(
        !t.contains("bad name"),
        "a name that would break the format is left out"
    );
}

#[test]
fn every_family_is_declared_once_and_before_its_samples() {
    let t = text(PeerSeries::Include);
    let mut declared = std::collections::HashSet::new();
    let mut current = String::new();
    for line in t.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(declared.insert(name.clone()), "{name} declared twice");
            current = name;
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample of {name} outside its family");
        }
    }
}

#[test]
fn peer_series_can_be_left_out() {
    let t = text(PeerSeries::Omit);
    assert!(!t.contains("wireguard_"), "{t}");
    assert!(t.contains("fastwire_peers{"));
}

fn fake() -> Arc<FakeDevice> {
    let dev = FakeDevice::default();
    *dev.snapshot.lock().unwrap() = device();
    *dev.stats.lock().unwrap() = stats();
    Arc::new(dev)
}

/// An endpoint on a free loopback port, serving the fake device.
fn start(peers: PeerSeries) -> (MetricsServer, SocketAddr) {
    let server = serve("127.0.0.1:0".parse().unwrap(), "wg0", fake(), peers).unwrap();
    let addr = server.local_addr();
    (server, addr)
}

fn get(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serves_metrics_over_http_and_refuses_the_rest() {
    let (server, addr) = start(PeerSeries::Include);
    let answer = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"));
    assert!(answer.contains("wireguard_sent_bytes_total{interface=\"wg0\""));
    assert!(get(addr, "GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get(addr, "hello\r\n\r\n").starts_with("HTTP/1.1 400"));
    // An endless head is refused (the 400 may be lost to a reset: the rest of the head stays unread).
    let mut endless = TcpStream::connect(addr).unwrap();
    let _ = endless.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nX: {}",
            "a".repeat(MAX_REQUEST_BYTES * 2)
        )
        .as_bytes(),
    );
    endless
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    match endless.read_to_string(&mut answer) {
        Ok(_) => assert!(answer.starts_with("HTTP/1.1 400"), "{answer}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{e}"
        ),
    }
    assert!(get(addr, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    server.shutdown();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port is free after shutdown"
    );
}

#[test]
fn trickling_clients_cannot_hold_the_endpoint() {
    let (_server, addr) = start(PeerSeries::Omit);
    // More clients than slots, each sending a byte and then nothing.
    let holders: Vec<TcpStream> = (0..MAX_CONNECTIONS + 4)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    // Within the request deadline (plus slack) their slots are free again and a scrape is answered.
    let started = Instant::now();
    let answer = loop {
        let answer = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        if answer.starts_with("HTTP/1.1 200") || started.elapsed() > REQUEST_DEADLINE * 3 {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(started.elapsed() < REQUEST_DEADLINE * 2);
    drop(holders);
}
