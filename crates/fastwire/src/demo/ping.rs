//! `demo-helper ping ADDR`: ICMP echo over a raw socket, so the demo needs no `ping` binary.
//! Prints one [`HelperEvent`] line per request.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::args::HelperArgs;
use super::icmp::{echo_request, parse_echo_reply};
use super::protocol::{HelperEvent, emit};

pub fn run(args: &HelperArgs) -> Result<(), String> {
    args.only(&["count", "interval-ms", "timeout-ms"])?;
    let target: Ipv4Addr = args.positional(1, "target IPv4 address")?;
    let count: u16 = args.option("count", Some(4))?;
    let interval = Duration::from_millis(args.option("interval-ms", Some(200))?);
    let timeout = Duration::from_millis(args.option("timeout-ms", Some(1000))?);

    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| format!("cannot open a raw ICMP socket (needs root): {e}"))?;
    let destination = SockAddr::from(SocketAddrV4::new(target, 0));
    // Other pings on the machine share the raw socket's view; the id tells our replies apart.
    let id = std::process::id() as u16;
    let mut stdout = std::io::stdout().lock();

    for seq in 0..count {
        let sent_at = Instant::now();
        if seq == 0 {
            let unix_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            let unix_us = u64::try_from(unix_us).unwrap_or(u64::MAX);
            emit(&mut stdout, HelperEvent::PingStart { unix_us })?;
        }
        socket
            .send_to(&echo_request(id, seq), &destination)
            .map_err(|e| format!("cannot send ICMP echo to {target}: {e}"))?;
        let seq_u64 = u64::from(seq);
        let event = match await_reply(&socket, target, id, seq, sent_at, timeout)? {
            Some(rtt) => HelperEvent::PingReply {
                seq: seq_u64,
                rtt_us: rtt.as_micros() as u64,
            },
            None => HelperEvent::PingLost { seq: seq_u64 },
        };
        emit(&mut stdout, event)?;
        if seq + 1 < count {
            thread::sleep((sent_at + interval).saturating_duration_since(Instant::now()));
        }
    }
    Ok(())
}

/// The round-trip time of echo `seq`, or `None` when no reply came within `timeout`.
fn await_reply(
    socket: &Socket,
    target: Ipv4Addr,
    id: u16,
    seq: u16,
    sent_at: Instant,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let deadline = sent_at + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| format!("raw socket: {e}"))?;
        match (&*socket).read(&mut buf) {
            Ok(n) => {
                let reply = buf.get(..n).and_then(parse_echo_reply);
                if reply.is_some_and(|r| r.source == target && r.id == id && r.seq == seq) {
                    return Ok(Some(sent_at.elapsed()));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot receive ICMP: {e}")),
        }
    }
}
