//! Local IPC for the WireGuard UAPI: one named endpoint per interface, reachable only by the
//! administrator, as every userspace WireGuard serves it.
//!
//! - Unix (Linux, macOS): the stream socket `DIR/IFACE.sock`, bound under umask 077 and then made
//!   0600, in a directory created 0755. A leftover socket that nobody answers on is replaced; a live one
//!   is refused. Deleting (or replacing) the socket file is how `wg-quick down` stops a userspace daemon,
//!   so the listener watches for it: inotify on the file (Linux), a kqueue `NOTE_WRITE` watch on the
//!   directory (macOS), each event checked against the device and inode we bound.
//! - Windows: the byte-mode named pipe `PREFIX\IFACE`, with wireguard-go's security descriptor (owner
//!   SYSTEM, full access for SYSTEM and Administrators only, high integrity), remote clients rejected,
//!   unlimited instances, the first one created with `FILE_FLAG_FIRST_PIPE_INSTANCE`. All I/O is
//!   overlapped, so every wait can also be ended by a stop or shutdown request.
//!
//! "DIR" is the `dir` parameter of every call: a directory on Unix ([`DEFAULT_DIR`] is
//! `/var/run/wireguard`), a pipe-name prefix on Windows ([`DEFAULT_DIR`] is
//! `\\.\pipe\ProtectedPrefix\Administrators\WireGuard`). Tests pass their own to run in parallel.
//!
//! One thread owns an [`IpcListener`] and sleeps in [`IpcListener::accept`] until a client connects,
//! another thread asks it to stop ([`IpcStopper`]), or the endpoint was removed. Each [`IpcStream`] is
//! blocking, with read and write timeouts, and can be shut down from any thread holding a clone.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(target_os = "linux")]
mod watch_inotify;
#[cfg(all(unix, not(target_os = "linux")))]
mod watch_kqueue;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(test)]
mod tests;

/// Where WireGuard implementations put their UAPI endpoints on this platform.
pub const DEFAULT_DIR: &str = imp::DEFAULT_DIR;

/// What to tell a user who was refused access to an endpoint: `"run as root"` on Unix,
/// `"run as Administrator"` (from an elevated prompt) on Windows.
pub const ADMIN_HINT: &str = imp::ADMIN_HINT;

/// The endpoint of `iface` in `dir`: `DIR/IFACE.sock` on Unix, `PREFIX\IFACE` on Windows. An `iface`
/// that is empty, `.` or `..`, or holds a path separator or NUL is `InvalidInput`.
pub fn endpoint_path(dir: &Path, iface: &str) -> io::Result<PathBuf> {
    let bad = iface.is_empty()
        || iface == "."
        || iface == ".."
        || iface
            .bytes()
            .any(|b| b == 0 || b == b'/' || (cfg!(windows) && b == b'\\'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid endpoint name {iface:?}"),
        ));
    }
    imp::endpoint_path(dir, iface)
}

/// Connects to `iface`'s endpoint in `dir`. The error is the system's (`NotFound`: nothing serves it;
/// `ConnectionRefused`: a stale Unix socket; `PermissionDenied`), for the caller to phrase. On Windows a
/// pipe owned by neither SYSTEM nor Administrators is refused (an `Other` error that says so: a
/// squatter must not read a configuration), and a pipe whose instances are all busy is retried for a
/// few seconds.
pub fn connect(dir: &Path, iface: &str) -> io::Result<IpcStream> {
    imp::connect(&endpoint_path(dir, iface)?).map(IpcStream)
}

/// The names (`IFACE`) of the endpoints in `dir` that something serves, sorted: on Unix the `*.sock`
/// sockets that accept a connection (each probe is a connection the server sees end at once; a
/// missing `dir` is an empty list), on Windows the pipes under the prefix (an error under Wine 8,
/// which cannot list pipes).
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = imp::list(dir)?;
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether `iface`'s endpoint is present in `dir`: on Unix the socket file exists (live or not), on
/// Windows the pipe exists. Nothing connects.
pub fn exists(dir: &Path, iface: &str) -> bool {
    endpoint_path(dir, iface).is_ok_and(|path| imp::exists(dir, &path, iface))
}

/// A served endpoint. Dropping it (or [`IpcListener::close`]) removes the Unix socket file if it is
/// still the one we bound; a Windows pipe goes away with its last handle.
pub struct IpcListener(imp::Listener);

/// What [`IpcListener::accept`] waited for.
pub enum Incoming {
    Connection(IpcStream),
    /// [`IpcStopper::stop`] was called. Sticky: every later `accept` returns it at once.
    Stopped,
    /// The socket file was deleted or replaced by another (Unix only; never on Windows). The caller
    /// should stop serving: the name belongs to someone else now, or to nobody.
    Removed,
}

impl IpcListener {
    /// Serves `iface` in `dir` (see the module docs). A live endpoint of that name is `AddrInUse`
    /// with the message "PATH answers"; other errors say what could not be done to which path.
    pub fn bind(dir: &Path, iface: &str) -> io::Result<Self> {
        imp::Listener::bind(dir, &endpoint_path(dir, iface)?).map(Self)
    }

    /// The endpoint served: the socket file, or the pipe name.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Things worth a warning that did not stop the bind: the removal watch could not be set up, or
    /// the Windows pipe could not be given SYSTEM as owner (then `wg.exe` refuses it; ours does not).
    pub fn notes(&self) -> &[String] {
        self.0.notes()
    }

    /// A handle for other threads to end [`IpcListener::accept`].
    pub fn stopper(&self) -> IpcStopper {
        IpcStopper(self.0.stopper())
    }

    /// Blocks until a client connects, [`IpcStopper::stop`] is called, or the endpoint is removed —
    /// in that order of precedence when several happen at once. An error (out of descriptors or
    /// handles) concerns one attempt: the caller may back off and call again.
    pub fn accept(&mut self) -> io::Result<Incoming> {
        self.0.accept()
    }

    /// Stops serving and removes the socket file if it is still ours (a successor's is left alone),
    /// reporting what went wrong, where dropping would stay silent.
    pub fn close(self) -> io::Result<()> {
        self.0.close()
    }
}

/// Ends a listener's [`IpcListener::accept`], now and forever, from any thread.
#[derive(Clone)]
pub struct IpcStopper(imp::Stopper);

impl IpcStopper {
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// One connection, either end. Reads and writes block, each for at most its timeout (then
/// `TimedOut`); the peer closing is end-of-stream (`Ok(0)`) for a read. Clones share the connection
/// (and its timeouts); it closes when the last one is dropped.
pub struct IpcStream(imp::Stream);

impl IpcStream {
    /// `None` waits forever; `Some(Duration::ZERO)` is `InvalidInput`, as for std's sockets.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.0.set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.0.set_write_timeout(timeout)
    }

    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }

    /// Closes the connection both ways, from any thread: a read blocked in another thread (on any
    /// clone) returns `Ok(0)` promptly, later writes fail. The server end's peer sees end-of-stream at
    /// once; on Windows a client end's peer only when the last clone is dropped.
    pub fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown()
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero timeout is not allowed",
        ));
    }
    Ok(())
}

impl Read for IpcStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for &IpcStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for IpcStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &IpcStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A timeout error with the same kind on every platform (Unix sockets report `WouldBlock`).
fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}
