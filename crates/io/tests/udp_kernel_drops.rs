//! The kernel's per-socket drop counter: datagrams sent at a socket nobody reads overflow its receive
//! queue, and `kernel_drops` says how many the kernel threw away.
#![cfg(target_os = "linux")]

use fastwire_io::udp::UdpSocket;
use std::net::{Ipv4Addr, SocketAddr};

#[test]
fn a_full_receive_queue_is_counted() {
    let rx = UdpSocket::bind(0, 0).unwrap();
    assert_eq!(
        rx.kernel_drops(),
        Some(0),
        "a new socket has dropped nothing"
    );
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, rx.port()));
    let tx = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    // The receive queue holds under 2,000 of these (2 MiB, doubled by the kernel); nobody reads.
    let sent = 8000u64;
    for _ in 0..sent {
        tx.send_to(&[0u8; 1200], to).unwrap();
    }
    let mut received = 0u64;
    let mut buf = [0u8; 2048];
    while rx.recv_from(&mut buf).is_ok() {
        received += 1;
    }
    let dropped = rx.kernel_drops().unwrap();
    assert!(received > 0, "some datagrams were queued");
    assert!(
        dropped >= sent / 2,
        "{dropped} drops counted for {sent} sent, {received} received"
    );
    assert!(received + dropped <= sent);
}
