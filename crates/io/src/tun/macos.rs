//! macOS utun through tun-rs: one descriptor, one packet per system call, no offloads. tun-rs adds and
//! strips utun's 4-byte address-family header itself. The kernel names the device `utunN`; asking
//! for the bare name `utun` lets it pick N (as wireguard-go does), and [`TunDevice::name`] tells which.

use super::{
    Coalescer, Offloads, PacketSpan, ReadScratch, TunDevice, TunOptions, TunQueue, Unsent,
    check_spans,
};
use crate::wait::WaitHandle;
use std::io;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, SyncDevice};

struct UtunQueue {
    dev: SyncDevice,
}

pub(crate) fn create(opts: &TunOptions) -> Result<TunDevice, String> {
    let name = opts.name.as_str();
    let valid = name == "utun"
        || name
            .strip_prefix("utun")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(format!(
            "interface name {name:?} is not possible on macOS: use `utun` (the system picks utunN) or `utunN`"
        ));
    }
    let mut builder = DeviceBuilder::new()
        .mtu(opts.mtu)
        // Routes are added by `fastwire up` the way wg-quick adds them, not implied by addresses.
        .associate_route(false);
    if name != "utun" {
        builder = builder.name(name);
    }
    let dev = builder.build_sync().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("cannot create {name}: permission denied — run as root (sudo)")
        }
        Some(libc::EBUSY) | Some(libc::EADDRINUSE) => {
            format!(
                "{name} is already in use — pick another utunN, or `utun` to let the system pick"
            )
        }
        _ => format!("cannot create {name}: {e}"),
    })?;
    let real = dev
        .name()
        .map_err(|e| format!("cannot read the name of the new utun device: {e}"))?;
    dev.set_nonblocking(true)
        .map_err(|e| format!("cannot make {real} non-blocking: {e}"))?;
    Ok(TunDevice {
        name: real,
        queues: vec![Arc::new(UtunQueue { dev })],
        offloads: Offloads::default(),
    })
}

impl TunQueue for UtunQueue {
    fn recv_batch(
        &self,
        _scratch: &mut ReadScratch,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < bufs.len().min(sizes.len()) {
            match self.dev.recv(&mut bufs[n][offset..]) {
                Ok(len) => {
                    sizes[n] = len;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn send_batch(
        &self,
        _coalescer: &mut Coalescer,
        buf: &mut [u8],
        packets: &[PacketSpan],
    ) -> io::Result<Unsent> {
        check_spans(buf, packets)?;
        let mut unsent = Unsent::default();
        for &(start, len) in packets {
            match self.dev.send(&buf[start..start + len]) {
                Ok(_) => {}
                // The interface queue is full: a drop, never a wait.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => {
                    unsent.full += 1
                }
                Err(e) if self.is_gone(&e) => return Err(e),
                Err(_) => unsent.failed += 1,
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
        matches!(
            error.raw_os_error(),
            Some(libc::ENXIO) | Some(libc::EBADF) | Some(libc::ENOTCONN)
        )
    }
}
