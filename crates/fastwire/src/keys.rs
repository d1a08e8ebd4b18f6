//! `fastwire genkey | pubkey | genpsk`, byte-compatible with `wg`, and the base64 key helpers the
//! config parsers share.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};
use std::io::{Read, Write};
use x25519_dalek::{PublicKey, StaticSecret};

/// Length of a base64-encoded 32-byte key, padding included.
const KEY_BASE64_LEN: usize = 44;

/// `wg pubkey` reads at most a key plus some whitespace; anything longer is not a key.
const PUBKEY_INPUT_LIMIT: u64 = 4096;

/// Decodes a padded standard-base64 WireGuard key, exactly as `wg` accepts it (44 characters, `=` last,
/// no stray bits in the final symbol).
pub fn decode_key(s: &str) -> Result<[u8; 32], String> {
    let bad = || format!("`{s}' is not a base64 WireGuard key");
    if s.len() != KEY_BASE64_LEN || !s.ends_with('=') {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    // The standard engine rejects non-canonical trailing bits, as `wg` does.
    match STANDARD.decode_slice(s, &mut key) {
        Ok(32) => Ok(key),
        _ => Err(bad()),
    }
}

/// Encodes a key the way `wg` prints it: standard base64 with padding.
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// The X25519 public key of a private key (clamped on use, as `wg pubkey` does).
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

/// A fresh private key, clamped as `wg genkey` clamps it.
pub fn generate_private_key() -> [u8; 32] {
    let mut key = random_key();
    key[0] &= 248;
    key[31] = (key[31] & 127) | 64;
    key
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

fn print_key(key: &[u8; 32]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", encode_key(key))
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the key: {e}"))
}

/// `fastwire genkey`.
pub fn genkey() -> Result<(), String> {
    print_key(&generate_private_key())
}

/// `fastwire genpsk`.
pub fn genpsk() -> Result<(), String> {
    print_key(&random_key())
}

/// `fastwire pubkey`: a private key on stdin, its public key on stdout.
pub fn pubkey() -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(PUBKEY_INPUT_LIMIT)
        .read_to_end(&mut input)
        .map_err(|e| format!("pubkey: cannot read stdin: {e}"))?;
    let private = pubkey_input(&input)?;
    print_key(&public_key(&private))
}

fn pubkey_input(input: &[u8]) -> Result<[u8; 32], String> {
    const BAD: &str = "pubkey: the input is not a base64 WireGuard key";
    let text = std::str::from_utf8(input).map_err(|_| BAD.to_string())?;
    decode_key(text.trim_end()).map_err(|_| BAD.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 section 6.1 test vector (Alice).
    const ALICE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const ALICE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

    #[test]
    fn public_key_matches_rfc7748() {
        let private = decode_key(ALICE_PRIVATE).unwrap();
        assert_eq!(encode_key(&public_key(&private)), ALICE_PUBLIC);
    }

    #[test]
    fn generated_keys_are_clamped_and_round_trip() {
        let key = generate_private_key();
        assert_eq!(key[0] & 7, 0);
        assert_eq!(key[31] & 128, 0);
        assert_eq!(key[31] & 64, 64);
        let text = encode_key(&key);
        assert_eq!(text.len(), KEY_BASE64_LEN);
        assert_eq!(decode_key(&text).unwrap(), key);
    }

    #[test]
    fn decode_rejects_what_wg_rejects() {
        for bad in [
            "",
            "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo", // no padding
            "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo==", // too long
            "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCp=", // stray trailing bits
            "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC!=",
            "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25L=o=",
            " dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=",
        ] {
            assert!(decode_key(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pubkey_input_allows_trailing_whitespace_only() {
        let expected = decode_key(ALICE_PRIVATE).unwrap();
        assert_eq!(
            pubkey_input(format!("{ALICE_PRIVATE}\n").as_bytes()),
            Ok(expected)
        );
        assert_eq!(
            pubkey_input(format!("{ALICE_PRIVATE} \r\n\t").as_bytes()),
            Ok(expected)
        );
        assert!(pubkey_input(format!("{ALICE_PRIVATE}x\n").as_bytes()).is_err());
        assert!(pubkey_input(b"\xff\xfe").is_err());
        assert!(pubkey_input(b"").is_err());
    }
}
