//! Cryptokey routing: the allowed-IPs table (WireGuard whitepaper, "Cryptokey Routing").
//!
//! A longest-prefix-match map from IPv4 and IPv6 prefixes to a peer value. Outbound, the destination of a
//! packet from the TUN device picks the peer; inbound, the source of a decrypted packet must map back to
//! the peer that sent it.
//!
//! Layout: one path-compressed binary trie per address family (the shape of wireguard-go's
//! `allowedips.go` and the kernel's `allowedips.c`), its nodes in a `Vec` addressed by `u32` index.
//! Why a trie rather than one hash map per prefix length probed longest first:
//! - a lookup visits only the nodes on its own path (one per distinct prefix on it, usually 2–4), each a
//!   mask-and-compare, where the hash maps pay a hash per probed length (up to 129 for IPv6);
//! - no hashing means no hasher to pick and nothing an attacker choosing addresses can steer;
//! - the arena makes `Clone` a flat copy, which suits a table rebuilt on config change and swapped
//!   behind an `Arc`, and keeps nodes close together in memory.
//!
//! IPv4 and IPv6 live in separate tries: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is an IPv6
//! address here and never matches an IPv4 prefix, as in WireGuard.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A prefix length longer than its address family allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPrefix {
    pub cidr: u8,
    /// 32 for IPv4, 128 for IPv6.
    pub max: u8,
}

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "prefix length /{} is longer than the {} bits of the address; use 0..={}",
            self.cidr, self.max, self.max
        )
    }
}

impl std::error::Error for InvalidPrefix {}

/// Longest-prefix-match table from IP prefixes to peer values.
#[derive(Clone)]
pub struct AllowedIps<T> {
    v4: Trie<u32, T>,
    v6: Trie<u128, T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self {
            v4: Trie::new(),
            v6: Trie::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for AllowedIps<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.v4.iter().chain(self.v6.iter());
        f.debug_map()
            .entries(entries.map(|(addr, cidr, value)| (format!("{addr}/{cidr}"), value)))
            .finish()
    }
}

impl<T: Clone + PartialEq> AllowedIps<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `addr/cidr -> value`, replacing (and returning) the value of an identical prefix. Host
    /// bits beyond `cidr` are masked off (`10.0.0.1/24` is stored as `10.0.0.0/24`), as `wg` does.
    pub fn insert(&mut self, addr: IpAddr, cidr: u8, value: T) -> Result<Option<T>, InvalidPrefix> {
        match addr {
            IpAddr::V4(a) => self.v4.insert(a.to_bits(), cidr, value),
            IpAddr::V6(a) => self.v6.insert(a.to_bits(), cidr, value),
        }
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(a.to_bits()),
            IpAddr::V6(a) => self.v6.lookup(a.to_bits()),
        }
    }

    /// [`lookup`](Self::lookup) for an address taken straight from an IPv4 header.
    #[inline]
    pub fn lookup_v4(&self, addr: [u8; 4]) -> Option<&T> {
        self.v4.lookup(u32::from_be_bytes(addr))
    }

    /// [`lookup`](Self::lookup) for an address taken straight from an IPv6 header.
    #[inline]
    pub fn lookup_v6(&self, addr: [u8; 16]) -> Option<&T> {
        self.v6.lookup(u128::from_be_bytes(addr))
    }

    /// Removes every prefix that maps to `value`.
    pub fn remove_value(&mut self, value: &T) {
        self.v4.remove_value(value);
        self.v6.remove_value(value);
    }

    /// Removes exactly the prefix `addr/cidr` (host bits masked off) and returns its value.
    pub fn remove(&mut self, addr: IpAddr, cidr: u8) -> Option<T> {
        match addr {
            IpAddr::V4(a) => self.v4.remove(a.to_bits(), cidr),
            IpAddr::V6(a) => self.v6.remove(a.to_bits(), cidr),
        }
    }

    /// Every entry as (masked address, prefix length, value): IPv4 first, each family in address order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u8, &T)> {
        self.v4.iter().chain(self.v6.iter())
    }

    /// The prefixes that map to `value`, as `wg show` lists a peer's allowed IPs.
    pub fn entries_for<'a>(&'a self, value: &'a T) -> impl Iterator<Item = (IpAddr, u8)> + 'a {
        self.iter()
            .filter(move |(_, _, v)| *v == value)
            .map(|(addr, cidr, _)| (addr, cidr))
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    /// After many removals, rebuilds a family whose arena is mostly free slots, so the memory of
    /// removed prefixes goes back with them (the arena never shrinks by itself).
    pub fn compact_if_sparse(&mut self) {
        if self.v4.is_sparse() {
            self.v4 = self.v4.rebuilt();
        }
        if self.v6.is_sparse() {
            self.v6 = self.v6.rebuilt();
        }
    }
}

/// `addr/cidr` as the table stores it: host bits beyond `cidr` cleared; `None` for a `cidr` too long.
pub fn masked(addr: IpAddr, cidr: u8) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) if cidr <= u32::BITS as u8 => {
            Some(Ipv4Addr::from_bits(a.to_bits().masked(cidr)).into())
        }
        IpAddr::V6(a) if cidr <= u128::BITS as u8 => {
            Some(Ipv6Addr::from_bits(a.to_bits().masked(cidr)).into())
        }
        _ => None,
    }
}

/// An address as an unsigned integer, most significant bit first, so prefixes are high bits.
trait PrefixKey: Copy + Eq {
    const BITS: u8;
    /// Keeps the top `cidr` bits (`cidr <= BITS`).
    fn masked(self, cidr: u8) -> Self;
    /// The bit at position `at` counted from the top (`at < BITS`), as a child index.
    fn bit(self, at: u8) -> usize;
    /// How many top bits `self` and `other` share.
    fn common_prefix_len(self, other: Self) -> u8;
    fn into_ip(self) -> IpAddr;
}

macro_rules! impl_prefix_key {
    ($int:ty, $addr:ty) => {
        impl PrefixKey for $int {
            const BITS: u8 = <$int>::BITS as u8;

            #[inline(always)]
            fn masked(self, cidr: u8) -> Self {
                // A shift by the full width is the /0 case: keep nothing.
                self & <$int>::MAX
                    .checked_shl(u32::from(<Self as PrefixKey>::BITS - cidr))
                    .unwrap_or(0)
            }

            #[inline(always)]
            fn bit(self, at: u8) -> usize {
                ((self >> (<Self as PrefixKey>::BITS - 1 - at)) & 1) as usize
            }

            #[inline]
            fn common_prefix_len(self, other: Self) -> u8 {
                (self ^ other).leading_zeros() as u8
            }

            fn into_ip(self) -> IpAddr {
                IpAddr::from(<$addr>::from_bits(self))
            }
        }
    };
}

impl_prefix_key!(u32, Ipv4Addr);
impl_prefix_key!(u128, Ipv6Addr);

/// Index of a node in the arena; `NONE` marks a missing child or an empty tree.
type NodeIndex = u32;
const NONE: NodeIndex = NodeIndex::MAX;

/// A trie node holds the prefix `key/cidr`. Its children extend it with bit `cidr` set to 0 or 1, possibly
/// skipping several bits (path compression). A node without a value exists only to fork two subtrees, so
/// it always has both children.
#[derive(Clone)]
struct Node<K, T> {
    key: K,
    cidr: u8,
    children: [NodeIndex; 2],
    value: Option<T>,
}

impl<K, T> Node<K, T> {
    fn new(key: K, cidr: u8, value: Option<T>) -> Self {
        Self {
            key,
            cidr,
            children: [NONE; 2],
            value,
        }
    }
}

/// Where a node index is stored: the root, or a parent's child slot.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Child(NodeIndex, usize),
}

#[derive(Clone)]
struct Trie<K, T> {
    nodes: Vec<Node<K, T>>,
    /// Arena slots left by removed nodes, reused before the arena grows.
    free: Vec<NodeIndex>,
    root: NodeIndex,
    /// Number of prefixes with a value.
    len: usize,
}

impl<K: PrefixKey, T> Trie<K, T> {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NONE,
            len: 0,
        }
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    /// More free slots than used ones (and enough to matter).
    fn is_sparse(&self) -> bool {
        self.free.len() > 256 && self.free.len() * 2 > self.nodes.len()
    }

    /// The same entries in a fresh arena sized for them.
    fn rebuilt(&self) -> Self
    where
        T: Clone,
    {
        let mut fresh = Self::new();
        // Free slots hold no value (a removal takes it, pruning only frees valueless nodes), so the
        // nodes with one are exactly the entries.
        for node in &self.nodes {
            if let Some(value) = &node.value {
                // Re-inserting valid entries cannot fail.
                let _ = fresh.insert(node.key, node.cidr, value.clone());
            }
        }
        fresh.nodes.shrink_to_fit();
        fresh
    }

    #[inline]
    fn lookup(&self, addr: K) -> Option<&T> {
        let mut best = None;
        let mut index = self.root;
        while let Some(node) = self.nodes.get(index as usize) {
            if addr.masked(node.cidr) != node.key {
                break;
            }
            if let Some(value) = &node.value {
                best = Some(value);
            }
            if node.cidr >= K::BITS {
                break;
            }
            index = node.children[addr.bit(node.cidr)];
        }
        best
    }

    fn insert(&mut self, addr: K, cidr: u8, value: T) -> Result<Option<T>, InvalidPrefix> {
        if cidr > K::BITS {
            return Err(InvalidPrefix { cidr, max: K::BITS });
        }
        let key = addr.masked(cidr);
        let mut slot = Slot::Root;
        loop {
            let current = self.get_slot(slot);
            let Some(node) = self.nodes.get_mut(current as usize) else {
                let leaf = self.alloc(Node::new(key, cidr, Some(value)));
                self.set_slot(slot, leaf);
                self.len += 1;
                return Ok(None);
            };
            let common = key.common_prefix_len(node.key).min(cidr).min(node.cidr);
            if common == node.cidr {
                if node.cidr == cidr {
                    let previous = node.value.replace(value);
                    if previous.is_none() {
                        self.len += 1;
                    }
                    return Ok(previous);
                }
                // The node's prefix covers the new one: descend.
                slot = Slot::Child(current, key.bit(node.cidr));
                continue;
            }
            let node_key = node.key;
            let replacement = if common == cidr {
                // The new prefix covers the node: it goes in between, the node below it.
                let mut covering = Node::new(key, cidr, Some(value));
                covering.children[node_key.bit(cidr)] = current;
                self.alloc(covering)
            } else {
                // They part at bit `common`: a valueless fork holds both.
                let leaf = self.alloc(Node::new(key, cidr, Some(value)));
                let mut fork = Node::new(key.masked(common), common, None);
                let node_side = node_key.bit(common);
                fork.children[node_side] = current;
                fork.children[1 - node_side] = leaf;
                self.alloc(fork)
            };
            self.set_slot(slot, replacement);
            self.len += 1;
            return Ok(None);
        }
    }

    fn remove(&mut self, addr: K, cidr: u8) -> Option<T> {
        if cidr > K::BITS {
            return None;
        }
        let key = addr.masked(cidr);
        let mut parent = None;
        let mut slot = Slot::Root;
        loop {
            let current = self.get_slot(slot);
            let node = self.nodes.get_mut(current as usize)?;
            if node.cidr > cidr || key.masked(node.cidr) != node.key {
                return None;
            }
            if node.cidr == cidr {
                let value = node.value.take()?;
                self.len -= 1;
                self.prune(slot);
                // Only the parent can have lost a child; ancestors above keep theirs.
                if let Some(parent_slot) = parent {
                    self.prune(parent_slot);
                }
                return Some(value);
            }
            parent = Some(slot);
            slot = Slot::Child(current, key.bit(node.cidr));
        }
    }

    fn remove_value(&mut self, value: &T)
    where
        T: PartialEq,
    {
        // Post-order, so every node is pruned after its children are.
        let mut stack = vec![(Slot::Root, false)];
        while let Some((slot, children_done)) = stack.pop() {
            let index = self.get_slot(slot);
            let Some(node) = self.nodes.get_mut(index as usize) else {
                continue;
            };
            if children_done {
                if node.value.as_ref() == Some(value) {
                    node.value = None;
                    self.len -= 1;
                }
                self.prune(slot);
            } else {
                stack.push((slot, true));
                stack.push((Slot::Child(index, 0), false));
                stack.push((Slot::Child(index, 1), false));
            }
        }
    }

    /// Restores the invariant at `slot` after a value or child went away: a node with no value and fewer
    /// than two children is replaced by its only child, or removed.
    fn prune(&mut self, slot: Slot) {
        let index = self.get_slot(slot);
        let Some(node) = self.nodes.get_mut(index as usize) else {
            return;
        };
        if node.value.is_some() {
            return;
        }
        let replacement = match node.children {
            [NONE, NONE] => NONE,
            [child, NONE] | [NONE, child] => child,
            [_, _] => return,
        };
        node.children = [NONE; 2];
        self.free.push(index);
        self.set_slot(slot, replacement);
    }

    fn get_slot(&self, slot: Slot) -> NodeIndex {
        match slot {
            Slot::Root => self.root,
            Slot::Child(parent, side) => self.nodes[parent as usize].children[side],
        }
    }

    fn set_slot(&mut self, slot: Slot, index: NodeIndex) {
        match slot {
            Slot::Root => self.root = index,
            Slot::Child(parent, side) => self.nodes[parent as usize].children[side] = index,
        }
    }

    fn alloc(&mut self, node: Node<K, T>) -> NodeIndex {
        match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                let index = NodeIndex::try_from(self.nodes.len())
                    .ok()
                    .filter(|&index| index != NONE)
                    .expect("allowed-IPs table exceeds 2^32 - 1 nodes");
                self.nodes.push(node);
                index
            }
        }
    }

    fn iter(&self) -> TrieIter<'_, K, T> {
        TrieIter {
            trie: self,
            stack: vec![self.root],
        }
    }
}

/// Pre-order walk, child 0 before child 1: entries come out in address order, shorter prefix first.
struct TrieIter<'a, K, T> {
    trie: &'a Trie<K, T>,
    stack: Vec<NodeIndex>,
}

impl<'a, K: PrefixKey, T> Iterator for TrieIter<'a, K, T> {
    type Item = (IpAddr, u8, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(index) = self.stack.pop() {
            let Some(node) = self.trie.nodes.get(index as usize) else {
                continue;
            };
            self.stack.extend([node.children[1], node.children[0]]);
            if let Some(value) = &node.value {
                return Some((node.key.into_ip(), node.cidr, value));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Checks the structure: every reachable node is a proper extension of its parent on the right side,
    /// valueless nodes fork, no free slot is reachable, and `len` counts the values.
    fn check_invariants<K: PrefixKey + fmt::Debug, T>(trie: &Trie<K, T>) {
        let mut values = 0;
        let mut reachable = 0;
        let mut stack = vec![(trie.root, None::<(K, u8, usize)>)];
        while let Some((index, parent)) = stack.pop() {
            if index == NONE {
                continue;
            }
            reachable += 1;
            assert!(
                !trie.free.contains(&index),
                "free node {index} is reachable"
            );
            let node = &trie.nodes[index as usize];
            assert!(node.cidr <= K::BITS);
            assert_eq!(node.key, node.key.masked(node.cidr), "host bits set");
            if let Some((parent_key, parent_cidr, side)) = parent {
                assert!(node.cidr > parent_cidr);
                assert_eq!(node.key.masked(parent_cidr), parent_key);
                assert_eq!(node.key.bit(parent_cidr), side);
            }
            match node.value {
                Some(_) => values += 1,
                None => assert!(
                    node.children.iter().all(|&c| c != NONE),
                    "valueless node {index} does not fork"
                ),
            }
            for side in 0..2 {
                stack.push((node.children[side], Some((node.key, node.cidr, side))));
            }
        }
        assert_eq!(values, trie.len);
        assert_eq!(
            reachable + trie.free.len(),
            trie.nodes.len(),
            "leaked nodes"
        );
    }

    fn check_table<T>(table: &AllowedIps<T>) {
        check_invariants(&table.v4);
        check_invariants(&table.v6);
    }

    #[test]
    fn compacting_after_removals_keeps_every_entry_and_frees_the_arena() {
        let mut table = AllowedIps::new();
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..4000 {
            table.insert(addr(i), 32, i).unwrap();
        }
        for i in 100..4000 {
            assert_eq!(table.remove(addr(i), 32), Some(i));
        }
        let arena_before = table.v4.nodes.len();
        table.compact_if_sparse();
        assert!(
            table.v4.nodes.len() < arena_before / 10,
            "{} nodes",
            table.v4.nodes.len()
        );
        assert_eq!(table.len(), 100);
        for i in 0..4000 {
            assert_eq!(table.lookup(addr(i)), (i < 100).then_some(&i), "{i}");
        }
    }

    #[test]
    fn empty_table_matches_nothing() {
        let table = AllowedIps::<u32>::new();
        assert!(table.is_empty());
        assert_eq!(table.lookup(ip("10.0.0.1")), None);
        assert_eq!(table.lookup(ip("::")), None);
        assert_eq!(table.iter().count(), 0);
    }

    #[test]
    fn host_bits_are_masked() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.1"), 24, 1).unwrap();
        table.insert(ip("fd78::1234"), 64, 2).unwrap();
        let entries: Vec<_> = table.iter().map(|(a, c, v)| (a, c, *v)).collect();
        assert_eq!(
            entries,
            [(ip("10.0.0.0"), 24, 1), (ip("fd78::"), 64, 2)],
            "stored masked"
        );
        assert_eq!(table.lookup(ip("10.0.0.200")), Some(&1));
        assert_eq!(table.lookup(ip("10.0.1.1")), None);
        // Removing by any address inside the prefix removes the prefix, as inserting did.
        assert_eq!(table.remove(ip("10.0.0.77"), 24), Some(1));
        assert_eq!(table.remove(ip("fd78::ffff"), 64), Some(2));
        assert!(table.is_empty());
        check_table(&table);
    }

    #[test]
    fn default_routes_match_everything_in_their_family() {
        let mut table = AllowedIps::new();
        table.insert(ip("1.2.3.4"), 0, "v4 default").unwrap();
        assert_eq!(table.lookup(ip("255.255.255.255")), Some(&"v4 default"));
        assert_eq!(table.lookup(ip("0.0.0.0")), Some(&"v4 default"));
        assert_eq!(table.lookup(ip("::1")), None);
        table.insert(ip("::"), 0, "v6 default").unwrap();
        assert_eq!(table.lookup(ip("2001:db8::1")), Some(&"v6 default"));
        table.insert(ip("10.0.0.0"), 8, "ten").unwrap();
        assert_eq!(table.lookup(ip("10.9.9.9")), Some(&"ten"));
        assert_eq!(table.lookup(ip("11.0.0.0")), Some(&"v4 default"));
        assert_eq!(table.iter().next(), Some((ip("0.0.0.0"), 0, &"v4 default")));
        check_table(&table);
    }

    #[test]
    fn host_routes() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 24, 'n').unwrap();
        table.insert(ip("10.0.0.7"), 32, 'h').unwrap();
        table.insert(ip("fd78::"), 64, 'N').unwrap();
        table.insert(ip("fd78::7"), 128, 'H').unwrap();
        assert_eq!(table.lookup_v4([10, 0, 0, 7]), Some(&'h'));
        assert_eq!(table.lookup_v4([10, 0, 0, 6]), Some(&'n'));
        assert_eq!(table.lookup_v4([10, 0, 0, 8]), Some(&'n'));
        assert_eq!(table.lookup_v6(ip6_bytes("fd78::7")), Some(&'H'));
        assert_eq!(table.lookup_v6(ip6_bytes("fd78::6")), Some(&'N'));
        assert_eq!(table.lookup(ip("fd78::7")), Some(&'H'));
        assert_eq!(table.lookup(ip("fd79::7")), None);
        check_table(&table);
    }

    fn ip6_bytes(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn longest_prefix_wins_regardless_of_insert_order() {
        let prefixes = [
            ("10.0.0.0", 8),
            ("10.1.0.0", 16),
            ("10.1.2.0", 24),
            ("10.1.2.128", 25),
        ];
        for reverse in [false, true] {
            let mut table = AllowedIps::new();
            let order: Vec<_> = if reverse {
                prefixes.iter().rev().collect()
            } else {
                prefixes.iter().collect()
            };
            for &(addr, cidr) in order {
                table.insert(ip(addr), cidr, cidr).unwrap();
            }
            assert_eq!(table.lookup(ip("10.1.2.200")), Some(&25));
            assert_eq!(table.lookup(ip("10.1.2.100")), Some(&24));
            assert_eq!(table.lookup(ip("10.1.3.1")), Some(&16));
            assert_eq!(table.lookup(ip("10.2.0.0")), Some(&8));
            assert_eq!(table.lookup(ip("11.0.0.0")), None);
            check_table(&table);
        }
    }

    #[test]
    fn same_prefix_replaces_value() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 24, 1).unwrap();
        table.insert(ip("10.0.0.9"), 24, 2).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(ip("10.0.0.1")), Some(&2));
        // A different length is a different prefix.
        table.insert(ip("10.0.0.0"), 25, 3).unwrap();
        assert_eq!(table.len(), 2);
        check_table(&table);
    }

    #[test]
    fn prefix_too_long_is_refused() {
        let mut table = AllowedIps::new();
        assert_eq!(
            table.insert(ip("10.0.0.0"), 33, 1),
            Err(InvalidPrefix { cidr: 33, max: 32 })
        );
        assert_eq!(
            table.insert(ip("::"), 129, 1),
            Err(InvalidPrefix {
                cidr: 129,
                max: 128
            })
        );
        assert!(table.insert(ip("::"), 128, 1).is_ok());
        assert_eq!(table.remove(ip("10.0.0.0"), 255), None);
        assert_eq!(table.len(), 1);
        let message = InvalidPrefix { cidr: 33, max: 32 }.to_string();
        assert!(
            message.contains("/33") && message.contains("0..=32"),
            "{message}"
        );
    }

    #[test]
    fn remove_value_removes_every_prefix_of_that_peer() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 24, "a").unwrap();
        table.insert(ip("10.0.0.128"), 25, "b").unwrap();
        table.insert(ip("10.0.1.0"), 24, "a").unwrap();
        table.insert(ip("10.0.0.200"), 32, "a").unwrap();
        table.insert(ip("fd78::"), 64, "a").unwrap();
        table.insert(ip("fd78::1"), 128, "b").unwrap();
        let mut of_a: Vec<_> = table.entries_for(&"a").collect();
        of_a.sort();
        assert_eq!(
            of_a,
            [
                (ip("10.0.0.0"), 24),
                (ip("10.0.0.200"), 32),
                (ip("10.0.1.0"), 24),
                (ip("fd78::"), 64)
            ]
        );
        table.remove_value(&"a");
        check_table(&table);
        assert_eq!(table.len(), 2);
        assert_eq!(table.entries_for(&"a").count(), 0);
        assert_eq!(table.lookup(ip("10.0.0.1")), None);
        assert_eq!(table.lookup(ip("10.0.0.200")), Some(&"b"));
        assert_eq!(table.lookup(ip("fd78::1")), Some(&"b"));
        assert_eq!(table.lookup(ip("fd78::2")), None);
        table.remove_value(&"b");
        assert!(table.is_empty());
        check_table(&table);
        // Freed nodes are reused, not leaked.
        table.insert(ip("10.0.0.0"), 8, "c").unwrap();
        check_table(&table);
    }

    #[test]
    fn remove_exact_prefix_only() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 16, 1).unwrap();
        table.insert(ip("10.0.0.0"), 24, 2).unwrap();
        assert_eq!(table.remove(ip("10.0.0.0"), 20), None);
        assert_eq!(table.remove(ip("10.0.0.0"), 24), Some(2));
        assert_eq!(table.remove(ip("10.0.0.0"), 24), None);
        assert_eq!(table.lookup(ip("10.0.0.1")), Some(&1));
        assert_eq!(table.len(), 1);
        check_table(&table);
    }

    #[test]
    fn families_are_separate_and_v4_mapped_is_v6() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 8, "v4").unwrap();
        assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), None);
        assert_eq!(table.lookup_v6(ip6_bytes("::ffff:10.0.0.1")), None);
        table.insert(ip("::ffff:10.0.0.0"), 104, "mapped").unwrap();
        assert_eq!(table.lookup(ip("10.0.0.1")), Some(&"v4"));
        assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), Some(&"mapped"));
        // Same bits at the top of an IPv6 address are not the IPv4 prefix either.
        assert_eq!(table.lookup(ip("a00::")), None);
        assert_eq!(table.remove(ip("::ffff:10.0.0.0"), 8), None);
        assert_eq!(table.remove(ip("10.0.0.0"), 8), Some("v4"));
        assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), Some(&"mapped"));
        check_table(&table);
    }

    #[test]
    fn clear_and_clone() {
        let mut table = AllowedIps::new();
        table.insert(ip("10.0.0.0"), 8, 1).unwrap();
        table.insert(ip("fd78::"), 16, 2).unwrap();
        let copy = table.clone();
        table.clear();
        assert!(table.is_empty());
        assert_eq!(table.lookup(ip("10.0.0.1")), None);
        assert_eq!(copy.len(), 2);
        assert_eq!(copy.lookup(ip("fd78::1")), Some(&2));
        assert_eq!(format!("{copy:?}"), r#"{"10.0.0.0/8": 1, "fd78::/16": 2}"#);
    }

    /// The obviously correct table the trie must agree with.
    #[derive(Default)]
    struct Reference {
        entries: Vec<(IpAddr, u8, u8)>,
    }

    fn mask(addr: IpAddr, cidr: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => a.to_bits().masked(cidr).into_ip(),
            IpAddr::V6(a) => a.to_bits().masked(cidr).into_ip(),
        }
    }

    fn max_cidr(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    impl Reference {
        fn insert(&mut self, addr: IpAddr, cidr: u8, value: u8) {
            let addr = mask(addr, cidr);
            match self.entries.iter_mut().find(|e| e.0 == addr && e.1 == cidr) {
                Some(entry) => entry.2 = value,
                None => self.entries.push((addr, cidr, value)),
            }
        }

        fn remove(&mut self, addr: IpAddr, cidr: u8) -> Option<u8> {
            let addr = mask(addr, cidr);
            let at = self
                .entries
                .iter()
                .position(|e| e.0 == addr && e.1 == cidr)?;
            Some(self.entries.swap_remove(at).2)
        }

        fn lookup(&self, addr: IpAddr) -> Option<u8> {
            self.entries
                .iter()
                .filter(|e| e.0.is_ipv4() == addr.is_ipv4() && mask(addr, e.1) == e.0)
                .max_by_key(|e| e.1)
                .map(|e| e.2)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(IpAddr, u8, u8),
        Remove(IpAddr, u8),
        RemoveValue(u8),
        Lookup(IpAddr),
    }

    /// Bytes drawn mostly from a few values, so prefixes overlap and share paths often. (Plain maps of
    /// integers: nested unions of arrays overflow the test thread's stack in debug builds.)
    fn byte() -> impl Strategy<Value = u8> {
        any::<u16>().prop_map(|draw| match draw % 10 {
            0..=3 => 0,
            4 | 5 => 0xff,
            6 => 0x80,
            7 => 0x0a,
            _ => (draw >> 8) as u8,
        })
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            prop::array::uniform4(byte()).prop_map(IpAddr::from),
            prop::array::uniform16(byte()).prop_map(IpAddr::from),
        ]
    }

    fn prefix() -> impl Strategy<Value = (IpAddr, u8)> {
        (address(), any::<u8>()).prop_map(|(addr, cidr)| (addr, cidr % (max_cidr(addr) + 1)))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (prefix(), 0..4u8).prop_map(|((a, c), v)| Op::Insert(a, c, v)),
            2 => prefix().prop_map(|(a, c)| Op::Remove(a, c)),
            1 => (0..4u8).prop_map(Op::RemoveValue),
            4 => address().prop_map(Op::Lookup),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn agrees_with_linear_scan(ops in prop::collection::vec(op(), 1..80), probes in prop::collection::vec(address(), 8)) {
            let mut table = AllowedIps::new();
            let mut reference = Reference::default();
            for op in &ops {
                match *op {
                    Op::Insert(addr, cidr, value) => {
                        table.insert(addr, cidr, value).unwrap();
                        reference.insert(addr, cidr, value);
                        prop_assert_eq!(table.lookup(addr).copied(), reference.lookup(addr));
                    }
                    Op::Remove(addr, cidr) => {
                        prop_assert_eq!(table.remove(addr, cidr), reference.remove(addr, cidr));
                    }
                    Op::RemoveValue(value) => {
                        table.remove_value(&value);
                        reference.entries.retain(|e| e.2 != value);
                    }
                    Op::Lookup(addr) => {
                        prop_assert_eq!(table.lookup(addr).copied(), reference.lookup(addr));
                    }
                }
                prop_assert_eq!(table.len(), reference.entries.len());
            }
            check_table(&table);
            for addr in probes.iter().chain(reference.entries.iter().map(|e| &e.0)) {
                let expected = reference.lookup(*addr);
                prop_assert_eq!(table.lookup(*addr).copied(), expected);
                let raw = match *addr {
                    IpAddr::V4(a) => table.lookup_v4(a.octets()),
                    IpAddr::V6(a) => table.lookup_v6(a.octets()),
                };
                prop_assert_eq!(raw.copied(), expected);
            }
            let mut listed: Vec<_> = table.iter().map(|(a, c, v)| (a, c, *v)).collect();
            let mut expected = reference.entries.clone();
            listed.sort();
            expected.sort();
            prop_assert_eq!(listed, expected);
            for value in 0..4u8 {
                let mut listed: Vec<_> = table.entries_for(&value).collect();
                let mut expected: Vec<_> = reference.entries.iter().filter(|e| e.2 == value).map(|e| (e.0, e.1)).collect();
                listed.sort();
                expected.sort();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
