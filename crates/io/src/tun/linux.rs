//! Linux TUN through tun-rs, opened multi-queue (one queue per worker, each its own descriptor), with
//! IFF_VNET_HDR offloads when the kernel has them.

use super::{Coalescer, Offloads, ReadScratch, TunDevice, TunOptions, TunQueue};
use crate::wait::WaitHandle;
use std::io;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, SyncDevice};

pub(crate) use tun_rs::GROTable as GroTable;

const _: () = assert!(
    super::HEADROOM >= tun_rs::VIRTIO_NET_HDR_LEN,
    "HEADROOM must fit the virtio-net header"
);
const _: () = assert!(super::MAX_SEGMENTS == tun_rs::IDEAL_BATCH_SIZE);

struct LinuxQueue {
    dev: SyncDevice,
}

/// Why the TUN device could not be created, in words a user can act on.
fn explain_create_error(name: &str, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("cannot create interface {name}: permission denied — run as root or grant CAP_NET_ADMIN")
        }
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "cannot open /dev/net/tun — load the tun module (`modprobe tun`) or, in a container, pass the device in".to_string()
        }
        Some(libc::EBUSY) | Some(libc::EEXIST) | Some(libc::EINVAL) if crate::sys::interface_exists(name) => {
            already_exists(name)
        }
        _ => format!("cannot create interface {name}: {err}"),
    }
}

fn already_exists(name: &str) -> String {
    format!(
        "interface {name} already exists — pick another name or delete it (`ip link delete {name}`)"
    )
}

/// Creates the interface with `opts.queues` queues, with offloads when asked for and the kernel has them
/// (plain packets otherwise). Refuses a name that is already taken, since attaching to someone else's
/// multi-queue TUN would silently share its traffic.
pub(crate) fn create(opts: &TunOptions) -> Result<TunDevice, String> {
    let name = opts.name.as_str();
    if crate::sys::interface_exists(name) {
        return Err(already_exists(name));
    }
    let build = |offload: bool| {
        DeviceBuilder::new()
            .name(name)
            .mtu(opts.mtu)
            .multi_queue(true)
            .offload(offload)
            .enable(false)
            .build_sync()
    };
    let first = match build(opts.offload) {
        Ok(dev) => dev,
        // An old kernel without IFF_VNET_HDR/TUNSETOFFLOAD support: plain packets still work.
        Err(e)
            if opts.offload
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
    let mut devs = Vec::with_capacity(opts.queues.max(1));
    for _ in 1..opts.queues.max(1) {
        let q = first
            .try_clone()
            .map_err(|e| format!("cannot open another queue of {name}: {e}"))?;
        devs.push(q);
    }
    devs.insert(0, first);
    let queues = devs
        .into_iter()
        .map(|dev| {
            dev.set_nonblocking(true)
                .map_err(|e| format!("cannot make {name} non-blocking: {e}"))?;
            Ok(Arc::new(LinuxQueue { dev }) as Arc<dyn TunQueue>)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(TunDevice {
        name: name.to_string(),
        queues,
        offloads,
    })
}

impl TunQueue for LinuxQueue {
    fn recv_batch(
        &self,
        scratch: &mut ReadScratch,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev
            .recv_multiple(&mut scratch.buf, bufs, sizes, offset)
    }

    fn send_batch(
        &self,
        coalescer: &mut Coalescer,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        // A TUN write never waits for room: the kernel queues or drops, and says so in its counters.
        self.dev.send_multiple(&mut coalescer.gro, bufs, offset)?;
        Ok(0)
    }

    fn mtu(&self) -> io::Result<u16> {
        self.dev.mtu()
    }

    fn wait_handle(&self) -> WaitHandle {
        WaitHandle::from_fd(&self.dev)
    }

    fn is_gone(&self, error: &io::Error) -> bool {
        // EIO only means the link is administratively down (writes while `ip link set down`, or before
        // `up` at start-up): the interface is still there.
        matches!(
            error.raw_os_error(),
            Some(libc::ENODEV) | Some(libc::EBADFD)
        )
    }
}
