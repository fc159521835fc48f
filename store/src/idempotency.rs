//! The `idempotency_keys` table: the first request with an `Idempotency-Key` claims it, its
//! answer is recorded when it finishes, and retries of the same request get that answer.

use std::time::Duration;

use sqlx::PgPool;

use crate::StoreError;

/// How long an answer is kept for retries.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A claim older than this whose request never finished (its server died) may be taken over.
pub const STALE_CLAIM: Duration = Duration::from_secs(300);

/// What a request with an idempotency key should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Run it: this request holds the key now. The token fences its answer: a claim taken over
    /// after it went stale cannot be completed or released by the request that lost it.
    Run { token: chrono::DateTime<chrono::Utc> },
    /// The first request with this key still runs.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
    /// Answer with the first request's answer.
    Replay { status: u16, body: Vec<u8> },
}

/// A claimed key's request hash, and its answer once recorded.
type KeptAnswer = (Vec<u8>, Option<i32>, Option<Vec<u8>>);

/// Claims `key` for a request whose method, path and body hash to `request_sha256`.
pub async fn claim(pool: &PgPool, scope: &str, key: &str, request_sha256: &[u8]) -> Result<Claim, StoreError> {
    // A fresh claim, or the takeover of one expired or abandoned by a dead server.
    let claimed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (scope, key, request_sha256) VALUES ($1, $2, $3)
         ON CONFLICT (scope, key) DO UPDATE
            SET request_sha256 = EXCLUDED.request_sha256, status = NULL, body = NULL,
                created_at = now(), completed_at = NULL
          WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
             OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - make_interval(secs => $5))
         RETURNING created_at",
    )
    .bind(scope)
    .bind(key)
    .bind(request_sha256)
    .bind(RETENTION.as_secs_f64())
    .bind(STALE_CLAIM.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    if let Some(token) = claimed {
        return Ok(Claim::Run { token });
    }
    let row: Option<KeptAnswer> =
        sqlx::query_as("SELECT request_sha256, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        // Released between the two statements: the caller may simply retry.
        None => Claim::InProgress,
        Some((hash, _, _)) if hash != request_sha256 => Claim::Mismatch,
        Some((_, None, _)) => Claim::InProgress,
        Some((_, Some(status), body)) => {
            Claim::Replay { status: u16::try_from(status).unwrap_or(500), body: body.unwrap_or_default() }
        }
    })
}

/// Records the answer of the request that holds `key` by `token`.
pub async fn complete(
    pool: &PgPool,
    scope: &str,
    key: &str,
    token: chrono::DateTime<chrono::Utc>,
    status: u16,
    body: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, body = $4, completed_at = now()
          WHERE scope = $1 AND key = $2 AND created_at = $5 AND status IS NULL",
    )
    .bind(scope)
    .bind(key)
    .bind(i32::from(status))
    .bind(body)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives `key` up (the request failed in a way a retry may fix, or its client left): the next
/// request runs.
pub async fn release(
    pool: &PgPool,
    scope: &str,
    key: &str,
    token: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes answers past their retention. Returns how many.
pub async fn sweep(pool: &PgPool) -> Result<u64, StoreError> {
    let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)")
        .bind(RETENTION.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected())
}
