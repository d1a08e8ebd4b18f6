//! The UAPI server as a local program meets it: any bytes written to the real Unix socket, then the
//! write side closed. It reaches the verbs (`get=1`, `set=1`, `fastwire-stats=1`,
//! `fastwire-shutdown=1`, unknown ones), blank-line checks, line limits and several requests on one
//! connection. Invariants: no panic, the server answers (or closes) within 5 s, every answer is whole
//! (ends with a blank line), and the server still answers `get=1` afterwards. The device behind it is
//! an in-memory one: a fuzzer must not make a real engine bind ports or send to arbitrary endpoints.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fastwire::uapi::{UapiHandler, UapiServer, serve_at};
use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate, SetError};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct MemoryDevice {
    snapshot: Mutex<DeviceSnapshot>,
}

impl UapiHandler for MemoryDevice {
    fn get(&self) -> DeviceSnapshot {
        self.snapshot.lock().unwrap().clone()
    }
    fn set(&self, update: DeviceUpdate) -> Result<(), SetError> {
        let mut snapshot = self.snapshot.lock().unwrap();
        if let Some(key) = update.private_key {
            snapshot.private_key = key;
        }
        if let Some(port) = update.listen_port {
            snapshot.listen_port = port;
        }
        Ok(())
    }
    fn stats(&self) -> Vec<(String, u64)> {
        vec![("drop_rx_replayed".into(), 3), ("rx_packets".into(), 7)]
    }
}

struct Served {
    _server: UapiServer,
    path: PathBuf,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        // libFuzzer's main, not Rust's, runs this process: a write to a closed socket must be an error,
        // not SIGPIPE.
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let dir = std::env::temp_dir().join(format!("fastwire-fuzz-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = serve_at(&dir, "fuzz0", Arc::new(MemoryDevice::default())).unwrap();
        let path = server.path().to_path_buf();
        Served {
            _server: server,
            path,
        }
    })
}

/// Writes `request`, closes the write side, returns everything the server said.
fn exchange(path: &PathBuf, request: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server may close early (unknown verb, malformed set): a broken pipe is an answer too.
    match stream.write_all(request) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        Err(e) => panic!("writing the request: {e}"),
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not finish within 5 s: {e}"),
    }
    answer
}

fuzz_target!(|data: &[u8]| {
    let served = served();
    let answer = exchange(&served.path, data);
    assert!(
        answer.is_empty() || answer.ends_with(b"\n\n"),
        "a partial answer: {:?}",
        String::from_utf8_lossy(&answer[answer.len().saturating_sub(200)..])
    );
    // Still serving, and consistent: a fresh get=1 parses.
    let get = exchange(&served.path, b"get=1\n\n");
    let text = String::from_utf8(get).expect("get=1 answers text");
    fastwire::uapi::protocol::parse_get(&text).expect("get=1 answers what our client parses");
});
