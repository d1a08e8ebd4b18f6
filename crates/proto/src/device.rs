//! The device: our identity, the peer table, the index table and cryptokey routing, and the handling of
//! every message type. It is shared by all workers (`&self` everywhere): read-mostly tables are swapped
//! whole (`ArcSwap`), per-peer handshake state sits behind small per-peer locks.

use crate::allowed_ips::AllowedIps;
use crate::cookie::CookieChecker;
use crate::crypto::{self, Key};
use crate::endpoint::Endpoint;
use crate::messages::{self, DATA_HEADER_LEN, INITIATION_LEN, Kind, RESPONSE_LEN};
use crate::noise::{self, StaticKeys};
use crate::peer::{KeypairSlots, Peer};
use crate::ratelimit::{CookieReplyLimiter, RateLimiter};
use crate::session::{Keypair, OpenError};
use crate::timers::*;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Handshake messages per second above which the device is "under load" and demands cookies.
pub const DEFAULT_UNDER_LOAD_THRESHOLD: u32 = 1000;

/// Why a received datagram was dropped. Every drop has exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvDrop {
    /// Not a WireGuard message shape (type, reserved bytes, length).
    Malformed,
    /// We have no private key yet.
    NoIdentity,
    /// mac1 does not match our public key.
    BadMac1,
    /// Under load without a valid mac2: we answered with a cookie reply.
    CookieSent,
    /// Under load without a valid mac2, and the source (or all sources together) had used up its
    /// budget of cookie replies: dropped without an answer.
    CookieRateLimited,
    /// A handshake message that arrived while the handshake queue was full (half full, for
    /// initiations): dropped before any work was spent on it. Counted by the engine.
    HandshakeQueueFull,
    /// Under load, more handshakes from one source address than its budget (20/s, burst 5).
    RateLimited,
    /// The handshake did not decrypt, names an unknown peer, or used a low-order key.
    HandshakeAuth,
    /// The initiation's timestamp is not newer than the last one from that peer.
    ReplayedTimestamp,
    /// Initiations from one peer faster than 50 per second.
    HandshakeFlood,
    /// A response or cookie reply for no handshake of ours.
    UnexpectedHandshake,
    /// A cookie reply that does not authenticate.
    BadCookie,
    /// A data message whose receiver index names no session.
    UnknownSession,
    /// The session is older than REJECT_AFTER_TIME.
    ExpiredSession,
    /// A data message that fails authentication (tampered, truncated, wrong key).
    DataAuth,
    /// A replayed or too-old counter.
    Replay,
    /// The decrypted packet is not IPv4/IPv6 or its header is inconsistent.
    BadInnerPacket,
    /// The inner source address is not in the sending peer's allowed IPs.
    DisallowedSource,
}

impl RecvDrop {
    pub const ALL: [RecvDrop; 18] = [
        RecvDrop::Malformed,
        RecvDrop::NoIdentity,
        RecvDrop::BadMac1,
        RecvDrop::CookieSent,
        RecvDrop::CookieRateLimited,
        RecvDrop::HandshakeQueueFull,
        RecvDrop::RateLimited,
        RecvDrop::HandshakeAuth,
        RecvDrop::ReplayedTimestamp,
        RecvDrop::HandshakeFlood,
        RecvDrop::UnexpectedHandshake,
        RecvDrop::BadCookie,
        RecvDrop::UnknownSession,
        RecvDrop::ExpiredSession,
        RecvDrop::DataAuth,
        RecvDrop::Replay,
        RecvDrop::BadInnerPacket,
        RecvDrop::DisallowedSource,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecvDrop::Malformed => "rx_malformed",
            RecvDrop::NoIdentity => "rx_no_private_key",
            RecvDrop::BadMac1 => "rx_bad_mac1",
            RecvDrop::CookieSent => "rx_under_load_cookie_sent",
            RecvDrop::CookieRateLimited => "rx_cookie_reply_rate_limited",
            RecvDrop::HandshakeQueueFull => "rx_handshake_queue_full",
            RecvDrop::RateLimited => "rx_handshake_rate_limited",
            RecvDrop::HandshakeAuth => "rx_handshake_auth_failed",
            RecvDrop::ReplayedTimestamp => "rx_handshake_replayed_timestamp",
            RecvDrop::HandshakeFlood => "rx_handshake_flood",
            RecvDrop::UnexpectedHandshake => "rx_handshake_unexpected",
            RecvDrop::BadCookie => "rx_bad_cookie_reply",
            RecvDrop::UnknownSession => "rx_unknown_session",
            RecvDrop::ExpiredSession => "rx_expired_session",
            RecvDrop::DataAuth => "rx_data_auth_failed",
            RecvDrop::Replay => "rx_replayed_counter",
            RecvDrop::BadInnerPacket => "rx_bad_inner_packet",
            RecvDrop::DisallowedSource => "rx_disallowed_source",
        }
    }
}

/// What to do with a received datagram.
pub enum Incoming {
    /// An IP packet for the TUN device: `msg[DATA_HEADER_LEN..DATA_HEADER_LEN + len]`.
    /// `rekey`: the session is getting old on the receive side; start a handshake.
    /// `confirmed`: this packet confirmed a session we answered: send what waited for a session.
    Data {
        peer: Arc<Peer>,
        len: usize,
        rekey: bool,
        confirmed: bool,
    },
    /// An authenticated empty data message (`confirmed` as for `Data`).
    Keepalive {
        peer: Arc<Peer>,
        confirmed: bool,
    },
    /// Send `reply[..len]` back to the source (a handshake response or a cookie reply).
    Reply {
        len: usize,
    },
    /// A handshake we started is complete: send the packets waiting for it, or a keepalive.
    HandshakeComplete {
        peer: Arc<Peer>,
    },
    /// A cookie reply was accepted; the next initiation carries mac2. `resend`: the initiation it answered
    /// went out without a cookie, so send another at once instead of waiting for the retry timer.
    CookieAccepted {
        peer: Arc<Peer>,
        resend: bool,
    },
    Dropped(RecvDrop),
}

/// Why an outgoing packet could not be encrypted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No usable session: queue the packet and start a handshake.
    NoSession,
    /// The peer has no endpoint to send to.
    NoEndpoint,
    /// The buffer lacks room for padding and tag.
    NoRoom,
}

/// A sealed data message, ready to send.
#[derive(Debug, Clone, Copy)]
pub struct Sealed {
    pub len: usize,
    pub endpoint: Endpoint,
    /// The session is due for rekeying: start a handshake.
    pub rekey: bool,
}

/// What the timers ask for on one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimerEvents {
    pub send_initiation: bool,
    /// A retry of an unanswered initiation (not rate-limited).
    pub retry: bool,
    pub send_keepalive: bool,
    /// Handshake attempts exhausted: drop the packets waiting for a session.
    pub gave_up: bool,
}

struct Identity {
    keys: StaticKeys,
    checker: CookieChecker,
}

/// Whether a handshake's mac1 was already verified (by [`Device::precheck_handshake`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mac1 {
    Checked,
    Unchecked,
}

#[derive(Clone)]
enum IndexEntry {
    Handshake(Arc<Peer>),
    Session(Arc<Peer>, Arc<Keypair>),
}

/// A peer as a value in the routing table: equality is identity.
#[derive(Clone)]
pub struct PeerRef(pub Arc<Peer>);

impl PartialEq for PeerRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Decides when to demand cookies: more handshake messages per second than the threshold, or a backlog
/// reported by whoever queues them (the engine's handshake queue), puts the device under load for a
/// second.
struct LoadMeter {
    window_start: AtomicU64,
    count: AtomicU32,
    under_load_until: AtomicU64,
    threshold: AtomicU32,
}

impl LoadMeter {
    fn backlog(&self, now: u64) {
        self.under_load_until
            .fetch_max(now + 1_000_000_000, Ordering::Relaxed);
    }

    fn record(&self, now: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) > 1_000_000_000 {
            self.window_start.store(now, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.threshold.load(Ordering::Relaxed) {
            self.under_load_until
                .store(now + 1_000_000_000, Ordering::Relaxed);
        }
        now < self.under_load_until.load(Ordering::Relaxed)
    }
}

pub struct Device {
    clock: Clock,
    identity: ArcSwapOption<Identity>,
    peers: ArcSwap<HashMap<Key, Arc<Peer>>>,
    routes: ArcSwap<AllowedIps<PeerRef>>,
    indices: ArcSwap<HashMap<u32, IndexEntry>>,
    /// Serialises configuration changes (peers, routes, identity).
    config_lock: Mutex<()>,
    /// Serialises index-table writes; a leaf lock, never held while taking another.
    index_lock: Mutex<()>,
    load: LoadMeter,
    timers_dirty: AtomicBool,
    /// When the timer driver will next wake by itself (0 = it is awake and will recompute).
    driver_deadline: AtomicU64,
    /// Per-source handshake budget, consulted only under load.
    rate_limiter: Mutex<RateLimiter>,
    /// Budget of cookie replies, per source and in total.
    cookie_limiter: Mutex<CookieReplyLimiter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Device {
    pub fn new(now: Instant) -> Self {
        Self {
            clock: Clock::new(now),
            identity: ArcSwapOption::empty(),
            peers: ArcSwap::from_pointee(HashMap::new()),
            routes: ArcSwap::from_pointee(AllowedIps::new()),
            indices: ArcSwap::from_pointee(HashMap::new()),
            config_lock: Mutex::new(()),
            index_lock: Mutex::new(()),
            load: LoadMeter {
                window_start: AtomicU64::new(0),
                count: AtomicU32::new(0),
                under_load_until: AtomicU64::new(0),
                threshold: AtomicU32::new(DEFAULT_UNDER_LOAD_THRESHOLD),
            },
            timers_dirty: AtomicBool::new(false),
            driver_deadline: AtomicU64::new(0),
            rate_limiter: Mutex::new(RateLimiter::default()),
            cookie_limiter: Mutex::new(CookieReplyLimiter::default()),
        }
    }

    /// Sets the handshake rate (per second) above which cookies are demanded.
    pub fn set_under_load_threshold(&self, per_second: u32) {
        self.load.threshold.store(per_second, Ordering::Relaxed);
    }

    /// Handshake messages are waiting faster than they are handled: demand cookies for the next second.
    pub fn note_handshake_backlog(&self, now: Instant) {
        self.load.backlog(self.clock.to_nanos(now));
    }

    /// The cheap, lock-free part of handling a handshake message, for a caller that queues handshakes:
    /// the message must have a handshake's shape, we must have a private key, and mac1 must be ours.
    /// A message that fails this is not worth a place in a queue.
    pub fn precheck_handshake(&self, msg: &[u8]) -> Result<(), RecvDrop> {
        match messages::classify(msg) {
            Some(Kind::Initiation | Kind::Response) => {}
            // Cookie replies carry no mac1; they are authenticated by the peer's own key.
            Some(Kind::CookieReply) => return Ok(()),
            Some(Kind::Data) | None => return Err(RecvDrop::Malformed),
        }
        let identity = self.identity.load();
        let identity = identity.as_ref().ok_or(RecvDrop::NoIdentity)?;
        if identity.checker.check_mac1(msg) {
            Ok(())
        } else {
            Err(RecvDrop::BadMac1)
        }
    }

    // ----- configuration -----

    pub fn private_key(&self) -> Option<Key> {
        self.identity
            .load()
            .as_ref()
            .map(|i| i.keys.private_bytes())
    }

    pub fn public_key(&self) -> Option<Key> {
        self.identity.load().as_ref().map(|i| i.keys.public)
    }

    /// Sets or removes our private key. Sessions made under the old key are dropped, and a peer with our
    /// own public key is removed (as wireguard-go does).
    pub fn set_private_key(&self, private: Option<Key>) {
        let _g = lock(&self.config_lock);
        if self.private_key() == private {
            return;
        }
        let identity = private.map(|k| {
            let keys = StaticKeys::from_private(k);
            let checker = CookieChecker::new(&keys.public);
            Arc::new(Identity { keys, checker })
        });
        if let Some(own) = identity.as_ref().map(|i| i.keys.public)
            && self.peers.load().contains_key(&own)
        {
            self.remove_peer_locked(&own);
        }
        for peer in self.peers.load().values() {
            let ss = identity.as_ref().and_then(|i| i.keys.dh(&peer.public_key));
            peer.handshake().static_static = ss;
            self.zero_peer(peer);
        }
        self.identity.store(identity);
    }

    pub fn peer(&self, public_key: &Key) -> Option<Arc<Peer>> {
        self.peers.load().get(public_key).cloned()
    }

    /// Every peer, in no particular order.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers.load().values().cloned().collect()
    }

    /// Returns the peer with this key, creating it if needed. `None` if the key is our own.
    pub fn add_peer(&self, public_key: Key) -> Option<Arc<Peer>> {
        let _g = lock(&self.config_lock);
        if let Some(p) = self.peer(&public_key) {
            return Some(p);
        }
        let identity = self.identity.load();
        if identity
            .as_ref()
            .is_some_and(|i| i.keys.public == public_key)
        {
            return None;
        }
        let ss = identity.as_ref().and_then(|i| i.keys.dh(&public_key));
        let peer = Arc::new(Peer::new(public_key, ss));
        let mut map = HashMap::clone(&self.peers.load());
        map.insert(public_key, peer.clone());
        self.peers.store(Arc::new(map));
        Some(peer)
    }

    pub fn remove_peer(&self, public_key: &Key) {
        let _g = lock(&self.config_lock);
        self.remove_peer_locked(public_key);
    }

    fn remove_peer_locked(&self, public_key: &Key) {
        let mut map = HashMap::clone(&self.peers.load());
        let Some(peer) = map.remove(public_key) else {
            return;
        };
        self.peers.store(Arc::new(map));
        let mut routes = AllowedIps::clone(&self.routes.load());
        routes.remove_value(&PeerRef(peer.clone()));
        self.routes.store(Arc::new(routes));
        self.zero_peer(&peer);
        peer.timers.disarm_all();
    }

    /// Removes every peer.
    pub fn clear_peers(&self) {
        let _g = lock(&self.config_lock);
        for key in self.peers.load().keys().copied().collect::<Vec<_>>() {
            self.remove_peer_locked(&key);
        }
    }

    /// Replaces (or extends) a peer's allowed IPs. A prefix another peer had moves to this one.
    pub fn set_allowed_ips(
        &self,
        peer: &Arc<Peer>,
        replace: bool,
        ips: &[(IpAddr, u8)],
    ) -> Result<(), String> {
        let _g = lock(&self.config_lock);
        let value = PeerRef(peer.clone());
        let mut routes = AllowedIps::clone(&self.routes.load());
        if replace {
            routes.remove_value(&value);
        }
        for &(addr, cidr) in ips {
            routes
                .insert(addr, cidr, value.clone())
                .map_err(|_| format!("invalid prefix length /{cidr} for {addr}"))?;
        }
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    pub fn allowed_ips(&self, peer: &Arc<Peer>) -> Vec<(IpAddr, u8)> {
        let value = PeerRef(peer.clone());
        self.routes.load().entries_for(&value).collect()
    }

    /// The peer that owns the destination of an outgoing IP packet (cryptokey routing).
    pub fn route(&self, packet: &[u8]) -> Option<Arc<Peer>> {
        let routes = self.routes.load();
        let found = match packet.first()? >> 4 {
            4 => routes.lookup_v4(messages::fixed(packet.get(..20)?, 16)),
            6 => routes.lookup_v6(messages::fixed(packet.get(..40)?, 24)),
            _ => None,
        };
        found.map(|p| p.0.clone())
    }

    pub fn last_handshake(&self, peer: &Peer) -> Option<Instant> {
        match peer.last_handshake.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.clock.to_instant(n)),
        }
    }

    /// Entries in the index table (handshakes in flight and sessions); for tests and stats.
    pub fn index_count(&self) -> usize {
        self.indices.load().len()
    }

    // ----- timers -----

    /// True once after a timer was armed earlier than the driver's own wake-up: wake the driver.
    pub fn take_timers_dirty(&self) -> bool {
        self.timers_dirty.load(Ordering::Relaxed) && self.timers_dirty.swap(false, Ordering::AcqRel)
    }

    /// The timer driver says when it will wake by itself (`None`: not until woken). While it is awake
    /// and about to recompute, it passes `Some(now)`-or-earlier, so arming never flags it.
    pub fn set_driver_deadline(&self, deadline: Option<Instant>) {
        let at = deadline.map_or(u64::MAX, |d| self.clock.to_nanos(d));
        self.driver_deadline.store(at, Ordering::SeqCst);
    }

    /// A timer went from idle to `at`: flag the driver only if it would otherwise sleep past it, so
    /// traffic that arms and disarms keepalive timers in every batch does not wake it every batch.
    fn arm(&self, fresh: bool, at: u64) {
        if fresh && at < self.driver_deadline.load(Ordering::SeqCst) {
            self.timers_dirty.store(true, Ordering::Release);
        }
    }

    fn at(&self, now: Instant, after: Duration) -> u64 {
        self.clock.to_nanos(now + after)
    }

    /// The earliest timer deadline over all peers.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .load()
            .values()
            .filter_map(|p| p.timers.earliest())
            .min()
            .map(|n| self.clock.to_instant(n))
    }

    /// Fires the peer's due timers and says what to send.
    pub fn poll_timers(&self, peer: &Arc<Peer>, now: Instant) -> TimerEvents {
        let t = self.clock.to_nanos(now);
        let timers = &peer.timers;
        let mut ev = TimerEvents::default();
        if timers.retransmit_handshake.fire(t) {
            let mut hs = peer.handshake();
            if hs.attempts >= MAX_TIMER_HANDSHAKES {
                let abandoned = hs.initiator.take().map(|s| s.local_index);
                drop(hs);
                if let Some(index) = abandoned {
                    self.index_update(|m| {
                        m.remove(&index);
                    });
                }
                timers.send_keepalive.disarm();
                ev.gave_up = true;
                let at = self.at(now, REJECT_AFTER_TIME * 3);
                let fresh = timers.zero_key_material.arm_if_idle(at);
                self.arm(fresh, at);
            } else {
                hs.attempts += 1;
                ev.send_initiation = true;
                ev.retry = true;
            }
        }
        if timers.send_keepalive.fire(t) {
            ev.send_keepalive = true;
            if timers.keepalive_again.swap(false, Ordering::Relaxed) {
                timers
                    .send_keepalive
                    .arm_if_idle(self.at(now, KEEPALIVE_TIMEOUT));
            }
        }
        if timers.new_handshake.fire(t) {
            ev.send_initiation = true;
        }
        if timers.zero_key_material.fire(t) {
            self.zero_peer(peer);
        }
        if timers.persistent_keepalive.fire(t) && peer.persistent_keepalive() > 0 {
            ev.send_keepalive = true;
        }
        ev
    }

    /// The user set (or changed) the persistent keepalive: send one now if it is on, as wg does.
    pub fn persistent_keepalive_changed(&self, peer: &Peer, now: Instant) {
        let secs = peer.persistent_keepalive();
        if secs == 0 {
            peer.timers.persistent_keepalive.disarm();
        } else {
            // Due now: the timer driver must wake whatever it was waiting for.
            let at = self.clock.to_nanos(now);
            peer.timers.persistent_keepalive.set(at);
            self.arm(true, at);
        }
    }

    fn on_authenticated_traversal(&self, peer: &Peer, now: Instant) {
        let secs = peer.persistent_keepalive();
        if secs > 0 {
            let at = self.at(now, Duration::from_secs(secs.into()));
            let fresh = peer.timers.persistent_keepalive.set(at);
            self.arm(fresh, at);
        }
    }

    fn on_authenticated_sent(&self, peer: &Peer, now: Instant) {
        peer.timers.send_keepalive.disarm();
        self.on_authenticated_traversal(peer, now);
    }

    fn on_authenticated_received(&self, peer: &Peer, now: Instant) {
        peer.timers.new_handshake.disarm();
        self.on_authenticated_traversal(peer, now);
    }

    fn on_session_derived(&self, peer: &Peer, now: Instant) {
        let at = self.at(now, REJECT_AFTER_TIME * 3);
        peer.timers.zero_key_material.set(at);
        self.arm(true, at);
    }

    fn on_handshake_complete(&self, peer: &Peer, now: Instant) {
        peer.timers.retransmit_handshake.disarm();
        peer.handshake().attempts = 0;
        peer.last_handshake
            .store(self.clock.to_nanos(now), Ordering::Relaxed);
    }

    // ----- index table -----

    fn index_update(&self, f: impl FnOnce(&mut HashMap<u32, IndexEntry>)) {
        let _g = lock(&self.index_lock);
        let mut map = HashMap::clone(&self.indices.load());
        f(&mut map);
        self.indices.store(Arc::new(map));
    }

    /// Reserves a fresh random index for `entry`.
    fn new_index(&self, entry: IndexEntry) -> u32 {
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
    fn zero_peer(&self, peer: &Peer) {
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
    fn install_keypair(&self, peer: &Arc<Peer>, keypair: Arc<Keypair>) {
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
    fn confirm_next(&self, peer: &Peer, keypair: &Arc<Keypair>) -> bool {
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

    // ----- handshakes -----

    /// Writes a handshake initiation for `peer` into `out`. `wall` is the time since the Unix epoch, for the
    /// TAI64N timestamp. Returns `None` when there is no key to do it with, or (unless `retry`) when an
    /// initiation went out less than REKEY_TIMEOUT ago.
    pub fn create_initiation(
        &self,
        peer: &Arc<Peer>,
        now: Instant,
        wall: Duration,
        retry: bool,
        out: &mut [u8; INITIATION_LEN],
    ) -> Option<usize> {
        let identity = self.identity.load_full()?;
        let mut hs = peer.handshake();
        let ss = hs.static_static?;
        if !retry {
            if hs
                .last_initiation_sent
                .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
            {
                return None;
            }
            hs.attempts = 0;
        }
        let old = hs.initiator.take().map(|s| s.local_index);
        let index = self.new_index(IndexEntry::Handshake(peer.clone()));
        let state = noise::create_initiation(
            &identity.keys,
            &peer.public_key,
            &ss,
            index,
            &noise::tai64n(wall),
            out,
        );
        let Some(state) = state else {
            drop(hs);
            self.index_update(|m| {
                m.remove(&index);
            });
            return None;
        };
        hs.last_initiation_had_cookie = hs.cookies.add_macs(out, now);
        hs.initiator = Some(state);
        hs.last_initiation_sent = Some(now);
        drop(hs);
        if let Some(i) = old {
            self.index_update(|m| {
                m.remove(&i);
            });
        }
        let at = self.at(now, REKEY_TIMEOUT + jitter());
        let fresh = peer.timers.retransmit_handshake.set(at);
        self.arm(fresh, at);
        self.on_authenticated_sent(peer, now);
        Some(INITIATION_LEN)
    }

    /// Handles any received datagram. `reply` must hold at least 148 bytes.
    pub fn handle_incoming(
        &self,
        src: impl Into<Endpoint>,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
    ) -> Incoming {
        self.dispatch(src.into(), msg, now, reply, Mac1::Unchecked)
    }

    /// Handles a handshake message that already passed [`Device::precheck_handshake`] (whose mac1 is
    /// known to be good, so it is not computed again); anything else is handled as by
    /// [`Device::handle_incoming`].
    pub fn handle_prechecked_handshake(
        &self,
        src: impl Into<Endpoint>,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
    ) -> Incoming {
        self.dispatch(src.into(), msg, now, reply, Mac1::Checked)
    }

    fn dispatch(
        &self,
        src: Endpoint,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
        mac1: Mac1,
    ) -> Incoming {
        match messages::classify(msg) {
            None => Incoming::Dropped(RecvDrop::Malformed),
            Some(Kind::Data) => self.handle_data(src, msg, now),
            Some(Kind::Initiation) => self.handle_initiation(src, msg, now, reply, mac1),
            Some(Kind::Response) => self.handle_response(src, msg, now, reply, mac1),
            Some(Kind::CookieReply) => self.handle_cookie_reply(msg, now),
        }
    }

    /// Checks mac1 (unless already checked) and, under load, mac2; a handshake without a valid mac2 is
    /// answered with a cookie reply (written into `reply`) while the cookie budget lasts.
    #[allow(clippy::too_many_arguments)]
    fn check_macs(
        &self,
        identity: &Identity,
        src: Endpoint,
        msg: &[u8],
        sender: u32,
        now: Instant,
        reply: &mut [u8],
        mac1: Mac1,
    ) -> Result<(), Incoming> {
        let checker = &identity.checker;
        if mac1 == Mac1::Unchecked && !checker.check_mac1(msg) {
            return Err(Incoming::Dropped(RecvDrop::BadMac1));
        }
        if !self.load.record(self.clock.to_nanos(now)) {
            return Ok(());
        }
        if checker.check_mac2(msg, &src.addr, now) {
            return if lock(&self.rate_limiter).allow(src.addr.ip(), now) {
                Ok(())
            } else {
                Err(Incoming::Dropped(RecvDrop::RateLimited))
            };
        }
        // The budget first: a source over it costs nothing more than this look-up.
        if !lock(&self.cookie_limiter).allow(src.addr, now) {
            return Err(Incoming::Dropped(RecvDrop::CookieRateLimited));
        }
        let cookie = checker.create_reply(msg, sender, &src.addr, now);
        match cookie.and_then(|c| Some((c, reply.get_mut(..c.len())?))) {
            Some((cookie, out)) => {
                out.copy_from_slice(&cookie);
                Err(Incoming::Reply { len: cookie.len() })
            }
            None => Err(Incoming::Dropped(RecvDrop::CookieSent)),
        }
    }

    fn handle_initiation(
        &self,
        src: Endpoint,
        msg: &[u8],
        now: Instant,
        reply: &mut [u8],
        mac1: Mac1,
    ) -> Incoming {
        let Some(identity) = self.identity.load_full() else {
            return Incoming::Dropped(RecvDrop::NoIdentity);
        };
        let sender = messages::le32(msg, messages::init::SENDER);
        if let Err(r) = self.check_macs(&identity, src, msg, sender, now, reply, mac1) {
            return r;
        }
        let peers = self.peers.load();
        let consumed = noise::consume_initiation(&identity.keys, msg, |pk| {
            peers.get(pk).and_then(|p| p.handshake().static_static)
        });
        let Some(consumed) = consumed else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        let Some(peer) = peers.get(&consumed.peer_public).cloned() else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        drop(peers);

        let mut hs = peer.handshake();
        if consumed.timestamp <= hs.latest_timestamp {
            return Incoming::Dropped(RecvDrop::ReplayedTimestamp);
        }
        if hs
            .last_initiation_received
            .is_some_and(|t| now.saturating_duration_since(t) < HANDSHAKE_INITIATION_RATE)
        {
            return Incoming::Dropped(RecvDrop::HandshakeFlood);
        }
        hs.latest_timestamp = consumed.timestamp;
        hs.last_initiation_received = Some(now);

        let index = self.new_index(IndexEntry::Handshake(peer.clone()));
        let mut response = [0u8; RESPONSE_LEN];
        let Some(keys) = noise::create_response(&consumed, &hs.psk, index, &mut response) else {
            drop(hs);
            self.index_update(|m| {
                m.remove(&index);
            });
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        hs.cookies.add_macs(&mut response, now);
        drop(hs);
        let Some(out) = reply.get_mut(..RESPONSE_LEN) else {
            return Incoming::Dropped(RecvDrop::HandshakeAuth);
        };
        out.copy_from_slice(&response);

        let keypair = Arc::new(Keypair::new(
            &keys,
            index,
            consumed.sender_index,
            false,
            now,
        ));
        self.install_keypair(&peer, keypair);
        peer.set_endpoint(src);
        self.on_session_derived(&peer, now);
        self.on_authenticated_received(&peer, now);
        self.on_authenticated_sent(&peer, now);
        Incoming::Reply { len: RESPONSE_LEN }
    }

    fn handle_response(
        &self,
        src: Endpoint,
        msg: &[u8],
        now: Instant,
        reply: &mut [u8],
        mac1: Mac1,
    ) -> Incoming {
        let Some(identity) = self.identity.load_full() else {
            return Incoming::Dropped(RecvDrop::NoIdentity);
        };
        let sender = noise::response_sender(msg);
        if let Err(r) = self.check_macs(&identity, src, msg, sender, now, reply, mac1) {
            return r;
        }
        let receiver = messages::receiver_index(Kind::Response, msg);
        let Some(IndexEntry::Handshake(peer)) = self.indices.load().get(&receiver).cloned() else {
            return Incoming::Dropped(RecvDrop::UnexpectedHandshake);
        };
        let keys = {
            let mut hs = peer.handshake();
            let Some(state) = hs.initiator.as_ref().filter(|s| s.local_index == receiver) else {
                return Incoming::Dropped(RecvDrop::UnexpectedHandshake);
            };
            let Some(keys) = noise::consume_response(state, &identity.keys, &hs.psk, msg) else {
                return Incoming::Dropped(RecvDrop::HandshakeAuth);
            };
            hs.initiator = None;
            keys
        };
        let keypair = Arc::new(Keypair::new(&keys, receiver, sender, true, now));
        self.install_keypair(&peer, keypair);
        peer.set_endpoint(src);
        self.on_handshake_complete(&peer, now);
        self.on_session_derived(&peer, now);
        self.on_authenticated_received(&peer, now);
        Incoming::HandshakeComplete { peer }
    }

    fn handle_cookie_reply(&self, msg: &[u8], now: Instant) -> Incoming {
        let receiver = messages::receiver_index(Kind::CookieReply, msg);
        let peer = match self.indices.load().get(&receiver) {
            Some(IndexEntry::Handshake(p)) | Some(IndexEntry::Session(p, _)) => p.clone(),
            None => return Incoming::Dropped(RecvDrop::UnexpectedHandshake),
        };
        let mut hs = peer.handshake();
        if !hs.cookies.consume_reply(msg, now) {
            return Incoming::Dropped(RecvDrop::BadCookie);
        }
        // Resend at once only for an initiation still unanswered that went out without a cookie: each
        // cookie reply buys at most one early initiation, and one that carried a cookie waits for its timer.
        let resend = hs.initiator.is_some() && !hs.last_initiation_had_cookie;
        hs.last_initiation_had_cookie = true;
        drop(hs);
        Incoming::CookieAccepted { peer, resend }
    }

    fn handle_data(&self, src: Endpoint, msg: &mut [u8], now: Instant) -> Incoming {
        let receiver = messages::receiver_index(Kind::Data, msg);
        let Some(IndexEntry::Session(peer, keypair)) = self.indices.load().get(&receiver).cloned()
        else {
            return Incoming::Dropped(RecvDrop::UnknownSession);
        };
        let n = match keypair.open(msg, now) {
            Ok(n) => n,
            Err(OpenError::Expired) => return Incoming::Dropped(RecvDrop::ExpiredSession),
            Err(OpenError::Auth) => return Incoming::Dropped(RecvDrop::DataAuth),
            Err(OpenError::Replay) => return Incoming::Dropped(RecvDrop::Replay),
        };
        peer.set_endpoint(src);
        peer.rx_bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
        let is_current = peer
            .current
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &keypair));
        let confirmed = !is_current && self.confirm_next(&peer, &keypair);
        if confirmed {
            self.on_handshake_complete(&peer, now);
        }
        self.on_authenticated_received(&peer, now);
        let rekey = keypair.we_initiated
            && keypair.age(now) >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
        if n == 0 {
            return Incoming::Keepalive { peer, confirmed };
        }
        let inner = &msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
        let Some((source, len)) = inner_source(inner) else {
            return Incoming::Dropped(RecvDrop::BadInnerPacket);
        };
        let routes = self.routes.load();
        let owner = match source {
            IpAddr::V4(a) => routes.lookup_v4(a.octets()),
            IpAddr::V6(a) => routes.lookup_v6(a.octets()),
        };
        if !owner.is_some_and(|o| Arc::ptr_eq(&o.0, &peer)) {
            return Incoming::Dropped(RecvDrop::DisallowedSource);
        }
        let keepalive = &peer.timers.send_keepalive;
        if keepalive.get().is_none() {
            let at = self.at(now, KEEPALIVE_TIMEOUT);
            let fresh = keepalive.arm_if_idle(at);
            self.arm(fresh, at);
        } else if !peer.timers.keepalive_again.load(Ordering::Relaxed) {
            peer.timers.keepalive_again.store(true, Ordering::Relaxed);
        }
        Incoming::Data {
            peer,
            len,
            rekey,
            confirmed,
        }
    }

    // ----- data -----

    /// Encrypts the packet at `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` in place for `peer`.
    /// `len == 0` makes a keepalive.
    pub fn seal(
        &self,
        peer: &Peer,
        buf: &mut [u8],
        len: usize,
        mtu: usize,
        now: Instant,
    ) -> Result<Sealed, SendError> {
        let endpoint = peer.endpoint().ok_or(SendError::NoEndpoint)?;
        let guard = peer.current.load();
        let keypair = guard
            .as_ref()
            .filter(|k| k.can_send(now))
            .ok_or(SendError::NoSession)?;
        let total = keypair.seal(buf, len, mtu, now).ok_or(SendError::NoRoom)?;
        let rekey = keypair.we_initiated
            && (keypair.sent() >= REKEY_AFTER_MESSAGES || keypair.age(now) >= REKEY_AFTER_TIME);
        peer.tx_bytes.fetch_add(total as u64, Ordering::Relaxed);
        // The jitter costs a getrandom call: only pay it when the timer actually gets armed.
        if len > 0 && peer.timers.new_handshake.get().is_none() {
            let at = self.at(now, KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter());
            let fresh = peer.timers.new_handshake.arm_if_idle(at);
            self.arm(fresh, at);
        }
        self.on_authenticated_sent(peer, now);
        Ok(Sealed {
            len: total,
            endpoint,
            rekey,
        })
    }
}

/// The source address and true length of an IPv4/IPv6 packet, if its header is consistent.
fn inner_source(packet: &[u8]) -> Option<(IpAddr, usize)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let total = u16::from_be_bytes([packet[2], packet[3]]) as usize;
            let src: [u8; 4] = messages::fixed(packet, 12);
            (20..=packet.len())
                .contains(&total)
                .then_some((IpAddr::V4(Ipv4Addr::from(src)), total))
        }
        6 if packet.len() >= 40 => {
            let total = 40 + u16::from_be_bytes([packet[4], packet[5]]) as usize;
            let src: [u8; 16] = messages::fixed(packet, 8);
            (total <= packet.len()).then_some((IpAddr::V6(Ipv6Addr::from(src)), total))
        }
        _ => None,
    }
}
