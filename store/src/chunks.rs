//! The `document_chunks` table: a document's chunks with their embeddings. Search over them is
//! `crate::search`.

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

/// Writes a document's chunks, replacing any chunk with the same index, in one transaction.
pub async fn upsert_chunks(
    pool: &PgPool,
    customer_id: i64,
    document_id: i64,
    chunks: &[NewChunk],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    write_chunks(&mut tx, customer_id, document_id, chunks).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes chunks in one statement (arrays unnested server-side), replacing any chunk with the
/// same index.
pub(crate) async fn write_chunks(
    tx: &mut sqlx::PgConnection,
    customer_id: i64,
    document_id: i64,
    chunks: &[NewChunk],
) -> Result<(), StoreError> {
    let mut indexes = Vec::with_capacity(chunks.len());
    let mut contents = Vec::with_capacity(chunks.len());
    let mut tokens = Vec::with_capacity(chunks.len());
    let mut vectors = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        indexes.push(chunk.chunk_index);
        contents.push(chunk.content.as_str());
        tokens.push(chunk.token_count);
        vectors.push(Vector::from(chunk.embedding.clone()));
    }
    sqlx::query(
        "INSERT INTO document_chunks (customer_id, document_id, chunk_index, content, token_count, embedding)
         SELECT $1, $2, c.chunk_index, c.content, c.token_count, c.embedding
           FROM unnest($3::int4[], $4::text[], $5::int4[], $6::vector[]) AS c(chunk_index, content, token_count, embedding)
         ON CONFLICT (customer_id, document_id, chunk_index) DO UPDATE
            SET content = EXCLUDED.content, token_count = EXCLUDED.token_count, embedding = EXCLUDED.embedding",
    )
    .bind(customer_id)
    .bind(document_id)
    .bind(&indexes)
    .bind(&contents)
    .bind(&tokens)
    .bind(&vectors)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
