//! Many real WireGuard clients against one server: each client is a `fastwire_proto::Device` of its own
//! with the server as its one peer, so the server sees genuine handshakes from distinct peers over the
//! real UDP path. `clients-config` prints the clients' public keys as the server's [Peer] sections (the
//! keys derive from a seed, so both commands agree without sharing a file); `clients` runs handshakes
//! from the first ACTIVE of them, a bounded number at once, and reports the rate the server completes
//! them and the time from initiation to completed handshake.

use crate::target::parse_target;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fastwire_proto::messages::{self, INITIATION_LEN};
use fastwire_proto::{Device, Incoming, Peer};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Derives the clients' keys (the same seed in `clients` makes the same clients).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many clients.
    #[arg(long)]
    count: u32,
}

#[derive(clap::Args)]
pub struct Args {
    /// The server: ADDRESS:PORT on a test network (10.77.0.0/16, fd77::/64 or loopback).
    #[arg(long, value_parser = parse_target)]
    target: SocketAddr,
    /// The server's public key (base64).
    #[arg(long)]
    public_key: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Clients that handshake (the first ACTIVE of the seed's clients).
    #[arg(long)]
    active: u32,
    /// Handshakes in flight at once, at most.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Handshakes to complete at most.
    #[arg(long)]
    count: u64,
    /// Longest run, in seconds.
    #[arg(long)]
    seconds: f64,
    /// Source ports the clients are spread over.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    ports: u16,
    /// Bind port k to this IPv4 address + k (addresses the caller gave the interface), so the clients
    /// come from many hosts: a server under load limits handshakes per source address (20/s each).
    #[arg(long)]
    source_base: Option<std::net::Ipv4Addr>,
    /// Hold each client's session instead of handshaking again: once it completes, the client sends a
    /// keepalive every SECONDS and handshakes again only before its session expires (as `wg`'s
    /// persistent keepalive does), until --seconds runs out. Idle peers with live sessions beside a
    /// benchmark's traffic.
    #[arg(long, value_name = "SECONDS")]
    keep_alive: Option<f64>,
}

/// A held session is renewed this long after its handshake: before the initiator's rekey (120 s) and
/// well before the responder rejects it (180 s).
const RENEW_AFTER: Duration = Duration::from_secs(110);

/// Client `i`'s private key: a hash of the seed and the index (test keys, never secrets).
fn client_key(seed: u64, i: u32) -> [u8; 32] {
    fastwire_proto::crypto::hash(&[
        b"fastwire-loadgen client",
        &seed.to_le_bytes(),
        &i.to_le_bytes(),
    ])
}

fn client_public(seed: u64, i: u32) -> [u8; 32] {
    let d = Device::new(Instant::now());
    d.set_private_key(Some(client_key(seed, i)));
    d.public_key().unwrap_or_default()
}

/// The address client `i` owns inside the tunnel: 10.128.0.0/9, one /32 each.
fn client_address(i: u32) -> [u8; 4] {
    let n = 0x0a80_0000u32 + i;
    n.to_be_bytes()
}

pub fn print_config(args: &ConfigArgs) -> Result<(), String> {
    if args.count > 1 << 23 {
        return Err("--count: at most 8,388,608 clients (10.128.0.0/9)".into());
    }
    let mut out = String::new();
    for i in 0..args.count {
        let [a, b, c, d] = client_address(i);
        out.push_str(&format!(
            "[Peer]\nPublicKey = {}\nAllowedIPs = {a}.{b}.{c}.{d}/32\n",
            BASE64.encode(client_public(args.seed, i))
        ));
    }
    print!("{out}");
    Ok(())
}

struct Client {
    /// This client's place in the list.
    index: usize,
    device: Device,
    server: Arc<Peer>,
    socket: usize,
    /// When the handshake in flight began (the first initiation, cookie rounds included).
    started: Option<Instant>,
    /// Handshakes this client began: its initiations' timestamps must grow.
    begun: u64,
    /// The sender index of its latest initiation, while one is unanswered.
    sender: Option<u32>,
    /// When it may begin its next handshake: a server drops initiations of one peer closer than 20 ms.
    not_before: Instant,
}

/// A client's initiations are this far apart at least (servers refuse one peer's faster than 50/s).
const INITIATION_SPACING: Duration = Duration::from_millis(25);

pub fn run(args: &Args) -> Result<(), String> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if args.active == 0 || args.window == 0 {
        return Err("--active and --window must be at least 1".into());
    }
    let keep_alive = match args.keep_alive {
        Some(s) if !(0.01..=3600.0).contains(&s) => {
            return Err("--keep-alive must be in [0.01, 3600] seconds".into());
        }
        s => s.map(Duration::from_secs_f64),
    };
    let server_key: [u8; 32] = BASE64
        .decode(args.public_key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or("--public-key is not a base64 WireGuard key")?;
    let bind: SocketAddr = if args.target.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(args.target)
    } else {
        "[::]:0".parse().unwrap_or(args.target)
    };
    let sockets: Vec<UdpSocket> = (0..args.ports)
        .map(|k| {
            let bind = match args.source_base {
                Some(base) => {
                    SocketAddr::from((std::net::Ipv4Addr::from(u32::from(base) + u32::from(k)), 0))
                }
                None => bind,
            };
            let s = UdpSocket::bind(bind)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    let start = Instant::now();
    let mut clients: Vec<Client> = (0..args.active)
        .map(|i| {
            let device = Device::new(start);
            device.set_private_key(Some(client_key(args.seed, i)));
            let server = device
                .add_peer(server_key)
                .ok_or("the server key is a client's")?;
            server.set_endpoint(args.target);
            Ok(Client {
                index: i as usize,
                device,
                server,
                socket: i as usize % sockets.len(),
                started: None,
                begun: 0,
                sender: None,
                not_before: start,
            })
        })
        .collect::<Result<_, String>>()?;
    let wall_base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    // Our sender index -> client, for the response that names it.
    let mut by_index: HashMap<u32, usize> = HashMap::new();
    let mut in_flight: Vec<usize> = Vec::new();
    let mut next_client = 0usize;
    let mut latencies: Vec<Duration> = Vec::new();
    let (mut timeouts, mut cookie_rounds, mut sent) = (0u64, 0u64, 0u64);
    // Held sessions' next keepalives, in time order (every client's interval is the same, so a FIFO is
    // sorted): (when, client, the handshake it belongs to).
    let mut keepalives_due: std::collections::VecDeque<(Instant, usize, u64)> = Default::default();
    let mut keepalives_sent = 0u64;
    let mut buf = [0u8; 256];
    let mut reply = [0u8; 256];
    while (keep_alive.is_some() || (latencies.len() as u64) < args.count)
        && Instant::now() < deadline
    {
        let now = Instant::now();
        // Refill the window, one client after the other (a client has one handshake at a time).
        let mut looked = 0;
        while in_flight.len() < args.window && looked < clients.len() {
            let i = next_client % clients.len();
            next_client += 1;
            looked += 1;
            if clients[i].started.is_some() || clients[i].not_before > now {
                continue;
            }
            if initiate(&mut clients[i], &sockets, wall_base, now, &mut by_index) {
                clients[i].started = Some(now);
                in_flight.push(i);
                sent += 1;
            }
        }
        let mut idle = true;
        for socket in &sockets {
            loop {
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // An ICMP error from an earlier send: the server is not there (yet).
                    Err(_) => break,
                };
                idle = false;
                let msg = &mut buf[..n];
                let Some(kind) = messages::classify(msg) else {
                    continue;
                };
                let Some(&i) = by_index.get(&messages::receiver_index(kind, msg)) else {
                    continue;
                };
                let now = Instant::now();
                let client = &mut clients[i];
                match client.device.handle_incoming(from, msg, now, &mut reply) {
                    Incoming::HandshakeComplete { .. } => {
                        if let Some(sender) = client.sender.take() {
                            by_index.remove(&sender);
                        }
                        if let Some(began) = client.started.take() {
                            latencies.push(now - began);
                        }
                        in_flight.retain(|&c| c != i);
                        // As every initiator: a keepalive confirms the session to the responder,
                        // which only then counts the handshake as done.
                        send_keepalive(client, &sockets, now);
                        if let Some(every) = keep_alive {
                            client.not_before = now + RENEW_AFTER;
                            keepalives_due.push_back((now + every, i, client.begun));
                        }
                    }
                    // The server is under load: again, with the cookie's mac2.
                    Incoming::CookieAccepted { .. } => {
                        cookie_rounds += 1;
                        initiate(client, &sockets, wall_base, now, &mut by_index);
                    }
                    _ => {}
                }
            }
        }
        // A handshake unanswered for a second is given up; its client starts another later.
        let now = Instant::now();
        in_flight.retain(|&i| {
            let late = clients[i]
                .started
                .is_some_and(|t| now - t > Duration::from_secs(1));
            if late {
                clients[i].started = None;
                if let Some(sender) = clients[i].sender.take() {
                    by_index.remove(&sender);
                }
                timeouts += 1;
            }
            !late
        });
        while let (Some(every), Some(&(due, i, begun))) = (keep_alive, keepalives_due.front()) {
            if due > now {
                break;
            }
            keepalives_due.pop_front();
            let client = &mut clients[i];
            // A client renewing its session has a newer entry of its own to come.
            if client.begun != begun || client.started.is_some() {
                continue;
            }
            if send_keepalive(client, &sockets, now) {
                keepalives_sent += 1;
            }
            keepalives_due.push_back((now + every, i, begun));
        }
        if idle {
            // Holding sessions with nothing in flight: wake every 10 ms and send what fell due in
            // one go (as a timer wheel would), not in a 200 µs poll that would take a core.
            let pause = if !keepalives_due.is_empty() && in_flight.is_empty() {
                Duration::from_millis(10)
            } else {
                Duration::from_micros(200)
            };
            std::thread::sleep(pause);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"active\": {}, \"window\": {}, \"initiations\": {sent}, \"completed\": {}, \"seconds\": {seconds:.3}, \
         \"handshakes_per_second\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"timeouts\": {timeouts}, \
         \"cookie_rounds\": {cookie_rounds}, \"keepalives_sent\": {keepalives_sent}}}",
        args.active,
        args.window,
        latencies.len(),
        latencies.len() as f64 / seconds,
        quantile(0.5),
        quantile(0.99),
    );
    Ok(())
}

/// Seals and sends an empty data packet (a keepalive) on client `c`'s session; false if it could not.
fn send_keepalive(c: &Client, sockets: &[UdpSocket], now: Instant) -> bool {
    let mut keepalive = [0u8; 64];
    c.device
        .seal(&c.server, &mut keepalive, 0, 1420, now)
        .is_ok_and(|sealed| {
            sockets[c.socket]
                .send_to(&keepalive[..sealed.len], sealed.endpoint.addr)
                .is_ok()
        })
}

/// Sends client `c`'s next initiation; false if its device made none.
fn initiate(
    c: &mut Client,
    sockets: &[UdpSocket],
    wall_base: Duration,
    now: Instant,
    by_index: &mut HashMap<u32, usize>,
) -> bool {
    let mut msg = [0u8; INITIATION_LEN];
    // Each initiation a second after the last in the client's own clock: timestamps always grow, as
    // the server demands, however fast the handshakes go.
    c.begun += 1;
    let wall = wall_base + Duration::from_secs(c.begun);
    let Some(n) = c
        .device
        .create_initiation(&c.server, now, wall, true, &mut msg)
    else {
        return false;
    };
    c.not_before = now + INITIATION_SPACING;
    let at = messages::init::SENDER;
    let sender = u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    if let Some(old) = c.sender.replace(sender) {
        by_index.remove(&old);
    }
    by_index.insert(sender, c.index);
    let target = c.server.endpoint().map(|e| e.addr);
    match target {
        Some(to) => sockets[c.socket].send_to(&msg[..n], to).is_ok(),
        None => false,
    }
}
