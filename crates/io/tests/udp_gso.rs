//! UDP GSO sends on loopback, including one the kernel refuses: the datagrams still leave one by one,
//! the caller learns how many left, and the socket stops asking for GSO (for a while, not for good:
//! the retry timing is unit-tested in `udp/gso.rs`).
#![cfg(target_os = "linux")]

use fastwire_io::udp::UdpSocket;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn receive_all(rx: &std::net::UdpSocket, want: usize) -> Vec<Vec<u8>> {
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    while got.len() < want && started.elapsed() < Duration::from_secs(5) {
        match rx.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_refused_gso_send_goes_out_one_by_one_and_turns_gso_off() {
    let tx = UdpSocket::bind(0, 0).unwrap();
    let rx = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let to: SocketAddr = rx.local_addr().unwrap();
    assert!(
        tx.max_gso_segments() > 1,
        "this kernel has UDP GSO (Linux 4.18+): the test needs it"
    );

    // An accepted GSO send: ten datagrams of 100 bytes in one call.
    let contents: Vec<u8> = (0..1000u32).map(|i| (i / 100) as u8).collect();
    assert_eq!(tx.send_segments(&contents, 100, to, None).unwrap(), 10);
    let got = receive_all(&rx, 10);
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, d)| d == &vec![i as u8; 100])
    );
    assert!(tx.max_gso_segments() > 1);

    // More segments than the kernel takes in one send (UDP_MAX_SEGMENTS): EINVAL for the whole send.
    let count = 150;
    let contents: Vec<u8> = (0..count * 20).map(|i| (i / 20) as u8).collect();
    assert_eq!(
        tx.send_segments(&contents, 20, to, None).unwrap(),
        count,
        "every datagram left, one at a time"
    );
    let got = receive_all(&rx, count);
    assert_eq!(got.len(), count);
    assert!(got.iter().enumerate().all(|(i, d)| d == &vec![i as u8; 20]));
    assert_eq!(tx.max_gso_segments(), 1, "GSO is off after the refusal");
}
