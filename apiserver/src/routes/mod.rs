//! The REST routes, one module per resource of the seed's API.

pub mod agents;
pub mod customers;
pub mod knowledge;
pub mod upload;

/// A random suffix of lowercase letters and digits, for object names made from free text.
pub(crate) fn random_lowercase(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}
