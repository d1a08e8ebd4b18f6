//! The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake with WireGuard's construction and identifier.
//!
//! Pure functions over keys and message bytes: `create_*` fill a message and return the state to keep,
//! `consume_*` check one and return what it proves. MACs and cookies are the `cookie` module's job.

use crate::crypto::{self, Key, hash, kdf1, kdf2, kdf3};
use crate::messages::{
    self, INITIATION_LEN, RESPONSE_LEN, TYPE_INITIATION, TYPE_RESPONSE, init, resp,
};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";

/// The initial chaining key and hash: HASH(CONSTRUCTION) and HASH(C || IDENTIFIER).
fn initial_ck_hash() -> (Key, Key) {
    let ck = hash(&[CONSTRUCTION]);
    let h = hash(&[&ck, IDENTIFIER]);
    (ck, h)
}

/// Our static key pair.
pub struct StaticKeys {
    private: StaticSecret,
    pub public: Key,
}

impl StaticKeys {
    pub fn from_private(private: Key) -> Self {
        let private = StaticSecret::from(private);
        let public = PublicKey::from(&private).to_bytes();
        Self { private, public }
    }

    pub fn private_bytes(&self) -> Key {
        self.private.to_bytes()
    }

    /// DH(our static, their public); `None` if the result is all zeros (a low-order point).
    pub fn dh(&self, their_public: &Key) -> Option<Key> {
        dh(&self.private, their_public)
    }
}

fn dh(private: &StaticSecret, public: &Key) -> Option<Key> {
    let shared = private.diffie_hellman(&PublicKey::from(*public));
    shared.was_contributory().then(|| shared.to_bytes())
}

fn mix_hash(h: &mut Key, data: &[u8]) {
    *h = hash(&[h.as_slice(), data]);
}

/// Transport keys derived from a completed handshake.
pub struct SessionKeys {
    pub send: Key,
    pub recv: Key,
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.send.zeroize();
        self.recv.zeroize();
    }
}

/// What the initiator keeps between sending an initiation and receiving the response.
pub struct InitiatorState {
    pub local_index: u32,
    hash: Key,
    ck: Key,
    ephemeral: StaticSecret,
}

impl Drop for InitiatorState {
    fn drop(&mut self) {
        self.hash.zeroize();
        self.ck.zeroize();
    }
}

/// Fills `out` with a handshake initiation up to (not including) the MACs.
///
/// `static_static` is DH(our static, their static), precomputed per peer.
pub fn create_initiation(
    local: &StaticKeys,
    peer_public: &Key,
    static_static: &Key,
    local_index: u32,
    timestamp: &[u8; 12],
    out: &mut [u8; INITIATION_LEN],
) -> Option<InitiatorState> {
    let (mut ck, mut h) = initial_ck_hash();
    mix_hash(&mut h, peer_public);

    let ephemeral = StaticSecret::random_from_rng(rand_core::OsRng);
    let e_pub = PublicKey::from(&ephemeral).to_bytes();
    out.fill(0);
    out[0] = TYPE_INITIATION;
    out[init::SENDER..init::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    out[init::EPHEMERAL..init::EPHEMERAL + 32].copy_from_slice(&e_pub);
    ck = kdf1(&ck, &e_pub);
    mix_hash(&mut h, &e_pub);

    let (ck2, key) = kdf2(&ck, &dh(&ephemeral, peer_public)?);
    ck = ck2;
    crypto::seal_to(
        &key,
        &h,
        &local.public,
        &mut out[init::STATIC..init::TIMESTAMP],
    );
    mix_hash(&mut h, &out[init::STATIC..init::TIMESTAMP]);

    let (ck3, key) = kdf2(&ck, static_static);
    ck = ck3;
    crypto::seal_to(&key, &h, timestamp, &mut out[init::TIMESTAMP..init::MAC1]);
    mix_hash(&mut h, &out[init::TIMESTAMP..init::MAC1]);

    Some(InitiatorState {
        local_index,
        hash: h,
        ck,
        ephemeral,
    })
}

/// A verified initiation: who sent it and the state the responder continues from.
pub struct ConsumedInitiation {
    pub peer_public: Key,
    pub timestamp: [u8; 12],
    pub sender_index: u32,
    hash: Key,
    ck: Key,
    remote_ephemeral: Key,
}

impl Drop for ConsumedInitiation {
    fn drop(&mut self) {
        self.hash.zeroize();
        self.ck.zeroize();
    }
}

/// Decrypts an initiation addressed to us. `static_static` looks up DH(our static, their static)
/// for the sender's public key; it returns `None` for a key we do not know.
pub fn consume_initiation(
    local: &StaticKeys,
    msg: &[u8],
    static_static: impl FnOnce(&Key) -> Option<Key>,
) -> Option<ConsumedInitiation> {
    if msg.len() != INITIATION_LEN || msg[0] != TYPE_INITIATION {
        return None;
    }
    let (mut ck, mut h) = initial_ck_hash();
    mix_hash(&mut h, &local.public);

    let e_pub: Key = messages::fixed(msg, init::EPHEMERAL);
    ck = kdf1(&ck, &e_pub);
    mix_hash(&mut h, &e_pub);

    let (ck2, key) = kdf2(&ck, &local.dh(&e_pub)?);
    ck = ck2;
    let mut peer_public = [0u8; 32];
    if !crypto::open_to(
        &key,
        &h,
        &msg[init::STATIC..init::TIMESTAMP],
        &mut peer_public,
    ) {
        return None;
    }
    mix_hash(&mut h, &msg[init::STATIC..init::TIMESTAMP]);

    let ss = static_static(&peer_public)?;
    let (ck3, key) = kdf2(&ck, &ss);
    ck = ck3;
    let mut timestamp = [0u8; 12];
    if !crypto::open_to(&key, &h, &msg[init::TIMESTAMP..init::MAC1], &mut timestamp) {
        return None;
    }
    mix_hash(&mut h, &msg[init::TIMESTAMP..init::MAC1]);

    Some(ConsumedInitiation {
        peer_public,
        timestamp,
        sender_index: messages::le32(msg, init::SENDER),
        hash: h,
        ck,
        remote_ephemeral: e_pub,
    })
}

/// Fills `out` with the response (up to the MACs) and returns the responder's transport keys.
pub fn create_response(
    consumed: &ConsumedInitiation,
    psk: &Key,
    local_index: u32,
    out: &mut [u8; RESPONSE_LEN],
) -> Option<SessionKeys> {
    let mut ck = consumed.ck;
    let mut h = consumed.hash;
    let ephemeral = StaticSecret::random_from_rng(rand_core::OsRng);
    let e_pub = PublicKey::from(&ephemeral).to_bytes();

    out.fill(0);
    out[0] = TYPE_RESPONSE;
    out[resp::SENDER..resp::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    out[resp::RECEIVER..resp::RECEIVER + 4].copy_from_slice(&consumed.sender_index.to_le_bytes());
    out[resp::EPHEMERAL..resp::EPHEMERAL + 32].copy_from_slice(&e_pub);
    ck = kdf1(&ck, &e_pub);
    mix_hash(&mut h, &e_pub);
    ck = kdf1(&ck, &dh(&ephemeral, &consumed.remote_ephemeral)?);
    ck = kdf1(&ck, &dh(&ephemeral, &consumed.peer_public)?);
    let (ck2, tau, key) = kdf3(&ck, psk);
    ck = ck2;
    mix_hash(&mut h, &tau);
    crypto::seal_to(&key, &h, &[], &mut out[resp::EMPTY..resp::MAC1]);

    let (recv, send) = kdf2(&ck, &[]);
    ck.zeroize();
    h.zeroize();
    Some(SessionKeys { send, recv })
}

/// Checks a response against the initiation we sent; returns the initiator's transport keys.
pub fn consume_response(
    state: &InitiatorState,
    local: &StaticKeys,
    psk: &Key,
    msg: &[u8],
) -> Option<SessionKeys> {
    if msg.len() != RESPONSE_LEN || msg[0] != TYPE_RESPONSE {
        return None;
    }
    let mut ck = state.ck;
    let mut h = state.hash;
    let e_pub: Key = messages::fixed(msg, resp::EPHEMERAL);
    ck = kdf1(&ck, &e_pub);
    mix_hash(&mut h, &e_pub);
    ck = kdf1(&ck, &dh(&state.ephemeral, &e_pub)?);
    ck = kdf1(&ck, &local.dh(&e_pub)?);
    let (ck2, tau, key) = kdf3(&ck, psk);
    ck = ck2;
    mix_hash(&mut h, &tau);
    if !crypto::open_to(&key, &h, &msg[resp::EMPTY..resp::MAC1], &mut []) {
        return None;
    }
    let (send, recv) = kdf2(&ck, &[]);
    ck.zeroize();
    h.zeroize();
    Some(SessionKeys { send, recv })
}

/// The sender index of a response (the peer's index for the new session).
pub fn response_sender(msg: &[u8]) -> u32 {
    messages::le32(msg, resp::SENDER)
}

/// TAI64N of a wall-clock time, with the nanoseconds rounded down (as wireguard-go does) so the
/// timestamp does not leak a precise clock.
pub fn tai64n(since_unix_epoch: std::time::Duration) -> [u8; 12] {
    const TAI64_BASE: u64 = 0x4000_0000_0000_000a;
    const WHITENER_MASK: u32 = 0x100_0000 - 1;
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&(TAI64_BASE + since_unix_epoch.as_secs()).to_be_bytes());
    out[8..].copy_from_slice(&(since_unix_epoch.subsec_nanos() & !WHITENER_MASK).to_be_bytes());
    out
}
