//! A fake device and a throwaway socket directory for the server tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate, SetError};

use super::UapiHandler;

#[derive(Default)]
pub struct FakeDevice {
    pub snapshot: Mutex<DeviceSnapshot>,
    pub updates: Mutex<Vec<DeviceUpdate>>,
    pub fail_with: Mutex<Option<SetError>>,
    pub stats: Mutex<Vec<(String, u64)>>,
    pub removed: AtomicBool,
    pub shutdown: AtomicBool,
}

impl FakeDevice {
    pub fn updates(&self) -> Vec<DeviceUpdate> {
        self.updates.lock().unwrap().clone()
    }
}

impl UapiHandler for FakeDevice {
    fn get(&self) -> DeviceSnapshot {
        self.snapshot.lock().unwrap().clone()
    }

    fn set(&self, update: DeviceUpdate) -> Result<(), SetError> {
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        self.updates.lock().unwrap().push(update);
        Ok(())
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.stats.lock().unwrap().clone()
    }

    fn socket_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    fn shutdown_requested(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// Where a test serves its endpoints: a fresh directory under the system temp dir (removed on drop),
/// or on Windows a pipe-name prefix of its own, so tests run in parallel.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("fastwire-uapi-{}-{n}", std::process::id());
        if cfg!(windows) {
            return Self(PathBuf::from(format!(r"\\.\pipe\{name}")));
        }
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !cfg!(windows) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `condition` for up to five seconds.
#[cfg_attr(not(unix), allow(dead_code))] // Its only user, the removal test, is Unix-only.
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}
