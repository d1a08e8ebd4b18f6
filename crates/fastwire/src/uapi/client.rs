//! Talking to a running daemon (fastwire or wireguard-go) over its UAPI socket (named pipe on Windows).

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate};
use fastwire_io::ipc::{self, IpcStream};

use super::protocol::{self, errno_message};
use super::{SOCKET_DIR, socket_path};

/// Long enough for a daemon applying a large configuration, short enough that a wedged one is noticed.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A `get=1` answer for tens of thousands of peers fits; a runaway daemon cannot exhaust our memory.
const MAX_ANSWER: usize = 64 << 20;

/// Sends one raw request (e.g. `"get=1\n\n"`) to IFACE and returns the answer up to and including the
/// blank line that ends it.
pub fn request(iface: &str, request: &str) -> io::Result<String> {
    request_in(Path::new(SOCKET_DIR), iface, request)
}

/// Applies `update` as one `set=1` transaction; a nonzero errno becomes `Err`.
pub fn set(iface: &str, update: &DeviceUpdate) -> Result<(), String> {
    set_in(Path::new(SOCKET_DIR), iface, update)
}

/// Reads the device's configuration and state.
pub fn get(iface: &str) -> Result<DeviceSnapshot, String> {
    get_in(Path::new(SOCKET_DIR), iface)
}

/// fastwire's private counters (`fastwire-stats=1`), e.g. packets dropped by reason.
pub fn stats(iface: &str) -> Result<Vec<(String, u64)>, String> {
    stats_in(Path::new(SOCKET_DIR), iface)
}

/// Asks a fastwire daemon to stop (the private verb `fastwire-shutdown=1`); wireguard-go does not
/// know it and closes the connection, which is an error here.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn shutdown(iface: &str) -> Result<(), String> {
    shutdown_in(Path::new(SOCKET_DIR), iface)
}

pub(crate) fn shutdown_in(dir: &Path, iface: &str) -> Result<(), String> {
    let answer = request_in(dir, iface, "fastwire-shutdown=1\n\n")
        .map_err(|e| format!("cannot ask {iface} to stop: {e}"))?;
    match answer.trim_end() {
        "errno=0" => Ok(()),
        other => Err(format!("{iface} refused to stop: {other}")),
    }
}

/// The interfaces that have a live UAPI socket in /var/run/wireguard (Windows: a WireGuard pipe),
/// sorted by name.
pub fn list_interfaces() -> io::Result<Vec<String>> {
    list_interfaces_in(Path::new(SOCKET_DIR))
}

pub(crate) fn request_in(dir: &Path, iface: &str, request: &str) -> io::Result<String> {
    let path = socket_path(dir, iface)?;
    let mut stream = ipc::connect(dir, iface).map_err(|e| connect_error(iface, &path, e))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    read_answer(&mut stream)
}

fn read_answer(stream: &mut IpcStream) -> io::Result<String> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the daemon did not answer in time",
                ));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without a complete answer",
            ));
        }
        // A blank line can only end an answer, so look for it just around the new bytes.
        let search_from = answer.len().saturating_sub(1);
        answer.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let end = answer
            .get(search_from..)
            .and_then(|tail| tail.windows(2).position(|w| w == b"\n\n"))
            .map(|pos| search_from + pos + 2);
        if let Some(end) = end {
            answer.truncate(end);
            return String::from_utf8(answer).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "the answer is not UTF-8")
            });
        }
        if answer.len() > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer is larger than 64 MiB",
            ));
        }
    }
}

fn connect_error(iface: &str, path: &Path, e: io::Error) -> io::Error {
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no fastwire interface {iface}: {} not found — is it running?",
            path.display()
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "interface {iface}: nothing answers on {} (a stale socket) — is it running?",
            path.display()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "interface {iface}: permission denied on {} — {}",
            path.display(),
            ipc::ADMIN_HINT
        ),
        _ => format!(
            "interface {iface}: cannot connect to {}: {e}",
            path.display()
        ),
    };
    io::Error::new(e.kind(), message)
}

pub(crate) fn set_in(dir: &Path, iface: &str, update: &DeviceUpdate) -> Result<(), String> {
    let answer =
        request_in(dir, iface, &protocol::format_set(update)).map_err(|e| e.to_string())?;
    match protocol::parse_set_answer(&answer) {
        Ok(0) => Ok(()),
        Ok(errno) => Err(format!(
            "interface {iface} refused the configuration: {}",
            errno_message(errno)
        )),
        Err(e) => Err(format!("interface {iface}: {e}")),
    }
}

pub(crate) fn get_in(dir: &Path, iface: &str) -> Result<DeviceSnapshot, String> {
    let answer = request_in(dir, iface, "get=1\n\n").map_err(|e| e.to_string())?;
    protocol::parse_get(&answer).map_err(|e| format!("interface {iface}: {e}"))
}

pub(crate) fn stats_in(dir: &Path, iface: &str) -> Result<Vec<(String, u64)>, String> {
    let answer = request_in(dir, iface, "fastwire-stats=1\n\n").map_err(|e| e.to_string())?;
    protocol::parse_stats(&answer).map_err(|e| format!("interface {iface}: {e}"))
}

/// Like `wg show interfaces`: the endpoints something serves whose name is a valid interface name.
pub(crate) fn list_interfaces_in(dir: &Path) -> io::Result<Vec<String>> {
    Ok(ipc::list(dir)?
        .into_iter()
        .filter(|iface| super::valid_iface(iface))
        .collect())
}
