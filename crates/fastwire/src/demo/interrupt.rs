//! Ctrl-C / SIGTERM / SIGHUP become a flag that every wait loop of the demo checks, so an interrupted
//! demo still runs its cleanup instead of dying with namespaces and processes left behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The message a step fails with when the user interrupted the demo.
pub const INTERRUPTED: &str = "interrupted";

/// How often waits look at the flag: short enough that Ctrl-C feels immediate.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Replaces the default (terminate) action of SIGINT, SIGTERM and SIGHUP with setting the flag.
    pub fn install() -> Result<Self, String> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register(signal, Arc::clone(&flag))
                .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
        }
        Ok(Self { flag })
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// `Err(INTERRUPTED)` once the user asked to stop.
    pub fn check(&self) -> Result<(), String> {
        if self.is_set() {
            Err(INTERRUPTED.to_string())
        } else {
            Ok(())
        }
    }

    /// Sleeps, waking early with `Err(INTERRUPTED)` when interrupted.
    pub fn sleep(&self, duration: Duration) -> Result<(), String> {
        let deadline = Instant::now() + duration;
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            thread::sleep(left.min(POLL));
        }
    }

    /// Polls `ready` until it yields a value, the deadline passes (`Ok(None)`) or the user interrupts.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<Option<T>, String>,
    ) -> Result<Option<T>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = ready()? {
                return Ok(Some(value));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.sleep(POLL)?;
        }
    }
}
