//! UDP sockets for the data plane: one dual-stack socket per device, options through socket2.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd};

/// Socket buffer size: enough for bursts at multi-Gbit/s without building a queue that adds latency.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

pub struct UdpSocket {
    socket: std::net::UdpSocket,
    dual_stack: bool,
    port: u16,
}

/// Turns an IPv4-mapped IPv6 address (as a dual-stack socket reports IPv4 peers) back into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, a.port())),
            None => addr,
        },
        v4 => v4,
    }
}

impl UdpSocket {
    /// Binds `count` sockets to one port (0 = a random one) with SO_REUSEPORT, so the kernel spreads
    /// peers over them by flow hash and keeps each peer's datagrams on one socket (one worker, in
    /// order). A plain bind probes the port first, so a port held by another program is reported as
    /// in use instead of being silently shared.
    pub fn bind_group(port: u16, fwmark: u32, count: usize) -> io::Result<Vec<UdpSocket>> {
        if port != 0 {
            drop(Self::bind_one(port, fwmark, false)?);
        }
        let first = Self::bind_one(port, fwmark, true)?;
        let port = first.port;
        let mut out = vec![first];
        for _ in 1..count.max(1) {
            out.push(Self::bind_one(port, fwmark, true)?);
        }
        Ok(out)
    }

    /// Binds `port` (0 = any) on all addresses, IPv6 dual-stack when the host has IPv6, IPv4 otherwise.
    pub fn bind(port: u16, fwmark: u32) -> io::Result<Self> {
        Self::bind_one(port, fwmark, false)
    }

    fn bind_one(port: u16, fwmark: u32, reuse_port: bool) -> io::Result<Self> {
        let prepare = |s: &Socket| -> io::Result<()> {
            #[cfg(unix)]
            if reuse_port {
                s.set_reuse_port(true)?;
            }
            #[cfg(not(unix))]
            let _ = reuse_port;
            Ok(())
        };
        let (socket, dual_stack) = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        {
            Ok(s) => {
                s.set_only_v6(false)?;
                prepare(&s)?;
                s.bind(&SockAddr::from(SocketAddr::from((
                    Ipv6Addr::UNSPECIFIED,
                    port,
                ))))?;
                (s, true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                prepare(&s)?;
                s.bind(&SockAddr::from(SocketAddr::from(([0, 0, 0, 0], port))))?;
                (s, false)
            }
            Err(e) => return Err(e),
        };
        // Best effort: a smaller buffer still works, it only drops bursts sooner.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        let port = socket.local_addr()?.port();
        let s = Self {
            socket,
            dual_stack,
            port,
        };
        if fwmark != 0 {
            s.set_fwmark(fwmark)?;
        }
        Ok(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Marks outgoing packets (SO_MARK) so policy routing can keep them out of the tunnel.
    #[cfg(target_os = "linux")]
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        socket2::SockRef::from(&self.socket).set_mark(mark)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn set_fwmark(&self, _mark: u32) -> io::Result<()> {
        Ok(())
    }

    /// Receives one datagram; `WouldBlock` when none is waiting. The source is canonical (IPv4 as IPv4).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf)?;
        Ok((n, canonical(from)))
    }

    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match to {
            SocketAddr::V4(a) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            other => other,
        };
        self.socket.send_to(buf, to)
    }
}

#[cfg(unix)]
impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
