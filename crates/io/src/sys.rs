//! Small system calls the standard library does not wrap: privileges, interface lookup, stdio.

/// Whether a network interface of this name exists (in the current network namespace on Linux).
#[cfg(unix)]
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Hands memory the allocator holds but no longer uses back to the system, after a large release (many
/// peers removed): glibc keeps freed heap pages otherwise, so a server's RSS would stay at its peak.
/// Elsewhere (musl, macOS, Windows) the allocator returns memory by itself or offers no such call.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Puts the calling thread in the real-time class (SCHED_FIFO, the lowest real-time priority), so it
/// runs as soon as it is woken instead of waiting its turn behind busy normal threads. The kernel's
/// real-time throttling (by default 95 % of each second) still leaves the rest of the system a share.
/// Needs root or CAP_SYS_NICE; Linux only (Unsupported elsewhere).
pub fn set_thread_realtime() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling thread,
        // and the call only reads `param`.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "real-time data-path threads are Linux only",
        ))
    }
}

/// The effective user id.
#[cfg(unix)]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the process may create and configure network interfaces: on Linux root or CAP_NET_ADMIN in
/// its effective set; on macOS root; on Windows a token elevated to Administrator.
pub fn may_admin_network() -> bool {
    imp_may_admin_network()
}

/// The one line to print when [`may_admin_network`] is false.
pub fn admin_hint(iface: &str) -> String {
    if cfg!(windows) {
        format!("cannot create interface {iface}: run fastwire from an Administrator prompt")
    } else if cfg!(target_os = "linux") {
        format!(
            "cannot create interface {iface}: permission denied — run as root or grant CAP_NET_ADMIN"
        )
    } else {
        format!("cannot create interface {iface}: permission denied — run as root (sudo)")
    }
}

#[cfg(target_os = "linux")]
fn imp_may_admin_network() -> bool {
    if effective_uid() == 0 {
        return true;
    }
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn imp_may_admin_network() -> bool {
    effective_uid() == 0
}

#[cfg(windows)]
fn imp_may_admin_network() -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::Security::{
        GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of our own process; `token` is a valid out-pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut len = 0u32;
    // SAFETY: `token` is the live token opened above; the buffer is a TOKEN_ELEVATION of the stated size.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            size_of::<TOKEN_ELEVATION>() as u32,
            &mut len,
        )
    } != 0;
    // SAFETY: we opened `token` and close it once.
    unsafe { CloseHandle(token) };
    ok && elevation.TokenIsElevated != 0
}

/// A socket option read as bytes into `buf`: how many the kernel wrote, or `None` when the call failed.
/// One place for the unsafe call that `tcp::delivery_rate` (TCP_INFO) and the UDP socket's drop
/// counter (SO_MEMINFO) share.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn socket_option_bytes<S: std::os::fd::AsRawFd>(
    socket: &S,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> Option<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).ok()?;
    // SAFETY: `buf` is writable for `len` bytes and outlives the call; the kernel writes at most `len`
    // bytes and stores the length it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(len as usize)
}

/// Points stdin, stdout and stderr at /dev/null, so a daemon no longer holds its starter's terminal or
/// pipe open (a `wg-quick up | cat` must see end-of-file once the daemon is up).
#[cfg(unix)]
pub fn detach_stdio() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: `null` is an open descriptor for the duration of the call; dup2 atomically replaces
        // the standard descriptor `target`, which the Rust runtime keeps valid (it now names /dev/null).
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts `cmd` detached from our terminal's interrupts: in its own process group on Unix (the
/// terminal's Ctrl-C reaches the group in front only), in a new process group without a console on
/// Windows.
pub fn detach_child(cmd: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};
        cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS);
    }
}

/// The route the system would use to reach `to` right now: the interface index and the next hop (`None`
/// when `to` is on-link). Windows only; `fastwire up` pins each endpoint to it before a default route
/// through the tunnel would capture the tunnel's own packets.
#[cfg(windows)]
pub fn route_to(to: std::net::IpAddr) -> Option<(u32, Option<std::net::IpAddr>)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use windows_sys::Win32::Foundation::NO_ERROR;
    use windows_sys::Win32::NetworkManagement::IpHelper::{GetBestRoute2, MIB_IPFORWARD_ROW2};
    use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6, SOCKADDR_INET};
    let mut dest = SOCKADDR_INET::default();
    match to {
        IpAddr::V4(v4) => {
            dest.Ipv4.sin_family = AF_INET;
            dest.Ipv4.sin_addr.S_un.S_addr = u32::from_ne_bytes(v4.octets());
        }
        IpAddr::V6(v6) => {
            dest.Ipv6.sin6_family = AF_INET6;
            dest.Ipv6.sin6_addr.u.Byte = v6.octets();
        }
    }
    let mut row = MIB_IPFORWARD_ROW2::default();
    let mut source = SOCKADDR_INET::default();
    // SAFETY: every pointer is to a live local of the declared type; null LUID and source ask the
    // system to choose.
    let rc = unsafe {
        GetBestRoute2(
            std::ptr::null(),
            0,
            std::ptr::null(),
            &dest,
            0,
            &mut row,
            &mut source,
        )
    };
    if rc != NO_ERROR {
        return None;
    }
    // SAFETY: `si_family` is the common first field of every variant, and the variant read is the one
    // it names.
    let next_hop = unsafe {
        match row.NextHop.si_family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                row.NextHop.Ipv4.sin_addr.S_un.S_addr.to_ne_bytes(),
            ))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
                row.NextHop.Ipv6.sin6_addr.u.Byte,
            ))),
            _ => None,
        }
    };
    Some((
        row.InterfaceIndex,
        next_hop.filter(|ip| !ip.is_unspecified()),
    ))
}
