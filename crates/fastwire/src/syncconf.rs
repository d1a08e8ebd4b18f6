//! `fastwire syncconf IFACE FILE`: makes a running interface match a wg-quick file while keeping what
//! did not change — as `wg syncconf IFACE <(wg-quick strip FILE)` does, in one command, and what
//! `systemctl reload fastwire@IFACE` runs. Peers missing from the file are removed; every other peer is
//! updated in place (its sessions survive); the private key and ports are set, which changes nothing when
//! they are the same. Like `wg syncconf`, it leaves addresses, MTU, DNS and routes alone.

use std::collections::HashSet;
use std::path::Path;

use fastwire_engine::config::{DeviceSnapshot, DeviceUpdate, Key, PeerUpdate};

use crate::config;
use crate::uapi::client;

pub fn syncconf(iface: &str, file: &Path) -> Result<(), String> {
    let path = config::config_path(file);
    let config = config::load(&path)?;
    for warning in &config.warnings {
        eprintln!("{warning}");
    }
    let wanted = config.device_update()?;
    let current = client::get(iface)?;
    client::set(iface, &sync_update(wanted, &current))
}

/// The one `set=1` that turns `current` into `wanted` (a whole file's update) without replacing peers.
pub(crate) fn sync_update(mut wanted: DeviceUpdate, current: &DeviceSnapshot) -> DeviceUpdate {
    wanted.replace_peers = false;
    let keep: HashSet<Key> = wanted.peers.iter().map(|p| p.public_key).collect();
    for peer in &mut wanted.peers {
        // What the file leaves out is off, not "unchanged": a PSK or keepalive deleted from the file goes.
        peer.preshared_key.get_or_insert(None);
        peer.persistent_keepalive.get_or_insert(0);
    }
    let removals = current
        .peers
        .iter()
        .filter(|p| !keep.contains(&p.public_key))
        .map(|p| PeerUpdate {
            remove: true,
            ..PeerUpdate::new(p.public_key)
        });
    wanted.peers.splice(0..0, removals.collect::<Vec<_>>());
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwire_engine::config::{AllowedIp, PeerSnapshot};

    fn peer(key: u8, psk: Option<Option<Key>>, keepalive: Option<u16>) -> PeerUpdate {
        PeerUpdate {
            preshared_key: psk,
            persistent_keepalive: keepalive,
            replace_allowed_ips: true,
            allowed_ips: vec![AllowedIp {
                addr: [10, 0, 0, key].into(),
                cidr: 32,
            }],
            ..PeerUpdate::new([key; 32])
        }
    }

    #[test]
    fn removes_what_the_file_lost_and_updates_the_rest_in_place() {
        let wanted = DeviceUpdate {
            private_key: Some(Some([9; 32])),
            listen_port: Some(51820),
            replace_peers: true,
            peers: vec![peer(1, None, None), peer(3, Some(Some([5; 32])), Some(25))],
            ..DeviceUpdate::default()
        };
        let current = DeviceSnapshot {
            peers: vec![PeerSnapshot::new([1; 32]), PeerSnapshot::new([2; 32])],
            ..DeviceSnapshot::default()
        };
        let sync = sync_update(wanted, &current);
        assert!(!sync.replace_peers, "peers are never replaced wholesale");
        assert_eq!(sync.private_key, Some(Some([9; 32])));
        assert_eq!(sync.listen_port, Some(51820));
        let by_key = |k: u8| sync.peers.iter().find(|p| p.public_key == [k; 32]).unwrap();
        assert!(by_key(2).remove, "a peer gone from the file is removed");
        assert!(!by_key(1).remove && !by_key(3).remove);
        assert_eq!(
            by_key(1).preshared_key,
            Some(None),
            "no PSK in the file clears it"
        );
        assert_eq!(by_key(1).persistent_keepalive, Some(0));
        assert_eq!(by_key(3).preshared_key, Some(Some([5; 32])));
        assert_eq!(by_key(3).persistent_keepalive, Some(25));
        assert!(by_key(1).replace_allowed_ips && by_key(3).replace_allowed_ips);
        assert_eq!(sync.peers.len(), 3);
    }
}
