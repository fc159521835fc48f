//! The `knowledge_documents` table: one row per KnowledgeDocument object, keyed by its UID.

use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// Where a document's bytes come from (the `source_kind` column: `blob`, `url`, `configMap`,
/// `text`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "camelCase")]
pub enum SourceKind {
    Blob,
    Url,
    ConfigMap,
    Text,
}

/// The fields of a KnowledgeDocument that Postgres mirrors when it is first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRecord {
    pub k8s_uid: Uuid,
    pub customer_id: i64,
    /// The public id, `doc_<hex>`.
    pub document_id: String,
    pub namespace: String,
    pub name: String,
    pub filename: String,
    pub source_kind: SourceKind,
    /// The SHA-256 of the document's blob (32 bytes), for `blob` sources.
    pub blob_sha256: Option<Vec<u8>>,
}

/// Inserts the document row of a KnowledgeDocument (or finds the existing one) and returns its
/// internal id. The public `document_id` of an existing row is kept.
pub async fn upsert_document(pool: &PgPool, document: &DocumentRecord) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO knowledge_documents
            (k8s_uid, customer_id, document_id, namespace, name, filename, source_kind, blob_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (k8s_uid) DO UPDATE SET filename = EXCLUDED.filename
         RETURNING id",
    )
    .bind(document.k8s_uid)
    .bind(document.customer_id)
    .bind(&document.document_id)
    .bind(&document.namespace)
    .bind(&document.name)
    .bind(&document.filename)
    .bind(document.source_kind)
    .bind(&document.blob_sha256)
    .fetch_one(pool)
    .await?;
    Ok(id)
}

/// Stores a customer's uploaded bytes under their SHA-256 (computed by the writer while the
/// bytes stream in), deduplicated per customer. Returns whether the bytes were new.
pub async fn insert_blob(
    pool: &PgPool,
    customer_id: i64,
    sha256: &[u8],
    content: &[u8],
    content_type: Option<&str>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO document_blobs (customer_id, sha256, content, size, content_type)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (customer_id, sha256) DO NOTHING",
    )
    .bind(customer_id)
    .bind(sha256)
    .bind(content)
    .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
    .bind(content_type)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}
