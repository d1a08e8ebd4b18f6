//! The receiver-index table (the index each handshake and session is known by on the wire, mapped to
//! its peer and keypair) and the keypair slots it mirrors: reserving, installing, confirming, erasing.

use super::index_table::IndexWrite;
use super::{Device, lock};
use crate::crypto;
use crate::peer::{KeypairSlots, Peer};
use crate::session::Keypair;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(Clone)]
pub(super) enum IndexEntry {
    Handshake(Arc<Peer>),
    Session(Arc<Peer>, Arc<Keypair>),
}

impl Device {
    /// Runs `f` on a write of the index table under the index lock, then publishes it (only the shards
    /// it touched are copied).
    pub(super) fn index_update<R>(&self, f: impl FnOnce(&mut IndexWrite<'_>) -> R) -> R {
        let _g = lock(&self.index_lock);
        let mut write = self.indices.write();
        let r = f(&mut write);
        write.publish();
        r
    }

    /// The configuration epoch a handshake starts in: read it before loading the identity, then hand
    /// it to [`Self::new_index`] and [`Self::install_keypair`].
    pub(super) fn epoch(&self) -> u64 {
        self.config_epoch.load(Ordering::SeqCst)
    }

    /// Whether a handshake for `peer` begun in `epoch` may still add to the index table: not once the
    /// peer was removed or our private key replaced since. Checked under the index lock, which the
    /// configuration side takes to mark those changes before it erases the peer's indices, so every
    /// handshake either lands before the erasure (and is erased with the rest) or is refused.
    fn admits(&self, peer: &Peer, epoch: u64) -> bool {
        !peer.removed.load(Ordering::SeqCst) && self.config_epoch.load(Ordering::SeqCst) == epoch
    }

    /// Marks `peer` removed (see [`Self::admits`]); its indices are erased next.
    pub(super) fn mark_removed(&self, peer: &Peer) {
        let _g = lock(&self.index_lock);
        peer.removed.store(true, Ordering::SeqCst);
    }

    /// Starts a new configuration epoch: handshakes under way are refused (see [`Self::admits`]).
    pub(super) fn new_epoch(&self) {
        let _g = lock(&self.index_lock);
        self.config_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Reserves a fresh random index for a handshake of `peer`; `None` if the handshake is stale.
    pub(super) fn new_index(&self, peer: &Arc<Peer>, epoch: u64) -> Option<u32> {
        self.index_update(|map| {
            if !self.admits(peer, epoch) {
                return None;
            }
            loop {
                let i = crypto::random_u32();
                if !map.contains(i) {
                    map.insert(i, IndexEntry::Handshake(peer.clone()));
                    return Some(i);
                }
            }
        })
    }

    /// Erases a peer's sessions and handshake state.
    pub(super) fn zero_peer(&self, peer: &Peer) {
        self.zero_peers([peer]);
    }

    /// Erases the sessions and handshake state of several peers, in one write of the index table (a
    /// removal of many peers touches each shard once, not once per peer).
    pub(super) fn zero_peers<'a>(&self, peers: impl IntoIterator<Item = &'a Peer>) {
        let mut old: Vec<u32> = Vec::new();
        for peer in peers {
            let mut hs = peer.handshake();
            let mut slots = peer.keypairs();
            old.extend(slots.indices());
            old.extend(hs.initiator.take().map(|s| s.local_index));
            *slots = KeypairSlots::default();
            peer.current.store(None);
        }
        if !old.is_empty() {
            self.index_update(|map| {
                for i in &old {
                    map.remove(*i);
                }
            });
        }
    }

    /// Installs a new keypair in the peer's slots and the index table. A stale handshake (see
    /// [`Self::admits`]) installs nothing and frees its index: returns false.
    pub(super) fn install_keypair(
        &self,
        peer: &Arc<Peer>,
        keypair: Arc<Keypair>,
        epoch: u64,
    ) -> bool {
        self.index_update(|map| {
            if !self.admits(peer, epoch) {
                map.remove(keypair.local_index);
                return false;
            }
            // Lock order: the index lock, then the peer's keypair lock (nothing takes them the other
            // way round).
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
            for i in &retired {
                map.remove(*i);
            }
            map.insert(
                keypair.local_index,
                IndexEntry::Session(peer.clone(), keypair.clone()),
            );
            true
        })
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
                map.remove(i);
            });
        }
        true
    }
}
