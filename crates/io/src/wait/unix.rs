//! poll(2) over descriptors; the waker is an eventfd on Linux and a non-blocking pipe elsewhere.

use super::{Ready, WaitHandle};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub(crate) type RawHandle = RawFd;

impl WaitHandle {
    /// The readiness of a descriptor (a socket, a TUN queue).
    pub fn from_fd(fd: &impl AsRawFd) -> Self {
        Self(fd.as_raw_fd())
    }
}

pub(crate) fn wait(
    handles: &[WaitHandle],
    ready: &mut [Ready],
    timeout: Option<Duration>,
) -> io::Result<()> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; super::MAX_HANDLES];
    for (p, h) in pfds.iter_mut().zip(handles) {
        p.fd = h.0;
        p.events = libc::POLLIN;
    }
    let timeout_ms = match timeout {
        None => -1,
        // Rounded up, so a short timeout does not become a busy poll.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
    };
    // SAFETY: `pfds[..handles.len()]` is a valid, initialised array of pollfd that outlives the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), handles.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(())
        } else {
            Err(err)
        };
    }
    for (r, p) in ready.iter_mut().zip(&pfds[..handles.len()]) {
        r.readable = p.revents & libc::POLLIN != 0;
        r.failed = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    }
    Ok(())
}

pub(crate) struct Waker {
    /// Read end (the eventfd itself on Linux).
    read: OwnedFd,
    /// Write end of the pipe; `None` on Linux, where the eventfd is both.
    write: Option<OwnedFd>,
}

impl Waker {
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the returned descriptor is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively.
        let read = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { read, write: None })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two c_ints for pipe to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: fcntl on a descriptor we own, with integer arguments only.
            unsafe {
                let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(Self {
            read,
            write: Some(write),
        })
    }

    pub fn wake(&self) {
        let fd = self.write.as_ref().unwrap_or(&self.read).as_raw_fd();
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd or pipe. A full counter or pipe
        // (EAGAIN) is already a pending wake-up.
        unsafe {
            libc::write(fd, (&one as *const u64).cast(), 8);
        }
    }

    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live local buffer of the given length from our own non-blocking fd.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            // An eventfd is drained by one read; a pipe may hold several wake-ups.
            if n <= 0 || self.write.is_none() || (n as usize) < buf.len() {
                return;
            }
        }
    }

    pub fn raw(&self) -> RawHandle {
        self.read.as_raw_fd()
    }
}
