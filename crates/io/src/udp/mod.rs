//! UDP sockets for the data plane: a group of dual-stack sockets sharing one port (SO_REUSEPORT), with
//! batched receive (recvmmsg + UDP GRO) and segmented send (UDP GSO) through quinn-udp, options through
//! socket2.

mod gso;

pub use gso::GSO_RETRY_AFTER;

use crate::sockwait::SocketReadiness;
use crate::wait::WaitHandle;
use gso::GsoSwitch;
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Instant;

/// The receive queue absorbs the moments its worker is not running (on a busy machine, milliseconds:
/// 5 ms of a 4.6 Gbit/s stream is 2.9 MB); what does not fit, the kernel drops — a ping as readily as
/// the bulk around it. Measured on the netns bench (bench/RESULTS.md, "Lost pings count; the UDP
/// receive buffer, again"): with 256 KiB (the kernel doubles it) 4 streams lost ~2,400 GRO trains in
/// 8 s and up to 3.6 % of the pings beside them; with 2 MiB 23-193 trains and no pings, for 1-2 ms more
/// ping p50 under load and no less throughput. (In 2025's slower data path 4 MiB stood as a 15 ms queue.)
const RECV_BUFFER_BYTES: usize = 2 << 20;
/// Sends go straight through veth/NIC queues; a large send buffer only absorbs GSO bursts.
const SEND_BUFFER_BYTES: usize = 4 << 20;

pub use quinn_udp::RecvMeta;

pub struct UdpSocket {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    gso: GsoSwitch,
    readiness: SocketReadiness,
    dual_stack: bool,
    port: u16,
}

/// Largest payload one GSO send may carry (the IP length field bounds the whole super-datagram).
pub const MAX_GSO_BYTES: usize = 65_000;

/// Turns an IPv4-mapped IPv6 address (as a dual-stack socket reports IPv4 peers) back into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// [`canonical`] for a bare address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Most sockets [`UdpSocket::bind_group`] binds to one port: the kernel spreads peers over a group only
/// on Linux (SO_REUSEPORT); elsewhere one socket serves every worker.
pub const MAX_GROUP: usize = if cfg!(target_os = "linux") {
    usize::MAX
} else {
    1
};

/// The descriptor, for system calls this type does not wrap (a load generator's sendmmsg).
#[cfg(unix)]
impl std::os::fd::AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }
}

impl UdpSocket {
    /// Binds `count` sockets to one port (0 = a random one) with SO_REUSEPORT, so the kernel spreads
    /// peers over them by flow hash and keeps each peer's datagrams on one socket (one worker, in
    /// order). A plain bind probes the port first, so a port held by another program is reported as
    /// in use instead of being silently shared.
    pub fn bind_group(port: u16, fwmark: u32, count: usize) -> io::Result<Vec<UdpSocket>> {
        let count = count.clamp(1, MAX_GROUP);
        if count == 1 {
            return Ok(vec![Self::bind_one(port, fwmark, false)?]);
        }
        if port != 0 {
            drop(Self::bind_one(port, fwmark, false)?);
        }
        let first = Self::bind_one(port, fwmark, true)?;
        let port = first.port;
        let mut out = vec![first];
        for _ in 1..count {
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
            let _ = (s, reuse_port);
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
            Err(e) if no_ipv6(&e) => {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                prepare(&s)?;
                s.bind(&SockAddr::from(SocketAddr::from(([0, 0, 0, 0], port))))?;
                (s, false)
            }
            Err(e) => return Err(e),
        };
        set_recv_buffer(&socket, RECV_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        allow_fragmentation(&socket, dual_stack);
        ignore_icmp_resets(&socket)?;
        let readiness = SocketReadiness::new(&socket)?;
        let port = socket.local_addr()?.port();
        let gso = GsoSwitch::new(state.max_gso_segments(), Instant::now());
        let s = Self {
            socket,
            state,
            gso,
            readiness,
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

    /// Readable when datagrams are waiting.
    pub fn wait_handle(&self) -> WaitHandle {
        self.readiness.handle()
    }

    /// Receives one datagram; `WouldBlock` when none is waiting. The source is canonical (IPv4 as IPv4).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.readiness.before_read();
        let (n, from) = self.socket.recv_from(buf)?;
        Ok((n, canonical(from)))
    }

    /// Sends one datagram to `to`, from the local address `from` when given (the address the peer
    /// talks to, so a multi-homed host answers from the address it was asked on).
    pub fn send_to(&self, buf: &[u8], to: SocketAddr, from: Option<IpAddr>) -> io::Result<()> {
        self.send_segments(buf, buf.len().max(1), to, from)
            .map(drop)
    }

    /// The address form this socket's family wants (IPv4 peers as v4-mapped on a dual-stack socket), for
    /// a caller that sends through the descriptor itself.
    pub fn native_address(&self, to: SocketAddr) -> SocketAddr {
        self.native(to)
    }

    fn native(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(a) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            other => other,
        }
    }

    /// Datagrams one GSO send may carry on this socket now: 1 when the kernel lacks UDP GSO, and for
    /// [`GSO_RETRY_AFTER`] after a GSO send failed.
    pub fn max_gso_segments(&self) -> usize {
        self.gso.segments(Instant::now)
    }

    /// Sends `contents` as datagrams of `segment_size` bytes (the last may be shorter) to one destination
    /// with a single system call (UDP GSO). If the kernel refuses the GSO send, sends one datagram at a
    /// time and keeps GSO off for a while ([`Self::max_gso_segments`]). Returns how many datagrams left:
    /// all of them, or — when the one-by-one fallback stopped part-way — those before the failure;
    /// an error only when none did.
    ///
    /// `from` picks the source address; if the system refuses it (the address went away), the datagrams
    /// leave from whatever address the routing table picks.
    pub fn send_segments(
        &self,
        contents: &[u8],
        segment_size: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<usize> {
        let destination = self.native(to);
        let segmented = contents.len() > segment_size;
        let datagrams = contents.len().div_ceil(segment_size.max(1)).max(1);
        let mut transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segmented.then_some(segment_size),
            src_ip: from,
        };
        let sock = || UdpSockRef::from(&self.socket);
        match self.state.try_send(sock(), &transmit) {
            Ok(()) => Ok(datagrams),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(_) if transmit.src_ip.is_some() => {
                transmit.src_ip = None;
                self.send_fallback(&transmit, datagrams)
            }
            Err(e) if segmented => self.gso_refused(&e, &transmit),
            Err(e) => Err(e),
        }
    }

    /// A send the kernel refused as asked: without the source address, then one datagram at a time.
    fn send_fallback(&self, transmit: &Transmit<'_>, datagrams: usize) -> io::Result<usize> {
        match self
            .state
            .try_send(UdpSockRef::from(&self.socket), transmit)
        {
            Ok(()) => Ok(datagrams),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock && transmit.segment_size.is_some() => {
                self.gso_refused(&e, transmit)
            }
            Err(e) => Err(e),
        }
    }

    /// The kernel refused a GSO send with `e`: GSO rests a while if the error names the offload, and
    /// the datagrams go one by one.
    fn gso_refused(&self, e: &io::Error, transmit: &Transmit<'_>) -> io::Result<usize> {
        if offload_refused(e) {
            self.gso.failed(Instant::now());
        }
        self.send_one_by_one(transmit)
    }

    /// Each datagram of a refused GSO send on its own; stops at the first failure.
    fn send_one_by_one(&self, transmit: &Transmit<'_>) -> io::Result<usize> {
        let mut sent = 0;
        for datagram in transmit
            .contents
            .chunks(transmit.segment_size.unwrap_or(usize::MAX))
        {
            match self.socket.send_to(datagram, transmit.destination) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Receives a batch (recvmmsg); with UDP GRO one buffer may hold several datagrams of `meta.stride`
    /// bytes each. Source addresses and the local addresses they arrived on (`dst_ip`) are canonical.
    /// `WouldBlock` when nothing is waiting. Where the system hands over one datagram per call (macOS
    /// without quinn-udp's private batching, Windows), it calls again until the batch is full or the
    /// socket is empty, so callers see batches everywhere.
    pub fn recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.readiness.before_read();
        let sock = || UdpSockRef::from(&self.socket);
        let mut n = self.state.recv(sock(), bufs, meta)?;
        if !cfg!(target_os = "linux") {
            while n < bufs.len().min(meta.len()) {
                match self.state.recv(sock(), &mut bufs[n..], &mut meta[n..]) {
                    Ok(0) => break,
                    Ok(more) => n += more,
                    // Drained (or a transient error): what we have is the batch.
                    Err(_) => break,
                }
            }
        }
        for m in &mut meta[..n] {
            m.addr = canonical(m.addr);
            m.dst_ip = m.dst_ip.map(canonical_ip);
        }
        Ok(n)
    }

    /// How many datagrams the kernel may coalesce into one received buffer.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Datagrams the kernel dropped for this socket before we could read them — almost always a full
    /// receive queue (UDP `RcvbufErrors`), rarely a bad checksum — or `None` where the platform keeps no
    /// per-socket count. A system call: for stats readers, never the data path.
    pub fn kernel_drops(&self) -> Option<u64> {
        socket_drops(&self.socket)
    }
}

/// Whether [`UdpSocket::kernel_drops`] reports anything on this platform.
pub const KERNEL_DROPS_COUNTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Linux: the socket's `sk_drops`, from `SO_MEMINFO` (Linux 4.6+). It is a `u32` in the kernel, so it
/// wraps after 4 billion drops; readers treat it as a counter that may reset.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn socket_drops(socket: &std::net::UdpSocket) -> Option<u64> {
    // include/uapi/linux/sock_diag.h: SK_MEMINFO_DROPS is the ninth of SK_MEMINFO_VARS u32 values.
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u8; 4 * (SK_MEMINFO_DROPS + 1)];
    let len =
        crate::sys::socket_option_bytes(socket, libc::SOL_SOCKET, libc::SO_MEMINFO, &mut info)?;
    let drops = info
        .get(4 * SK_MEMINFO_DROPS..4 * SK_MEMINFO_DROPS + 4)
        .filter(|_| len == info.len())?;
    Some(u64::from(u32::from_ne_bytes(drops.try_into().ok()?)))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn socket_drops(_socket: &std::net::UdpSocket) -> Option<u64> {
    None
}

/// Whether a failed GSO send names the offload itself (EINVAL: a segment above the route's MTU, too
/// many segments; EIO: a device that cannot segment), not the destination or a full buffer.
fn offload_refused(e: &io::Error) -> bool {
    #[cfg(unix)]
    return matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIO));
    #[cfg(not(unix))]
    return e.kind() == io::ErrorKind::InvalidInput;
}

/// Whether socket creation failed because the host has no IPv6.
pub(crate) fn no_ipv6(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::EAFNOSUPPORT);
    #[cfg(windows)]
    return e.raw_os_error() == Some(windows_sys::Win32::Networking::WinSock::WSAEAFNOSUPPORT);
    #[cfg(not(any(unix, windows)))]
    return false;
}

/// Windows reports an ICMP port-unreachable for an earlier send as WSAECONNRESET on the next receive,
/// which would stop a batch read for nothing; turn that off (SIO_UDP_CONNRESET), as wireguard-go does.
#[cfg(windows)]
fn ignore_icmp_resets(socket: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{SIO_UDP_CONNRESET, SOCKET, WSAIoctl};
    let off: u32 = 0;
    let mut returned: u32 = 0;
    // SAFETY: the socket is live for the call; the input is a live u32 of the stated size, there is no
    // output buffer, and the call is synchronous (no overlapped structure).
    let rc = unsafe {
        WSAIoctl(
            socket.as_raw_socket() as SOCKET,
            SIO_UDP_CONNRESET,
            (&off as *const u32).cast(),
            size_of::<u32>() as u32,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(windows))]
fn ignore_icmp_resets(_socket: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Asks for `bytes` of receive buffer: past the system's cap (`net.core.rmem_max`, 208 KiB on many
/// distributions) where we may (CAP_NET_ADMIN: SO_RCVBUFFORCE, as wireguard-go does), within it
/// otherwise. Best effort: a smaller buffer still works, it drops bursts sooner.
fn set_recv_buffer(socket: &Socket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let value = i32::try_from(bytes).unwrap_or(i32::MAX);
        // SAFETY: SO_RCVBUFFORCE takes an int.
        if unsafe {
            setsockopt(
                &socket.into(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &value,
            )
        } {
            return;
        }
    }
    let _ = socket.set_recv_buffer_size(bytes);
}

/// quinn-udp sets "don't fragment" for QUIC's path-MTU probing; a WireGuard tunnel lets the kernel
/// fragment oversized outer packets instead (as kernel WireGuard does), so a path with a small MTU keeps
/// working rather than black-holing full-size packets.
#[cfg(target_os = "linux")]
fn allow_fragmentation(socket: &std::net::UdpSocket, dual_stack: bool) {
    let sock = socket2::SockRef::from(socket);
    let dont = libc::IP_PMTUDISC_DONT;
    // SAFETY: IP_MTU_DISCOVER takes an int.
    unsafe { setsockopt(&sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &dont) };
    if dual_stack {
        let dont = libc::IPV6_PMTUDISC_DONT;
        // SAFETY: IPV6_MTU_DISCOVER takes an int.
        unsafe { setsockopt(&sock, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &dont) };
    }
}

/// macOS and Windows: quinn-udp sets the don't-fragment option (IP_DONTFRAG / IP_DONTFRAGMENT); clear it.
#[cfg(any(target_os = "macos", windows))]
fn allow_fragmentation(socket: &std::net::UdpSocket, dual_stack: bool) {
    #[cfg(target_os = "macos")]
    let (v4, v6) = (
        (libc::IPPROTO_IP, libc::IP_DONTFRAG),
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG),
    );
    #[cfg(windows)]
    let (v4, v6) = {
        use windows_sys::Win32::Networking::WinSock;
        (
            (WinSock::IPPROTO_IP, WinSock::IP_DONTFRAGMENT),
            (WinSock::IPPROTO_IPV6, WinSock::IPV6_DONTFRAG),
        )
    };
    let sock = socket2::SockRef::from(socket);
    let off: i32 = 0;
    let set = |(level, name): (i32, i32)| {
        // SAFETY: the socket is live for the call; the value is a live i32 of the stated size.
        unsafe { setsockopt(&sock, level, name, &off) };
    };
    set(v4);
    if dual_stack {
        set(v6);
    }
}

/// One integer socket option, best effort: whether it was set (a failure leaves the system default).
///
/// # Safety
/// `level`/`name` must name an option whose value is an `i32`.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
unsafe fn setsockopt(sock: &socket2::SockRef<'_>, level: i32, name: i32, value: &i32) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the caller guarantees the option takes an i32; `value` outlives the call.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (value as *const i32).cast(),
                size_of::<i32>() as _,
            ) == 0
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawSocket;
        use windows_sys::Win32::Networking::WinSock::{SOCKET, setsockopt};
        // SAFETY: the caller guarantees the option takes an i32; `value` outlives the call.
        unsafe {
            setsockopt(
                sock.as_raw_socket() as SOCKET,
                level,
                name,
                (value as *const i32).cast(),
                size_of::<i32>() as i32,
            ) == 0
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn allow_fragmentation(_socket: &std::net::UdpSocket, _dual_stack: bool) {}
