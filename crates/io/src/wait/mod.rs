//! Readiness waits: a thread sleeps in the kernel until one of its sources (a TUN queue, a UDP socket, a
//! waker) has something, or a timeout passes. The engine sees only [`WaitHandle`], [`Ready`], [`wait`]
//! and [`Waker`]; what they are made of (descriptors and poll(2) on Unix, event objects and
//! WaitForMultipleObjects on Windows) stays here.
//!
//! Readiness is a hint, not a promise, and on some platforms reporting it consumes it (an auto-reset
//! event). A reader therefore reads until `WouldBlock`, or remembers that it stopped early and does not
//! sleep on that source before reading it again.

use std::io;
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

/// Something [`wait`] can sleep on. A copy of a raw handle: its owner must outlive the waits that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitHandle(pub(crate) imp::RawHandle);

/// Readiness of one handle after [`wait`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    /// Error or hang-up: for a TUN queue this means the interface was deleted.
    pub failed: bool,
}

/// Most handles one [`wait`] takes.
pub const MAX_HANDLES: usize = 8;

/// Waits until one of `handles` is ready, or `timeout` passes (`None` = forever; zero = just look).
/// Fills `ready` (same length as `handles`). An interrupted wait returns with nothing ready. More than
/// [`MAX_HANDLES`] handles is an `InvalidInput` error, never a silent truncation.
pub fn wait(
    handles: &[WaitHandle],
    ready: &mut [Ready],
    timeout: Option<Duration>,
) -> io::Result<()> {
    if handles.len() > MAX_HANDLES || ready.len() < handles.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("wait takes at most {MAX_HANDLES} handles, each with a Ready slot"),
        ));
    }
    for r in ready.iter_mut() {
        *r = Ready::default();
    }
    imp::wait(handles, &mut ready[..handles.len()], timeout)
}

/// Wakes a thread sleeping in [`wait`] from another thread.
pub struct Waker(imp::Waker);

impl Waker {
    pub fn new() -> io::Result<Self> {
        imp::Waker::new().map(Self)
    }

    /// Makes the waker's handle ready until [`Waker::drain`]. Cheap when already woken.
    pub fn wake(&self) {
        self.0.wake();
    }

    /// Consumes pending wake-ups.
    pub fn drain(&self) {
        self.0.drain();
    }

    pub fn wait_handle(&self) -> WaitHandle {
        WaitHandle(self.0.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_waker_wakes_a_waiting_thread_and_drains() {
        let waker = Arc::new(Waker::new().unwrap());
        let handle = waker.wait_handle();
        let w = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake();
        });
        let mut ready = [Ready::default()];
        let started = Instant::now();
        wait(&[handle], &mut ready, Some(Duration::from_secs(5))).unwrap();
        t.join().unwrap();
        assert!(ready[0].readable);
        assert!(started.elapsed() < Duration::from_secs(4));
        waker.drain();
        wait(&[handle], &mut ready, Some(Duration::ZERO)).unwrap();
        assert!(!ready[0].readable, "drained");
    }

    #[test]
    fn a_timeout_returns_with_nothing_ready() {
        let waker = Waker::new().unwrap();
        let mut ready = [Ready::default()];
        let started = Instant::now();
        wait(
            &[waker.wait_handle()],
            &mut ready,
            Some(Duration::from_millis(30)),
        )
        .unwrap();
        assert!(!ready[0].readable);
        assert!(started.elapsed() >= Duration::from_millis(25));
    }

    #[test]
    fn too_many_handles_is_an_error_not_a_truncation() {
        let waker = Waker::new().unwrap();
        let handles = [waker.wait_handle(); MAX_HANDLES + 1];
        let mut ready = [Ready::default(); MAX_HANDLES + 1];
        let err = wait(&handles, &mut ready, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn only_the_ready_handle_is_reported() {
        let quiet = Waker::new().unwrap();
        let woken = Waker::new().unwrap();
        woken.wake();
        let mut ready = [Ready::default(); 2];
        wait(
            &[quiet.wait_handle(), woken.wait_handle()],
            &mut ready,
            None,
        )
        .unwrap();
        assert_eq!(
            ready,
            [
                Ready::default(),
                Ready {
                    readable: true,
                    failed: false
                }
            ]
        );
    }
}
