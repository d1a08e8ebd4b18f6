//! Linux TUN through tun-rs, opened multi-queue: one queue per worker, each with its own file descriptor.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use tun_rs::{DeviceBuilder, SyncDevice};

pub use tun_rs::{ExpandBuffer, GROTable as GroTable, VIRTIO_NET_HDR_LEN};

/// Most segments one TUN read can split into (a 64 KiB TSO super-packet of small segments).
pub const MAX_SEGMENTS: usize = tun_rs::IDEAL_BATCH_SIZE;

/// One queue of a (possibly multi-queue) TUN device, non-blocking.
pub struct TunQueue {
    dev: SyncDevice,
}

/// What the kernel gave us for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// IFF_VNET_HDR with TSO4/TSO6: reads may be TCP super-packets, writes may be coalesced.
    pub tcp: bool,
    /// USO4/USO6 as well (kernel 6.2+).
    pub udp: bool,
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
    /// Creates the interface `name` with `queues` queues, with TUN offloads when `offload` is asked for
    /// and the kernel has them (falling back to plain packets otherwise). Refuses a name that is already
    /// taken, since attaching to someone else's multi-queue TUN would silently share its traffic.
    pub fn create(
        name: &str,
        queues: usize,
        mtu: u16,
        offload: bool,
    ) -> Result<(Vec<TunQueue>, Offloads), String> {
        if crate::sys::interface_exists(name) {
            return Err(format!(
                "interface {name} already exists — pick another name or delete it (`ip link delete {name}`)"
            ));
        }
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(name)
                .mtu(mtu)
                .multi_queue(true)
                .offload(offload)
                .enable(false)
                .build_sync()
        };
        let first = match build(offload) {
            Ok(dev) => dev,
            // An old kernel without IFF_VNET_HDR/TUNSETOFFLOAD support: plain packets still work.
            Err(e)
                if offload
                    && e.raw_os_error() == Some(libc::EINVAL)
                    && !crate::sys::interface_exists(name) =>
            {
                build(false).map_err(|e| explain_create_error(name, &e))?
            }
            Err(e) => return Err(explain_create_error(name, &e)),
        };
        let offloads = Offloads {
            tcp: first.tcp_gso(),
            udp: first.udp_gso(),
        };
        let mut out = Vec::with_capacity(queues.max(1));
        for _ in 1..queues.max(1) {
            let q = first
                .try_clone()
                .map_err(|e| format!("cannot open another queue of {name}: {e}"))?;
            out.push(q);
        }
        out.insert(0, first);
        let queues = out
            .into_iter()
            .map(|dev| {
                dev.set_nonblocking(true)
                    .map_err(|e| format!("cannot make {name} non-blocking: {e}"))?;
                Ok(TunQueue { dev })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((queues, offloads))
    }

    /// Reads one packet, or one TSO/USO super-packet split into segments: segment `i` lands at
    /// `bufs[i][offset..offset + sizes[i]]`. `scratch` must hold `VIRTIO_NET_HDR_LEN + 65535` bytes.
    /// Returns the number of segments; `WouldBlock` when nothing is waiting.
    pub fn recv_batch(
        &self,
        scratch: &mut [u8],
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev.recv_multiple(scratch, bufs, sizes, offset)
    }

    /// Writes packets (each at `bufs[i][offset..]`, `offset >= VIRTIO_NET_HDR_LEN`), coalescing TCP/UDP
    /// segments of one flow into super-packets with `gro` when offloads are on.
    pub fn send_batch(
        &self,
        gro: &mut GroTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev.send_multiple(gro, bufs, offset)
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
