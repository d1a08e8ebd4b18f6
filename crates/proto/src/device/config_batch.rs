//! Configuration changes in batches. The peer and routing tables are copy-on-write (the data path reads
//! them without a lock), so each change used to copy a whole table: N peers added one by one cost N².
//! A [`ConfigBatch`] copies each table at most once, applies every change of one transaction (a UAPI
//! `set=1`, say) to the copies, and publishes them together when it ends: a `set` of N peers costs N.
//! Each peer keeps the list of its own prefixes ([`Peer::allowed_ips`]), so replacing or removing one
//! peer's allowed IPs touches only those, not the whole table.

use super::{Device, Identity, PeerRef};
use crate::allowed_ips::{self, AllowedIps};
use crate::cookie::CookieChecker;
use crate::crypto::Key;
use crate::noise::StaticKeys;
use crate::peer::Peer;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Changes under way; made by [`Device::configure`], which holds the configuration lock throughout.
pub struct ConfigBatch<'a> {
    device: &'a Device,
    /// The tables as changed so far; `None` until the first change to each.
    peers: Option<HashMap<Key, Arc<Peer>>>,
    routes: Option<AllowedIps<PeerRef>>,
    /// Peers taken out: their sessions end once the tables without them are published.
    removed: Vec<Arc<Peer>>,
}

impl Device {
    /// Runs `change` on a batch and publishes what it did (also when it returns an error: what was
    /// applied stays applied, as in wireguard-go). Readers see the tables before or after, never half.
    pub fn configure<R>(&self, change: impl FnOnce(&mut ConfigBatch<'_>) -> R) -> R {
        let _guard = super::lock(&self.config_lock);
        let mut batch = ConfigBatch {
            device: self,
            peers: None,
            routes: None,
            removed: Vec::new(),
        };
        let result = change(&mut batch);
        batch.publish();
        result
    }
}

impl ConfigBatch<'_> {
    fn peers_mut(&mut self) -> &mut HashMap<Key, Arc<Peer>> {
        let device = self.device;
        self.peers
            .get_or_insert_with(|| HashMap::clone(&device.peers.load()))
    }

    fn routes_mut(&mut self) -> &mut AllowedIps<PeerRef> {
        let device = self.device;
        self.routes
            .get_or_insert_with(|| AllowedIps::clone(&device.routes.load()))
    }

    /// Sets or removes our private key. Sessions made under the old key are dropped, and a peer with our
    /// own public key is removed (as wireguard-go does).
    pub fn set_private_key(&mut self, private: Option<Key>) {
        let device = self.device;
        if device.private_key() == private {
            return;
        }
        let identity = private.map(|k| {
            let keys = StaticKeys::from_private(k);
            let checker = CookieChecker::new(&keys.public);
            Arc::new(Identity { keys, checker })
        });
        if let Some(own) = identity.as_ref().map(|i| i.keys.public) {
            self.remove_peer(&own);
        }
        // The new key first, then the new epoch, then the erasure: a handshake still using the old key
        // read the old epoch, so it is either erased below or refused when it tries to install.
        device.identity.store(identity.clone());
        device.new_epoch();
        let all = self.all_peers();
        for peer in &all {
            peer.handshake().forget_static_static();
        }
        device.zero_peers(all.iter().map(|p| &**p));
    }

    fn all_peers(&self) -> Vec<Arc<Peer>> {
        match &self.peers {
            Some(peers) => peers.values().cloned().collect(),
            None => self.device.peers.load().values().cloned().collect(),
        }
    }

    /// The peer with this key, as the batch has it so far.
    pub fn peer(&self, public_key: &Key) -> Option<Arc<Peer>> {
        match &self.peers {
            Some(peers) => peers.get(public_key).cloned(),
            None => self.device.peer(public_key),
        }
    }

    /// Returns the peer with this key, creating it if needed. `None` if the key is our own.
    pub fn add_peer(&mut self, public_key: Key) -> Option<Arc<Peer>> {
        if let Some(p) = self.peer(&public_key) {
            return Some(p);
        }
        let identity = self.device.identity.load();
        if identity
            .as_ref()
            .is_some_and(|i| i.keys.public == public_key)
        {
            return None;
        }
        let peer = Arc::new(Peer::new(public_key));
        self.peers_mut().insert(public_key, peer.clone());
        Some(peer)
    }

    pub fn remove_peer(&mut self, public_key: &Key) {
        if self.peer(public_key).is_none() {
            return;
        }
        let Some(peer) = self.peers_mut().remove(public_key) else {
            return;
        };
        self.drop_routes_of(&peer);
        self.removed.push(peer);
    }

    /// Removes every peer.
    pub fn clear_peers(&mut self) {
        let all = self.all_peers();
        if all.is_empty() {
            return;
        }
        for peer in &all {
            peer.allowed_ips().clear();
        }
        self.peers = Some(HashMap::new());
        self.routes = Some(AllowedIps::new());
        self.removed.extend(all);
    }

    /// Replaces (`replace`) or extends a peer's allowed IPs. A prefix another peer had moves to this one.
    pub fn set_allowed_ips(
        &mut self,
        peer: &Arc<Peer>,
        replace: bool,
        ips: &[(IpAddr, u8)],
    ) -> Result<(), String> {
        if replace {
            self.drop_routes_of(peer);
        }
        for &(addr, cidr) in ips {
            let prefix = allowed_ips::masked(addr, cidr)
                .ok_or_else(|| format!("invalid prefix length /{cidr} for {addr}"))?;
            let previous = self
                .routes_mut()
                .insert(prefix, cidr, PeerRef(peer.clone()))
                .map_err(|_| format!("invalid prefix length /{cidr} for {addr}"))?;
            match previous {
                Some(PeerRef(owner)) if Arc::ptr_eq(&owner, peer) => {}
                Some(PeerRef(owner)) => {
                    owner.allowed_ips().retain(|&p| p != (prefix, cidr));
                    peer.allowed_ips().push((prefix, cidr));
                }
                None => peer.allowed_ips().push((prefix, cidr)),
            }
        }
        Ok(())
    }

    /// Takes `peer`'s prefixes out of the routing table.
    fn drop_routes_of(&mut self, peer: &Arc<Peer>) {
        let prefixes = std::mem::take(&mut *peer.allowed_ips());
        if prefixes.is_empty() {
            return;
        }
        let routes = self.routes_mut();
        for (addr, cidr) in prefixes {
            // The list and the table change together, so the entry is this peer's; were it another's,
            // it would be put back rather than lost.
            if let Some(owner) = routes.remove(addr, cidr)
                && !Arc::ptr_eq(&owner.0, peer)
            {
                let _ = routes.insert(addr, cidr, owner);
            }
        }
    }

    fn publish(self) {
        let device = self.device;
        // After large removals the copies keep room for what is gone: give it back.
        if let Some(mut peers) = self.peers {
            if peers.len() * 4 < peers.capacity() && peers.capacity() > 1024 {
                peers.shrink_to_fit();
            }
            device.peers.store(Arc::new(peers));
        }
        if let Some(mut routes) = self.routes {
            routes.compact_if_sparse();
            device.routes.store(Arc::new(routes));
        }
        for peer in &self.removed {
            device.mark_removed(peer);
        }
        device.zero_peers(self.removed.iter().map(|p| &**p));
        for peer in &self.removed {
            peer.timers.disarm_all();
        }
    }
}
