//! The `document_chunks` table: a document's chunks with their embeddings, and nearest-neighbour
//! search within one customer.

use pgvector::Vector;
use sqlx::PgPool;

use crate::StoreError;

/// The dimension of all-MiniLM-L6-v2 embeddings.
pub const EMBEDDING_DIM: usize = 384;

/// One chunk to index.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChunk {
    pub chunk_index: i32,
    pub content: String,
    pub token_count: i32,
    pub embedding: Vec<f32>,
}

/// A search hit.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkHit {
    pub chunk_id: i64,
    pub document_id: i64,
    pub chunk_index: i32,
    pub content: String,
    /// Cosine distance (1 - cosine similarity).
    pub distance: f64,
}

/// Writes a document's chunks, replacing any chunk with the same index, in one transaction.
pub async fn upsert_chunks(
    pool: &PgPool,
    customer_id: i64,
    document_id: i64,
    chunks: &[NewChunk],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for chunk in chunks {
        sqlx::query(
            "INSERT INTO document_chunks (customer_id, document_id, chunk_index, content, token_count, embedding)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (document_id, chunk_index) DO UPDATE
                SET content = EXCLUDED.content, token_count = EXCLUDED.token_count, embedding = EXCLUDED.embedding",
        )
        .bind(customer_id)
        .bind(document_id)
        .bind(chunk.chunk_index)
        .bind(&chunk.content)
        .bind(chunk.token_count)
        .bind(Vector::from(chunk.embedding.clone()))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The `k` chunks of `customer_id` closest to `query` by cosine distance, nearest first.
///
/// Only the customer's own chunks are candidates. When the planner uses the HNSW index, the
/// iterative scan keeps the order strict and keeps scanning until `k` rows of this customer are
/// found, so a small tenant among large ones still gets `k` results.
pub async fn nearest_chunks(
    pool: &PgPool,
    customer_id: i64,
    query: &[f32],
    k: i64,
) -> Result<Vec<ChunkHit>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = strict_order").execute(&mut *tx).await?;
    sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
        .bind(k.clamp(40, 1000).to_string())
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(i64, i64, i32, String, f64)> = sqlx::query_as(
        "SELECT id, document_id, chunk_index, content, embedding <=> $2 AS distance
           FROM document_chunks
          WHERE customer_id = $1
          ORDER BY embedding <=> $2
          LIMIT $3",
    )
    .bind(customer_id)
    .bind(Vector::from(query.to_vec()))
    .bind(k)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(chunk_id, document_id, chunk_index, content, distance)| ChunkHit {
            chunk_id,
            document_id,
            chunk_index,
            content,
            distance,
        })
        .collect())
}
