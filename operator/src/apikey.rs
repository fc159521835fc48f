//! API keys: `sa_` followed by 32 random bytes in base62. Only the key's prefix and SHA-256
//! leave the Secret.

use rand::RngCore;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters of the key shown to people (`sa_` + 8).
pub const PREFIX_LEN: usize = 11;

/// Encodes bytes as a big-endian base62 number.
pub fn base62(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new();
    let mut number = bytes.to_vec();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    if digits.is_empty() {
        digits.push(ALPHABET[0]);
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// A new random API key.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    // Pad so every key has the same length, whatever its leading digits.
    format!("sa_{:0>43}", base62(&bytes))
}

/// The part of a key that may be shown and stored in clear.
pub fn prefix(key: &str) -> &str {
    &key[..key.len().min(PREFIX_LEN)]
}

/// The SHA-256 of a key, as stored in `api_keys.key_sha256`.
pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_encodes_big_endian_numbers() {
        assert_eq!(base62(&[0]), "0");
        assert_eq!(base62(&[61]), "z");
        assert_eq!(base62(&[62]), "10");
        assert_eq!(base62(&[1, 0]), "48"); // 256 = 4 * 62 + 8
        assert_eq!(base62(&[0xff; 32]).len(), 43);
    }

    #[test]
    fn keys_are_long_random_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 46);
        assert!(a.starts_with("sa_") && a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(prefix(&a).len(), PREFIX_LEN);
        assert_eq!(sha256(&a), sha256(&a.clone()));
        assert_ne!(sha256(&a), sha256(&b));
    }
}
