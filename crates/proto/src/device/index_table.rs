//! The receiver-index table, sharded: 1,024 copy-on-write maps behind `ArcSwapOption`, chosen by the
//! index's low bits (indices are random, so the shards fill evenly). A lookup on the data path loads one
//! shard, lock-free, exactly as the single map did; a write copies only the shards it touches, so a
//! handshake costs entries/1,024 copies instead of a copy of the whole table (at 100,000 sessions that is
//! about a hundred entries, not 100,000). A sharded map of our own rather than a concurrent-map crate:
//! readers keep the wait-free `ArcSwap` load they had, with no reference counting or epoch per lookup.
//!
//! Each write is published shard by shard. No reader needs two indices to agree: every lookup is of one
//! index, and what belongs together (a peer's keypair slots) lives under the peer's lock.

use super::index::IndexEntry;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::Arc;

const SHARD_BITS: u32 = 10;
const SHARDS: usize = 1 << SHARD_BITS;

type Shard = HashMap<u32, IndexEntry>;

pub(super) struct IndexTable {
    /// `None`: an empty shard (no allocation for it).
    shards: Box<[ArcSwapOption<Shard>]>,
}

fn shard_of(index: u32) -> usize {
    index as usize & (SHARDS - 1)
}

impl IndexTable {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    pub fn get(&self, index: u32) -> Option<IndexEntry> {
        self.shards[shard_of(index)]
            .load()
            .as_ref()?
            .get(&index)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.load().as_ref().map_or(0, |m| m.len()))
            .sum()
    }

    /// A write: changes collect in copies of the shards they touch and are published by
    /// [`IndexWrite::publish`]. The caller serialises writes (the device's index lock).
    pub fn write(&self) -> IndexWrite<'_> {
        IndexWrite {
            table: self,
            copies: Vec::new(),
        }
    }
}

pub(super) struct IndexWrite<'a> {
    table: &'a IndexTable,
    /// (shard, its new contents); a handful per write, so a list.
    copies: Vec<(usize, Shard)>,
}

impl IndexWrite<'_> {
    fn copy_of(&self, shard: usize) -> Option<&Shard> {
        self.copies
            .iter()
            .find(|(s, _)| *s == shard)
            .map(|(_, m)| m)
    }

    fn shard_mut(&mut self, shard: usize) -> &mut Shard {
        let at = match self.copies.iter().position(|(s, _)| *s == shard) {
            Some(at) => at,
            None => {
                let current = self.table.shards[shard].load();
                let copy = current.as_deref().cloned().unwrap_or_default();
                self.copies.push((shard, copy));
                self.copies.len() - 1
            }
        };
        &mut self.copies[at].1
    }

    pub fn contains(&self, index: u32) -> bool {
        let shard = shard_of(index);
        match self.copy_of(shard) {
            Some(copy) => copy.contains_key(&index),
            None => self.table.shards[shard]
                .load()
                .as_ref()
                .is_some_and(|m| m.contains_key(&index)),
        }
    }

    pub fn insert(&mut self, index: u32, entry: IndexEntry) {
        self.shard_mut(shard_of(index)).insert(index, entry);
    }

    /// Removes `index` (copying its shard only if it is there).
    pub fn remove(&mut self, index: u32) {
        if self.contains(index) {
            self.shard_mut(shard_of(index)).remove(&index);
        }
    }

    pub fn publish(self) {
        for (shard, mut map) in self.copies {
            let slot = &self.table.shards[shard];
            if map.is_empty() {
                slot.store(None);
                continue;
            }
            // After many removals a copy keeps room for what is gone: give it back.
            if map.len() * 4 < map.capacity() && map.capacity() > 64 {
                map.shrink_to_fit();
            }
            slot.store(Some(Arc::new(map)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Peer;

    #[test]
    fn writes_touch_only_their_shards_and_empty_shards_go() {
        let table = IndexTable::new();
        let peer = Arc::new(Peer::new([9; 32]));
        let mut w = table.write();
        for i in 0..10_000u32 {
            w.insert(i * 7 + 3, IndexEntry::Handshake(peer.clone()));
        }
        assert!(w.contains(3) && !w.contains(4));
        w.publish();
        assert_eq!(table.len(), 10_000);
        assert!(matches!(
            table.get(7 * 42 + 3),
            Some(IndexEntry::Handshake(_))
        ));
        assert!(table.get(4).is_none());

        // One insert and one removal of an absent index: one shard copied, the others untouched.
        let before: Vec<_> = table.shards.iter().map(|s| s.load_full()).collect();
        let mut w = table.write();
        w.insert(1_000_000, IndexEntry::Handshake(peer.clone()));
        w.remove(4);
        assert_eq!(w.copies.len(), 1);
        w.publish();
        let changed = table
            .shards
            .iter()
            .zip(&before)
            .filter(|(now, was)| {
                let now = now.load_full();
                match (&now, was) {
                    (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                    (None, None) => false,
                    _ => true,
                }
            })
            .count();
        assert_eq!(changed, 1);

        let mut w = table.write();
        for i in 0..10_000u32 {
            w.remove(i * 7 + 3);
        }
        w.remove(1_000_000);
        w.publish();
        assert_eq!(table.len(), 0);
        assert!(
            table.shards.iter().all(|s| s.load().is_none()),
            "empty shards hold nothing"
        );
    }
}
