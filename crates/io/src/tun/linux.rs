//! Linux TUN through tun-rs, opened multi-queue (one queue per worker, each its own descriptor), with
//! IFF_VNET_HDR offloads when the kernel has them.

use super::gro::VNET_HDR_LEN;
use super::{
    Coalescer, Offloads, PacketSpan, ReadScratch, TunDevice, TunOptions, TunQueue, Unsent,
    check_spans,
};
use crate::wait::WaitHandle;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, SyncDevice};

const _: () = assert!(
    super::HEADROOM >= VNET_HDR_LEN && VNET_HDR_LEN == tun_rs::VIRTIO_NET_HDR_LEN,
    "HEADROOM must fit the virtio-net header"
);
const _: () = assert!(super::MAX_SEGMENTS == tun_rs::IDEAL_BATCH_SIZE);

/// Spans one write may have: a super-packet's first packet and up to 63 more payloads (gro's cap).
const MAX_SPANS: usize = 64;
const _: () = assert!(super::gro::MAX_SEGMENTS as usize <= MAX_SPANS);

struct LinuxQueue {
    dev: SyncDevice,
    /// IFF_VNET_HDR is on: every write starts with a virtio-net header, and may be a super-packet.
    offload: bool,
    /// The device also takes UDP super-packets (USO).
    udp_offload: bool,
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
            let queue = LinuxQueue {
                dev,
                offload: offloads.tcp,
                udp_offload: offloads.udp,
            };
            Ok(Arc::new(queue) as Arc<dyn TunQueue>)
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
        buf: &mut [u8],
        packets: &[PacketSpan],
    ) -> io::Result<Unsent> {
        check_spans(buf, packets)?;
        // A TUN write never waits for room: the kernel queues or drops, and says so in its counters.
        // One failed write does not stop the others; each of its packets (a coalesced write carries
        // several) is counted.
        if self.offload {
            coalescer.gro.plan(buf, packets, self.udp_offload);
        }
        let buf = &*buf;
        let mut unsent = Unsent::default();
        let mut write = |spans: &[PacketSpan]| match self.writev(buf, spans) {
            Ok(()) => Ok(()),
            Err(e) if self.is_gone(&e) => Err(e),
            Err(_) => {
                unsent.failed += spans.len();
                Ok(())
            }
        };
        if self.offload {
            for spans in coalescer.gro.writes() {
                write(spans)?;
            }
        } else {
            for span in packets {
                write(std::slice::from_ref(span))?;
            }
        }
        Ok(unsent)
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

impl LinuxQueue {
    /// Writes one packet made of `spans` of `buf` (at most [`MAX_SPANS`]).
    fn writev(&self, buf: &[u8], spans: &[PacketSpan]) -> io::Result<()> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_SPANS];
        let spans = &spans[..spans.len().min(MAX_SPANS)];
        for (v, &(start, len)) in iov.iter_mut().zip(spans) {
            let bytes = &buf[start..start + len];
            v.iov_base = bytes.as_ptr() as *mut libc::c_void;
            v.iov_len = bytes.len();
        }
        loop {
            // SAFETY: the first `spans.len()` iovecs point at in-bounds slices of `buf`, which outlives
            // the call; the kernel only reads them. The descriptor is the device's, open while `self` is.
            let n = unsafe {
                libc::writev(
                    self.dev.as_raw_fd(),
                    iov.as_ptr(),
                    spans.len() as libc::c_int,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}
