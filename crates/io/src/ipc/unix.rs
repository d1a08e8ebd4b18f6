//! Unix stream sockets in a directory, root-only, watched for removal.

use std::fs::DirBuilder;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::stat::{Mode, umask};

#[cfg(target_os = "linux")]
use super::watch_inotify::Watch;
#[cfg(not(target_os = "linux"))]
use super::watch_kqueue::Watch;
use super::{Incoming, IpcStream, timed_out};
use crate::wait::Waker;

pub(super) const DEFAULT_DIR: &str = "/var/run/wireguard";
pub(super) const ADMIN_HINT: &str = "run as root";

pub(super) fn endpoint_path(dir: &Path, iface: &str) -> io::Result<PathBuf> {
    Ok(dir.join(format!("{iface}.sock")))
}

/// Which inode we bound, so we never delete or mourn a socket another daemon put in our place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn matches(&self, path: &Path) -> bool {
        Self::of(path).is_ok_and(|now| now == *self)
    }
}

/// What a [`Watch`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ready {
    pub accept: bool,
    pub stop: bool,
    /// Something happened to the socket file (or, on macOS, in its directory): check it.
    pub changed: bool,
}

struct Stop {
    requested: AtomicBool,
    waker: Waker,
}

#[derive(Clone)]
pub(super) struct Stopper(Arc<Stop>);

impl Stopper {
    pub fn stop(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.waker.wake();
    }

    fn requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }
}

pub(super) struct Listener {
    /// Open until we are done with the path: while the socket is open its inode cannot be reused,
    /// which keeps the identity check sound.
    listener: UnixListener,
    path: PathBuf,
    identity: FileIdentity,
    stop: Stopper,
    watch: Watch,
    notes: Vec<String>,
    /// The file went away between the bind and the start of the watch.
    removed_early: bool,
    closed: bool,
}

impl Listener {
    pub fn bind(dir: &Path, path: &Path) -> io::Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| context(e, format!("cannot create {}", dir.display())))?;
        let stop = Stopper(Arc::new(Stop {
            requested: AtomicBool::new(false),
            waker: Waker::new()?,
        }));
        let listener = bind_private(path)?;
        let ours = |listener: UnixListener| -> io::Result<(UnixListener, FileIdentity)> {
            let identity = FileIdentity::of(path)?;
            listener.set_nonblocking(true)?;
            Ok((listener, identity))
        };
        let (listener, identity) = ours(listener).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })?;
        let mut notes = Vec::new();
        let watch = match Watch::new(dir, path, &listener, &stop.0.waker, &mut notes) {
            Ok(watch) => watch,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let mut listener = Self {
            listener,
            path: path.to_path_buf(),
            identity,
            stop,
            watch,
            notes,
            removed_early: false,
            closed: false,
        };
        // A removal before the watch existed sent no event.
        listener.removed_early = !identity.matches(path);
        Ok(listener)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    pub fn accept(&mut self) -> io::Result<Incoming> {
        loop {
            if self.stop.requested() {
                return Ok(Incoming::Stopped);
            }
            if std::mem::take(&mut self.removed_early) {
                return Ok(Incoming::Removed);
            }
            let ready = self.watch.wait(&self.listener, &self.stop.0.waker)?;
            if ready.stop || self.stop.requested() {
                return Ok(Incoming::Stopped);
            }
            if ready.changed {
                self.watch.drain();
                if !self.identity.matches(&self.path) {
                    return Ok(Incoming::Removed);
                }
            }
            if ready.accept {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        // Accepted sockets inherit O_NONBLOCK from the listener on BSD and macOS.
                        stream.set_nonblocking(false)?;
                        return Ok(Incoming::Connection(IpcStream(Stream(stream))));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    pub fn close(mut self) -> io::Result<()> {
        self.closed = true;
        self.remove_if_ours()
    }

    fn remove_if_ours(&self) -> io::Result<()> {
        if !self.identity.matches(&self.path) {
            return Ok(());
        }
        std::fs::remove_file(&self.path)
            .map_err(|e| context(e, format!("cannot remove {}", self.path.display())))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.remove_if_ours();
        }
    }
}

/// Binds under umask 077, so the socket is never reachable by anyone but root, even for an instant.
/// A leftover socket nobody answers on is replaced; a live one is refused.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let bind = || {
        let old = umask(Mode::from_bits_truncate(0o077));
        let result = UnixListener::bind(path);
        umask(old);
        result
    };
    let listener = match bind() {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket());
            if !is_socket {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; remove it", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} answers", path.display()),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| context(e, format!("cannot remove {}", path.display())))?;
            bind().map_err(|e| context(e, format!("cannot bind {}", path.display())))?
        }
        Err(e) => return Err(context(e, format!("cannot bind {}", path.display()))),
    };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(path);
        return Err(context(
            e,
            format!("cannot make {} private", path.display()),
        ));
    }
    Ok(listener)
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(super) struct Stream(UnixStream);

impl Stream {
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }

    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }

    pub fn shutdown(&self) -> io::Result<()> {
        match self.0.shutdown(std::net::Shutdown::Both) {
            // The peer went first: already as shut as it gets.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }

    // The socket is blocking, so WouldBlock can only mean that a timeout passed.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match (&self.0).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(timed_out("read")),
            other => other,
        }
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match (&self.0).write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(timed_out("write")),
            other => other,
        }
    }
}

pub(super) fn connect(path: &Path) -> io::Result<Stream> {
    UnixStream::connect(path).map(Stream)
}

pub(super) fn list(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory: nothing was ever served here.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(context(e, format!("cannot list {}", dir.display()))),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_socket()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let iface = name.strip_suffix(".sock")?;
            (!iface.is_empty() && UnixStream::connect(entry.path()).is_ok())
                .then(|| iface.to_string())
        })
        .collect())
}

pub(super) fn exists(_dir: &Path, path: &Path, _iface: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
