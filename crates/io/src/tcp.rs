//! TCP sockets for the WireGuard-over-TCP transport: the listener and outgoing connections, set up for a
//! tunnel (no Nagle delay, little unsent data queued in the kernel, the fwmark that keeps them out of the
//! tunnel's own routes). Returned non-blocking, as std types, for the engine's event loop to own.

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};

/// Unsent bytes the kernel may hold per connection beyond what is in flight, until the engine has
/// measured the path ([`set_unsent_limit`]). Small, so a bulk transfer inside the tunnel cannot build a
/// standing queue here that delays everything behind it (seed 001: TCP over TCP must let the inner
/// congestion control see the real path).
pub const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Binds a listener on `port` on all addresses: IPv6 dual-stack when the host has IPv6, IPv4 otherwise.
pub fn listen(port: u16, fwmark: u32) -> io::Result<TcpListener> {
    let socket = match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(s) => {
            s.set_only_v6(false)?;
            s.set_reuse_address(true)?;
            s.bind(&SockAddr::from(SocketAddr::from((
                Ipv6Addr::UNSPECIFIED,
                port,
            ))))?;
            s
        }
        Err(e) if crate::udp::no_ipv6(&e) => {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.bind(&SockAddr::from(SocketAddr::from(([0, 0, 0, 0], port))))?;
            s
        }
        Err(e) => return Err(e),
    };
    set_mark(&socket, fwmark)?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Starts a non-blocking connect to `to`; completion shows as writability (then check `take_error`).
pub fn connect(to: SocketAddr, fwmark: u32) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    set_mark(&socket, fwmark)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        // In progress: EINPROGRESS on Unix, WSAEWOULDBLOCK (WouldBlock) on Windows.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let stream: TcpStream = socket.into();
    tune(&stream, fwmark)?;
    Ok(stream)
}

/// Settings for every tunnel connection, accepted or ours (any socket type that wraps a TCP socket).
pub fn tune<S>(stream: &S, fwmark: u32) -> io::Result<()>
where
    for<'a> SockRef<'a>: From<&'a S>,
{
    let s = SockRef::from(stream);
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    set_mark(&s, fwmark)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // Best effort: an old kernel without these still carries the tunnel.
        let _ = set_unsent_limit(stream, NOTSENT_LOWAT);
        // A path that silently dies (no RST ever arrives) is noticed within about a minute.
        let _ = s.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(std::time::Duration::from_secs(15))
                .with_interval(std::time::Duration::from_secs(5))
                .with_retries(3),
        );
        let _ = s.set_tcp_user_timeout(Some(std::time::Duration::from_secs(30)));
    }
    Ok(())
}

/// Changes how many unsent bytes the kernel takes before the socket stops being writable
/// (TCP_NOTSENT_LOWAT, Linux); a no-op elsewhere.
pub fn set_unsent_limit<S>(stream: &S, bytes: u32) -> io::Result<()>
where
    for<'a> SockRef<'a>: From<&'a S>,
{
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return SockRef::from(stream).set_tcp_notsent_lowat(bytes);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (stream, bytes);
        Ok(())
    }
}

/// One delivery rate sample of a connection (TCP_INFO, Linux 4.9+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRate {
    /// How fast the path took data in the latest sample, bytes per second.
    pub bytes_per_sec: u64,
    /// The sender had nothing more to send during the sample: the path may be faster than it says.
    pub app_limited: bool,
}

/// The connection's latest delivery rate sample; `None` where the platform does not say.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn delivery_rate<S: std::os::fd::AsRawFd>(stream: &S) -> Option<DeliveryRate> {
    // Read as bytes: the app-limited flag is a bitfield in what libc's struct leaves as padding.
    let mut raw = [0u8; 512];
    let asked = size_of::<libc::tcp_info>().min(raw.len());
    let len = crate::sys::socket_option_bytes(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        &mut raw[..asked],
    )?;
    let at = std::mem::offset_of!(libc::tcp_info, tcpi_delivery_rate);
    // An older kernel's shorter tcp_info ends before the field.
    let rate = raw.get(at..at + 8).filter(|_| len >= at + 8)?;
    // include/uapi/linux/tcp.h: the eighth byte holds tcpi_delivery_rate_app_limited:1 first.
    let flags = raw[7];
    let app_limited = if cfg!(target_endian = "little") {
        flags & 0x01 != 0
    } else {
        flags & 0x80 != 0
    };
    Some(DeliveryRate {
        bytes_per_sec: u64::from_ne_bytes(rate.try_into().ok()?),
        app_limited,
    })
}

/// The platform does not report a delivery rate.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn delivery_rate<S>(_stream: &S) -> Option<DeliveryRate> {
    None
}

/// Sets SO_MARK (0 clears it); a no-op where the platform has no fwmark.
pub fn set_fwmark<S>(stream: &S, fwmark: u32) -> io::Result<()>
where
    for<'a> SockRef<'a>: From<&'a S>,
{
    set_mark(&SockRef::from(stream), fwmark)
}

fn set_mark(socket: &Socket, fwmark: u32) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // Marking needs CAP_NET_ADMIN; unmarked is the default, so clearing is skipped when never set.
        if fwmark != 0 || socket.mark().unwrap_or(0) != 0 {
            socket.set_mark(fwmark)?;
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (socket, fwmark);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn listener_accepts_ipv4_and_connect_completes() {
        let listener = listen(0, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = connect(SocketAddr::from(([127, 0, 0, 1], port)), 0).unwrap();
        let mut accepted = None;
        for _ in 0..200 {
            if let Ok((s, _)) = listener.accept() {
                accepted = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut accepted = accepted.expect("connection accepted");
        tune(&accepted, 0).unwrap();
        accepted.set_nonblocking(false).unwrap();
        client.set_nonblocking(false).unwrap();
        client.write_all(b"\x00\x01x").unwrap();
        let mut buf = [0u8; 3];
        accepted.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\x00\x01x");
    }

    /// A connection that carried data has a delivery rate, and its unsent limit can be changed.
    #[test]
    fn delivery_rate_and_unsent_limit() {
        let listener = listen(0, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = connect(SocketAddr::from(([127, 0, 0, 1], port)), 0).unwrap();
        let mut accepted = loop {
            if let Ok((s, _)) = listener.accept() {
                break s;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        client.set_nonblocking(false).unwrap();
        set_unsent_limit(&client, 16 * 1024).unwrap();
        let data = vec![7u8; 4 << 20];
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 4 << 20];
            accepted.set_nonblocking(false).unwrap();
            accepted.read_exact(&mut got).unwrap();
            got
        });
        client.write_all(&data).unwrap();
        assert_eq!(reader.join().unwrap(), data);
        let rate = delivery_rate(&client);
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert!(rate.is_some_and(|r| r.bytes_per_sec > 0), "{rate:?}");
        } else {
            assert_eq!(rate, None);
        }
    }
}
