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

/// An object name made from free text: its ASCII letters and digits in lower case, any other run
/// of characters as one `-`, at most `max_slug` characters of it (`fallback` when nothing is
/// left), then `-suffix`. A DNS label when `max_slug` and the suffix leave room.
pub(crate) fn object_name(text: &str, max_slug: usize, fallback: &str, suffix: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if slug.len() >= max_slug {
            break;
        }
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    format!("{}-{suffix}", if slug.is_empty() { fallback } else { slug })
}

/// Text fields must be printable: Kubernetes stores no control characters, Postgres no NUL.
pub(crate) fn check_printable(field: &str, value: &str) -> crate::error::ApiResult<()> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(crate::error::AppError::BadRequest(format!("{field} must not contain control characters")));
    }
    Ok(())
}
