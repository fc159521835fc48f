//! Prospector's Postgres layer. Every SQL statement of the project lives in this crate; the
//! migrations under `migrations/` are embedded at compile time.
//!
//! Postgres holds what Kubernetes does not: ids and usage counters, API key hashes, blobs, text,
//! chunks and vectors, and the embedding work queue. Writes that mirror a custom resource are
//! upserts keyed by the object's UID, so a reconcile that crashed half-way replays cleanly.

pub mod agents;
pub mod api_keys;
pub mod chunks;
pub mod customers;
pub mod documents;
mod error;
pub mod idempotency;
pub mod queue;
pub mod search;
pub mod tenant_index;

pub use error::StoreError;

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The migrations, embedded from the repository's `migrations/` directory.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens a connection pool.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    connect_with(connect_options(Some(database_url))?, max_connections).await
}

/// Opens a connection pool with options from [`connect_options`].
pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(StoreError::from)
}

/// Where to connect: the URL when there is one, else libpq's environment variables (`PGHOST`,
/// `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, ...), which is how a Secret with
/// one key per part (CloudNativePG's, a cloud provider's) reaches a pod without composing a URL
/// that a password's `@` or `/` would break.
pub fn connect_options(database_url: Option<&str>) -> Result<PgConnectOptions, StoreError> {
    match database_url.filter(|url| !url.trim().is_empty()) {
        // The parse error names the part that is wrong, never the URL (it holds the password).
        Some(url) => url.parse().map_err(|e: sqlx::Error| StoreError::Config(format!("the database URL: {e}"))),
        None if std::env::var_os("PGHOST").is_some() => Ok(PgConnectOptions::new()),
        None => Err(StoreError::Config(
            "no database: set DATABASE_URL, or PGHOST with PGUSER, PGPASSWORD and PGDATABASE".into(),
        )),
    }
}

/// Applies every pending migration.
///
/// The migrator holds a Postgres advisory lock (keyed on the database name) for the whole run,
/// so operator replicas starting together, or a Helm hook racing an operator, apply each
/// migration exactly once; the others wait and then find nothing to do.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    debug_assert!(MIGRATOR.locking, "migrations must run under the advisory lock");
    MIGRATOR.run(pool).await.map_err(StoreError::Migrate)
}

/// The versions of the applied migrations, in order.
pub async fn applied_migrations(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?;
    Ok(versions)
}

/// Checks that the database answers.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
