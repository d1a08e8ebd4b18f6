//! Readiness of a UDP socket for [`crate::wait::wait`]: its descriptor on Unix; on Windows an event
//! object tied to the socket with WSAEventSelect (FD_READ), reset before each read so that the next
//! datagram — or one still queued, since every receive re-arms FD_READ — signals it again.

use crate::wait::WaitHandle;
use std::io;

pub(crate) struct SocketReadiness {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
    #[cfg(windows)]
    event: windows_sys::Win32::Networking::WinSock::WSAEVENT,
}

#[cfg(unix)]
impl SocketReadiness {
    pub fn new(socket: &std::net::UdpSocket) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        Ok(Self {
            fd: socket.as_raw_fd(),
        })
    }

    pub fn handle(&self) -> WaitHandle {
        WaitHandle(self.fd)
    }

    pub fn before_read(&self) {}
}

#[cfg(windows)]
mod win {
    use super::*;
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{
        FD_CLOSE, FD_READ, SOCKET, WSACloseEvent, WSACreateEvent, WSAEventSelect, WSAResetEvent,
    };

    impl SocketReadiness {
        pub fn new(socket: &std::net::UdpSocket) -> io::Result<Self> {
            // SAFETY: WSACreateEvent takes no arguments; the result is checked.
            let event = unsafe { WSACreateEvent() };
            if event == 0 {
                return Err(io::Error::last_os_error());
            }
            let this = Self { event };
            // SAFETY: the socket is live (borrowed for the call) and `event` is our event. Event-select
            // mode makes the socket non-blocking, which it already is.
            let rc = unsafe {
                WSAEventSelect(
                    socket.as_raw_socket() as SOCKET,
                    event,
                    (FD_READ | FD_CLOSE) as i32,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(this)
        }

        pub fn handle(&self) -> WaitHandle {
            WaitHandle::from_event(self.event as windows_sys::Win32::Foundation::HANDLE)
        }

        pub fn before_read(&self) {
            // SAFETY: `event` is our live event object.
            unsafe { WSAResetEvent(self.event) };
        }
    }

    impl Drop for SocketReadiness {
        fn drop(&mut self) {
            // SAFETY: we own the event; the socket it was tied to is closed with or before us.
            unsafe { WSACloseEvent(self.event) };
        }
    }

    // SAFETY: an event object may be reset and waited on from any thread.
    unsafe impl Send for SocketReadiness {}
    // SAFETY: as above.
    unsafe impl Sync for SocketReadiness {}
}
