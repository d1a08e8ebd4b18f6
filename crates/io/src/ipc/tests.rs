use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

/// A fresh endpoint place: a temp directory on Unix (removed on drop), a unique pipe-name prefix on
/// Windows, so tests run in parallel.
struct Place(PathBuf);

impl Place {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("fastwire-ipc-{}-{n}", std::process::id());
        if cfg!(windows) {
            return Self(PathBuf::from(format!(r"\\.\pipe\{name}")));
        }
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !cfg!(windows) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn accept(listener: &mut IpcListener) -> IpcStream {
    match listener.accept().unwrap() {
        Incoming::Connection(stream) => stream,
        Incoming::Stopped => panic!("stopped instead of a connection"),
        Incoming::Removed => panic!("removed instead of a connection"),
    }
}

/// The listing, or `None` (with a note) where the platform cannot list: Wine 8 has no pipe directory.
fn listed(dir: &Path) -> Option<Vec<String>> {
    match list(dir) {
        Ok(names) => Some(names),
        Err(e) if cfg!(windows) => {
            eprintln!("note: cannot list pipes here (Wine?), listing not checked: {e}");
            None
        }
        Err(e) => panic!("list failed: {e}"),
    }
}

/// On Unix, whether a socket answers is learnt by connecting (listing, a second bind): that probe is a
/// connection which ends at once. Windows looks at the pipe names instead.
fn accept_probe(listener: &mut IpcListener) {
    if cfg!(unix) {
        let probe = accept(listener);
        assert!(matches!((&probe).read(&mut [0u8; 4]), Ok(0)));
    }
}

/// Reads up to and including the first blank line (`\n\n`), or to end-of-stream.
fn read_answer(mut stream: &IpcStream) -> String {
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

#[test]
fn ipc_request_answer_timeout_and_shutdown() {
    let place = Place::new();
    let mut listener = IpcListener::bind(place.path(), "t0").unwrap();
    assert_eq!(
        listener.path(),
        endpoint_path(place.path(), "t0").unwrap().as_path()
    );
    assert!(exists(place.path(), "t0"));
    assert!(!exists(place.path(), "t9"));
    if let Some(names) = listed(place.path()) {
        assert_eq!(names, vec!["t0"]);
        accept_probe(&mut listener);
    }

    // A request and its answer.
    let dir = place.path().to_path_buf();
    let client = thread::spawn(move || {
        let mut stream = connect(&dir, "t0").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"get=1\n\n").unwrap();
        let answer = read_answer(&stream);
        (stream, answer)
    });
    let server = accept(&mut listener);
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    server
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_answer(&server), "get=1\n\n");
    (&server).write_all(b"errno=0\n\n").unwrap();
    let (client, answer) = client.join().unwrap();
    assert_eq!(answer, "errno=0\n\n");

    // A read timeout fires, on either end, as TimedOut; the connection survives it.
    for (end, stream) in [("client", &client), ("server", &server)] {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        let mut reader = stream;
        let err = reader.read(&mut [0u8; 16]).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{end}: {err}");
        assert!(took >= Duration::from_millis(150), "{end}: after {took:?}");
        assert!(took < Duration::from_secs(3), "{end}: after {took:?}");
    }
    (&client).write_all(b"again\n\n").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_answer(&server), "again\n\n");

    // shutdown() from another thread unblocks a reader blocked with no timeout, and the peer sees
    // end-of-stream.
    server.set_read_timeout(None).unwrap();
    let handle = server.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let started = Instant::now();
        let result = (&server).read(&mut [0u8; 16]);
        (result.map_err(|e| e.kind()), started.elapsed(), server)
    });
    thread::sleep(Duration::from_millis(200));
    handle.shutdown().unwrap();
    let (result, took, server) = reader.join().unwrap();
    assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
    assert!(took < Duration::from_secs(3), "unblocked after {took:?}");
    assert_eq!((&server).read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!((&server).write_all(b"late\n").is_err());
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let eof = (&client).read(&mut [0u8; 16]);
    assert!(matches!(eof, Ok(0)), "{eof:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((server, handle, client));

    // A stop request from another thread ends accept; it stays stopped.
    let stopper = listener.stopper();
    let stopping = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        stopper.stop();
    });
    let started = Instant::now();
    assert!(matches!(listener.accept().unwrap(), Incoming::Stopped));
    assert!(started.elapsed() < Duration::from_secs(3));
    stopping.join().unwrap();
    assert!(matches!(listener.accept().unwrap(), Incoming::Stopped));

    listener.close().unwrap();
    assert!(!exists(place.path(), "t0"));
    if let Some(names) = listed(place.path()) {
        assert!(names.is_empty(), "{names:?}");
    }
    assert!(connect(place.path(), "t0").is_err());
}

#[test]
fn ipc_refuses_a_live_endpoint_and_serves_several_clients() {
    let place = Place::new();
    let mut listener = IpcListener::bind(place.path(), "t1").unwrap();
    let err = IpcListener::bind(place.path(), "t1").err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("answers"), "{err}");
    accept_probe(&mut listener);

    // Clients connected at once, each served on its own stream.
    let dir = place.path().to_path_buf();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let dir = dir.clone();
            thread::spawn(move || {
                let mut stream = connect(&dir, "t1").unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                stream.write_all(format!("n={i}\n\n").as_bytes()).unwrap();
                read_answer(&stream)
            })
        })
        .collect();
    let mut served = Vec::new();
    for _ in 0..3 {
        let stream = accept(&mut listener);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let request = read_answer(&stream);
        (&stream)
            .write_all(format!("re {request}").as_bytes())
            .unwrap();
        served.push(stream);
    }
    let mut answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    answers.sort();
    assert_eq!(answers, vec!["re n=0\n\n", "re n=1\n\n", "re n=2\n\n"]);

    // Dropping the last clone of the server end closes the connection for the peer.
    let client = connect(place.path(), "t1").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let stream = accept(&mut listener);
    (&stream).write_all(b"bye\n\n").unwrap();
    drop(stream);
    assert_eq!(read_answer(&client), "bye\n\n");
    assert!(matches!((&client).read(&mut [0u8; 4]), Ok(0)));

    assert!(endpoint_path(place.path(), "a/b").is_err());
    assert!(endpoint_path(place.path(), "").is_err());
    assert!(endpoint_path(place.path(), "..").is_err());
}

#[cfg(unix)]
#[test]
fn ipc_unix_socket_is_private_and_its_removal_is_reported() {
    use std::os::unix::fs::PermissionsExt;

    let place = Place::new();
    let mut listener = IpcListener::bind(&place.path().join("nested"), "t2").unwrap();
    let path = listener.path().to_path_buf();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()) & 0o022, 0);
    assert!(listener.notes().is_empty(), "{:?}", listener.notes());

    let remover = {
        let path = path.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            std::fs::remove_file(path).unwrap();
        })
    };
    let started = Instant::now();
    assert!(matches!(listener.accept().unwrap(), Incoming::Removed));
    assert!(started.elapsed() < Duration::from_secs(3));
    remover.join().unwrap();

    // Someone else's socket in our place is left alone when we close.
    let successor = IpcListener::bind(&place.path().join("nested"), "t2").unwrap();
    listener.close().unwrap();
    assert!(path.exists());
    drop(successor);
    assert!(!path.exists());
}
