//! The per-peer prefix lists the device keeps beside its routing table (so that removing a peer or
//! listing its allowed IPs costs only its own prefixes) must always say what the table says. Random
//! sequences of configuration changes, in batches and one by one, against a plain model.

use fastwire_proto::{Device, Peer};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
enum Change {
    Add(u8),
    Remove(u8),
    /// Peer, replace?, prefixes as (last octet, length in 24..=32) under 10.0.0.0/24.
    AllowedIps(u8, bool, Vec<(u8, u8)>),
    Clear,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0u8..6).prop_map(Change::Add),
        1 => (0u8..6).prop_map(Change::Remove),
        4 => (0u8..6, any::<bool>(), prop::collection::vec((any::<u8>(), 24u8..=32), 0..4))
            .prop_map(|(p, r, ips)| Change::AllowedIps(p, r, ips)),
        1 => Just(Change::Clear),
    ]
}

fn key(p: u8) -> [u8; 32] {
    [p + 1; 32]
}

fn prefix(last: u8, cidr: u8) -> (IpAddr, u8) {
    let bits = u32::from(Ipv4Addr::new(10, 0, 0, last));
    let mask = if cidr == 0 {
        0
    } else {
        u32::MAX << (32 - cidr)
    };
    (IpAddr::V4(Ipv4Addr::from(bits & mask)), cidr)
}

/// What the table should hold: prefix -> peer, and which peers exist.
#[derive(Default)]
struct Model {
    peers: Vec<u8>,
    routes: BTreeMap<(IpAddr, u8), u8>,
}

impl Model {
    fn apply(&mut self, c: &Change) {
        match c {
            Change::Add(p) => {
                if !self.peers.contains(p) {
                    self.peers.push(*p);
                }
            }
            Change::Remove(p) => {
                self.peers.retain(|q| q != p);
                self.routes.retain(|_, q| q != p);
            }
            Change::AllowedIps(p, replace, ips) => {
                if !self.peers.contains(p) {
                    return;
                }
                if *replace {
                    self.routes.retain(|_, q| q != p);
                }
                for &(last, cidr) in ips {
                    self.routes.insert(prefix(last, cidr), *p);
                }
            }
            Change::Clear => *self = Model::default(),
        }
    }
}

fn apply_to_batch(batch: &mut fastwire_proto::ConfigBatch<'_>, c: &Change) {
    match c {
        Change::Add(p) => {
            batch.add_peer(key(*p));
        }
        Change::Remove(p) => batch.remove_peer(&key(*p)),
        Change::AllowedIps(p, replace, ips) => {
            if let Some(peer) = batch.peer(&key(*p)) {
                let ips: Vec<_> = ips.iter().map(|&(l, c)| prefix(l, c)).collect();
                batch.set_allowed_ips(&peer, *replace, &ips).unwrap();
            }
        }
        Change::Clear => batch.clear_peers(),
    }
}

fn route_of(device: &Device, addr: Ipv4Addr) -> Option<Arc<Peer>> {
    let mut packet = [0u8; 20];
    packet[0] = 0x45;
    packet[16..20].copy_from_slice(&addr.octets());
    device.route(&packet)
}

fn check(device: &Device, model: &Model) -> Result<(), TestCaseError> {
    let mut listed = BTreeMap::new();
    for peer in device.peers() {
        let p = peer.public_key[0] - 1;
        prop_assert!(model.peers.contains(&p), "peer {p} should be gone");
        for ip in device.allowed_ips(&peer) {
            prop_assert!(listed.insert(ip, p).is_none(), "{ip:?} listed twice");
        }
    }
    prop_assert_eq!(device.peers().len(), model.peers.len());
    prop_assert_eq!(&listed, &model.routes);
    // The table routes what the lists say: longest prefix of the model wins.
    for last in [0u8, 1, 7, 64, 128, 200, 255] {
        let addr = Ipv4Addr::new(10, 0, 0, last);
        let expected = (24..=32u8)
            .rev()
            .find_map(|cidr| model.routes.get(&prefix(last, cidr)).copied());
        let got = route_of(device, addr).map(|p| p.public_key[0] - 1);
        prop_assert_eq!(got, expected, "route of {}", addr);
    }
    Ok(())
}

proptest! {
    #[test]
    fn lists_and_table_agree_in_batches(batches in prop::collection::vec(prop::collection::vec(change(), 1..8), 1..8)) {
        let device = Device::new(Instant::now());
        let mut model = Model::default();
        for changes in &batches {
            device.configure(|batch| {
                for c in changes {
                    apply_to_batch(batch, c);
                }
            });
            for c in changes {
                model.apply(c);
            }
            check(&device, &model)?;
        }
    }

    #[test]
    fn lists_and_table_agree_one_change_at_a_time(changes in prop::collection::vec(change(), 1..40)) {
        let device = Device::new(Instant::now());
        let mut model = Model::default();
        for c in &changes {
            device.configure(|batch| apply_to_batch(batch, c));
            model.apply(c);
            check(&device, &model)?;
        }
    }
}

#[test]
fn a_removed_peer_is_marked_only_when_the_batch_ends() {
    let device = Device::new(Instant::now());
    let peer = device.add_peer(key(1)).unwrap();
    device.configure(|batch| {
        batch.remove_peer(&key(1));
        assert!(batch.peer(&key(1)).is_none(), "gone inside the batch");
        assert!(
            device.peer(&key(1)).is_some(),
            "still there outside until it ends"
        );
    });
    assert!(device.peer(&key(1)).is_none());
    assert!(device.allowed_ips(&peer).is_empty());
}
