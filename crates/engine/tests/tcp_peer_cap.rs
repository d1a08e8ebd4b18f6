//! The TCP listener against one peer's key opening connection after connection: each carries a valid
//! handshake, so each is authenticated, yet the key may hold only its share of the connection table.
//! A real engine (fake TUN, real TCP on loopback); the client is a sans-IO device speaking the framing.

use fastwire_engine::config::{DeviceUpdate, PeerUpdate};
use fastwire_engine::{Engine, EngineOptions};
use fastwire_io::tun::fake;
use fastwire_proto::Device;
use fastwire_proto::messages::{INITIATION_LEN, RESPONSE_LEN};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use x25519_dalek::{PublicKey, StaticSecret};

/// What the listener lets one peer keep (the owner's `MAX_CONNECTIONS_PER_PEER`).
const PER_PEER: usize = 8;
const OPENED: usize = 12;

fn keypair() -> ([u8; 32], [u8; 32]) {
    let secret = StaticSecret::random();
    (secret.to_bytes(), PublicKey::from(&secret).to_bytes())
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stat(engine: &Engine, name: &str) -> u64 {
    engine
        .stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

/// True once the other side closed `stream` (EOF or reset); false while it stays open and silent.
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn one_peer_cannot_hold_more_than_its_share_of_tcp_connections() {
    let (device, _host) = fake::create("fake-tcpcap", 1420).unwrap();
    let engine = Engine::start_on(device, EngineOptions::new("fake-tcpcap")).unwrap();
    let (server_private, server_public) = keypair();
    let (client_private, client_public) = keypair();
    let port = free_tcp_port();
    engine
        .apply(&DeviceUpdate {
            private_key: Some(Some(server_private)),
            listen_port: Some(0),
            listen_tcp_port: Some(port),
            peers: vec![PeerUpdate::new(client_public)],
            ..DeviceUpdate::default()
        })
        .unwrap();

    let start = Instant::now();
    let client = Device::new(start);
    client.set_private_key(Some(client_private));
    let server = client.add_peer(server_public).unwrap();
    let mut streams = Vec::new();
    for i in 0..OPENED {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        // Past the server's per-peer initiation rate limit (one per 20 ms).
        std::thread::sleep(Duration::from_millis(30));
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut init = [0u8; INITIATION_LEN];
        client
            .create_initiation(&server, Instant::now(), wall, true, &mut init)
            .unwrap();
        stream
            .write_all(&(INITIATION_LEN as u16).to_be_bytes())
            .unwrap();
        stream.write_all(&init).unwrap();
        let mut response = [0u8; 2 + RESPONSE_LEN];
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .read_exact(&mut response)
            .unwrap_or_else(|e| panic!("connection {i}: no handshake response: {e}"));
        assert_eq!(response[..2], (RESPONSE_LEN as u16).to_be_bytes());
        streams.push(stream);
    }
    let evicted = OPENED - PER_PEER;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(&engine, "tcp_closed_peer_over_cap") < evicted as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stat(&engine, "tcp_closed_peer_over_cap"), evicted as u64);
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_eq!(
            closed(stream),
            i < evicted,
            "connection {i}: the oldest {evicted} close, the newest {PER_PEER} stay"
        );
    }
    engine.stop();
}
