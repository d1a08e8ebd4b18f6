//! Small Linux system calls the standard library does not wrap.

use std::ffi::CString;

/// Whether a network interface of this name exists in the current network namespace.
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// The effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the process may administer network interfaces: root, or CAP_NET_ADMIN in its effective set.
pub fn has_net_admin() -> bool {
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

/// Points stdin, stdout and stderr at /dev/null, so a daemon no longer holds its starter's terminal or
/// pipe open (a `wg-quick up | cat` must see end-of-file once the daemon is up).
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
