//! The `knowledge_documents` and `document_blobs` tables: one row per KnowledgeDocument object,
//! keyed by its UID; the bytes of its source; the document and storage quota it holds, reserved
//! and released by single conditional statements; and its soft deletion.

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

/// A document's processing state (the `processing_status` column, `status.phase` in lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ProcessingStatus {
    Pending,
    Queued,
    Processing,
    Ready,
    Failed,
}

/// The fields of a KnowledgeDocument that Postgres mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRecord {
    pub k8s_uid: Uuid,
    pub customer_id: i64,
    /// The public id, `doc_<hex>`; kept from the first insert.
    pub document_id: String,
    pub namespace: String,
    pub name: String,
    pub filename: String,
    pub source_kind: SourceKind,
    /// The SHA-256 of the document's stored source (32 bytes), once stored; `None` keeps what
    /// the row has.
    pub blob_sha256: Option<Vec<u8>>,
    pub tags: Vec<String>,
    /// `metadata.generation` of the object.
    pub generation: i64,
    /// `spec.source.url`, for url sources.
    pub source_url: Option<String>,
}

/// A document's row as the operator needs it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: i64,
    pub document_id: String,
    pub processing_status: ProcessingStatus,
    /// The processing generation (grows with the object's generation and with new source bytes).
    pub generation: i64,
    pub blob_sha256: Option<Vec<u8>>,
    /// The hash of source bytes that failed for good (and were released).
    pub failed_sha256: Option<Vec<u8>>,
    pub quota_reserved: bool,
    pub storage_reserved_bytes: i64,
    pub attempts: i32,
    pub processing_error: Option<String>,
}

const DOCUMENT_ROW_COLUMNS: &str = "id, document_id, processing_status, generation, blob_sha256, failed_sha256, \
     quota_reserved, storage_reserved_bytes, attempts, processing_error";

/// Inserts the document row of a KnowledgeDocument, or updates its spec fields, and returns it.
/// The public `document_id` of an existing row is kept. A new object generation or new source
/// bytes start a new processing generation: the row goes back to `pending`, to be processed
/// again, and source bytes no live document uses any more are deleted. A replay changes nothing.
pub async fn upsert_document(pool: &PgPool, document: &DocumentRecord) -> Result<DocumentRow, StoreError> {
    let mut tx = pool.begin().await?;
    let row = upsert_document_in(&mut tx, document).await?;
    tx.commit().await?;
    Ok(row)
}

/// Stores new source bytes and points the document at them in one transaction, so no crash
/// between the two can leave bytes that no document references.
pub async fn store_document_source(
    pool: &PgPool,
    document: &DocumentRecord,
    content: &[u8],
    content_type: Option<&str>,
) -> Result<DocumentRow, StoreError> {
    let sha256 = document.blob_sha256.as_deref().ok_or(StoreError::Gone)?;
    let mut tx = pool.begin().await?;
    insert_blob_in(&mut tx, document.customer_id, sha256, content, content_type).await?;
    let row = upsert_document_in(&mut tx, document).await?;
    tx.commit().await?;
    Ok(row)
}

async fn upsert_document_in(tx: &mut sqlx::PgConnection, document: &DocumentRecord) -> Result<DocumentRow, StoreError> {
    let previous_blob: Option<Option<Vec<u8>>> = sqlx::query_scalar(
        "SELECT blob_sha256 FROM knowledge_documents WHERE k8s_uid = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(document.k8s_uid)
    .fetch_optional(&mut *tx)
    .await?;
    let statement = format!(
        "INSERT INTO knowledge_documents
            (k8s_uid, customer_id, document_id, namespace, name, filename, source_kind, blob_sha256, tags,
             object_generation, source_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_jsonb($9::text[]), $10, $11)
         ON CONFLICT (k8s_uid) DO UPDATE
            SET filename = EXCLUDED.filename, tags = EXCLUDED.tags,
                blob_sha256 = coalesce(EXCLUDED.blob_sha256, knowledge_documents.blob_sha256),
                object_generation = greatest(knowledge_documents.object_generation, EXCLUDED.object_generation),
                generation = knowledge_documents.generation + CASE WHEN {changed} THEN 1 ELSE 0 END,
                processing_status = CASE WHEN {changed} THEN 'pending' ELSE knowledge_documents.processing_status END,
                processing_error = CASE WHEN {changed} THEN NULL ELSE knowledge_documents.processing_error END,
                attempts = CASE WHEN {changed} THEN 0 ELSE knowledge_documents.attempts END
          WHERE knowledge_documents.deleted_at IS NULL
         RETURNING {DOCUMENT_ROW_COLUMNS}",
        changed = "(EXCLUDED.object_generation > knowledge_documents.object_generation
                    OR (EXCLUDED.blob_sha256 IS NOT NULL
                        AND EXCLUDED.blob_sha256 IS DISTINCT FROM knowledge_documents.blob_sha256))"
    );
    let row: DocumentRow = sqlx::query_as(&statement)
        .bind(document.k8s_uid)
        .bind(document.customer_id)
        .bind(&document.document_id)
        .bind(&document.namespace)
        .bind(&document.name)
        .bind(&document.filename)
        .bind(document.source_kind)
        .bind(&document.blob_sha256)
        .bind(&document.tags)
        .bind(document.generation)
        .bind(&document.source_url)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::Gone)?;
    if let Some(Some(old)) = previous_blob.filter(|old| old.is_some() && *old != row.blob_sha256) {
        delete_blob_if_unreferenced(&mut *tx, document.customer_id, &old).await?;
    }
    Ok(row)
}

/// Finds a live document's row by its object's UID.
pub async fn find_document(pool: &PgPool, k8s_uid: Uuid) -> Result<Option<DocumentRow>, StoreError> {
    let statement =
        format!("SELECT {DOCUMENT_ROW_COLUMNS} FROM knowledge_documents WHERE k8s_uid = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(&statement).bind(k8s_uid).fetch_optional(pool).await?)
}

/// Why a document was not admitted.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentRefusal {
    /// The customer already has `max` documents.
    DocumentLimit { used: i64, max: i64 },
    /// `wanted` more bytes would take the customer past `max` bytes of storage.
    StorageLimit { used: i64, wanted: i64, max: i64 },
    /// The document's row is gone (deleted) or the customer has no quota row yet.
    NotFound,
}

/// The outcome of a document reservation.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentAdmission {
    /// The document holds one document slot and `bytes` of storage.
    Admitted {
        bytes: i64,
    },
    Refused(DocumentRefusal),
}

/// Reserves a document slot and `bytes` of storage for a document (or resizes what it holds to
/// `bytes`), in one statement: the UPDATE of `customer_quotas` matches only when the slot and
/// the bytes fit, and Postgres re-checks that against the latest row after waiting for any
/// concurrent reservation of the same customer. Shrinking always succeeds; a replay is a no-op.
pub async fn reserve_document_quota(
    pool: &PgPool,
    customer_id: i64,
    document_row: i64,
    bytes: i64,
) -> Result<DocumentAdmission, StoreError> {
    let admitted: Option<i64> = sqlx::query_scalar(
        "WITH me AS (
            SELECT id, quota_reserved, storage_reserved_bytes AS held
              FROM knowledge_documents
             WHERE id = $2 AND customer_id = $1 AND deleted_at IS NULL
             FOR UPDATE),
         delta AS (
            SELECT CASE WHEN me.quota_reserved THEN 0 ELSE 1 END AS documents, $3 - me.held AS bytes FROM me),
         q AS (
            UPDATE customer_quotas q
               SET documents_count = q.documents_count + delta.documents,
                   storage_used_bytes = q.storage_used_bytes + delta.bytes
              FROM delta
             WHERE q.customer_id = $1
               AND (delta.documents <= 0 OR q.documents_count + delta.documents <= q.max_documents)
               AND (delta.bytes <= 0 OR q.storage_used_bytes + delta.bytes <= q.max_storage_bytes)
            RETURNING q.customer_id)
         UPDATE knowledge_documents d
            SET quota_reserved = true, storage_reserved_bytes = $3
           FROM q
          WHERE d.id = $2 AND d.customer_id = $1
         RETURNING d.storage_reserved_bytes",
    )
    .bind(customer_id)
    .bind(document_row)
    .bind(bytes)
    .fetch_optional(pool)
    .await?;
    if let Some(bytes) = admitted {
        return Ok(DocumentAdmission::Admitted { bytes });
    }
    Ok(DocumentAdmission::Refused(explain_document_refusal(pool, customer_id, document_row, bytes).await?))
}

/// What [`explain_document_refusal`] reads.
#[derive(sqlx::FromRow)]
struct DocumentRefusalFacts {
    quota_reserved: bool,
    storage_reserved_bytes: i64,
    documents_count: i32,
    max_documents: i32,
    storage_used_bytes: i64,
    max_storage_bytes: i64,
}

/// Reads why a document reservation was refused, for the condition message. Only informative:
/// the decision was the conditional UPDATE.
async fn explain_document_refusal(
    pool: &PgPool,
    customer_id: i64,
    document_row: i64,
    bytes: i64,
) -> Result<DocumentRefusal, StoreError> {
    let facts: Option<DocumentRefusalFacts> = sqlx::query_as(
        "SELECT d.quota_reserved, d.storage_reserved_bytes, q.documents_count, q.max_documents,
                q.storage_used_bytes, q.max_storage_bytes
           FROM knowledge_documents d JOIN customer_quotas q ON q.customer_id = d.customer_id
          WHERE d.id = $2 AND d.customer_id = $1 AND d.deleted_at IS NULL",
    )
    .bind(customer_id)
    .bind(document_row)
    .fetch_optional(pool)
    .await?;
    let Some(f) = facts else { return Ok(DocumentRefusal::NotFound) };
    if !f.quota_reserved && f.documents_count >= f.max_documents {
        return Ok(DocumentRefusal::DocumentLimit { used: f.documents_count.into(), max: f.max_documents.into() });
    }
    Ok(DocumentRefusal::StorageLimit {
        used: f.storage_used_bytes,
        wanted: bytes - f.storage_reserved_bytes,
        max: f.max_storage_bytes,
    })
}

/// Gives back everything a document that failed for good holds, keeping the document: its
/// document slot and storage, its bytes (deleted unless another document uses them) and any
/// chunks of an earlier generation. The hash of the failed bytes is kept, so the same bytes are
/// not stored and processed again. One transaction; idempotent. Returns whether anything was
/// released.
pub async fn release_failed_document(pool: &PgPool, k8s_uid: Uuid) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<Held> = sqlx::query_as(
        "SELECT id, customer_id, quota_reserved, storage_reserved_bytes, blob_sha256
           FROM knowledge_documents WHERE k8s_uid = $1 AND deleted_at IS NULL AND processing_status = 'failed'
            AND (quota_reserved OR blob_sha256 IS NOT NULL)
          FOR UPDATE",
    )
    .bind(k8s_uid)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(held) = row else { return Ok(false) };
    if held.quota_reserved {
        sqlx::query(
            "UPDATE customer_quotas
                SET documents_count = documents_count - 1, storage_used_bytes = storage_used_bytes - $2
              WHERE customer_id = $1",
        )
        .bind(held.customer_id)
        .bind(held.storage_reserved_bytes)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE knowledge_documents
            SET quota_reserved = false, storage_reserved_bytes = 0, failed_sha256 = coalesce(blob_sha256, failed_sha256),
                blob_sha256 = NULL, extracted_text = NULL, chunk_count = NULL, icp_data = NULL,
                icp_extracted_at = NULL
          WHERE id = $1",
    )
    .bind(held.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM document_chunks WHERE customer_id = $1 AND document_id = $2")
        .bind(held.customer_id)
        .bind(held.id)
        .execute(&mut *tx)
        .await?;
    if let Some(sha) = &held.blob_sha256 {
        delete_blob_if_unreferenced(&mut tx, held.customer_id, sha).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// What deleting a document removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentDeletion {
    /// Whether this call deleted the row (a replay finds nothing to do).
    pub deleted: bool,
    /// Whether the document's blob went with it (no other live document of the customer uses it).
    pub blob_deleted: bool,
}

/// What a document holds, read under lock before it is deleted.
#[derive(sqlx::FromRow)]
struct Held {
    id: i64,
    customer_id: i64,
    quota_reserved: bool,
    storage_reserved_bytes: i64,
    blob_sha256: Option<Vec<u8>>,
}

/// Deletes a document in one transaction: releases its quota, soft-deletes its row (the purge
/// trigger of migration 0005 removes its chunks, vectors and queue entries), and deletes its
/// blob unless another live document of the customer references it. Idempotent.
pub async fn delete_document(pool: &PgPool, k8s_uid: Uuid) -> Result<DocumentDeletion, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<Held> = sqlx::query_as(
        "SELECT id, customer_id, quota_reserved, storage_reserved_bytes, blob_sha256
           FROM knowledge_documents WHERE k8s_uid = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(k8s_uid)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(Held { id, customer_id, quota_reserved: reserved, storage_reserved_bytes: held, blob_sha256: blob }) = row
    else {
        return Ok(DocumentDeletion::default());
    };
    if reserved {
        sqlx::query(
            "UPDATE customer_quotas
                SET documents_count = documents_count - 1, storage_used_bytes = storage_used_bytes - $2
              WHERE customer_id = $1",
        )
        .bind(customer_id)
        .bind(held)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE knowledge_documents
            SET deleted_at = now(), quota_reserved = false, storage_reserved_bytes = 0, blob_sha256 = NULL,
                extracted_text = NULL
          WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let blob_deleted = match &blob {
        Some(sha) => delete_blob_if_unreferenced(&mut tx, customer_id, sha).await?,
        None => false,
    };
    tx.commit().await?;
    Ok(DocumentDeletion { deleted: true, blob_deleted })
}

/// Deletes a customer's blob unless a document references it; returns whether it went.
///
/// In a savepoint: a document inserted concurrently with a reference to the same bytes makes
/// the foreign key refuse the DELETE (23503), which means "still referenced", not a failure.
async fn delete_blob_if_unreferenced(
    tx: &mut sqlx::PgConnection,
    customer_id: i64,
    sha256: &[u8],
) -> Result<bool, StoreError> {
    let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
    let deleted = sqlx::query(
        "DELETE FROM document_blobs b WHERE b.customer_id = $1 AND b.sha256 = $2
           AND NOT EXISTS (SELECT 1 FROM knowledge_documents d WHERE d.customer_id = $1 AND d.blob_sha256 = $2)",
    )
    .bind(customer_id)
    .bind(sha256)
    .execute(&mut *savepoint)
    .await;
    match deleted {
        Ok(done) => {
            savepoint.commit().await?;
            Ok(done.rows_affected() > 0)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// An upload about to become a KnowledgeDocument: the bytes, and the row that will hold its
/// reservation under `placeholder_uid` until the object exists.
#[derive(Clone, Debug)]
pub struct Upload<'a> {
    pub customer_id: i64,
    pub placeholder_uid: Uuid,
    /// The public id the upload's answer carries, `doc_<hex>`.
    pub document_id: &'a str,
    pub namespace: &'a str,
    /// The KnowledgeDocument's name.
    pub name: &'a str,
    pub filename: &'a str,
    /// The sniffed type.
    pub content_type: &'a str,
    pub sha256: &'a [u8],
    pub content: &'a [u8],
    pub tags: &'a [String],
}

/// What [`reserve_upload`] decided.
#[derive(Clone, Debug, PartialEq)]
pub enum UploadReservation {
    /// The bytes are stored and the document slot and storage reserved.
    Reserved,
    /// A live document of the customer already has these bytes: nothing was stored.
    Duplicate { document_id: String, namespace: String, name: String },
    /// Over the document or storage limit: nothing was stored.
    Refused(DocumentRefusal),
}

/// Stores an upload's bytes, inserts its document row under the placeholder UID and reserves a
/// document slot and the upload's size of storage, in one transaction: all of it or nothing.
/// The reservation is the same conditional UPDATE as [`reserve_document_quota`].
pub async fn reserve_upload(pool: &PgPool, upload: &Upload<'_>) -> Result<UploadReservation, StoreError> {
    let mut tx = pool.begin().await?;
    // Serialise uploads of one customer, so the duplicate check below holds.
    sqlx::query("SELECT 1 FROM customer_quotas WHERE customer_id = $1 FOR UPDATE")
        .bind(upload.customer_id)
        .execute(&mut *tx)
        .await?;
    let duplicate: Option<(String, String, String)> = sqlx::query_as(
        "SELECT document_id, namespace, name FROM knowledge_documents
          WHERE customer_id = $1 AND blob_sha256 = $2 AND deleted_at IS NULL LIMIT 1",
    )
    .bind(upload.customer_id)
    .bind(upload.sha256)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((document_id, namespace, name)) = duplicate {
        return Ok(UploadReservation::Duplicate { document_id, namespace, name });
    }
    let size = i64::try_from(upload.content.len()).unwrap_or(i64::MAX);
    let reserved: Option<i64> = sqlx::query_scalar(
        "UPDATE customer_quotas
            SET documents_count = documents_count + 1, storage_used_bytes = storage_used_bytes + $2
          WHERE customer_id = $1 AND documents_count + 1 <= max_documents
            AND storage_used_bytes + $2 <= max_storage_bytes
         RETURNING customer_id",
    )
    .bind(upload.customer_id)
    .bind(size)
    .fetch_optional(&mut *tx)
    .await?;
    if reserved.is_none() {
        tx.rollback().await?;
        return Ok(UploadReservation::Refused(explain_upload_refusal(pool, upload.customer_id, size).await?));
    }
    insert_blob_in(&mut tx, upload.customer_id, upload.sha256, upload.content, Some(upload.content_type)).await?;
    sqlx::query(
        "INSERT INTO knowledge_documents
            (k8s_uid, customer_id, document_id, namespace, name, filename, content_type, file_size, source_kind,
             blob_sha256, tags, quota_reserved, storage_reserved_bytes, upload_reserved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'blob', $9, to_jsonb($10::text[]), true, $8, now())",
    )
    .bind(upload.placeholder_uid)
    .bind(upload.customer_id)
    .bind(upload.document_id)
    .bind(upload.namespace)
    .bind(upload.name)
    .bind(upload.filename)
    .bind(upload.content_type)
    .bind(size)
    .bind(upload.sha256)
    .bind(upload.tags)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UploadReservation::Reserved)
}

async fn explain_upload_refusal(pool: &PgPool, customer_id: i64, size: i64) -> Result<DocumentRefusal, StoreError> {
    let quota: Option<(i32, i32, i64, i64)> = sqlx::query_as(
        "SELECT documents_count, max_documents, storage_used_bytes, max_storage_bytes
           FROM customer_quotas WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(pool)
    .await?;
    Ok(match quota {
        None => DocumentRefusal::NotFound,
        Some((used, max, _, _)) if used >= max => DocumentRefusal::DocumentLimit { used: used.into(), max: max.into() },
        Some((_, _, used, max)) => DocumentRefusal::StorageLimit { used, wanted: size, max },
    })
}

/// Gives an upload's row to its KnowledgeDocument: the placeholder UID becomes the object's.
/// Only the row of the same customer, namespace and name is taken, so a placeholder copied into
/// another object's annotation adopts nothing. Idempotent; returns whether this call adopted it.
pub async fn adopt_upload(
    pool: &PgPool,
    placeholder_uid: Uuid,
    k8s_uid: Uuid,
    customer_id: i64,
    namespace: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let adopted = sqlx::query(
        "UPDATE knowledge_documents SET k8s_uid = $2, upload_reserved_at = NULL
          WHERE k8s_uid = $1 AND customer_id = $3 AND namespace = $4 AND name = $5
            AND upload_reserved_at IS NOT NULL AND deleted_at IS NULL",
    )
    .bind(placeholder_uid)
    .bind(k8s_uid)
    .bind(customer_id)
    .bind(namespace)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(adopted.rows_affected() == 1)
}

/// Undoes an upload whose object was never created: releases its reservation and deletes its
/// row and, unless another document uses them, its bytes. One transaction; idempotent; an
/// adopted row is left alone.
pub async fn cancel_upload(pool: &PgPool, placeholder_uid: Uuid) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(i64, i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, customer_id, storage_reserved_bytes, blob_sha256 FROM knowledge_documents
          WHERE k8s_uid = $1 AND upload_reserved_at IS NOT NULL AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(placeholder_uid)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, customer_id, bytes, sha256)) = row else { return Ok(false) };
    sqlx::query(
        "UPDATE customer_quotas SET documents_count = documents_count - 1, storage_used_bytes = storage_used_bytes - $2
          WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(bytes)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM knowledge_documents WHERE id = $1").bind(id).execute(&mut *tx).await?;
    if let Some(sha256) = sha256 {
        delete_blob_if_unreferenced(&mut tx, customer_id, &sha256).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Cancels uploads whose object did not appear within `grace` (their server died between the
/// reservation and the create). Returns how many.
pub async fn sweep_stale_uploads(pool: &PgPool, grace: std::time::Duration) -> Result<u64, StoreError> {
    let stale: Vec<Uuid> = sqlx::query_scalar(
        "SELECT k8s_uid FROM knowledge_documents
          WHERE upload_reserved_at < now() - make_interval(secs => $1) AND deleted_at IS NULL",
    )
    .bind(grace.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut cancelled = 0;
    for placeholder in stale {
        if cancel_upload(pool, placeholder).await? {
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

/// Every live document row that belongs to an object: an upload's row waits for its object
/// under a placeholder UID, and [`sweep_stale_uploads`] is its sweep.
pub async fn live_document_objects(pool: &PgPool) -> Result<Vec<crate::agents::RowObject>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT k8s_uid, customer_id, namespace, name FROM knowledge_documents
          WHERE deleted_at IS NULL AND upload_reserved_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Stores a customer's source bytes under their SHA-256 (computed by the writer while the
/// bytes stream in), deduplicated per customer. Returns whether the bytes were new.
pub async fn insert_blob(
    pool: &PgPool,
    customer_id: i64,
    sha256: &[u8],
    content: &[u8],
    content_type: Option<&str>,
) -> Result<bool, StoreError> {
    let mut connection = pool.acquire().await?;
    insert_blob_in(&mut connection, customer_id, sha256, content, content_type).await
}

/// [`insert_blob`] on a connection or in a transaction.
pub(crate) async fn insert_blob_in(
    connection: &mut sqlx::PgConnection,
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
    .execute(&mut *connection)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// The bytes of a customer's blob, if it has one with that hash.
pub async fn read_blob(pool: &PgPool, customer_id: i64, sha256: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT content FROM document_blobs WHERE customer_id = $1 AND sha256 = $2")
        .bind(customer_id)
        .bind(sha256)
        .fetch_optional(pool)
        .await?)
}

/// Where a document's processing stands: what the operator derives its status from.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DocumentProgress {
    pub document_id: String,
    pub processing_status: ProcessingStatus,
    pub processing_error: Option<String>,
    pub attempts: i32,
    pub quota_reserved: bool,
    pub stored: bool,
    pub text_length: Option<i32>,
    pub chunk_count: Option<i32>,
    pub embedding_model: Option<String>,
    pub target_industries: sqlx::types::Json<Vec<String>>,
    pub company_sizes: sqlx::types::Json<Vec<String>>,
    pub decision_makers: sqlx::types::Json<Vec<String>>,
    pub target_regions: sqlx::types::Json<Vec<String>>,
    pub icp_extracted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the live task was first queued, if one is waiting.
    pub queued_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When the live task's current attempt started, if one is running.
    pub processing_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads a live document's [`DocumentProgress`].
pub async fn document_progress(pool: &PgPool, k8s_uid: Uuid) -> Result<Option<DocumentProgress>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT d.document_id, d.processing_status, d.processing_error, d.attempts, d.quota_reserved,
                d.blob_sha256 IS NOT NULL AS stored, d.text_length, d.chunk_count, d.embedding_model,
                d.target_industries, d.company_sizes, d.decision_makers, d.target_regions, d.icp_extracted_at,
                CASE WHEN d.processing_status = 'queued' THEN t.enqueued_at END AS queued_since,
                CASE WHEN t.status = 'running' THEN t.started_at END AS processing_since
           FROM knowledge_documents d
           LEFT JOIN embedding_tasks t ON t.document_id = d.id AND t.status IN ('queued', 'running')
          WHERE d.k8s_uid = $1 AND d.deleted_at IS NULL",
    )
    .bind(k8s_uid)
    .fetch_optional(pool)
    .await?)
}

/// The namespace and name of the live document with public id `document_id`: how a NOTIFY
/// payload finds its object.
pub async fn locate_document(pool: &PgPool, document_id: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(sqlx::query_as("SELECT namespace, name FROM knowledge_documents WHERE document_id = $1 AND deleted_at IS NULL")
        .bind(document_id)
        .fetch_optional(pool)
        .await?)
}

/// The size of a customer's blob, if it has one with that hash.
pub async fn blob_size(pool: &PgPool, customer_id: i64, sha256: &[u8]) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT size FROM document_blobs WHERE customer_id = $1 AND sha256 = $2")
        .bind(customer_id)
        .bind(sha256)
        .fetch_optional(pool)
        .await?)
}

/// The ICP results of a customer's processed documents (a document being processed again keeps
/// its last result until the new one replaces it), with when each was extracted: what the
/// customer's aggregate ICP is computed from.
pub async fn ready_document_icps(
    pool: &PgPool,
    customer_id: i64,
) -> Result<Vec<(serde_json::Value, Option<chrono::DateTime<chrono::Utc>>)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT icp_data, icp_extracted_at FROM knowledge_documents
          WHERE customer_id = $1 AND deleted_at IS NULL AND icp_data IS NOT NULL AND icp_extracted_at IS NOT NULL
          ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?)
}

/// How many live documents are in each processing status.
pub async fn documents_by_status(pool: &PgPool) -> Result<Vec<(ProcessingStatus, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT processing_status, count(*) FROM knowledge_documents WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// Deletes blobs no document references that are older than `grace`: bytes stored by an
/// upload whose document never came, or left by a crash. The grace period covers an upload
/// whose document is still being created. Returns how many went.
pub async fn sweep_orphan_blobs(pool: &PgPool, grace: std::time::Duration) -> Result<u64, StoreError> {
    let swept = sqlx::query(
        "DELETE FROM document_blobs b
          WHERE b.created_at < now() - make_interval(secs => $1)
            AND NOT EXISTS (SELECT 1 FROM knowledge_documents d
                             WHERE d.customer_id = b.customer_id AND d.blob_sha256 = b.sha256)",
    )
    .bind(grace.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(swept)
}
