//! Coalesced writes into a real offload TUN device, read back by the kernel's own sockets: a TCP
//! connection whose data segments arrive as one super-packet, and UDP datagrams as one USO write.
//! Each test runs on a thread in a network namespace of its own (needs root; `scripts/test.sh` runs it).
#![cfg(target_os = "linux")]

use fastwire_io::tun::{self, Coalescer, ReadScratch, TunOptions, TunQueue, Unsent};
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOCAL: [u8; 4] = [10, 9, 0, 1];
const REMOTE: [u8; 4] = [10, 9, 0, 2];
const ROOM: usize = 16;

#[path = "support/internet_checksum.rs"]
mod reference;
use reference::internet_checksum;

/// An IPv4 packet from REMOTE to LOCAL around `l4` (a TCP or UDP header and payload), checksums set.
fn ipv4(proto: u8, mut l4: Vec<u8>, id: u16) -> Vec<u8> {
    let at = if proto == 6 { 16 } else { 6 };
    let len = (l4.len() as u32).to_be_bytes();
    let sum = internet_checksum(&[&REMOTE, &LOCAL, &[0, proto], &len, &l4]);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&REMOTE);
    ip[16..20].copy_from_slice(&LOCAL);
    let sum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&l4);
    ip
}

fn tcp(port: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&port.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&port.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ip(args: &str) {
    let status = Command::new("ip").args(args.split(' ')).status().unwrap();
    assert!(status.success(), "ip {args}");
}

/// Packets the device has taken from us (one per write: a super-packet counts once).
fn device_rx_packets() -> u64 {
    let out = Command::new("ip")
        .args(["-s", "-o", "link", "show", "dev", "fwgro0"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // One line: "... RX:  bytes packets errors ...\    <bytes> <packets> ..."
    let rx = text.split("RX:").nth(1).expect("RX statistics");
    let numbers = rx.split('\\').nth(1).expect("RX values");
    numbers.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A UDP socket on LOCAL:`port` that gives up reading after 5 s.
fn udp_listener(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::from(LOCAL), port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// Runs `test` on a thread in a new network namespace with an offload TUN device at 10.9.0.1/24.
fn in_namespace(test: impl FnOnce(Arc<dyn TunQueue>, tun::Offloads) + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces (CLONE_NEWNET is per task); the
        // thread is ours and ends with the test.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let device = tun::create(&TunOptions {
            name: "fwgro0".into(),
            queues: 1,
            mtu: 1420,
            offload: true,
            ring_capacity: 0,
        })
        .unwrap();
        ip("link set lo up");
        ip("addr add 10.9.0.1/24 dev fwgro0");
        ip("link set fwgro0 up");
        test(device.queues[0].clone(), device.offloads);
    })
    .join()
    .unwrap();
}

/// Lays packets out as the engine does (room in front of each) and writes them in one batch; all of
/// them must be written.
fn write_batch(queue: &dyn TunQueue, packets: &[Vec<u8>]) {
    assert_eq!(try_write_batch(queue, packets), Unsent::default());
}

fn try_write_batch(queue: &dyn TunQueue, packets: &[Vec<u8>]) -> Unsent {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for p in packets {
        buf.extend_from_slice(&[0u8; ROOM]);
        spans.push((buf.len(), p.len()));
        buf.extend_from_slice(p);
    }
    queue
        .send_batch(&mut Coalescer::new(), &mut buf, &spans)
        .unwrap()
}

/// Reads packets off the device until a TCP one from `port` comes; returns its seq and flags.
fn read_tcp_from(queue: &dyn TunQueue, port: u16) -> (u32, u8) {
    let mut scratch = ReadScratch::new();
    let mut store = vec![vec![0u8; 2048]; 8];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let mut sizes = [0usize; 8];
        match queue.recv_batch(&mut scratch, &mut bufs, &mut sizes, ROOM) {
            Ok(n) => {
                for (b, &size) in bufs.iter().zip(&sizes[..n]) {
                    let p = &b[ROOM..ROOM + size];
                    if p.len() >= 40 && p[0] == 0x45 && p[9] == 6 && p[20..22] == port.to_be_bytes()
                    {
                        return (u32::from_be_bytes(p[24..28].try_into().unwrap()), p[33]);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    panic!("no TCP packet from port {port}");
}

#[test]
#[ignore = "needs root (a network namespace and a TUN device); run by scripts/test.sh"]
fn tcp_segments_written_as_one_super_packet_reach_the_socket_in_order() {
    in_namespace(|queue, offloads| {
        assert!(offloads.tcp, "this kernel has TUN offloads");
        let listener = TcpListener::bind((Ipv4Addr::from(LOCAL), 9001)).unwrap();
        let isn = 1_000_000u32;
        write_batch(&*queue, &[ipv4(6, tcp(9001, isn, 0, 0x02, &[]), 1)]);
        let (server_isn, flags) = read_tcp_from(&*queue, 9001);
        assert_eq!(flags, 0x12, "SYN-ACK");
        let ack = server_isn.wrapping_add(1);
        write_batch(&*queue, &[ipv4(6, tcp(9001, isn + 1, ack, 0x10, &[]), 2)]);
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // 20 segments of 1000 bytes, the last with PSH: one write after coalescing.
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let segments: Vec<Vec<u8>> = data
            .chunks(1000)
            .enumerate()
            .map(|(i, chunk)| {
                let flags = if i == 19 { 0x18 } else { 0x10 };
                let seq = isn + 1 + (i as u32) * 1000;
                ipv4(6, tcp(9001, seq, ack, flags, chunk), 3 + i as u16)
            })
            .collect();
        let before = device_rx_packets();
        write_batch(&*queue, &segments);
        assert_eq!(
            device_rx_packets() - before,
            1,
            "one write for the 20 segments"
        );
        let mut got = vec![0u8; data.len()];
        conn.read_exact(&mut got).unwrap();
        assert!(
            got == data,
            "the stream carries the segments' bytes in order"
        );
    });
}

#[test]
#[ignore = "needs root (a network namespace and a TUN device); run by scripts/test.sh"]
fn udp_datagrams_written_as_one_super_packet_arrive_one_by_one() {
    in_namespace(|queue, offloads| {
        let socket = udp_listener(9002);
        let payloads: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; if i == 9 { 300 } else { 1200 }])
            .collect();
        let packets: Vec<Vec<u8>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| ipv4(17, udp(9002, p), i as u16))
            .collect();
        let before = device_rx_packets();
        write_batch(&*queue, &packets);
        let writes = if offloads.udp { 1 } else { 10 };
        assert_eq!(device_rx_packets() - before, writes);
        let mut buf = [0u8; 2048];
        for expected in &payloads {
            let n = socket.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &expected[..]);
        }
    });
}

#[test]
#[ignore = "needs root (a network namespace and a TUN device); run by scripts/test.sh"]
fn packets_the_kernel_refuses_are_counted_and_the_others_still_written() {
    in_namespace(|queue, _| {
        let socket = udp_listener(9003);
        // Neither IPv4 nor IPv6 (version 0 and 7): the kernel refuses the write (EINVAL).
        let packets = vec![
            ipv4(17, udp(9003, b"first"), 1),
            vec![0x00; 40],
            ipv4(17, udp(9003, b"second"), 2),
            vec![0x70; 60],
            ipv4(17, udp(9003, b"third"), 3),
        ];
        let unsent = try_write_batch(&*queue, &packets);
        assert_eq!(unsent, Unsent { full: 0, failed: 2 });
        let mut buf = [0u8; 2048];
        for expected in [&b"first"[..], b"second", b"third"] {
            let n = socket.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected);
        }
    });
}
