//! Per-tenant vector indexes: partial HNSW indexes on `document_chunks`, one per large customer
//! (migration 0008 says why there is no global one). This module owns their names, the catalog
//! queries that say which exist, and the statements that build and drop them; the operator
//! decides when (its `tenant_index` module), and search uses them (`search`).
//!
//! The catalog is the only record: an index that exists and is valid (`pg_index.indisvalid`)
//! is used, one that a crashed concurrent build left invalid is dropped and built again.

use sqlx::{ConnectOptions, Connection, PgPool};

use crate::StoreError;

const NAME_PREFIX: &str = "document_chunks_tenant_";
const NAME_SUFFIX: &str = "_hnsw";

/// The name of a customer's index.
pub fn index_name(customer_id: i64) -> String {
    format!("{NAME_PREFIX}{customer_id}{NAME_SUFFIX}")
}

/// The customer whose index this is, if `name` is one of these indexes.
pub fn customer_of_index(name: &str) -> Option<i64> {
    name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?.parse().ok()
}

/// A tenant index found in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantIndex {
    pub customer_id: i64,
    /// False while a concurrent build runs, and after one failed: the planner does not use it.
    pub valid: bool,
    /// A build of it is running now (`pg_stat_progress_create_index`), perhaps started by
    /// another operator replica: not a leftover to drop.
    pub building: bool,
}

/// Chunks per customer, of live documents, from the documents' last committed chunk counts (a
/// small table; counting `document_chunks` would scan millions of rows).
pub async fn chunk_counts(pool: &PgPool) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT customer_id, sum(chunk_count)::bigint FROM knowledge_documents
          WHERE deleted_at IS NULL AND chunk_count > 0 GROUP BY customer_id",
    )
    .fetch_all(pool)
    .await?)
}

/// The tenant indexes that exist, valid or not.
pub async fn tenant_indexes(pool: &PgPool) -> Result<Vec<TenantIndex>, StoreError> {
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.indisvalid AND i.indisready,
                EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
          WHERE (i.indrelid = 'document_chunks'::regclass
                 OR i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'document_chunks'::regclass))
            AND c.relname LIKE 'document\\_chunks\\_tenant\\_%\\_hnsw'",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, valid, building)| {
            customer_of_index(&name).map(|customer_id| TenantIndex { customer_id, valid, building })
        })
        .collect())
}

/// Whether the customer has a valid index that search can use.
pub async fn has_valid_index(pool: &PgPool, customer_id: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND indisvalid AND indisready)",
    )
    .bind(index_name(customer_id))
    .fetch_one(pool)
    .await?)
}

/// Builds the customer's index without blocking writes (`CREATE INDEX CONCURRENTLY`), with
/// `maintenance_work_mem` raised for the build. A leftover invalid index of an interrupted
/// build is dropped first. Takes as long as the build (seconds to tens of seconds for 10⁵ rows
/// on two cores).
///
/// The build runs on a connection of its own, outside the pool, closed afterwards: if the
/// caller gives up half-way, no pooled connection keeps the raised memory setting.
pub async fn build_index(pool: &PgPool, customer_id: i64, maintenance_work_mem_mib: u32) -> Result<(), StoreError> {
    if tenant_indexes(pool).await?.iter().any(|i| i.customer_id == customer_id && !i.valid && !i.building) {
        drop_index(pool, customer_id).await?;
    }
    // On a partitioned table the index goes on the customer's partition: `CONCURRENTLY` does not
    // work on a partitioned parent, and a search pruned to the partition uses it there.
    let table = crate::partitions::chunks_table_of(pool, customer_id).await?;
    // The memory setting and the customer id are numbers formatted here, and the table a name
    // the catalog gave, never outside text.
    let raise_memory = format!("SET maintenance_work_mem = '{maintenance_work_mem_mib}MB'");
    // ef_construction 128, not pgvector's 64: on strongly clustered chunks (a customer with a few
    // topics) a graph built at 64 sometimes left a cluster unreachable, and a query on it then
    // got ten neighbours from another topic (1 run in 6 of the index test in
    // tests/tests/documents.rs). At 128 that test's orthogonal topics still trap about one query
    // in a few thousand (1 build in ~100); ef_search 1000 found them all, but costs up to 1.4x
    // the latency on the largest tenants (docs/benchmarks.md), whose real-embedding recall is
    // ≥ 0.999 at 400. It costs about twice the build time.
    let create = format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{}\" ON {table}
           USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)
           WHERE customer_id = {customer_id}",
        index_name(customer_id)
    );
    let mut conn = pool.connect_options().connect().await?;
    sqlx::query(&raise_memory).persistent(false).execute(&mut conn).await?;
    let built = sqlx::query(&create).persistent(false).execute(&mut conn).await;
    let _ = conn.close().await;
    built?;
    Ok(())
}

/// Drops the customer's index without blocking searches or writes.
pub async fn drop_index(pool: &PgPool, customer_id: i64) -> Result<(), StoreError> {
    let statement = format!("DROP INDEX CONCURRENTLY IF EXISTS \"{}\"", index_name(customer_id));
    sqlx::query(&statement).persistent(false).execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_strangers() {
        assert_eq!(index_name(42), "document_chunks_tenant_42_hnsw");
        assert_eq!(customer_of_index(&index_name(42)), Some(42));
        assert_eq!(customer_of_index(&index_name(i64::MAX)), Some(i64::MAX));
        assert!(index_name(i64::MAX).len() <= 63, "Postgres truncates identifiers past 63 bytes");
        assert_eq!(customer_of_index("document_chunks_customer_id_idx"), None);
        assert_eq!(customer_of_index("document_chunks_tenant_x_hnsw"), None);
        assert_eq!(customer_of_index("document_chunks_tenant_7_hnsw_old"), None);
    }
}
