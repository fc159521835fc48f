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
pub mod partitions;
pub mod queue;
pub mod search;
pub mod tenant_index;

pub use error::{STORE_ERROR_KINDS, StoreError};

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The migrations, embedded from the repository's `migrations/` directory.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Runs an upsert that returns its row, or none when a concurrent insert of the same key won
/// its `ON CONFLICT DO NOTHING`; then it runs once more, which reads that row. More than one row
/// is a bug in the statement, reported rather than hidden.
pub(crate) async fn one_row<T, F, Fut>(mut run: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, sqlx::Error>>,
{
    for _ in 0..2 {
        let mut rows = run().await?;
        match rows.len() {
            0 => continue,
            1 => return Ok(rows.remove(0)),
            n => return Err(StoreError::Database(sqlx::Error::Protocol(format!("an upsert returned {n} rows")))),
        }
    }
    Err(StoreError::Database(sqlx::Error::RowNotFound))
}

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
        None => {
            check_libpq_environment(|name| std::env::var(name).ok())?;
            Ok(PgConnectOptions::new())
        }
    }
}

/// What sqlx would otherwise let pass quietly: it reads an unknown `PGSSLMODE` as `prefer` (a
/// typo would weaken TLS), a malformed `PGPORT` as 5432, and lets `PGHOSTADDR` replace `PGHOST`.
fn check_libpq_environment(var: impl Fn(&str) -> Option<String>) -> Result<(), StoreError> {
    if var("PGHOST").is_none_or(|host| host.trim().is_empty()) {
        return Err(StoreError::Config(
            "no database: set DATABASE_URL, or PGHOST with PGUSER, PGPASSWORD and PGDATABASE".into(),
        ));
    }
    if let Some(mode) = var("PGSSLMODE")
        && !["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(&mode.as_str())
    {
        return Err(StoreError::Config(format!("PGSSLMODE {mode:?} is not a libpq SSL mode")));
    }
    if let Some(port) = var("PGPORT")
        && port.parse::<u16>().is_err()
    {
        return Err(StoreError::Config(format!("PGPORT {port:?} is not a port")));
    }
    if var("PGHOSTADDR").is_some() {
        return Err(StoreError::Config("PGHOSTADDR is not supported: name the server in PGHOST".into()));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn libpq_variables_that_sqlx_would_misread_are_refused() {
        assert!(
            check_libpq_environment(env(&[("PGHOST", "db"), ("PGPORT", "5433"), ("PGSSLMODE", "verify-full")])).is_ok()
        );
        for (vars, says) in [
            (vec![], "no database"),
            (vec![("PGHOST", " ")], "no database"),
            (vec![("PGHOST", "db"), ("PGSSLMODE", "requried")], "PGSSLMODE"),
            (vec![("PGHOST", "db"), ("PGPORT", "5432x")], "PGPORT"),
            (vec![("PGHOST", "db"), ("PGHOSTADDR", "10.0.0.1")], "PGHOSTADDR"),
        ] {
            let error = check_libpq_environment(env(&vars)).unwrap_err().to_string();
            assert!(error.contains(says), "{vars:?}: {error}");
        }
    }

    #[test]
    fn a_malformed_url_is_refused_without_echoing_it() {
        let error = connect_options(Some("postgres://user:s3cret@[bad")).unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
