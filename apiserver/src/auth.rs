//! Who is calling: `Authorization: Bearer <token>` is either the platform admin token or a
//! customer's API key (`sa_…`), looked up by its SHA-256. Lookups are cached for at most
//! [`KEY_CACHE_TTL`], so a rotated or revoked key stops working on every replica within that
//! time. A suspended customer's key is refused with its own error; a key reaches only its own
//! customer, and another customer's ids answer exactly like ids that do not exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use prospector_store::api_keys::{self, KeyOwner};
use prospector_store::customers::{self, CustomerRow};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiResult, AppError};

/// How long a key lookup is reused: the bound on how long a revoked key keeps working.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; random keys sent by a scanner cannot grow the cache past this.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The platform admin token: may register customers and act on any of them.
    Admin,
    /// A customer's API key.
    Customer(KeyOwner),
}

impl Caller {
    /// Whether this caller may act on customer `customer_id`, without reading it: a key reaches
    /// only its own customer (checked live when the key was looked up); the admin reaches any,
    /// and the caller's own query then finds out whether it exists. Another customer's id answers
    /// `NotFound`, like one that does not exist.
    pub fn authorize(&self, customer_id: i64) -> ApiResult<()> {
        match self {
            Caller::Customer(owner) if owner.customer_id != customer_id => Err(AppError::NotFound("customer")),
            _ => Ok(()),
        }
    }

    /// The customer `customer_id` if this caller may act on it. Another customer's id and an id
    /// that does not exist both answer `NotFound`.
    pub async fn customer(&self, state: &AppState, customer_id: i64) -> ApiResult<CustomerRow> {
        if let Caller::Customer(owner) = self
            && owner.customer_id != customer_id
        {
            return Err(AppError::NotFound("customer"));
        }
        customers::customer_by_id(&state.pool, customer_id).await?.ok_or(AppError::NotFound("customer"))
    }
}

/// The SHA-256 of the admin token, compared instead of the token so no comparison of secrets
/// happens in application code.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// `None` when the token is empty: then nobody is admin.
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest == self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// A lookup's answer (the owner, or none for a miss) and when it was made.
type CachedLookup = (Instant, Option<KeyOwner>);

/// Recent key lookups, including misses, by key hash.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], CachedLookup>>,
}

impl KeyCache {
    fn get(&self, hash: &[u8; 32]) -> Option<Option<KeyOwner>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL).map(|(_, owner)| owner.clone())
    }

    /// Caches a lookup made at `asked` (taken before the query, so the entry expires no later
    /// than a second after what it read).
    fn put(&self, hash: [u8; 32], owner: Option<KeyOwner>, asked: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, (asked, owner));
    }

    /// Forgets a key at once on this replica (after a rotation); others follow within the TTL.
    pub fn forget(&self, hash: &[u8; 32]) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
    }
}

/// The bearer token of a request, if it has a well-formed `Authorization` header.
pub(crate) fn bearer(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AppError::Unauthorized("the Authorization header is not readable text"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or(AppError::Unauthorized("the Authorization header must be `Bearer <api key>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::Unauthorized("the Authorization header must be `Bearer <api key>`"));
    }
    Ok(Some(token.trim()))
}

/// Authenticates a token.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Caller> {
    let is_admin =
        state.admin_token.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|a| a.matches(token));
    if is_admin {
        return Ok(Caller::Admin);
    }
    if !token.starts_with("sa_") || token.len() > 128 {
        return Err(AppError::Unauthorized("invalid API key"));
    }
    let hash = api_keys::sha256(token);
    let owner = match state.key_cache.get(&hash) {
        Some(owner) => owner,
        None => {
            let asked = Instant::now();
            let owner = api_keys::key_owner(&state.pool, &hash).await?;
            state.key_cache.put(hash, owner.clone(), asked);
            owner
        }
    };
    match owner {
        None => Err(AppError::Unauthorized("invalid or revoked API key")),
        Some(owner) if owner.suspended => Err(AppError::Suspended),
        Some(owner) => Ok(Caller::Customer(owner)),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Authenticated (and admitted) by the limits middleware already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = bearer(&parts.headers)?.ok_or(AppError::Unauthorized("send `Authorization: Bearer <api key>`"))?;
        authenticate(state, token).await
    }
}

/// A caller that may be anonymous (open self-registration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Self(Some(caller.clone())));
        }
        match bearer(&parts.headers)? {
            None => Ok(Self(None)),
            Some(token) => authenticate(state, token).await.map(|c| Self(Some(c))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: i64) -> KeyOwner {
        KeyOwner { customer_id: id, name: "acme".into(), suspended: false }
    }

    #[test]
    fn cached_lookups_expire_and_can_be_forgotten() {
        let cache = KeyCache::default();
        let hash = [7u8; 32];
        assert_eq!(cache.get(&hash), None);
        cache.put(hash, Some(owner(1)), Instant::now());
        assert_eq!(cache.get(&hash), Some(Some(owner(1))));
        cache.forget(&hash);
        assert_eq!(cache.get(&hash), None);
        cache.put(hash, None, Instant::now());
        assert_eq!(cache.get(&hash), Some(None), "misses are cached too");
        std::thread::sleep(KEY_CACHE_TTL);
        assert_eq!(cache.get(&hash), None, "nothing outlives the TTL");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        for i in 0..(KEY_CACHE_CAPACITY + 10) {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(hash, None, Instant::now());
        }
        assert!(cache.entries.lock().unwrap().len() <= KEY_CACHE_CAPACITY);
    }

    #[test]
    fn the_admin_token_matches_only_itself_and_never_prints() {
        let admin = AdminToken::new(" s3cret-admin ").unwrap();
        assert!(admin.matches("s3cret-admin"));
        assert!(!admin.matches("s3cret-admin2"));
        assert!(AdminToken::new("  ").is_none());
        assert!(!format!("{admin:?}").contains("s3cret"));
    }
}
