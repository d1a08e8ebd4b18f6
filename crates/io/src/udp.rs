//! UDP sockets for the data plane: a group of dual-stack sockets sharing one port (SO_REUSEPORT), with
//! batched receive (recvmmsg + UDP GRO) and segmented send (UDP GSO) through quinn-udp, options through
//! socket2.

use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd};

/// The receive queue is where a bulk transfer's standing queue builds when the decrypting worker is the
/// bottleneck: its size is added latency for every packet behind it. Measured on the netns bench
/// (bench/RESULTS.md, "Receive buffer"): 4 MiB gave ~15 ms median ping under a 4-stream load, 256 KiB
/// (the kernel doubles it) ~3 ms with the same throughput; smaller starved a single stream.
const RECV_BUFFER_BYTES: usize = 256 << 10;
/// Sends go straight through veth/NIC queues; a large send buffer only absorbs GSO bursts.
const SEND_BUFFER_BYTES: usize = 4 << 20;

pub use quinn_udp::RecvMeta;

pub struct UdpSocket {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
    port: u16,
}

/// Largest payload one GSO send may carry (the IP length field bounds the whole super-datagram).
pub const MAX_GSO_BYTES: usize = 65_000;

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
        let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        allow_fragmentation(&socket, dual_stack);
        let port = socket.local_addr()?.port();
        let s = Self {
            socket,
            state,
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
        self.socket.send_to(buf, self.native(to))
    }

    /// The address form this socket's family wants (IPv4 peers as v4-mapped on a dual-stack socket).
    fn native(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(a) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            other => other,
        }
    }

    /// Datagrams one GSO send may carry on this socket (1 when the kernel lacks UDP GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents` as datagrams of `segment_size` bytes (the last may be shorter) to one destination
    /// with a single system call (UDP GSO). Falls back to one send per datagram if the kernel refuses GSO.
    pub fn send_segments(
        &self,
        contents: &[u8],
        segment_size: usize,
        to: SocketAddr,
    ) -> io::Result<()> {
        let destination = self.native(to);
        let segmented = contents.len() > segment_size;
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segmented.then_some(segment_size),
            src_ip: None,
        };
        match self
            .state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
        {
            Err(e) if segmented && e.kind() != io::ErrorKind::WouldBlock => {
                for datagram in contents.chunks(segment_size) {
                    self.socket.send_to(datagram, destination)?;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Receives a batch (recvmmsg); with UDP GRO one buffer may hold several datagrams of `meta.stride`
    /// bytes each. Source addresses are canonical. `WouldBlock` when nothing is waiting.
    pub fn recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let n = self
            .state
            .recv(UdpSockRef::from(&self.socket), bufs, meta)?;
        for m in &mut meta[..n] {
            m.addr = canonical(m.addr);
        }
        Ok(n)
    }

    /// How many datagrams the kernel may coalesce into one received buffer.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[cfg(unix)]
impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// quinn-udp sets "don't fragment" for QUIC's path-MTU probing; a WireGuard tunnel lets the kernel
/// fragment oversized outer packets instead (as kernel WireGuard does), so a path with a small MTU keeps
/// working rather than black-holing full-size packets.
#[cfg(target_os = "linux")]
fn allow_fragmentation(socket: &std::net::UdpSocket, dual_stack: bool) {
    let set = |level, name, value: libc::c_int| {
        let fd = socket.as_raw_fd();
        // SAFETY: `fd` is a live socket we own; the option value points to a c_int that outlives the call.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as _,
            );
        }
    };
    set(
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    );
    if dual_stack {
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn allow_fragmentation(_socket: &std::net::UdpSocket, _dual_stack: bool) {}
