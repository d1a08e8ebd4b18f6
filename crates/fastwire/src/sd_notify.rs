//! systemd's readiness protocol (`Type=notify`): one datagram, `READY=1`, to the socket named by
//! `NOTIFY_SOCKET`, once the tunnel is up; `STOPPING=1` when it starts to go down.
//!
//! Written here rather than taken from a crate: it is a single `sendto` with std's `UnixDatagram`, and
//! the one subtlety (an `@` name is Linux's abstract namespace) is two lines.

/// Tells the service manager `state` (e.g. "READY=1"), if one asked (`NOTIFY_SOCKET` set). Errors are
/// returned for the log; without `NOTIFY_SOCKET` this is a no-op.
pub fn notify(state: &str) -> std::io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) if !socket.is_empty() => send(&socket, state),
        _ => Ok(()),
    }
}

#[cfg(unix)]
pub(crate) fn send(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sender = UnixDatagram::unbound()?;
    let name = socket.as_bytes();
    #[cfg(target_os = "linux")]
    if let Some(abstract_name) = name.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        return sender.send_to_addr(state.as_bytes(), &addr).map(drop);
    }
    sender
        .send_to(state.as_bytes(), std::path::Path::new(socket))
        .map(drop)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("NOTIFY_SOCKET {}: {e}", String::from_utf8_lossy(name)),
            )
        })
}

#[cfg(not(unix))]
pub(crate) fn send(_socket: &std::ffi::OsStr, _state: &str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn sends_the_state_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("fastwire-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("fastwire-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_that_names_it() {
        let e = send(std::ffi::OsStr::new("/nonexistent/notify.sock"), "READY=1").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/notify.sock"), "{e}");
    }
}
