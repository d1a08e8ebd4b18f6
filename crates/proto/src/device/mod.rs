//! The device: our identity, the peer table, the index table and cryptokey routing, and the handling of
//! every message type. It is shared by all workers (`&self` everywhere): read-mostly tables are swapped
//! whole (`ArcSwap`; the index table shard by shard), per-peer handshake state sits behind small per-peer locks.
//!
//! This module holds the [`Device`] type, its configuration API and the dispatch of each received
//! message by type; the jobs behind it live in submodules: `drops` (why a datagram was dropped),
//! `index` (the receiver-index table and the keypair slots it mirrors), `macs` (mac1/mac2 checks and
//! cookie replies under load), `handshake` (initiations, responses, cookie replies), `data` (opening
//! and sealing transport data), `timer_events` (what each timer does when it fires) and `timer_schedule`
//! (which peer is due next, for the timer driver).

mod config_batch;
mod data;
mod drops;
mod handshake;
mod index;
mod index_table;
mod macs;
mod timer_events;
mod timer_schedule;

pub use data::{Sealed, SendError};
pub use drops::RecvDrop;
pub use timer_events::TimerEvents;
pub use timer_schedule::TimerSchedule;

use crate::allowed_ips::AllowedIps;
use crate::cookie::CookieChecker;
use crate::crypto::Key;
use crate::endpoint::Endpoint;
use crate::messages::{self, Kind};
use crate::noise::StaticKeys;
use crate::peer::Peer;
use crate::ratelimit::{CookieReplyLimiter, RateLimiter};
use crate::timers::*;
use arc_swap::{ArcSwap, ArcSwapOption};
pub use config_batch::ConfigBatch;
use index_table::IndexTable;
use macs::{LoadMeter, Macs};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Handshake messages per second above which a device under load (put there by a handshake backlog)
/// stays under load and goes on demanding cookies.
pub const DEFAULT_UNDER_LOAD_THRESHOLD: u32 = 1000;

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
    /// Send `reply[..len]` back to the source: a handshake response to `peer`'s initiation, or a
    /// cookie reply (`peer: None`; who sent the initiation is not known before its mac2 is).
    Reply {
        len: usize,
        peer: Option<Arc<Peer>>,
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

struct Identity {
    keys: StaticKeys,
    checker: CookieChecker,
}

/// A peer as a value in the routing table: equality is identity.
#[derive(Clone)]
pub struct PeerRef(pub Arc<Peer>);

impl PartialEq for PeerRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

pub struct Device {
    clock: Clock,
    identity: ArcSwapOption<Identity>,
    peers: ArcSwap<HashMap<Key, Arc<Peer>>>,
    routes: ArcSwap<AllowedIps<PeerRef>>,
    indices: IndexTable,
    /// Serialises configuration changes (peers, routes, identity).
    config_lock: Mutex<()>,
    /// Serialises index-table writes. Taken after a peer's handshake lock and before its keypair
    /// lock, never the other way round.
    index_lock: Mutex<()>,
    /// Bumped when our private key changes: handshakes begun before are not installed.
    config_epoch: AtomicU64,
    load: LoadMeter,
    timers_dirty: AtomicBool,
    /// Peers whose timers were armed earlier than the driver's schedule holds (each at most once).
    timer_queue: crossbeam_queue::SegQueue<Key>,
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
            indices: IndexTable::new(),
            config_lock: Mutex::new(()),
            index_lock: Mutex::new(()),
            config_epoch: AtomicU64::new(0),
            load: LoadMeter {
                window_start: AtomicU64::new(0),
                count: AtomicU32::new(0),
                under_load_until: AtomicU64::new(0),
                threshold: AtomicU32::new(DEFAULT_UNDER_LOAD_THRESHOLD),
            },
            timers_dirty: AtomicBool::new(false),
            timer_queue: crossbeam_queue::SegQueue::new(),
            driver_deadline: AtomicU64::new(0),
            rate_limiter: Mutex::new(RateLimiter::default()),
            cookie_limiter: Mutex::new(CookieReplyLimiter::default()),
        }
    }

    /// Sets the handshake rate (per second) above which a device under load stays under load.
    pub fn set_under_load_threshold(&self, per_second: u32) {
        self.load.threshold.store(per_second, Ordering::Relaxed);
    }

    /// Handshake messages are waiting faster than they are handled: demand cookies for the next second.
    pub fn note_handshake_backlog(&self, now: Instant) {
        self.load.backlog(self.clock.to_nanos(now));
    }

    /// Every check a handshake message passes before the Noise handshake, for a caller that queues
    /// handshakes for another thread (the engine's workers): the shape, our private key, mac1, and under
    /// load mac2 or — within the cookie budget — a cookie reply, written into `reply` (`Err(Reply)`: send
    /// it back to `src`). `Ok(())`: worth a place in the queue; hand it to
    /// [`Device::handle_screened_handshake`], which does not check the MACs again. So a flood is refused
    /// where it arrives, in parallel, and never reaches the queue or wakes its thread. Cookie replies
    /// (authenticated later by the peer's own key) always pass.
    pub fn screen_handshake(
        &self,
        src: Endpoint,
        msg: &[u8],
        now: Instant,
        reply: &mut [u8],
    ) -> Result<(), Incoming> {
        let sender = match messages::classify(msg) {
            Some(Kind::Initiation) => messages::le32(msg, messages::init::SENDER),
            Some(Kind::Response) => crate::noise::response_sender(msg),
            Some(Kind::CookieReply) => return Ok(()),
            Some(Kind::Data) | None => return Err(Incoming::Dropped(RecvDrop::Malformed)),
        };
        let identity = self.identity.load();
        let identity = identity
            .as_ref()
            .ok_or(Incoming::Dropped(RecvDrop::NoIdentity))?;
        self.check_macs(identity, src, msg, sender, now, reply, Macs::Unchecked)
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
        self.configure(|c| c.set_private_key(private));
    }

    pub fn peer(&self, public_key: &Key) -> Option<Arc<Peer>> {
        self.peers.load().get(public_key).cloned()
    }

    /// Every peer, in no particular order.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers.load().values().cloned().collect()
    }

    /// Returns the peer with this key, creating it if needed. `None` if the key is our own. (One change:
    /// many go through [`Device::configure`].)
    pub fn add_peer(&self, public_key: Key) -> Option<Arc<Peer>> {
        self.configure(|c| c.add_peer(public_key))
    }

    pub fn remove_peer(&self, public_key: &Key) {
        self.configure(|c| c.remove_peer(public_key));
    }

    /// Removes every peer.
    pub fn clear_peers(&self) {
        self.configure(|c| c.clear_peers());
    }

    /// Replaces (or extends) a peer's allowed IPs. A prefix another peer had moves to this one.
    pub fn set_allowed_ips(
        &self,
        peer: &Arc<Peer>,
        replace: bool,
        ips: &[(IpAddr, u8)],
    ) -> Result<(), String> {
        self.configure(|c| c.set_allowed_ips(peer, replace, ips))
    }

    /// A peer's allowed IPs as `wg show` lists them: IPv4 first, each family in address order.
    pub fn allowed_ips(&self, peer: &Arc<Peer>) -> Vec<(IpAddr, u8)> {
        let mut ips = peer.allowed_ips().clone();
        ips.sort_unstable();
        ips
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
        self.indices.len()
    }

    /// Handles any received datagram. `reply` must hold at least 148 bytes.
    pub fn handle_incoming(
        &self,
        src: impl Into<Endpoint>,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
    ) -> Incoming {
        self.dispatch(src.into(), msg, now, reply, Macs::Unchecked)
    }

    /// Handles a handshake message that passed [`Device::screen_handshake`] (its MACs and the load
    /// checks are not done again); anything else is handled as by [`Device::handle_incoming`].
    pub fn handle_screened_handshake(
        &self,
        src: impl Into<Endpoint>,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
    ) -> Incoming {
        self.dispatch(src.into(), msg, now, reply, Macs::Screened)
    }

    fn dispatch(
        &self,
        src: Endpoint,
        msg: &mut [u8],
        now: Instant,
        reply: &mut [u8],
        macs: Macs,
    ) -> Incoming {
        match messages::classify(msg) {
            None => Incoming::Dropped(RecvDrop::Malformed),
            Some(Kind::Data) => self.handle_data(src, msg, now),
            Some(Kind::Initiation) => self.handle_initiation(src, msg, now, reply, macs),
            Some(Kind::Response) => self.handle_response(src, msg, now, reply, macs),
            Some(Kind::CookieReply) => self.handle_cookie_reply(msg, now),
        }
    }
}
