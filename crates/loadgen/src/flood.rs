//! The flood: valid-mac1 initiations or junk, in GSO trains from many source ports, paced and bounded.

use crate::target::parse_target;
use base64::Engine as _;
use fastwire_io::udp::UdpSocket;
use fastwire_proto::cookie::CookieGenerator;
use fastwire_proto::messages::{INITIATION_LEN, TYPE_INITIATION};
use rand_core::{OsRng, RngCore};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Distinct messages sent in turn; enough that no train repeats the one before it.
const VARIANTS: usize = 512;
/// Datagrams per send (the kernel's UDP GSO limit is 64 segments).
const TRAIN: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// Where to send: ADDRESS:PORT on a test network (10.77.0.0/16, fd77::/64 or loopback).
    #[arg(long, value_parser = parse_target)]
    target: SocketAddr,
    /// The target's WireGuard public key (base64): mac1 is computed with it.
    #[arg(long, required_unless_present = "junk")]
    public_key: Option<String>,
    /// Random datagrams of an initiation's size instead (no valid mac1): the same load on the socket and
    /// on this flooder, none on the handshake path.
    #[arg(long)]
    junk: bool,
    /// Most datagrams to send.
    #[arg(long)]
    count: u64,
    /// Longest time to send for, in seconds.
    #[arg(long)]
    seconds: f64,
    /// Datagrams per second at most (0 = as fast as the sockets take them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How datagrams leave: `separate` (sendmmsg, each datagram its own packet, as from many hosts;
    /// Linux) or `gso` (UDP GSO trains, which a receiver with UDP GRO takes 64 at a time: cheaper for
    /// both ends).
    #[arg(long, value_enum, default_value_t = Send::Separate)]
    send: Send,
    /// Source ports to spread the flood over.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=4096))]
    ports: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Send {
    Separate,
    Gso,
}

pub fn run(args: &Args) -> Result<(), String> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    let messages = match &args.public_key {
        Some(key) if !args.junk => initiations(&parse_key(key)?),
        _ => junk(),
    };
    let sockets = (0..args.ports)
        .map(|_| UdpSocket::bind(0, 0))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot open the flood's sockets: {e}"))?;
    let train = match args.send {
        Send::Gso => sockets.first().map_or(1, |s| s.max_gso_segments()),
        Send::Separate => TRAIN,
    }
    .clamp(1, TRAIN);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let (mut sent, mut refused, mut turn) = (0u64, 0u64, 0usize);
    while sent < args.count {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if args.rate > 0.0 {
            let due = now.duration_since(started).as_secs_f64() * args.rate;
            if sent as f64 >= due {
                std::thread::sleep(Duration::from_micros(200).min(deadline - now));
                continue;
            }
        }
        let n = train.min((args.count - sent) as usize);
        let first = (turn * train) % (VARIANTS - train + 1);
        let contents = &messages[first * INITIATION_LEN..(first + n) * INITIATION_LEN];
        let socket = &sockets[turn % sockets.len()];
        let result = match args.send {
            Send::Gso => socket.send_segments(contents, INITIATION_LEN, args.target, None),
            Send::Separate => send_separately(socket, contents, args.target),
        };
        match result {
            Ok(datagrams) => sent += datagrams as u64,
            Err(_) => refused += 1,
        }
        turn += 1;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let what = if args.junk {
        "junk datagrams"
    } else {
        "initiations"
    };
    println!(
        "sent {sent} {what} in {elapsed:.1} s ({:.0}/s) from {} ports in trains of {train}, {refused} sends refused",
        sent as f64 / elapsed,
        sockets.len()
    );
    Ok(())
}

/// Sends each datagram of `contents` as a packet of its own, with one system call where the system has
/// sendmmsg.
#[cfg(target_os = "linux")]
fn send_separately(socket: &UdpSocket, contents: &[u8], to: SocketAddr) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let to = SockaddrStorage::from(socket.native_address(to));
    let slices: Vec<[IoSlice<'_>; 1]> = contents
        .chunks(INITIATION_LEN)
        .map(|d| [IoSlice::new(d)])
        .collect();
    let addrs = vec![Some(to); slices.len()];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
    let sent = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addrs,
        [],
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(sent.count())
}

#[cfg(not(target_os = "linux"))]
fn send_separately(socket: &UdpSocket, contents: &[u8], to: SocketAddr) -> io::Result<usize> {
    let mut sent = 0;
    for datagram in contents.chunks(INITIATION_LEN) {
        match socket.send_to(datagram, to, None) {
            Ok(()) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "--public-key is not base64".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "--public-key must be 32 bytes of base64".to_string())
}

/// Initiations with random bodies, a valid mac1 and no mac2, back to back.
fn initiations(public_key: &[u8; 32]) -> Vec<u8> {
    let mut macs = CookieGenerator::new(public_key);
    let mut out = vec![0u8; VARIANTS * INITIATION_LEN];
    let now = Instant::now();
    for msg in out.chunks_exact_mut(INITIATION_LEN) {
        OsRng.fill_bytes(msg);
        msg[..4].copy_from_slice(&[TYPE_INITIATION, 0, 0, 0]);
        macs.add_macs(msg, now);
    }
    out
}

/// Random datagrams of an initiation's size: dropped by any WireGuard at its first check.
fn junk() -> Vec<u8> {
    let mut out = vec![0u8; VARIANTS * INITIATION_LEN];
    OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwire_proto::cookie::CookieChecker;

    #[test]
    fn initiations_carry_a_mac1_the_target_accepts() {
        let key = [7u8; 32];
        let checker = CookieChecker::new(&key);
        let msgs = initiations(&key);
        assert!(
            msgs.chunks_exact(INITIATION_LEN)
                .all(|m| checker.check_mac1(m) && m[0] == 1)
        );
        assert!(!CookieChecker::new(&[8u8; 32]).check_mac1(&msgs[..INITIATION_LEN]));
    }

    #[test]
    fn junk_fails_mac1() {
        let checker = CookieChecker::new(&[7u8; 32]);
        let msgs = junk();
        assert!(
            msgs.chunks_exact(INITIATION_LEN)
                .all(|m| !checker.check_mac1(m))
        );
    }
}
