use super::model::{Sample, SortBy, age, bits_per_second, view};
use super::text;
use fastwire_engine::config::{DeviceSnapshot, PeerSnapshot};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn peer(key: u8, rx: u64, tx: u64, handshake_ago: Option<u64>) -> PeerSnapshot {
    let mut p = PeerSnapshot::new([key; 32]);
    p.rx_bytes = rx;
    p.tx_bytes = tx;
    p.last_handshake = handshake_ago.map(|s| wall() - Duration::from_secs(s));
    p
}

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn sample(at_ms: u64, peers: Vec<PeerSnapshot>, stats: &[(&str, u64)]) -> Sample {
    Sample {
        at: Duration::from_millis(at_ms),
        wall: wall(),
        snapshot: DeviceSnapshot {
            peers,
            ..DeviceSnapshot::default()
        },
        stats: stats.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    }
}

#[test]
fn rates_are_differences_over_the_interval() {
    let before = sample(1000, vec![peer(1, 1000, 0, Some(5))], &[]);
    let now = sample(3000, vec![peer(1, 251_000, 2_000, Some(5))], &[]);
    let v = view(Some(&before), &now, SortBy::Rx, 10);
    // 250,000 bytes in 2 s = 1 Mbit/s; 2,000 bytes in 2 s = 8 kbit/s.
    assert_eq!(v.peers[0].rx_bits_per_second, 1_000_000.0);
    assert_eq!(v.peers[0].tx_bits_per_second, 8_000.0);
    assert_eq!(v.peers_with_session, 1);
}

#[test]
fn the_first_reading_and_a_new_peer_do_not_invent_traffic() {
    let first = sample(
        0,
        vec![peer(1, 10_000, 10_000, None)],
        &[("drop_rx_bad_mac1", 9)],
    );
    let v = view(None, &first, SortBy::Rx, 10);
    assert_eq!(v.peers[0].rx_bits_per_second, 0.0);
    assert!(v.drops_per_second.is_empty());
    // A peer that appears between readings is counted from zero, not from the other peer's bytes.
    let later = sample(
        1000,
        vec![peer(1, 10_000, 10_000, None), peer(2, 500, 0, None)],
        &[],
    );
    let v = view(Some(&first), &later, SortBy::Key, 10);
    assert_eq!(v.peers[0].rx_bits_per_second, 0.0);
    assert_eq!(v.peers[1].rx_bits_per_second, 4_000.0);
}

#[test]
fn drops_and_workers_per_second_and_batch_sizes() {
    let before = sample(
        0,
        vec![],
        &[
            ("drop_rx_bad_mac1", 10),
            ("drop_tx_no_route", 4),
            ("worker_0_rx_packets", 100),
            ("worker_0_rx_batches", 10),
            ("worker_0_rx_datagrams", 100),
            ("worker_0_tx_packets", 0),
            ("worker_0_tx_batches", 0),
        ],
    );
    let now = sample(
        500,
        vec![],
        &[
            ("drop_rx_bad_mac1", 60),
            ("drop_tx_no_route", 4),
            ("worker_0_rx_packets", 1100),
            ("worker_0_rx_batches", 30),
            ("worker_0_rx_datagrams", 1100),
            ("worker_0_tx_packets", 0),
            ("worker_0_tx_batches", 0),
        ],
    );
    let v = view(Some(&before), &now, SortBy::Rx, 10);
    assert_eq!(v.drops_per_second, vec![("rx bad mac1".to_string(), 100.0)]);
    let w = &v.workers[0];
    assert_eq!(w.label, "0");
    assert_eq!(w.rx_packets_per_second, 2000.0);
    assert_eq!(w.rx_batch, 50.0, "1000 datagrams in 20 batches");
    assert_eq!(
        w.tx_batch, 0.0,
        "no batches: no size, not a division by zero"
    );
}

#[test]
fn a_restarted_daemon_counts_from_zero() {
    let before = sample(0, vec![], &[("drop_rx_bad_mac1", 1000)]);
    let now = sample(1000, vec![], &[("drop_rx_bad_mac1", 3)]);
    let v = view(Some(&before), &now, SortBy::Rx, 10);
    assert_eq!(v.drops_per_second, vec![("rx bad mac1".to_string(), 3.0)]);
}

#[test]
fn every_sort_order_and_the_cut() {
    let before = sample(0, vec![], &[]);
    let now = sample(
        1000,
        vec![
            peer(1, 100, 900, Some(100)),
            peer(2, 900, 100, None),
            peer(3, 500, 500, Some(10)),
        ],
        &[],
    );
    let first = |sort| {
        view(Some(&before), &now, sort, 10).peers[0]
            .public_key
            .clone()
    };
    let key = |k: u8| super::model::PeerRow::key_text(&[k; 32]);
    assert_eq!(first(SortBy::Rx), key(2));
    assert_eq!(first(SortBy::Tx), key(1));
    assert_eq!(first(SortBy::Handshake), key(3), "most recent first");
    assert_eq!(
        view(Some(&before), &now, SortBy::Handshake, 10).peers[2].public_key,
        key(2),
        "never last"
    );
    assert_eq!(first(SortBy::Key), key(1));
    let cut = view(Some(&before), &now, SortBy::Rx, 2);
    assert_eq!((cut.peers.len(), cut.peer_count), (2, 3));
    let mut sort = SortBy::Rx;
    for _ in 0..SortBy::ALL.len() {
        sort = sort.next();
    }
    assert_eq!(sort, SortBy::Rx, "s cycles through every order");
}

#[test]
fn plain_frame_names_everything() {
    let before = sample(0, vec![peer(1, 0, 0, Some(3))], &[("drop_rx_bad_mac1", 0)]);
    let mut p = peer(1, 125_000, 0, Some(3));
    p.endpoint = Some("tcp://192.0.2.1:443".parse().unwrap());
    let now = sample(
        1000,
        vec![p, peer(2, 0, 0, None)],
        &[("drop_rx_bad_mac1", 2), ("worker_tcp_rx_packets", 5)],
    );
    let v = view(Some(&before), &now, SortBy::Rx, 1);
    let t = text::render("wg0", &v, 1.0);
    assert!(
        t.starts_with("fastwire top: wg0 — 2 peers, 1 with a session — sorted by receive rate")
    );
    assert!(t.contains("tcp 192.0.2.1:443"), "{t}");
    assert!(t.contains("1.0 Mbit/s"), "{t}");
    assert!(t.contains("3 s"), "{t}");
    assert!(t.contains("(and 1 more peers)"), "{t}");
    assert!(t.contains("drops/s: rx bad mac1 2.0"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("tcp ") && l.contains(" 5 ")),
        "{t}"
    );
}

#[test]
fn units_and_ages_read_like_a_human_wrote_them() {
    assert_eq!(bits_per_second(0.0), "0 bit/s");
    assert_eq!(bits_per_second(999.0), "999 bit/s");
    assert_eq!(bits_per_second(1_500.0), "1.5 kbit/s");
    assert_eq!(bits_per_second(2.5e9), "2.5 Gbit/s");
    assert_eq!(age(None), "never");
    assert_eq!(age(Some(Duration::from_secs(59))), "59 s");
    assert_eq!(age(Some(Duration::from_secs(61))), "1 min");
    assert_eq!(age(Some(Duration::from_secs(7200))), "2 h");
}
