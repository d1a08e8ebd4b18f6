//! Linux TUN through tun-rs, opened multi-queue: one queue per worker, each with its own file descriptor.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use tun_rs::{DeviceBuilder, SyncDevice};

/// One queue of a (possibly multi-queue) TUN device, non-blocking.
pub struct TunQueue {
    dev: SyncDevice,
}

/// Why the TUN device could not be created, in words a user can act on.
pub fn explain_create_error(name: &str, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("cannot create interface {name}: permission denied — run as root or grant CAP_NET_ADMIN")
        }
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "cannot open /dev/net/tun — load the tun module (`modprobe tun`) or, in a container, pass the device in".to_string()
        }
        Some(libc::EBUSY) | Some(libc::EEXIST) | Some(libc::EINVAL) if crate::sys::interface_exists(name) => {
            format!("interface {name} already exists — pick another name or delete it (`ip link delete {name}`)")
        }
        _ => format!("cannot create interface {name}: {err}"),
    }
}

impl TunQueue {
    /// Creates the interface `name` with `queues` queues. Refuses a name that is already taken, since
    /// attaching to someone else's multi-queue TUN would silently share its traffic.
    pub fn create(name: &str, queues: usize, mtu: u16) -> Result<Vec<TunQueue>, String> {
        if crate::sys::interface_exists(name) {
            return Err(format!(
                "interface {name} already exists — pick another name or delete it (`ip link delete {name}`)"
            ));
        }
        let first = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .multi_queue(true)
            .enable(false)
            .build_sync()
            .map_err(|e| explain_create_error(name, &e))?;
        let mut out = Vec::with_capacity(queues.max(1));
        for _ in 1..queues.max(1) {
            let q = first
                .try_clone()
                .map_err(|e| format!("cannot open another queue of {name}: {e}"))?;
            out.push(q);
        }
        out.insert(0, first);
        out.into_iter()
            .map(|dev| {
                dev.set_nonblocking(true)
                    .map_err(|e| format!("cannot make {name} non-blocking: {e}"))?;
                Ok(TunQueue { dev })
            })
            .collect()
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }

    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet)
    }

    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        self.dev.set_mtu(mtu)
    }

    pub fn mtu(&self) -> io::Result<u16> {
        self.dev.mtu()
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}
