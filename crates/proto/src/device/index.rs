//! The receiver-index table (the index each handshake and session is known by on the wire, mapped to
//! its peer and keypair) and the keypair slots it mirrors: reserving, installing, confirming, erasing.

use super::{Device, lock};
use crate::crypto;
use crate::peer::{KeypairSlots, Peer};
use crate::session::Keypair;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub(super) enum IndexEntry {
    Handshake(Arc<Peer>),
    Session(Arc<Peer>, Arc<Keypair>),
}

impl Device {
    pub(super) fn index_update(&self, f: impl FnOnce(&mut HashMap<u32, IndexEntry>)) {
        let _g = lock(&self.index_lock);
        let mut map = HashMap::clone(&self.indices.load());
        f(&mut map);
        self.indices.store(Arc::new(map));
    }

    /// Reserves a fresh random index for `entry`.
    pub(super) fn new_index(&self, entry: IndexEntry) -> u32 {
        let mut chosen = 0;
        self.index_update(|map| {
            loop {
                let i = crypto::random_u32();
                if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(i) {
                    slot.insert(entry);
                    chosen = i;
                    return;
                }
            }
        });
        chosen
    }

    /// Erases a peer's sessions and handshake state.
    pub(super) fn zero_peer(&self, peer: &Peer) {
        let old: Vec<u32> = {
            let mut hs = peer.handshake();
            let mut slots = peer.keypairs();
            let mut ids: Vec<u32> = slots.indices().collect();
            ids.extend(hs.initiator.take().map(|s| s.local_index));
            *slots = KeypairSlots::default();
            peer.current.store(None);
            ids
        };
        if !old.is_empty() {
            self.index_update(|map| {
                for i in &old {
                    map.remove(i);
                }
            });
        }
    }

    /// Installs a new keypair in the peer's slots and the index table.
    pub(super) fn install_keypair(&self, peer: &Arc<Peer>, keypair: Arc<Keypair>) {
        let retired: Vec<u32> = {
            let mut slots = peer.keypairs();
            let mut retired = Vec::new();
            if keypair.we_initiated {
                retired.extend(slots.previous.take().map(|k| k.local_index));
                // Crossed handshakes: the peer may already be sending on the session we answered
                // (`next`), so it stays decryptable as `previous`, as in wireguard-go.
                if let Some(next) = slots.next.take() {
                    retired.extend(slots.current.take().map(|k| k.local_index));
                    slots.previous = Some(next);
                } else {
                    slots.previous = slots.current.take();
                }
                slots.current = Some(keypair.clone());
                peer.current.store(Some(keypair.clone()));
            } else {
                retired.extend(slots.next.take().map(|k| k.local_index));
                retired.extend(slots.previous.take().map(|k| k.local_index));
                slots.next = Some(keypair.clone());
            }
            retired
        };
        let entry = IndexEntry::Session(peer.clone(), keypair.clone());
        self.index_update(|map| {
            for i in &retired {
                map.remove(i);
            }
            map.insert(keypair.local_index, entry);
        });
    }

    /// The responder's `next` keypair proved itself (first data on it): make it current.
    pub(super) fn confirm_next(&self, peer: &Peer, keypair: &Arc<Keypair>) -> bool {
        let retired = {
            let mut slots = peer.keypairs();
            if !slots.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, keypair)) {
                return false;
            }
            let retired = slots.previous.take().map(|k| k.local_index);
            slots.previous = slots.current.take();
            slots.current = slots.next.take();
            peer.current.store(slots.current.clone());
            retired
        };
        if let Some(i) = retired {
            self.index_update(|map| {
                map.remove(&i);
            });
        }
        true
    }
}
