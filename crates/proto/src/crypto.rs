//! WireGuard's primitives, built from well-kept crates: BLAKE2s (hash, keyed MAC, HMAC), HKDF over
//! HMAC-BLAKE2s, ChaCha20-Poly1305 (ring) and XChaCha20-Poly1305 (RustCrypto) for cookies.

use blake2::digest::core_api::{Block, Buffer, UpdateCore, VariableOutputCore};
use blake2::digest::{FixedOutput, KeyInit, Mac, Output, Update, consts::U16};
use blake2::{Blake2s256, Blake2sMac, Blake2sVarCore, Digest};
use chacha20poly1305::{AeadInPlace, XChaCha20Poly1305, XNonce};
use hmac::SimpleHmac;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
pub const MAC_LEN: usize = 16;

pub type Key = [u8; KEY_LEN];

/// HASH(parts...) — BLAKE2s-256 over the concatenation.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// MAC(key, ·) for one key used for many messages (our mac1 key checks every handshake a flood sends).
///
/// Keyed BLAKE2s compresses the zero-padded key as its first block; that block is the same for every
/// message, so it is compressed once here, through the blake2 crate's own core (no BLAKE2 of ours), and
/// a 116-byte initiation costs two compressions instead of three.
#[derive(Clone)]
pub struct PrekeyedMac {
    key: Key,
    key_len: usize,
    core: Blake2sVarCore,
}

impl PrekeyedMac {
    /// `key`: 1 to 32 bytes (WireGuard's MAC keys are 32).
    pub fn new(key: &[u8]) -> Self {
        assert!(
            (1..=KEY_LEN).contains(&key.len()),
            "a BLAKE2s MAC key is 1 to 32 bytes"
        );
        let mut block = Block::<Blake2sVarCore>::default();
        block[..key.len()].copy_from_slice(key);
        let mut core = Blake2sVarCore::new_with_params(&[], &[], key.len(), MAC_LEN);
        core.update_blocks(&[block]);
        let mut padded = [0u8; KEY_LEN];
        padded[..key.len()].copy_from_slice(key);
        Self {
            key: padded,
            key_len: key.len(),
            core,
        }
    }

    /// The same as [`mac`] with this key.
    pub fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        if data.is_empty() {
            // Then the key block is the final block, which the precomputed state is not.
            return mac(&self.key[..self.key_len], data);
        }
        let mut core = self.core.clone();
        let mut buffer = Buffer::<Blake2sVarCore>::default();
        buffer.digest_blocks(data, |blocks| core.update_blocks(blocks));
        let mut full = Output::<Blake2sVarCore>::default();
        core.finalize_variable_core(&mut buffer, &mut full);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// MAC(key, data) — keyed BLAKE2s with a 16-byte output.
pub fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    // A 32-byte or 16-byte key is always a valid BLAKE2s key, so this cannot fail.
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key)
        .expect("BLAKE2s accepts keys up to 32 bytes");
    Mac::update(&mut m, data);
    m.finalize_fixed().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts any key length");
    for p in parts {
        Update::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

/// KDF1..3 of the whitepaper (HKDF with HMAC-BLAKE2s).
pub fn kdf1(ck: &Key, input: &[u8]) -> Key {
    let prk = hmac(ck, &[input]);
    hmac(&prk, &[&[1]])
}

pub fn kdf2(ck: &Key, input: &[u8]) -> (Key, Key) {
    let prk = hmac(ck, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    (t1, t2)
}

pub fn kdf3(ck: &Key, input: &[u8]) -> (Key, Key, Key) {
    let prk = hmac(ck, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    let t3 = hmac(&prk, &[&t2, &[3]]);
    (t1, t2, t3)
}

/// WireGuard's 96-bit nonce: 32 zero bits then the little-endian 64-bit counter.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A ChaCha20-Poly1305 key ready for repeated use on the data path.
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    pub fn new(key: &Key) -> Self {
        // ring only rejects keys of the wrong length, and ours is 32 bytes by type.
        Self(LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"),
        ))
    }

    /// Encrypts `data` in place and returns the tag.
    pub fn seal(&self, counter: u64, aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), data)
            .expect("ChaCha20-Poly1305 seal only fails for inputs over 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `data` (ciphertext followed by the tag) in place; returns the plaintext length.
    pub fn open(&self, counter: u64, aad: &[u8], data: &mut [u8]) -> Option<usize> {
        self.0
            .open_in_place(nonce(counter), Aad::from(aad), data)
            .ok()
            .map(|p| p.len())
    }
}

/// One-shot AEAD used by the handshake (counter 0, hash as associated data).
pub fn seal_to(key: &Key, aad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), plaintext.len() + TAG_LEN);
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let tag = AeadKey::new(key).seal(0, aad, body);
    tag_out.copy_from_slice(&tag);
}

/// Opens `sealed` (ciphertext || tag) into `out`; false if authentication fails.
pub fn open_to(key: &Key, aad: &[u8], sealed: &[u8], out: &mut [u8]) -> bool {
    if sealed.len() != out.len() + TAG_LEN {
        return false;
    }
    let mut buf = [0u8; 64];
    let Some(work) = buf.get_mut(..sealed.len()) else {
        return false;
    };
    work.copy_from_slice(sealed);
    match AeadKey::new(key).open(0, aad, work) {
        Some(n) if n == out.len() => {
            out.copy_from_slice(&work[..n]);
            true
        }
        _ => false,
    }
}

/// XChaCha20-Poly1305 for cookie replies: encrypts `data` in place, returns the tag.
pub fn xseal(key: &Key, nonce: &[u8; 24], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
    let cipher = XChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, data)
        .expect("XChaCha20-Poly1305 seal only fails for huge inputs");
    tag.into()
}

/// XChaCha20-Poly1305 open in place; false if authentication fails.
pub fn xopen(
    key: &Key,
    nonce: &[u8; 24],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, data, tag.into())
        .is_ok()
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

/// A uniformly random `u32`.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}
