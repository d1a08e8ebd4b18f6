//! `demo-helper source` / `demo-helper sink`: a bulk TCP transfer of the verifiable stream of
//! [`super::pattern`]. The sink checks every byte and answers with the count, so the source's time
//! covers delivery, not just filling its socket buffer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::args::HelperArgs;
use super::pattern::{MAX_CHUNK, Pattern, Verifier};
use super::protocol::{HelperEvent, emit};

/// Both ends derive the stream from this; a stray connection carrying anything else fails verification.
const SEED: u64 = 0x6677_6465_6d6f_2121;
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Longest silence either end tolerates before calling the tunnel broken.
const STALL: Duration = Duration::from_secs(10);
const ACK_MAX: usize = 64;

pub fn source(args: &HelperArgs) -> Result<(), String> {
    args.only(&["connect", "seconds"])?;
    let peer: SocketAddr = args.option("connect", None)?;
    let duration = Duration::from_secs(args.option("seconds", Some(5))?);

    let mut stream = TcpStream::connect_timeout(&peer, STALL)
        .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
    // A short send timeout keeps the progress line ticking (at 0 Mbit/s) while the tunnel stalls.
    stream
        .set_write_timeout(Some(PROGRESS_EVERY))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let pattern = Pattern::new(SEED);
    let mut stdout = std::io::stdout().lock();

    let start = Instant::now();
    let mut next_progress = start + PROGRESS_EVERY;
    let mut last_moved = start;
    let mut sent: u64 = 0;
    while start.elapsed() < duration {
        match stream.write(pattern.chunk(sent, MAX_CHUNK)) {
            Ok(n) => {
                sent += n as u64;
                last_moved = Instant::now();
            }
            Err(e) if is_timeout(&e) && last_moved.elapsed() < STALL => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "sending to {peer} failed after {sent} bytes: {}",
                    why(&e)
                ));
            }
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            let ms = start.elapsed().as_millis() as u64;
            emit(&mut stdout, HelperEvent::Progress { ms, bytes: sent })?;
        }
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;

    let ack =
        read_ack(&mut stream).map_err(|e| format!("no confirmation from the sink: {}", why(&e)))?;
    let us = start.elapsed().as_micros() as u64;
    match HelperEvent::parse(&ack) {
        Some(HelperEvent::Received { bytes }) if bytes == sent => {
            emit(&mut stdout, HelperEvent::Sent { bytes, us })
        }
        _ => Err(format!(
            "the sink confirmed {ack:?}, but {sent} bytes were sent"
        )),
    }
}

/// Reads the sink's one-line answer, up to its closing the connection.
fn read_ack(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut ack = Vec::new();
    stream.take(ACK_MAX as u64).read_to_end(&mut ack)?;
    Ok(String::from_utf8_lossy(&ack).trim().to_string())
}

pub fn sink(args: &HelperArgs) -> Result<(), String> {
    args.only(&["listen"])?;
    let address: SocketAddr = args.option("listen", None)?;
    let listener =
        TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    emit(&mut stdout, HelperEvent::Listening)?;

    let mut stream = accept_within(&listener, STALL)?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let mut verifier = Verifier::new(SEED);
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "receiving failed after {} bytes: {}",
                    verifier.verified(),
                    why(&e)
                ));
            }
        };
        let received = buf.get(..n).unwrap_or_default();
        verifier.check(received).map_err(|offset| {
            format!("corrupt stream: byte {offset} differs from what was sent")
        })?;
    }
    let answer = HelperEvent::Received {
        bytes: verifier.verified(),
    };
    writeln!(stream, "{answer}").map_err(|e| format!("cannot confirm to the source: {e}"))?;
    emit(&mut stdout, answer)
}

/// Socket timeouts surface as EAGAIN; say what they mean here.
fn why(e: &std::io::Error) -> String {
    if is_timeout(e) {
        format!(
            "nothing moved for {} s, the tunnel stalled",
            STALL.as_secs()
        )
    } else {
        e.to_string()
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn accept_within(listener: &TcpListener, timeout: Duration) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(format!("no connection within {} s", timeout.as_secs()));
            }
            Err(e) => return Err(format!("accept failed: {e}")),
        }
    }
}
