//! Hash partitioning of `document_chunks` by customer (docs/scaling.md, "Growing past it"): how
//! many partitions the table has, and turning a new, empty table into that many. Each customer's
//! chunks then live in one partition, where vacuum, index builds and a search stay.
//!
//! The layout is chosen once, at install (`prospector-operator migrate --chunk-partitions N`,
//! the chart's `database.chunkPartitions`). Moving rows between layouts on a live database is a
//! DBA's operation, so a table that holds rows is never converted here.

use sqlx::PgPool;

use crate::StoreError;

/// How `document_chunks` is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkLayout {
    /// One table (the migrations' layout).
    Plain,
    /// Hash-partitioned by `customer_id` into this many partitions.
    Partitioned(u32),
}

/// The largest partition count accepted (Postgres plans slow down with many more).
pub const MAX_PARTITIONS: u32 = 1024;

/// The current layout.
pub async fn chunk_layout(pool: &PgPool) -> Result<ChunkLayout, StoreError> {
    let (partitioned, partitions): (bool, i64) = sqlx::query_as(
        "SELECT c.relkind = 'p', (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid)
           FROM pg_class c WHERE c.oid = 'document_chunks'::regclass",
    )
    .fetch_one(pool)
    .await?;
    Ok(if partitioned { ChunkLayout::Partitioned(partitions as u32) } else { ChunkLayout::Plain })
}

/// Makes `document_chunks` `partitions` hash partitions by customer (1: one table). Idempotent
/// for the layout the table has; refuses to change the count of a partitioned table, to go back
/// to one table, and to convert a table that holds rows, each with the reason.
pub async fn set_chunk_partitions(pool: &PgPool, partitions: u32) -> Result<ChunkLayout, StoreError> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(StoreError::Config(format!("chunk partitions must be 1 to {MAX_PARTITIONS}, not {partitions}")));
    }
    match (chunk_layout(pool).await?, partitions) {
        (ChunkLayout::Plain, 1) => return Ok(ChunkLayout::Plain),
        (ChunkLayout::Partitioned(n), wanted) if n == wanted => return Ok(ChunkLayout::Partitioned(n)),
        (ChunkLayout::Partitioned(n), wanted) => {
            return Err(StoreError::Config(format!(
                "document_chunks has {n} partitions, not {wanted}: repartitioning a table in use is a DBA's job \
                 (docs/scaling.md)"
            )));
        }
        (ChunkLayout::Plain, _) => {}
    }
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE document_chunks IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await?;
    // Another migrate may have converted the table between the check above and this lock.
    let partitioned_meanwhile: bool =
        sqlx::query_scalar("SELECT relkind = 'p' FROM pg_class WHERE oid = 'document_chunks'::regclass")
            .fetch_one(&mut *tx)
            .await?;
    if partitioned_meanwhile {
        tx.rollback().await?;
        return Box::pin(set_chunk_partitions(pool, partitions)).await;
    }
    let has_rows: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM document_chunks)").fetch_one(&mut *tx).await?;
    if has_rows {
        return Err(StoreError::Config(
            "document_chunks holds rows: partitioning a table in use is a DBA's job (docs/scaling.md); \
             choose the partition count at install"
                .into(),
        ));
    }
    // The same columns, defaults, generated column, identity, storage, checks and comments as
    // the migrations made; the keys are the migrations' too, with the customer in the primary key
    // (a partitioned table's unique keys must hold its partition key).
    let statements = [
        "ALTER TABLE document_chunks RENAME TO document_chunks_plain".to_owned(),
        "CREATE TABLE document_chunks (LIKE document_chunks_plain INCLUDING DEFAULTS INCLUDING GENERATED \
         INCLUDING IDENTITY INCLUDING STORAGE INCLUDING CONSTRAINTS INCLUDING COMMENTS) PARTITION BY HASH (customer_id)"
            .to_owned(),
        // LIKE copies the columns' comments, not the table's.
        "DO $$ BEGIN EXECUTE format('COMMENT ON TABLE document_chunks IS %L', \
         obj_description('document_chunks_plain'::regclass, 'pg_class')); END $$"
            .to_owned(),
        "DROP TABLE document_chunks_plain".to_owned(),
        "ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_pkey PRIMARY KEY (customer_id, id)".to_owned(),
        "ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_customer_document_chunk_key \
         UNIQUE (customer_id, document_id, chunk_index)"
            .to_owned(),
        "ALTER TABLE document_chunks ADD CONSTRAINT document_chunks_document_fk FOREIGN KEY (customer_id, document_id) \
         REFERENCES knowledge_documents (customer_id, id) ON DELETE CASCADE"
            .to_owned(),
        "CREATE INDEX document_chunks_customer_id_idx ON document_chunks (customer_id)".to_owned(),
        "CREATE INDEX document_chunks_content_tsv_idx ON document_chunks USING gin (content_tsv)".to_owned(),
    ]
    .into_iter()
    .chain((0..partitions).map(|remainder| {
        format!(
            "CREATE TABLE document_chunks_p{remainder} PARTITION OF document_chunks \
             FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder})"
        )
    }));
    for statement in statements {
        sqlx::query(&statement).persistent(false).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ChunkLayout::Partitioned(partitions))
}

/// The table a customer's chunks are stored in: `document_chunks` itself, or the partition
/// its id hashes to (named `document_chunks_p<remainder>` by [`set_chunk_partitions`]), whether
/// or not it holds chunks yet.
pub async fn chunks_table_of(pool: &PgPool, customer_id: i64) -> Result<String, StoreError> {
    let ChunkLayout::Partitioned(partitions) = chunk_layout(pool).await? else {
        return Ok("document_chunks".into());
    };
    let table: Option<String> = sqlx::query_scalar(
        "SELECT format('document_chunks_p%s', r) FROM generate_series(0, $2 - 1) r
          WHERE satisfies_hash_partition('document_chunks'::regclass, $2, r, $1::bigint)",
    )
    .bind(customer_id)
    .bind(partitions as i32)
    .fetch_optional(pool)
    .await?;
    table.ok_or_else(|| StoreError::Config(format!("no partition of document_chunks takes customer {customer_id}")))
}
