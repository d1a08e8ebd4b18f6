//! A TUN device made of a loopback UDP socket: each datagram is one IP packet. The test holds the other
//! end ([`FakeHost`]) and plays the operating system: it writes packets "from applications" into the
//! device and reads what the tunnel delivers. Real sockets, real readiness, on every platform — what
//! the engine's tests run over where no TUN driver exists (Windows CI under Wine) and beside the real
//! devices on Linux.

use super::{Coalescer, PacketSpan, ReadScratch, TunDevice, TunQueue, Unsent, check_spans};
use crate::sockwait::SocketReadiness;
use crate::wait::WaitHandle;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

const FAKE_BUFFER_BYTES: usize = 4 << 20;

struct State {
    mtu: AtomicU16,
    gone: AtomicBool,
}

struct FakeQueue {
    socket: UdpSocket,
    readiness: SocketReadiness,
    state: Arc<State>,
}

/// The operating system's side of a fake device.
pub struct FakeHost {
    socket: UdpSocket,
    state: Arc<State>,
}

fn gone_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the fake interface was removed")
}

/// Creates a fake device named `name` and the host side that drives it.
pub fn create(name: &str, mtu: u16) -> io::Result<(TunDevice, FakeHost)> {
    let device = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let host = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    device.connect(host.local_addr()?)?;
    host.connect(device.local_addr()?)?;
    // Room for a test's burst in both directions (a real device queues too: txqueuelen). Best effort:
    // the system may cap it.
    for s in [&device, &host] {
        let s = socket2::SockRef::from(s);
        let _ = s.set_recv_buffer_size(FAKE_BUFFER_BYTES);
        let _ = s.set_send_buffer_size(FAKE_BUFFER_BYTES);
    }
    device.set_nonblocking(true)?;
    let state = Arc::new(State {
        mtu: AtomicU16::new(mtu),
        gone: AtomicBool::new(false),
    });
    let readiness = SocketReadiness::new(&device)?;
    let queue = FakeQueue {
        socket: device,
        readiness,
        state: state.clone(),
    };
    Ok((
        TunDevice {
            name: name.to_string(),
            queues: vec![Arc::new(queue)],
            offloads: Default::default(),
        },
        FakeHost {
            socket: host,
            state,
        },
    ))
}

impl TunQueue for FakeQueue {
    fn recv_batch(
        &self,
        _scratch: &mut ReadScratch,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.readiness.before_read();
        let mut n = 0;
        while n < bufs.len().min(sizes.len()) {
            if self.state.gone.load(Ordering::Acquire) {
                return Err(gone_error());
            }
            let Some(room) = bufs[n].get_mut(offset..) else {
                break;
            };
            match self.socket.recv(room) {
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
        if self.state.gone.load(Ordering::Acquire) {
            return Err(gone_error());
        }
        check_spans(buf, packets)?;
        let mut unsent = Unsent::default();
        for &(start, len) in packets {
            match self.socket.send(&buf[start..start + len]) {
                Ok(_) => {}
                // A full socket buffer is what a full Wintun ring is: a drop, never a wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => unsent.full += 1,
                Err(e) if self.is_gone(&e) => return Err(e),
                Err(_) => unsent.failed += 1,
            }
        }
        Ok(unsent)
    }

    fn mtu(&self) -> io::Result<u16> {
        Ok(self.state.mtu.load(Ordering::Relaxed))
    }

    fn wait_handle(&self) -> WaitHandle {
        self.readiness.handle()
    }

    fn is_gone(&self, error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::BrokenPipe
    }
}

impl FakeHost {
    /// An application sends `packet` (a whole IP packet) into the interface.
    pub fn inject(&self, packet: &[u8]) -> io::Result<()> {
        self.socket.send(packet).map(drop)
    }

    /// The next packet the tunnel delivered to the interface, within `timeout`.
    pub fn receive(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; super::MAX_PACKET];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).ok()?;
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// The user changes the interface's MTU.
    pub fn set_mtu(&self, mtu: u16) {
        self.state.mtu.store(mtu, Ordering::Relaxed);
    }

    /// The interface is deleted: the device's next read or write fails as a removed interface does.
    pub fn remove_interface(&self) {
        self.state.gone.store(true, Ordering::Release);
        // Wakes a reader sleeping on the device.
        let _ = self.socket.send(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cross_both_ways_and_removal_is_reported() {
        let (dev, host) = create("fake0", 1420).unwrap();
        let q = &dev.queues[0];
        host.inject(b"\x45hello").unwrap();
        let mut ready = [crate::wait::Ready::default()];
        crate::wait::wait(&[q.wait_handle()], &mut ready, Some(Duration::from_secs(5))).unwrap();
        assert!(ready[0].readable);
        let mut scratch = ReadScratch::new();
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let mut bufs: [&mut [u8]; 2] = [&mut a, &mut b];
        let mut sizes = [0usize; 2];
        let n = q
            .recv_batch(&mut scratch, &mut bufs, &mut sizes, 16)
            .unwrap();
        assert_eq!((n, sizes[0]), (1, 6));
        assert_eq!(&bufs[0][16..22], b"\x45hello");
        let mut out = vec![0u8; 16];
        out.extend_from_slice(b"\x45back");
        assert_eq!(
            q.send_batch(&mut Coalescer::new(), &mut out, &[(16, 5)])
                .unwrap(),
            Unsent::default()
        );
        let unroomy = q.send_batch(&mut Coalescer::new(), &mut out, &[(4, 5)]);
        assert_eq!(unroomy.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(host.receive(Duration::from_secs(5)).unwrap(), b"\x45back");
        host.remove_interface();
        let err = q
            .recv_batch(&mut scratch, &mut bufs, &mut sizes, 16)
            .unwrap_err();
        assert!(q.is_gone(&err));
    }
}
