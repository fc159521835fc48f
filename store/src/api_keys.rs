//! API keys: `sa_` followed by 32 random bytes in base62, and their rows in `api_keys`. Only
//! the key's prefix and SHA-256 leave the Secret `prospector-api-key`, which is the key's one
//! home: the operator activates whatever key the Secret holds, the REST server's rotation
//! replaces it, and a customer has one active key at a time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::StoreError;

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

/// What [`activate_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyActivation {
    /// The key is now the customer's only active key (any other was revoked).
    Active,
    /// The key was revoked before (rotated away): the caller read an old copy of the Secret,
    /// and nothing changed.
    Stale,
}

/// Makes `key` the customer's active key: records its hash if new and revokes every key of the
/// customer recorded before it. A key revoked before stays revoked, so a reconcile that read the
/// Secret just before a rotation cannot bring the old key back; and keys recorded after it (a
/// rotation in progress) are left alone, so that reconcile cannot revoke the new key either.
/// Serialised per customer by a row lock.
pub async fn activate_key(pool: &PgPool, customer_id: i64, key: &str) -> Result<KeyActivation, StoreError> {
    let mut tx = pool.begin().await?;
    lock_customer(&mut tx, customer_id).await?;
    if was_revoked(&mut tx, key).await? {
        return Ok(KeyActivation::Stale);
    }
    insert_active(&mut tx, customer_id, key).await?;
    revoke_older(&mut tx, customer_id, key).await?;
    tx.commit().await?;
    Ok(KeyActivation::Active)
}

/// Records `key` as an active key of the customer beside the current one: the first step of a
/// rotation, before the Secret changes, so that no moment exists where the Secret holds a key
/// that does not work.
pub async fn add_key(pool: &PgPool, customer_id: i64, key: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    lock_customer(&mut tx, customer_id).await?;
    insert_active(&mut tx, customer_id, key).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes one key (a rotation that could not write the Secret gives its new key up).
pub async fn revoke_key(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE key_sha256 = $1 AND revoked_at IS NULL")
        .bind(sha256(key).as_slice())
        .execute(pool)
        .await?;
    Ok(())
}

/// Completes a rotation once the Secret holds `new`: `old` (the Secret's key before, when there
/// was one) is recorded as revoked even if no reconcile had registered it yet, and every key
/// recorded before `new` is revoked. [`KeyActivation::Stale`] when `new` was itself revoked
/// meanwhile (a later rotation won): then nothing changes. One transaction.
pub async fn rotate_key(
    pool: &PgPool,
    customer_id: i64,
    old: Option<&str>,
    new: &str,
) -> Result<KeyActivation, StoreError> {
    let mut tx = pool.begin().await?;
    lock_customer(&mut tx, customer_id).await?;
    if was_revoked(&mut tx, new).await? {
        return Ok(KeyActivation::Stale);
    }
    if let Some(old) = old {
        sqlx::query(
            "INSERT INTO api_keys (customer_id, key_prefix, key_sha256, revoked_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (key_sha256) DO UPDATE SET revoked_at = coalesce(api_keys.revoked_at, now())",
        )
        .bind(customer_id)
        .bind(prefix(old))
        .bind(sha256(old).as_slice())
        .execute(&mut *tx)
        .await?;
    }
    insert_active(&mut tx, customer_id, new).await?;
    revoke_older(&mut tx, customer_id, new).await?;
    // The rotation's response carries the new key: it is delivered.
    sqlx::query("UPDATE api_keys SET delivered_at = now() WHERE key_sha256 = $1")
        .bind(sha256(new).as_slice())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(KeyActivation::Active)
}

/// Whether `key` is recorded and revoked: a key only ever moves forward, so a revoked one is
/// an old copy.
async fn was_revoked(tx: &mut sqlx::PgConnection, key: &str) -> Result<bool, StoreError> {
    let revoked: Option<bool> = sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_keys WHERE key_sha256 = $1")
        .bind(sha256(key).as_slice())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(revoked == Some(true))
}

async fn lock_customer(tx: &mut sqlx::PgConnection, customer_id: i64) -> Result<(), StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM customers WHERE id = $1 AND deleted_at IS NULL FOR UPDATE")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
    found.map(|_| ()).ok_or(StoreError::Gone)
}

async fn insert_active(tx: &mut sqlx::PgConnection, customer_id: i64, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (customer_id, key_prefix, key_sha256) VALUES ($1, $2, $3)
         ON CONFLICT (key_sha256) DO NOTHING",
    )
    .bind(customer_id)
    .bind(prefix(key))
    .bind(sha256(key).as_slice())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn revoke_older(tx: &mut sqlx::PgConnection, customer_id: i64, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE api_keys SET revoked_at = now()
          WHERE customer_id = $1 AND revoked_at IS NULL
            AND id < (SELECT id FROM api_keys WHERE key_sha256 = $2)",
    )
    .bind(customer_id)
    .bind(sha256(key).as_slice())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The customer an API key belongs to, as authentication needs it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyOwner {
    pub customer_id: i64,
    /// The Customer object's name.
    pub name: String,
    pub suspended: bool,
}

/// The live customer whose unrevoked key has this SHA-256, if any. The equality lookup on the
/// hash is the whole check: keys carry 32 random bytes, so nothing is compared in memory.
pub async fn key_owner(pool: &PgPool, key_sha256: &[u8; 32]) -> Result<Option<KeyOwner>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT c.id AS customer_id, c.name, c.status = 'suspended' AS suspended
           FROM api_keys k JOIN customers c ON c.id = k.customer_id
          WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL AND c.deleted_at IS NULL",
    )
    .bind(key_sha256.as_slice())
    .fetch_optional(pool)
    .await?)
}

/// Marks `key` as handed out and says whether this call did it: true exactly once per key,
/// whichever replica or retried request asks first. A revoked key is never handed out.
pub async fn claim_delivery(pool: &PgPool, customer_id: i64, key: &str) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE api_keys SET delivered_at = now()
          WHERE customer_id = $1 AND key_sha256 = $2 AND revoked_at IS NULL AND delivered_at IS NULL",
    )
    .bind(customer_id)
    .bind(sha256(key).as_slice())
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// The SHA-256 hashes of a customer's unrevoked keys.
pub async fn active_key_hashes(pool: &PgPool, customer_id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
    let rows =
        sqlx::query_scalar("SELECT key_sha256 FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL ORDER BY id")
            .bind(customer_id)
            .fetch_all(pool)
            .await?;
    Ok(rows)
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
