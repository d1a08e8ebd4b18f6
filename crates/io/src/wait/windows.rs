//! WaitForMultipleObjects over event objects; the waker is an auto-reset event.

use super::{MAX_HANDLES, Ready, WaitHandle};
use std::io;
use std::time::Duration;
use windows_sys::Win32::Foundation::{
    CloseHandle, HANDLE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, ResetEvent, SetEvent, WaitForMultipleObjects,
};

/// A HANDLE kept as an integer, so it is `Send`/`Sync`/`Copy` like a Unix descriptor.
pub(crate) type RawHandle = usize;

impl WaitHandle {
    /// The readiness of an event object (a Wintun read event, a socket's event-select event).
    pub(crate) fn from_event(event: HANDLE) -> Self {
        Self(event as usize)
    }
}

pub(crate) fn wait(
    handles: &[WaitHandle],
    ready: &mut [Ready],
    timeout: Option<Duration>,
) -> io::Result<()> {
    let mut raw: [HANDLE; MAX_HANDLES] = [std::ptr::null_mut(); MAX_HANDLES];
    for (r, h) in raw.iter_mut().zip(handles) {
        *r = h.0 as HANDLE;
    }
    let mut ms = match timeout {
        None => INFINITE,
        Some(d) => d.as_micros().div_ceil(1000).min(u128::from(INFINITE - 1)) as u32,
    };
    // WaitForMultipleObjects names the lowest signalled handle only: look again, without waiting, at
    // the handles after it, so every ready one is reported (and each auto-reset event consumed once).
    let mut start = 0;
    while start < handles.len() {
        let count = (handles.len() - start) as u32;
        // SAFETY: `raw[start..start + count]` are live handles owned by the callers' objects, which
        // outlive this call; the array pointer is valid for `count` elements.
        let rc = unsafe { WaitForMultipleObjects(count, raw[start..].as_ptr(), 0, ms) };
        ms = 0;
        if rc == WAIT_TIMEOUT {
            break;
        }
        if rc == WAIT_FAILED {
            return Err(io::Error::last_os_error());
        }
        // WAIT_OBJECT_0 + i, or WAIT_ABANDONED_0 + i (mutexes only; we wait on events).
        let i = (rc.wrapping_sub(WAIT_OBJECT_0) as usize) % 0x80;
        if i >= count as usize {
            break;
        }
        ready[start + i].readable = true;
        start += i + 1;
    }
    Ok(())
}

pub(crate) struct Waker {
    event: HANDLE,
}

// SAFETY: an event HANDLE may be signalled, reset and waited on from any thread.
unsafe impl Send for Waker {}
// SAFETY: as above; the handle is only closed in Drop, when no other reference exists.
unsafe impl Sync for Waker {}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: no security attributes, auto-reset, initially unsignalled, unnamed: no pointers passed.
        let event = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { event })
    }

    pub fn wake(&self) {
        // SAFETY: `event` is our live event handle.
        unsafe { SetEvent(self.event) };
    }

    pub fn drain(&self) {
        // SAFETY: `event` is our live event handle.
        unsafe { ResetEvent(self.event) };
    }

    pub fn raw(&self) -> RawHandle {
        self.event as usize
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // SAFETY: we own the handle and nobody uses it after drop.
        unsafe { CloseHandle(self.event) };
    }
}
