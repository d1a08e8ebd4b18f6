//! One peer's protocol state: its keys, handshake, keypair slots, timers, endpoint and counters.
//!
//! Read-mostly fields are lock-free (`ArcSwap`, atomics) for the data path; the handshake and the keypair
//! slots sit behind small mutexes taken only on handshakes and rotations.

use crate::cookie::CookieGenerator;
use crate::crypto::Key;
use crate::endpoint::Endpoint;
use crate::noise::{InitiatorState, StaticKeys};
use crate::session::Keypair;
use crate::timers::PeerTimers;
use arc_swap::ArcSwapOption;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

impl HandshakeState {
    /// DH(our static, their static) under `keys`, the identity of configuration `epoch`; `None` when the
    /// result is degenerate (their key is of low order).
    pub fn static_static(
        &mut self,
        epoch: u64,
        keys: &StaticKeys,
        their_public: &Key,
    ) -> Option<Key> {
        match self.static_static {
            Some((cached_in, ss)) if cached_in == epoch => ss,
            _ => {
                let ss = keys.dh(their_public);
                self.static_static = Some((epoch, ss));
                ss
            }
        }
    }

    /// Our private key changed: the next handshake computes it anew.
    pub fn forget_static_static(&mut self) {
        self.static_static = None;
    }
}

/// The handshake half of a peer, touched only by handshake messages and timers.
pub(crate) struct HandshakeState {
    pub psk: Key,
    /// DH(our static, peer static), computed at the first handshake rather than when the peer is
    /// added (a `set` of 100,000 peers would otherwise spend seconds on it), with the configuration
    /// epoch it was computed in: after our private key changes it is computed again.
    static_static: Option<(u64, Option<Key>)>,
    pub cookies: CookieGenerator,
    pub initiator: Option<InitiatorState>,
    /// Greatest TAI64N timestamp accepted from this peer's initiations.
    pub latest_timestamp: [u8; 12],
    pub last_initiation_received: Option<Instant>,
    pub last_initiation_sent: Option<Instant>,
    /// The latest initiation we sent carried mac2 (a cookie from the peer).
    pub last_initiation_had_cookie: bool,
    pub attempts: u32,
}

/// previous / current / next, as in the whitepaper.
#[derive(Default)]
pub(crate) struct KeypairSlots {
    pub previous: Option<Arc<Keypair>>,
    pub current: Option<Arc<Keypair>>,
    pub next: Option<Arc<Keypair>>,
}

impl KeypairSlots {
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.previous, &self.current, &self.next]
            .into_iter()
            .flatten()
            .map(|k| k.local_index)
    }
}

pub struct Peer {
    pub public_key: Key,
    pub(crate) handshake: Mutex<HandshakeState>,
    pub(crate) keypairs: Mutex<KeypairSlots>,
    /// Mirror of `keypairs.current` for the lock-free send path.
    pub(crate) current: ArcSwapOption<Keypair>,
    pub timers: PeerTimers,
    endpoint: ArcSwapOption<Endpoint>,
    persistent_keepalive: AtomicU16,
    /// Nanoseconds since the device epoch of the latest completed handshake (0 = never).
    pub(crate) last_handshake: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Outgoing packets waiting for a session, oldest first; bounded by [`MAX_STAGED_PACKETS`].
    staged: Mutex<VecDeque<Vec<u8>>>,
    /// Removed from the device: a handshake still under way for it must not install anything.
    pub(crate) removed: AtomicBool,
    /// This peer's prefixes in the device's routing table (masked, in insertion order). Written only
    /// under the device's configuration lock, beside the table: removing a peer or listing its allowed
    /// IPs then costs its own prefixes, not a walk of every peer's.
    pub(crate) allowed_ips: Mutex<Vec<(IpAddr, u8)>>,
}

/// Packets kept per peer while a handshake is under way (as wireguard-go's queue of staged packets).
pub const MAX_STAGED_PACKETS: usize = 128;

impl Peer {
    pub(crate) fn new(public_key: Key) -> Self {
        Self {
            public_key,
            handshake: Mutex::new(HandshakeState {
                psk: [0; 32],
                static_static: None,
                cookies: CookieGenerator::new(&public_key),
                initiator: None,
                latest_timestamp: [0; 12],
                last_initiation_received: None,
                last_initiation_sent: None,
                last_initiation_had_cookie: false,
                attempts: 0,
            }),
            keypairs: Mutex::new(KeypairSlots::default()),
            current: ArcSwapOption::empty(),
            timers: PeerTimers::default(),
            endpoint: ArcSwapOption::empty(),
            persistent_keepalive: AtomicU16::new(0),
            last_handshake: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            staged: Mutex::new(VecDeque::new()),
            removed: AtomicBool::new(false),
            allowed_ips: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn handshake(&self) -> MutexGuard<'_, HandshakeState> {
        self.handshake.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn allowed_ips(&self) -> MutexGuard<'_, Vec<(IpAddr, u8)>> {
        self.allowed_ips.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn keypairs(&self) -> MutexGuard<'_, KeypairSlots> {
        self.keypairs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        self.endpoint.load().as_deref().copied()
    }

    /// Roaming: the endpoint follows the latest authenticated packet. Only writes when it changed.
    pub fn set_endpoint(&self, endpoint: impl Into<Endpoint>) {
        let endpoint = endpoint.into();
        if self.endpoint.load().as_deref() != Some(&endpoint) {
            self.endpoint.store(Some(Arc::new(endpoint)));
        }
    }

    pub fn clear_endpoint(&self) {
        self.endpoint.store(None);
    }

    pub fn persistent_keepalive(&self) -> u16 {
        self.persistent_keepalive.load(Ordering::Relaxed)
    }

    pub fn set_persistent_keepalive(&self, seconds: u16) {
        self.persistent_keepalive.store(seconds, Ordering::Relaxed);
    }

    pub fn preshared_key(&self) -> Option<Key> {
        let psk = self.handshake().psk;
        (psk != [0; 32]).then_some(psk)
    }

    pub fn set_preshared_key(&self, psk: Option<Key>) {
        self.handshake().psk = psk.unwrap_or([0; 32]);
    }

    /// Whether a usable current keypair exists.
    pub fn has_session(&self, now: Instant) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|k| k.can_send(now))
    }

    /// Keeps a packet until a session exists. Returns false when the oldest one was dropped for room.
    pub fn stage(&self, packet: &[u8]) -> bool {
        let mut q = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = if q.len() >= MAX_STAGED_PACKETS {
            q.pop_front().is_some()
        } else {
            false
        };
        q.push_back(packet.to_vec());
        !dropped
    }

    pub fn has_staged(&self) -> bool {
        !self
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Takes every staged packet, oldest first.
    pub fn take_staged(&self) -> VecDeque<Vec<u8>> {
        std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Drops the staged packets; returns how many there were.
    pub fn clear_staged(&self) -> usize {
        self.take_staged().len()
    }
}
