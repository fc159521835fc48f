//! The `knowledge_documents` table: one row per KnowledgeDocument object, keyed by its UID.

use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// Where a document's bytes come from (the `source_kind` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Blob,
    Url,
    ConfigMap,
    Text,
}

impl SourceKind {
    fn as_str(self) -> &'static str {
        match self {
            SourceKind::Blob => "blob",
            SourceKind::Url => "url",
            SourceKind::ConfigMap => "configMap",
            SourceKind::Text => "text",
        }
    }
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
}

/// Inserts the document row of a KnowledgeDocument (or finds the existing one) and returns its
/// internal id. The public `document_id` of an existing row is kept.
pub async fn upsert_document(pool: &PgPool, document: &DocumentRecord) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO knowledge_documents (k8s_uid, customer_id, document_id, namespace, name, filename, source_kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (k8s_uid) DO UPDATE SET filename = EXCLUDED.filename
         RETURNING id",
    )
    .bind(document.k8s_uid)
    .bind(document.customer_id)
    .bind(&document.document_id)
    .bind(&document.namespace)
    .bind(&document.name)
    .bind(&document.filename)
    .bind(document.source_kind.as_str())
    .fetch_one(pool)
    .await?;
    Ok(id)
}
