//! TCP sockets for the WireGuard-over-TCP transport: the listener and outgoing connections, set up for a
//! tunnel (no Nagle delay, little unsent data queued in the kernel, the fwmark that keeps them out of the
//! tunnel's own routes). Returned non-blocking, as std types, for the engine's event loop to own.

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Unsent bytes the kernel may hold per connection beyond what is in flight. Small, so a bulk transfer
/// inside the tunnel cannot build a standing queue here that delays everything behind it (seed 001:
/// TCP over TCP must let the inner congestion control see the real path).
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
        let _ = s.set_tcp_notsent_lowat(NOTSENT_LOWAT);
        // A path that silently dies (no RST ever arrives) is noticed within about a minute.
        let _ = s.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(std::time::Duration::from_secs(15))
                .with_interval(std::time::Duration::from_secs(5))
                .with_retries(3),
        );
        let _ = s.set_tcp_user_timeout(Some(std::time::Duration::from_secs(30)));
        // For `read_with_age`: how long received bytes waited in the kernel is the queue's delay.
        let _ = enable_arrival_times(&s);
    }
    Ok(())
}

/// Whether [`read_with_age`] reports an age on this platform.
pub const ARRIVAL_AGE_KNOWN: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Reads like `read`, and says how long the last bytes it returned waited in the socket's receive queue
/// (from the kernel's arrival stamp, SO_TIMESTAMPNS, which [`tune`] turns on). A reader that takes the
/// queue in bounded chunks so sees the delay of the queue in front of it, the sojourn time an AQM needs.
/// `None` where the platform stamps no TCP data or the stamp is missing.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn read_with_age<S: std::os::fd::AsRawFd>(
    stream: &S,
    buf: &mut [u8],
) -> io::Result<(usize, Option<Duration>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one SCM_TIMESTAMPNS message (a cmsghdr and a timespec: 32 bytes), u64-aligned.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (describing `buf`, writable for its length) and at `control`
    // (writable for `msg_controllen` bytes); all outlive the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CMSG_LEN is arithmetic on its argument.
    let stamp_len = unsafe { libc::CMSG_LEN(size_of::<libc::timespec>() as u32) } as usize;
    let mut age = None;
    // SAFETY: `msg` is the header recvmsg filled: its control pointer and length describe `control`,
    // and CMSG_FIRSTHDR / CMSG_NXTHDR only return headers that lie inside it (or null).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers from CMSG_FIRSTHDR/CMSG_NXTHDR lie inside `control`.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET
            && header.cmsg_type == libc::SCM_TIMESTAMPNS
            && header.cmsg_len as usize >= stamp_len
        {
            // SAFETY: the length check above says a whole timespec follows the header; it may be
            // unaligned for the type, hence read_unaligned.
            let stamp: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            age = age_of(stamp.tv_sec as i64, stamp.tv_nsec as i64);
        }
        // SAFETY: as above; `cmsg` is a header inside `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n as usize, age))
}

/// Plain `read`: this platform does not stamp TCP data with its arrival time.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn read_with_age<S>(stream: &S, buf: &mut [u8]) -> io::Result<(usize, Option<Duration>)>
where
    for<'a> &'a S: io::Read,
{
    use std::io::Read;
    let mut stream = stream;
    Ok((stream.read(buf)?, None))
}

/// How long ago the wall-clock time `secs`.`nanos` was; `None` for a stamp of 0 (none taken) or one
/// from the future by more than a clock step could explain (it says nothing then).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn age_of(secs: i64, nanos: i64) -> Option<Duration> {
    if secs <= 0 || !(0..1_000_000_000).contains(&nanos) {
        return None;
    }
    let stamp = std::time::UNIX_EPOCH + Duration::new(secs as u64, nanos as u32);
    match std::time::SystemTime::now().duration_since(stamp) {
        Ok(age) => Some(age),
        // Stamped a moment "after" now: the clocks' granularity. Later by more: a clock step.
        Err(e) if e.duration() < Duration::from_millis(1) => Some(Duration::ZERO),
        Err(_) => None,
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn enable_arrival_times(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `on` is a readable c_int that outlives the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of_val(&on) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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

    /// Bytes that waited in the receive queue are reported with (at least) the time they waited.
    #[test]
    fn read_with_age_reports_the_wait_in_the_receive_queue() {
        let listener = listen(0, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = connect(SocketAddr::from(([127, 0, 0, 1], port)), 0).unwrap();
        let accepted = loop {
            if let Ok((s, _)) = listener.accept() {
                break s;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        tune(&accepted, 0).unwrap();
        client.set_nonblocking(false).unwrap();
        client.write_all(b"stamped").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let mut buf = [0u8; 64];
        let (n, age) = loop {
            match read_with_age(&accepted, &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(&buf[..n], b"stamped");
        if ARRIVAL_AGE_KNOWN {
            let age = age.expect("an arrival stamp");
            assert!(age >= Duration::from_millis(50), "{age:?}");
            assert!(age < Duration::from_secs(5), "{age:?}");
        } else {
            assert_eq!(age, None);
        }
    }
}
