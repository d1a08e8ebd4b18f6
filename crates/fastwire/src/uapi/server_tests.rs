use super::*;
use crate::uapi::client;
use crate::uapi::protocol::{format_get, key_to_hex};
use crate::uapi::test_support::{FakeDevice, TempDir};
use fastwire_engine::config::{AllowedIp, DeviceSnapshot, DeviceUpdate, PeerUpdate, SetError};
use std::io::{Read, Write};

fn start(dir: &TempDir, limits: Limits) -> (Arc<FakeDevice>, UapiServer) {
    let device = Arc::new(FakeDevice::default());
    *device.snapshot.lock().unwrap() = DeviceSnapshot {
        private_key: Some([1; 32]),
        listen_port: 51820,
        ..Default::default()
    };
    let server = serve_in(dir.path(), "wgt0", device.clone(), limits).unwrap();
    (device, server)
}

fn connect(dir: &TempDir) -> IpcStream {
    let stream = ipc::connect(dir.path(), "wgt0").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads until the blank line that ends an answer, or to EOF.
fn read_answer(stream: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\n\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) => panic!("read failed after {answer:?}: {e}"),
        }
    }
    String::from_utf8(answer).unwrap()
}

fn is_closed(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0))
}

#[test]
fn uapi_server_get_set_and_stats_through_the_client() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    *device.stats.lock().unwrap() = vec![("drop_replay".into(), 3)];

    let snapshot = client::get_in(dir.path(), "wgt0").unwrap();
    assert_eq!(snapshot, device.get());

    let mut peer = PeerUpdate::new([2; 32]);
    peer.allowed_ips = vec![AllowedIp {
        addr: "10.78.0.0".parse().unwrap(),
        cidr: 24,
    }];
    let update = DeviceUpdate {
        listen_port: Some(1234),
        replace_peers: true,
        peers: vec![peer],
        ..Default::default()
    };
    client::set_in(dir.path(), "wgt0", &update).unwrap();
    assert_eq!(device.updates(), vec![update]);

    assert_eq!(
        client::stats_in(dir.path(), "wgt0").unwrap(),
        vec![("drop_replay".to_string(), 3)]
    );
}

#[cfg(unix)]
#[test]
fn uapi_server_socket_is_root_only_and_dir_is_created() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let nested = dir.path().join("run/wireguard");
    let device = Arc::new(FakeDevice::default());
    let server = serve_in(&nested, "wgt0", device, Limits::default()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&nested.join("wgt0.sock")), 0o600);
    assert_eq!(mode(&nested) & 0o700, 0o700);
    assert_eq!(mode(&nested) & 0o022, 0, "never group/world writable");
    assert_eq!(server.path(), nested.join("wgt0.sock"));
}

#[test]
fn uapi_server_several_requests_on_one_connection() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    let mut stream = connect(&dir);
    stream
        .write_all(b"get=1\n\nset=1\nlisten_port=5\n\nget=1\n\n")
        .unwrap();
    assert_eq!(read_answer(&mut stream), format_get(&device.get()));
    assert_eq!(read_answer(&mut stream), "errno=0\n\n");
    assert_eq!(read_answer(&mut stream), format_get(&device.get()));
    assert_eq!(device.updates().len(), 1);
    assert_eq!(device.updates()[0].listen_port, Some(5));
}

#[test]
fn uapi_server_malformed_set_applies_nothing_and_keeps_the_connection() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    let mut stream = connect(&dir);
    let peer = key_to_hex(&[2; 32]);
    stream
        .write_all(
            format!(
                "set=1\nlisten_port=7\npublic_key={peer}\nallowed_ip=10.0.0.0/40\nremove=true\n\n"
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_answer(&mut stream), "errno=-22\n\n");
    assert!(device.updates().is_empty(), "atomic: nothing applied");
    stream.write_all(b"set=1\nlisten_port=8\n\n").unwrap();
    assert_eq!(read_answer(&mut stream), "errno=0\n\n");
    assert_eq!(device.updates()[0].listen_port, Some(8));

    stream.write_all(b"set=1\nlisten_port=1\xff\n\n").unwrap();
    assert_eq!(read_answer(&mut stream), "errno=-22\n\n", "not UTF-8");
}

/// A client that half-closes its side (named pipes cannot): std's socket, not ours.
#[cfg(unix)]
#[test]
fn uapi_server_set_without_blank_line_applies_at_eof() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    let mut stream = std::os::unix::net::UnixStream::connect(dir.path().join("wgt0.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"set=1\nlisten_port=9").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_answer(&mut stream), "errno=0\n\n");
    assert_eq!(device.updates()[0].listen_port, Some(9));
}

#[test]
fn uapi_server_handler_errors_become_negative_errnos() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    *device.fail_with.lock().unwrap() = Some(SetError::PortInUse(51820));
    let mut stream = connect(&dir);
    stream.write_all(b"set=1\nlisten_port=51820\n\n").unwrap();
    assert_eq!(read_answer(&mut stream), "errno=-98\n\n");
    *device.fail_with.lock().unwrap() = Some(SetError::Io("boom".into()));
    stream.write_all(b"set=1\nlisten_port=51820\n\n").unwrap();
    assert_eq!(read_answer(&mut stream), "errno=-5\n\n");
    let err = client::set_in(dir.path(), "wgt0", &DeviceUpdate::default()).unwrap_err();
    assert!(err.contains("I/O error (errno 5)"), "{err}");
}

#[test]
fn uapi_server_unknown_verbs_and_garbage_close_without_answer() {
    let dir = TempDir::new();
    let (_device, _server) = start(&dir, Limits::default());
    for request in [
        &b"bogus=1\n"[..],
        b"get=2\n\n",
        b"set=1\r\n\n",
        b"\n",
        b"\x00\x01\x02\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = connect(&dir);
        stream.write_all(request).unwrap();
        assert!(is_closed(&mut stream), "{request:?}");
    }
    let err = client::request_in(dir.path(), "wgt0", "hello=1\n\n").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn uapi_server_get_with_trailing_byte_is_einval() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    let mut stream = connect(&dir);
    stream.write_all(b"get=1\nx").unwrap();
    assert_eq!(read_answer(&mut stream), "errno=-22\n\n");
    // The connection goes on with the next line, as in wireguard-go.
    stream.write_all(b"get=1\n\n").unwrap();
    assert_eq!(read_answer(&mut stream), format_get(&device.get()));
}

#[test]
fn uapi_server_oversized_lines_are_refused() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    let long = "1".repeat(5000);

    let mut stream = connect(&dir);
    stream.write_all(long.as_bytes()).unwrap();
    assert!(is_closed(&mut stream), "oversized operation line");

    let mut stream = connect(&dir);
    let request = format!("set=1\nlisten_port={long}\n\n");
    // The server may close before reading everything; a write error is fine too.
    let _ = stream.write_all(request.as_bytes());
    assert_eq!(read_answer(&mut stream), "errno=-22\n\n");
    assert!(is_closed(&mut stream));
    assert!(device.updates().is_empty());
}

#[test]
fn uapi_server_bounds_lines_per_set_but_takes_large_configs() {
    let dir = TempDir::new();
    let limits = Limits {
        max_set_lines: 20_001,
        ..Limits::default()
    };
    let (device, _server) = start(&dir, limits);
    let peer = key_to_hex(&[2; 32]);
    let mut request = format!("set=1\npublic_key={peer}\n");
    for i in 0..20_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        request.push_str(&format!("allowed_ip=10.{a}.{b}.{c}/32\n"));
    }
    let answer = client::request_in(dir.path(), "wgt0", &format!("{request}\n")).unwrap();
    assert_eq!(answer, "errno=0\n\n");
    assert_eq!(device.updates()[0].peers[0].allowed_ips.len(), 20_000);

    let answer = client::request_in(
        dir.path(),
        "wgt0",
        &format!("{request}allowed_ip=10.0.0.0/8\n\n"),
    );
    assert_eq!(answer.unwrap(), "errno=-22\n\n");
    assert_eq!(device.updates().len(), 1);
}

#[test]
fn uapi_server_closes_idle_connections() {
    let dir = TempDir::new();
    let limits = Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (_device, _server) = start(&dir, limits);
    let mut stream = connect(&dir);
    stream.write_all(b"set=1\nlisten_port=1\n").unwrap();
    let started = std::time::Instant::now();
    assert!(is_closed(&mut stream));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn uapi_server_caps_connections_and_a_newcomer_closes_the_oldest_waiting() {
    let dir = TempDir::new();
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (device, _server) = start(&dir, limits);
    let mut first = connect(&dir);
    let mut second = connect(&dir);
    // Make sure both are being served (in that order) before the third arrives.
    for stream in [&mut first, &mut second] {
        stream.write_all(b"get=1\n\n").unwrap();
        assert_eq!(read_answer(stream), format_get(&device.get()));
    }
    // Both are now waiting for another request: the third takes the slot of the one waiting longest.
    let mut third = connect(&dir);
    third.write_all(b"get=1\n\n").unwrap();
    assert_eq!(read_answer(&mut third), format_get(&device.get()));
    assert!(
        is_closed(&mut first),
        "the oldest waiting connection made room"
    );
    second.write_all(b"get=1\n\n").unwrap();
    assert_eq!(read_answer(&mut second), format_get(&device.get()));
}

/// Clients that send one byte at a time, never a whole request.
fn trickle(
    dir: &TempDir,
    count: usize,
    every: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|_| {
            let mut stream = connect(dir);
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && stream.write_all(b"s").is_ok() {
                    thread::sleep(every);
                }
            })
        })
        .collect()
}

#[test]
fn uapi_server_cuts_a_request_that_trickles_in() {
    let dir = TempDir::new();
    let limits = Limits {
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let (_device, _server) = start(&dir, limits);
    let mut stream = connect(&dir);
    let started = std::time::Instant::now();
    // A byte every 50 ms: far inside the idle timeout, but the request never ends.
    let mut closed = false;
    for _ in 0..100 {
        if stream.write_all(b"s").is_err() {
            closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        closed || is_closed(&mut stream),
        "still open after 5 s of trickling"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

#[test]
fn uapi_server_cannot_be_held_by_trickling_clients() {
    let dir = TempDir::new();
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let (device, _server) = start(&dir, limits);
    let stop = Arc::new(AtomicBool::new(false));
    // Every slot held by a client that sends a byte every 100 ms and never a newline.
    let holders = trickle(&dir, 8, Duration::from_millis(100), &stop);
    thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let snapshot = client::get_in(dir.path(), "wgt0").expect("get=1 while every slot is held");
        assert_eq!(snapshot, device.get());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.join().unwrap();
    }
}

#[test]
fn uapi_server_refuses_a_live_endpoint() {
    let dir = TempDir::new();
    let (_device, _server) = start(&dir, Limits::default());
    let err = serve_in(
        dir.path(),
        "wgt0",
        Arc::new(FakeDevice::default()),
        Limits::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    let path = socket_path(dir.path(), "wgt0").unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "interface wgt0 already has a running daemon ({} answers)",
            path.display()
        )
    );
    assert!(client::get_in(dir.path(), "wgt0").is_ok(), "still served");
}

#[cfg(unix)]
#[test]
fn uapi_server_replaces_stale_socket_and_refuses_a_live_one() {
    use std::os::unix::net::UnixListener;
    let dir = TempDir::new();
    let path = dir.path().join("wgt0.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale socket file is left behind");
    let (_device, server) = start(&dir, Limits::default());
    assert!(client::get_in(dir.path(), "wgt0").is_ok());

    let err = serve_in(
        dir.path(),
        "wgt0",
        Arc::new(FakeDevice::default()),
        Limits::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(
        err.to_string()
            .contains("interface wgt0 already has a running daemon"),
        "{err}"
    );
    assert!(client::get_in(dir.path(), "wgt0").is_ok(), "still served");
    drop(server);

    std::fs::write(&path, "not a socket").unwrap();
    let err = serve_in(
        dir.path(),
        "wgt0",
        Arc::new(FakeDevice::default()),
        Limits::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("is not a socket"), "{err}");
}

#[test]
fn uapi_server_shutdown_and_drop_remove_the_socket() {
    let dir = TempDir::new();
    // The socket file (or the pipe) is there.
    let exists = || ipc::exists(dir.path(), "wgt0");
    let (_device, server) = start(&dir, Limits::default());
    assert!(exists());
    server.shutdown();
    assert!(!exists());
    assert!(client::get_in(dir.path(), "wgt0").is_err());

    let (_device, server) = start(&dir, Limits::default());
    drop(server);
    assert!(!exists());
}

#[test]
fn uapi_server_stops_the_daemon_on_the_private_shutdown_verb() {
    let dir = TempDir::new();
    let (device, _server) = start(&dir, Limits::default());
    assert!(!device.shutdown.load(Ordering::SeqCst));
    client::shutdown_in(dir.path(), "wgt0").unwrap();
    assert!(device.shutdown.load(Ordering::SeqCst));
}

#[cfg(unix)]
#[test]
fn uapi_server_reports_socket_removal_and_keeps_a_successor() {
    use crate::uapi::test_support::eventually;
    let dir = TempDir::new();
    let path = dir.path().join("wgt0.sock");
    let (device, server) = start(&dir, Limits::default());
    std::fs::remove_file(&path).unwrap();
    assert!(eventually(|| device.removed.load(Ordering::SeqCst)));

    // A new daemon took the name: shutting the old one down must not delete its socket.
    let (_successor, _server2) = start(&dir, Limits::default());
    server.shutdown();
    assert!(path.exists());
    assert!(client::get_in(dir.path(), "wgt0").is_ok());
}

#[cfg(unix)]
#[test]
fn uapi_client_lists_live_sockets_only() {
    use std::os::unix::net::UnixListener;
    let dir = TempDir::new();
    let (_device, _server) = start(&dir, Limits::default());
    std::fs::write(dir.path().join("file.sock"), "").unwrap();
    drop(UnixListener::bind(dir.path().join("stale.sock")).unwrap());
    drop(UnixListener::bind(dir.path().join("waytoolonginterfacename.sock")).unwrap());
    assert_eq!(
        client::list_interfaces_in(dir.path()).unwrap(),
        vec!["wgt0"]
    );
}

#[test]
fn uapi_client_lists_served_interfaces() {
    let dir = TempDir::new();
    let (_device, _server) = start(&dir, Limits::default());
    let _server2 = serve_in(
        dir.path(),
        "wgt1",
        Arc::new(FakeDevice::default()),
        Limits::default(),
    )
    .unwrap();
    match client::list_interfaces_in(dir.path()) {
        Ok(names) => assert_eq!(names, vec!["wgt0", "wgt1"]),
        // Wine 8 cannot list the pipe namespace; Windows can.
        Err(e) if cfg!(windows) => eprintln!("note: listing not checked: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn uapi_client_errors_are_one_clear_line() {
    let dir = TempDir::new();
    let err = client::get_in(dir.path(), "wg9").unwrap_err();
    assert!(
        err.starts_with("no fastwire interface wg9:") && err.ends_with("is it running?"),
        "{err}"
    );
    let err = client::get_in(dir.path(), "../etc").unwrap_err();
    assert!(err.contains("invalid interface name"), "{err}");
}

#[test]
fn uapi_server_requests_after_shutdown_are_not_applied() {
    let dir = TempDir::new();
    let (device, server) = start(&dir, Limits::default());
    let mut stream = connect(&dir);
    stream.write_all(b"get=1\n\n").unwrap();
    read_answer(&mut stream);
    server.shutdown();
    let _ = stream.write_all(b"set=1\nlisten_port=3\n\n");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(device.updates().is_empty());
}
