//! The opt-in Prometheus endpoint (`--metrics-listen ADDR:PORT`, or `MetricsListen` in a file's
//! [Interface]): `GET /metrics` answers with [`exposition`]'s text.
//!
//! It reads what `wg show` and `fastwire show` read (the engine's snapshot and its per-worker counters,
//! summed on read), on a thread of its own: the data path gains no lock, atomic or syscall. Hostile
//! clients are bounded: at most [`MAX_CONNECTIONS`] at once (more are closed at accept), a request must
//! arrive whole within [`REQUEST_DEADLINE`] and fit in [`MAX_REQUEST_BYTES`], and a reader too slow to take
//! the answer within [`WRITE_TIMEOUT`] per write is dropped.

pub mod exposition;

use std::io::{self, BufWriter, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use exposition::PeerSeries;

use crate::uapi::UapiHandler;

/// Requests served at once; one more is closed as it is accepted.
pub const MAX_CONNECTIONS: usize = 8;
/// A request's head must arrive whole within this time.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The most a request head may take (Prometheus sends about 300 bytes).
pub const MAX_REQUEST_BYTES: usize = 8192;
/// The longest one write of the answer may block.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running endpoint; [`MetricsServer::shutdown`] (or drop) stops it and frees its port.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What a scrape reads.
struct Scrape {
    iface: String,
    source: Arc<dyn UapiHandler>,
    peers: PeerSeries,
}

/// Binds `listen` and serves the metrics of `iface`, read from `source`, until shut down.
pub fn serve(
    listen: SocketAddr,
    iface: &str,
    source: Arc<dyn UapiHandler>,
    peers: PeerSeries,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let scrape = Arc::new(Scrape {
        iface: iface.to_string(),
        source,
        peers,
    });
    let thread = std::thread::Builder::new()
        .name("fw-metrics".into())
        .spawn({
            let stop = stop.clone();
            move || accept_loop(listener, scrape, stop)
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

impl MetricsServer {
    /// The address it listens on (the port the system chose, for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(): a connection of our own wakes it to see the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn accept_loop(listener: TcpListener, scrape: Arc<Scrape>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // EMFILE and the like: back off a little rather than spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let (scrape, slot) = (scrape.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("fw-metrics-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &scrape);
                slot.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Index,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn serve_connection(mut stream: TcpStream, scrape: &Scrape) -> io::Result<()> {
    let route = match read_head(&mut stream) {
        Ok(head) => route(&head),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Route::BadRequest,
        Err(e) => return Err(e),
    };
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut out = BufWriter::with_capacity(64 * 1024, &stream);
    match route {
        Route::Metrics => {
            let snapshot = scrape.source.get();
            let stats = scrape.source.stats();
            // No Content-Length: the body is streamed and ends when the connection closes.
            out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                  Connection: close\r\n\r\n",
            )?;
            exposition::write_metrics(
                &mut out,
                &scrape.iface,
                &snapshot,
                &stats,
                SystemTime::now(),
                scrape.peers,
            )?;
        }
        Route::Index => respond(&mut out, "200 OK", "fastwire: metrics at /metrics\n")?,
        Route::NotFound => respond(&mut out, "404 Not Found", "not found: try /metrics\n")?,
        Route::MethodNotAllowed => respond(&mut out, "405 Method Not Allowed", "GET only\n")?,
        Route::BadRequest => respond(&mut out, "400 Bad Request", "bad request\n")?,
    }
    out.flush()?;
    drop(out);
    stream.shutdown(Shutdown::Write)
}

fn respond(out: &mut impl Write, status: &str, body: &str) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads up to the blank line that ends the head; `InvalidData` if it is too long or not closed before
/// the client stops, `TimedOut` / `WouldBlock` past the deadline.
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// The route of a request head: its first line, `METHOD TARGET VERSION`.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests;
