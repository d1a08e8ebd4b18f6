//! The UAPI endpoint (`/var/run/wireguard/IFACE.sock`, or the named pipe on Windows; see
//! [`fastwire_io::ipc`]): served by one control thread that accepts connections and notices the
//! socket file being deleted, with one short-lived thread per connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fastwire_io::ipc::{self, Incoming, IpcListener, IpcStopper, IpcStream};
use tracing::{debug, warn};

use super::protocol::{self, SetParser, UapiError};
use super::{SOCKET_DIR, UapiHandler, socket_path};

/// What a `set=1` that arrives while shutting down is answered with.
const EIO: i32 = 5;

/// Bounds that keep one client from holding the daemon's memory or threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest accepted line; UAPI lines are under 200 bytes.
    pub max_line: usize,
    /// Most lines in one `set=1`: a quarter million allowed IPs still fit, memory stays tens of MB.
    pub max_set_lines: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A request must arrive whole within this time of the connection (or the previous answer), however
    /// steadily its bytes trickle in: a client cannot hold a slot by sending a byte now and then.
    pub request_timeout: Duration,
    /// Connections served at once. A new client over the cap closes the oldest connection still waiting
    /// for (the rest of) its request, so `wg show` gets through even when every slot is held.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 4096,
            max_set_lines: 1 << 18,
            idle_timeout: Duration::from_secs(30),
            // 2^18 lines of `set` take well under a second to write over a local socket.
            request_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// A served UAPI endpoint. Dropping it (or [`UapiServer::shutdown`]) stops accepting and removes the
/// socket file, if the file is still ours.
pub struct UapiServer {
    path: PathBuf,
    stopper: IpcStopper,
    stopped: Arc<AtomicBool>,
    control: Option<JoinHandle<()>>,
}

/// Serves `/var/run/wireguard/IFACE.sock` for `handler` (on Windows the named pipe
/// `\\.\pipe\ProtectedPrefix\Administrators\WireGuard\IFACE`).
pub fn serve(iface: &str, handler: Arc<dyn UapiHandler>) -> io::Result<UapiServer> {
    serve_in(Path::new(SOCKET_DIR), iface, handler, Limits::default())
}

/// Serves `iface` in the directory (Unix) or pipe-name prefix (Windows) `dir` with the default limits:
/// for programs that embed the daemon's endpoint elsewhere, and for the fuzzer (`fuzz/`).
pub fn serve_at(dir: &Path, iface: &str, handler: Arc<dyn UapiHandler>) -> io::Result<UapiServer> {
    serve_in(dir, iface, handler, Limits::default())
}

impl UapiServer {
    /// The socket file (or pipe) being served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop_and_clean();
    }

    fn stop_and_clean(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(control) = self.control.take() {
            // The control thread removes the socket file (if still ours) before it ends.
            self.stopper.stop();
            if control.join().is_err() {
                warn!("UAPI: the control thread panicked");
            }
        }
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop_and_clean();
    }
}

/// Serves `iface` in `dir`: a directory on Unix, a pipe-name prefix on Windows.
pub(crate) fn serve_in(
    dir: &Path,
    iface: &str,
    handler: Arc<dyn UapiHandler>,
    limits: Limits,
) -> io::Result<UapiServer> {
    let path = socket_path(dir, iface)?;
    let listener = IpcListener::bind(dir, iface).map_err(|e| bind_error(iface, &path, e))?;
    for note in listener.notes() {
        warn!("UAPI: {note}");
    }
    let stopper = listener.stopper();
    let stopped = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        handler,
        limits,
        stopped: Arc::clone(&stopped),
        connections: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
    });
    let control = thread::Builder::new()
        .name("uapi".into())
        .spawn(move || control_loop(listener, shared))?;
    Ok(UapiServer {
        path,
        stopper,
        stopped,
        control: Some(control),
    })
}

/// The messages users see when the endpoint cannot be served.
fn bind_error(iface: &str, path: &Path, e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::AddrInUse => io::Error::new(
            e.kind(),
            format!(
                "interface {iface} already has a running daemon ({} answers)",
                path.display()
            ),
        ),
        io::ErrorKind::PermissionDenied => {
            io::Error::new(e.kind(), format!("{e} — {}", ipc::ADMIN_HINT))
        }
        _ => e,
    }
}

/// What every connection thread needs.
struct Shared {
    handler: Arc<dyn UapiHandler>,
    limits: Limits,
    stopped: Arc<AtomicBool>,
    /// The connections being served.
    connections: Mutex<Vec<Connection>>,
    next_id: AtomicU64,
}

/// One served connection, as the control thread sees it.
struct Connection {
    id: u64,
    /// A handle on the connection, to close it from outside its thread.
    stream: IpcStream,
    /// Since when it has been waiting for (the rest of) a request; `None` while its request is handled.
    waiting_since: Option<Instant>,
}

impl Shared {
    fn connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks connection `id` as waiting for a request (`true`) or busy with one.
    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(c) = self.connections().iter_mut().find(|c| c.id == id) {
            c.waiting_since = waiting.then(Instant::now);
        }
    }

    /// Makes room for one more connection: false if every slot is busy handling a request.
    fn make_room(&self) -> bool {
        let mut conns = self.connections();
        if conns.len() < self.limits.max_connections {
            return true;
        }
        let oldest = conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.waiting_since?)))
            .min_by_key(|&(_, since)| since)
            .map(|(i, _)| i);
        let Some(i) = oldest else {
            return false;
        };
        let evicted = conns.swap_remove(i);
        debug!("UAPI: all connections in use, closing the one waiting longest for its request");
        // Its thread sees end-of-stream and exits.
        let _ = evicted.stream.shutdown();
        true
    }
}

fn control_loop(mut listener: IpcListener, shared: Arc<Shared>) {
    loop {
        match listener.accept() {
            Ok(Incoming::Connection(stream)) => spawn_connection(stream, &shared),
            Ok(Incoming::Stopped) => break,
            Ok(Incoming::Removed) => {
                debug!("UAPI: {} was removed", listener.path().display());
                shared.stopped.store(true, Ordering::SeqCst);
                shared.handler.socket_removed();
                break;
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                warn!("UAPI: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Removes the socket file if it is still ours (after a removal it is not).
    if let Err(e) = listener.close() {
        warn!("UAPI: {e}");
    }
}

/// Removes a connection from the table however its thread ends.
struct ConnectionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections().retain(|c| c.id != self.id);
    }
}

fn spawn_connection(stream: IpcStream, shared: &Arc<Shared>) {
    if !shared.make_room() {
        debug!("UAPI: every connection is busy with a request, closing a new one");
        return;
    }
    let handle = match stream.try_clone() {
        Ok(handle) => handle,
        Err(e) => {
            warn!("UAPI: cannot serve a connection: {e}");
            return;
        }
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.connections().push(Connection {
        id,
        stream: handle,
        waiting_since: Some(Instant::now()),
    });
    let guard = ConnectionGuard {
        shared: Arc::clone(shared),
        id,
    };
    let spawned = thread::Builder::new()
        .name("uapi-conn".into())
        .spawn(move || {
            if let Err(e) = handle_connection(stream, &guard.shared, guard.id) {
                debug!("UAPI: connection closed: {e}");
            }
            drop(guard);
        });
    if let Err(e) = spawned {
        warn!("UAPI: cannot start a connection thread: {e}");
    }
}

/// The read side of a connection, with a deadline for the whole request on top of the per-read idle
/// timeout.
struct DeadlineReader {
    stream: IpcStream,
    idle: Duration,
    deadline: std::cell::Cell<Instant>,
}

impl DeadlineReader {
    fn start_request(&self, within: Duration) {
        self.deadline.set(Instant::now() + within);
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .get()
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request did not arrive whole in time",
            ));
        }
        self.stream.set_read_timeout(Some(left.min(self.idle)))?;
        self.stream.read(buf)
    }
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A full line; the newline is stripped.
    Complete,
    /// End of stream after some bytes without a newline.
    Unterminated,
    /// End of stream before any byte.
    Eof,
    TooLong,
}

/// Reads one line into `buf` without ever buffering more than `max` bytes of it.
fn read_line(reader: &mut impl BufRead, max: usize, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = reader.take(limit).read_until(b'\n', buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(if buf.len() > max {
            Line::TooLong
        } else {
            Line::Complete
        });
    }
    Ok(match n {
        0 => Line::Eof,
        _ if buf.len() > max => Line::TooLong,
        _ => Line::Unterminated,
    })
}

fn handle_connection(stream: IpcStream, shared: &Shared, id: u64) -> io::Result<()> {
    stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
    stream.set_write_timeout(Some(shared.limits.idle_timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(
        8192,
        DeadlineReader {
            stream,
            idle: shared.limits.idle_timeout,
            deadline: std::cell::Cell::new(Instant::now()),
        },
    );
    let mut line = Vec::new();
    // Several requests may follow each other on one connection, as wireguard-go allows.
    loop {
        reader
            .get_ref()
            .start_request(shared.limits.request_timeout);
        shared.set_waiting(id, true);
        if read_line(&mut reader, shared.limits.max_line, &mut line)? != Line::Complete {
            return Ok(());
        }
        if shared.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (answer, keep_open) = match line.as_slice() {
            b"get=1" => match expect_blank_line(&mut reader)? {
                true => {
                    shared.set_waiting(id, false);
                    (protocol::format_get(&shared.handler.get()), true)
                }
                false => (errno_answer(protocol::EINVAL), true),
            },
            b"fastwire-stats=1" => match expect_blank_line(&mut reader)? {
                true => {
                    shared.set_waiting(id, false);
                    (protocol::format_stats(&shared.handler.stats()), true)
                }
                false => (errno_answer(protocol::EINVAL), true),
            },
            b"fastwire-shutdown=1" => match expect_blank_line(&mut reader)? {
                true => {
                    shared.set_waiting(id, false);
                    shared.handler.shutdown_requested();
                    ("errno=0\n\n".to_string(), false)
                }
                false => (errno_answer(protocol::EINVAL), true),
            },
            b"set=1" => handle_set(&mut reader, shared, id)?,
            // wireguard-go closes the connection on an unknown operation without answering.
            _ => {
                debug!("UAPI: unknown operation, closing");
                return Ok(());
            }
        };
        writer.write_all(answer.as_bytes())?;
        if !keep_open {
            return Ok(());
        }
    }
}

/// `get=1` must be followed by an empty line; like wireguard-go, one byte decides.
fn expect_blank_line(reader: &mut impl Read) -> io::Result<bool> {
    let mut byte = [0u8; 1];
    reader.read_exact(&mut byte)?;
    Ok(byte == *b"\n")
}

/// wireguard-go answers with negative errnos (`errno=-22`), and `wg` relies on the sign to print
/// the right message.
fn errno_answer(errno: i32) -> String {
    format!("errno=-{errno}\n\n")
}

/// Parses the whole transaction, then applies it at once. Returns the answer and whether the
/// connection can carry another request.
fn handle_set(reader: &mut impl BufRead, shared: &Shared, id: u64) -> io::Result<(String, bool)> {
    let limits = shared.limits;
    let mut parser = SetParser::new();
    let mut first_error: Option<UapiError> = None;
    let mut line = Vec::new();
    let mut lines = 0usize;
    loop {
        let kind = read_line(reader, limits.max_line, &mut line)?;
        match kind {
            Line::Eof => break,
            Line::Complete if line.is_empty() => break,
            Line::TooLong => {
                warn!("UAPI: set line longer than {} bytes", limits.max_line);
                return Ok((errno_answer(protocol::EINVAL), false));
            }
            Line::Complete | Line::Unterminated => {}
        }
        lines += 1;
        if lines > limits.max_set_lines {
            warn!("UAPI: set has more than {} lines", limits.max_set_lines);
            return Ok((errno_answer(protocol::EINVAL), false));
        }
        // After an error, read on to the end of the transaction so the client can read the answer
        // and the connection stays in step.
        if first_error.is_none() {
            let result = match std::str::from_utf8(&line) {
                Ok(text) => parser.feed_line(text),
                Err(_) => Err(UapiError {
                    line: lines,
                    reason: "line is not UTF-8".into(),
                }),
            };
            first_error = result.err();
        }
        if kind == Line::Unterminated {
            break;
        }
    }
    // Read whole: from here the connection is busy, not waiting, and is not evicted for a newcomer.
    shared.set_waiting(id, false);
    if let Some(error) = first_error {
        warn!("UAPI: set refused: {error}");
        return Ok((errno_answer(error.errno()), true));
    }
    if shared.stopped.load(Ordering::SeqCst) {
        return Ok((errno_answer(EIO), false));
    }
    match shared.handler.set(parser.finish()) {
        Ok(()) => Ok(("errno=0\n\n".into(), true)),
        Err(e) => {
            warn!("UAPI: set failed: {e}");
            Ok((errno_answer(e.errno()), true))
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
