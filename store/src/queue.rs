//! The embedding work queue, `embedding_tasks`, and the protocol of migration 0005: enqueue one
//! task per document generation; claim with `FOR UPDATE SKIP LOCKED` and a lease; heartbeat;
//! commit a document's chunks, vectors, text and ICP in one transaction fenced by the claim's
//! attempt number; fail with backoff up to the retry budget; and reap the leases of workers that
//! stopped answering.

use std::time::Duration;

use sqlx::PgPool;

use crate::StoreError;
use crate::chunks::NewChunk;

/// NOTIFY channel: a task finished (done or failed); the payload is the public document id.
pub const DONE_CHANNEL: &str = "prospector_embedding_done";
/// NOTIFY channel: a task was queued or requeued (empty payload).
pub const QUEUED_CHANNEL: &str = "prospector_embedding_queued";

/// Queues the document for processing if it waits for it (`pending`, a new generation), and
/// marks it `queued`. A document has at most one live task; a replay queues nothing twice.
/// Returns whether the document was queued by this call.
pub async fn enqueue(
    pool: &PgPool,
    customer_id: i64,
    document_row: i64,
    max_attempts: i32,
) -> Result<bool, StoreError> {
    let queued: i64 = sqlx::query_scalar(
        "WITH doc AS (
            UPDATE knowledge_documents SET processing_status = 'queued', processing_error = NULL
             WHERE id = $2 AND customer_id = $1 AND deleted_at IS NULL AND processing_status = 'pending'
            RETURNING id, generation),
         task AS (
            INSERT INTO embedding_tasks (customer_id, document_id, generation, max_attempts)
            SELECT $1, doc.id, doc.generation, $3 FROM doc
            ON CONFLICT (document_id) WHERE status IN ('queued', 'running')
            -- A waiting task starts over for the new generation; a running one keeps its claim,
            -- whose commit or failure the new generation then refuses (see requeue_superseded).
            DO UPDATE SET generation = EXCLUDED.generation, enqueued_at = now(),
                          attempts = CASE WHEN embedding_tasks.status = 'queued' THEN 0 ELSE embedding_tasks.attempts END,
                          not_before = CASE WHEN embedding_tasks.status = 'queued' THEN now() ELSE embedding_tasks.not_before END,
                          last_error = CASE WHEN embedding_tasks.status = 'queued' THEN NULL ELSE embedding_tasks.last_error END
            RETURNING id)
         SELECT count(*) FROM task",
    )
    .bind(customer_id)
    .bind(document_row)
    .bind(max_attempts.max(1))
    .fetch_one(pool)
    .await?;
    Ok(queued > 0)
}

/// A task a worker holds: what to process, and the claim's fencing token (`generation` and
/// `attempts` together: a new generation restarts the attempt count).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedTask {
    pub task_id: i64,
    pub customer_id: i64,
    /// `knowledge_documents.id`.
    pub document_row: i64,
    /// The public id, `doc_<hex>`.
    pub document_id: String,
    pub filename: String,
    /// The attempt this claim is; every later statement of the claim is fenced by it.
    pub attempts: i32,
    pub max_attempts: i32,
    /// The document generation the task processes.
    pub generation: i64,
    /// The stored source; `None` until stored (a url source the worker fetches).
    pub blob_sha256: Option<Vec<u8>>,
    /// The url to fetch when nothing is stored yet.
    pub source_url: Option<String>,
}

impl ClaimedTask {
    /// Whether a failure of this attempt is the last the budget allows.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

/// Claims up to `limit` queued tasks, oldest first, skipping rows other workers hold, and marks
/// their documents `processing`. The lease must be renewed by [`heartbeat`] before it runs out.
pub async fn claim(pool: &PgPool, worker: &str, limit: i64, lease: Duration) -> Result<Vec<ClaimedTask>, StoreError> {
    let tasks = sqlx::query_as(
        "WITH picked AS (
            SELECT id FROM embedding_tasks
             WHERE status = 'queued' AND not_before <= now()
             ORDER BY enqueued_at, id
             LIMIT $1
             FOR UPDATE SKIP LOCKED),
         claimed AS (
            UPDATE embedding_tasks t
               SET status = 'running', attempts = t.attempts + 1, leased_by = $2,
                   lease_until = now() + make_interval(secs => $3), started_at = now()
              FROM picked WHERE t.id = picked.id
            RETURNING t.id, t.customer_id, t.document_id, t.attempts, t.max_attempts, t.generation, t.enqueued_at),
         docs AS (
            UPDATE knowledge_documents d SET processing_status = 'processing', attempts = c.attempts
              FROM claimed c
             WHERE d.id = c.document_id AND d.customer_id = c.customer_id AND d.deleted_at IS NULL
            RETURNING d.id, d.document_id, d.filename, d.blob_sha256, d.source_url)
         SELECT c.id AS task_id, c.customer_id, c.document_id AS document_row, docs.document_id, docs.filename,
                c.attempts, c.max_attempts, c.generation, docs.blob_sha256, docs.source_url
           FROM claimed c JOIN docs ON docs.id = c.document_id
          ORDER BY c.enqueued_at, c.id",
    )
    .bind(limit)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(tasks)
}

/// Extends the lease of a claim. `false` when the claim is no longer this worker's (the reaper
/// took it back, or the document was deleted): the worker must drop the task.
pub async fn heartbeat(pool: &PgPool, task: &ClaimedTask, lease: Duration) -> Result<bool, StoreError> {
    let renewed = sqlx::query(
        "UPDATE embedding_tasks SET lease_until = now() + make_interval(secs => $3)
          WHERE id = $1 AND status = 'running' AND attempts = $2 AND generation = $4",
    )
    .bind(task.task_id)
    .bind(task.attempts)
    .bind(lease.as_secs_f64())
    .bind(task.generation)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(renewed > 0)
}

/// A document's ICP as the worker found it, in the vocabulary strings of DESIGN.md.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocumentIcp {
    pub target_industries: Vec<String>,
    pub company_sizes: Vec<String>,
    pub decision_makers: Vec<String>,
    pub target_regions: Vec<String>,
    /// The full result, with confidences and evidence.
    pub details: serde_json::Value,
}

/// Source bytes the worker fetched (a url source), stored with the result.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchedSource {
    pub sha256: Vec<u8>,
    pub bytes: Vec<u8>,
}

/// What processing a document produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedDocument {
    /// The bytes of a url source, to store as the document's blob.
    pub fetched: Option<FetchedSource>,
    pub text: String,
    pub chunks: Vec<NewChunk>,
    pub embedding_model: String,
    pub icp: DocumentIcp,
}

/// How a commit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The document is Ready with its new chunks.
    Committed,
    /// The document was deleted, or a newer generation replaced it: nothing was written. A
    /// newer generation's task is queued again.
    Superseded,
    /// The claim is no longer this worker's (its lease expired): nothing was written.
    LeaseLost,
    /// The fetched source does not fit the customer's storage: nothing was written.
    StorageRefused { bytes: i64 },
}

/// Writes a processed document in one transaction, fenced by the claim: the document row (text,
/// counts, ICP, Ready), the task (done), every chunk in one statement, and the removal of chunk
/// indexes beyond the new count. The task's NOTIFY reaches the operator after the commit.
pub async fn commit(
    pool: &PgPool,
    task: &ClaimedTask,
    result: &ProcessedDocument,
) -> Result<CommitOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let chunk_count = i32::try_from(result.chunks.len()).unwrap_or(i32::MAX);
    if let Some(fetched) = &result.fetched {
        // A fetched url counts against the customer's storage before anything is written.
        let bytes = i64::try_from(fetched.bytes.len()).unwrap_or(i64::MAX);
        let reserved = sqlx::query(
            "WITH d AS (
                SELECT storage_reserved_bytes AS held FROM knowledge_documents
                 WHERE id = $1 AND customer_id = $2 AND quota_reserved AND deleted_at IS NULL FOR UPDATE),
             q AS (
                UPDATE customer_quotas q SET storage_used_bytes = q.storage_used_bytes + ($3 - d.held)
                  FROM d
                 WHERE q.customer_id = $2
                   AND ($3 - d.held <= 0 OR q.storage_used_bytes + ($3 - d.held) <= q.max_storage_bytes)
                RETURNING q.customer_id)
             UPDATE knowledge_documents SET storage_reserved_bytes = $3 FROM q WHERE id = $1",
        )
        .bind(task.document_row)
        .bind(task.customer_id)
        .bind(bytes)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if reserved == 0 {
            tx.rollback().await?;
            return Ok(CommitOutcome::StorageRefused { bytes });
        }
        crate::documents::insert_blob_in(&mut tx, task.customer_id, &fetched.sha256, &fetched.bytes, None).await?;
    }
    let document = sqlx::query(
        "UPDATE knowledge_documents
            SET processing_status = 'ready', processing_error = NULL, extracted_text = $4,
                text_length = $5, chunk_count = $6, embedding_model = $7,
                target_industries = to_jsonb($8::text[]), company_sizes = to_jsonb($9::text[]),
                decision_makers = to_jsonb($10::text[]), target_regions = to_jsonb($11::text[]),
                icp_data = $12, icp_extracted_at = now(), blob_sha256 = coalesce($13, blob_sha256)
          WHERE id = $1 AND customer_id = $2 AND generation = $3 AND deleted_at IS NULL",
    )
    .bind(task.document_row)
    .bind(task.customer_id)
    .bind(task.generation)
    .bind(&result.text)
    .bind(i32::try_from(result.text.chars().count()).unwrap_or(i32::MAX))
    .bind(chunk_count)
    .bind(&result.embedding_model)
    .bind(&result.icp.target_industries)
    .bind(&result.icp.company_sizes)
    .bind(&result.icp.decision_makers)
    .bind(&result.icp.target_regions)
    .bind(&result.icp.details)
    .bind(result.fetched.as_ref().map(|f| &f.sha256))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if document == 0 {
        tx.rollback().await?;
        // Deleted (its task is gone with it) or a newer generation (queued again for it).
        requeue_superseded(pool, task).await?;
        return Ok(CommitOutcome::Superseded);
    }
    let done = sqlx::query(
        "UPDATE embedding_tasks SET status = 'done', finished_at = now(), lease_until = NULL, last_error = NULL
          WHERE id = $1 AND status = 'running' AND attempts = $2 AND generation = $3",
    )
    .bind(task.task_id)
    .bind(task.attempts)
    .bind(task.generation)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 0 {
        tx.rollback().await?;
        return Ok(CommitOutcome::LeaseLost);
    }
    crate::chunks::write_chunks(&mut tx, task.customer_id, task.document_row, &result.chunks).await?;
    sqlx::query("DELETE FROM document_chunks WHERE customer_id = $1 AND document_id = $2 AND chunk_index >= $3")
        .bind(task.customer_id)
        .bind(task.document_row)
        .bind(chunk_count)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CommitOutcome::Committed)
}

/// Puts a claim whose document moved to a newer generation back in the queue for that
/// generation, with the new generation's full attempt budget: the old result or failure says
/// nothing about the new content. Returns whether it did (a lost lease is not requeued here).
async fn requeue_superseded(pool: &PgPool, task: &ClaimedTask) -> Result<bool, StoreError> {
    let requeued = sqlx::query(
        "WITH t AS (
            UPDATE embedding_tasks t
               SET status = 'queued', attempts = 0, lease_until = NULL, not_before = now(), enqueued_at = now(),
                   last_error = NULL, generation = d.generation
              FROM knowledge_documents d
             WHERE t.id = $1 AND t.status = 'running' AND t.attempts = $2
               AND d.id = t.document_id AND d.deleted_at IS NULL AND d.generation <> $3
            RETURNING t.document_id)
         UPDATE knowledge_documents d SET processing_status = 'queued', processing_error = NULL
           FROM t WHERE d.id = t.document_id",
    )
    .bind(task.task_id)
    .bind(task.attempts)
    .bind(task.generation)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(requeued > 0)
}

/// How a failure was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again after the backoff.
    Retrying,
    /// The task and its document failed for good.
    Failed,
    /// The document moved to a newer generation: the task was queued again for it.
    Superseded,
    /// The claim was no longer this worker's; nothing was recorded.
    LeaseLost,
}

/// Records a failed attempt. With `retry_after` and attempts left, the task is queued again
/// after that backoff and the document waits in `queued` with the error; otherwise (a failure
/// retrying cannot help, or the last attempt) both are `failed` with `error`, which is worded
/// for a person.
pub async fn fail(
    pool: &PgPool,
    task: &ClaimedTask,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<FailOutcome, StoreError> {
    let status: Option<String> = sqlx::query_scalar(
        "WITH t AS (
            UPDATE embedding_tasks
               SET status = CASE WHEN $4 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                   not_before = CASE WHEN $4 AND attempts < max_attempts
                                     THEN now() + make_interval(secs => $5) ELSE not_before END,
                   finished_at = CASE WHEN $4 AND attempts < max_attempts THEN NULL ELSE now() END,
                   lease_until = NULL, last_error = $3
             WHERE id = $1 AND status = 'running' AND attempts = $2 AND generation = $6
               -- A failure of content the document no longer has is not the document's failure.
               AND EXISTS (SELECT 1 FROM knowledge_documents d
                            WHERE d.id = embedding_tasks.document_id AND d.generation = $6)
            RETURNING document_id, status)
         UPDATE knowledge_documents d SET processing_status = t.status, processing_error = $3
           FROM t WHERE d.id = t.document_id
         RETURNING t.status",
    )
    .bind(task.task_id)
    .bind(task.attempts)
    .bind(error)
    .bind(retry_after.is_some())
    .bind(retry_after.unwrap_or_default().as_secs_f64())
    .bind(task.generation)
    .fetch_optional(pool)
    .await?;
    Ok(match status.as_deref() {
        Some("queued") => FailOutcome::Retrying,
        Some(_) => FailOutcome::Failed,
        None if requeue_superseded(pool, task).await? => FailOutcome::Superseded,
        None => FailOutcome::LeaseLost,
    })
}

/// Takes back the tasks whose lease ran out (their worker crashed or hangs): queued again while
/// attempts are left, failed otherwise. Returns how many were taken back.
pub async fn reap_expired_leases(pool: &PgPool) -> Result<u64, StoreError> {
    let reaped = sqlx::query(
        "WITH t AS (
            UPDATE embedding_tasks
               SET status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
                   not_before = now(), lease_until = NULL,
                   last_error = 'the worker processing it stopped answering (its lease expired)'
             WHERE status = 'running' AND lease_until < now()
            RETURNING document_id, status, last_error)
         UPDATE knowledge_documents d SET processing_status = t.status, processing_error = t.last_error
           FROM t WHERE d.id = t.document_id",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(reaped)
}

/// The queue's depth and age, for metrics and for sizing embedder Jobs.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct QueueStats {
    /// Tasks waiting, including those in backoff.
    pub queued: i64,
    /// Waiting tasks a worker may claim now (not in backoff).
    pub claimable: i64,
    /// Tasks a worker holds.
    pub running: i64,
    /// Seconds the oldest waiting task has waited; 0 when none waits.
    pub oldest_queued_seconds: f64,
    /// Seconds the longest-held task has been processed; 0 when none is.
    pub oldest_running_seconds: f64,
}

/// Reads [`QueueStats`].
pub async fn stats(pool: &PgPool) -> Result<QueueStats, StoreError> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                count(*) FILTER (WHERE status = 'queued' AND not_before <= now()) AS claimable,
                count(*) FILTER (WHERE status = 'running') AS running,
                coalesce(extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE status = 'queued')), 0)::float8
                    AS oldest_queued_seconds,
                coalesce(extract(epoch FROM now() - min(started_at) FILTER (WHERE status = 'running')), 0)::float8
                    AS oldest_running_seconds
           FROM embedding_tasks WHERE status IN ('queued', 'running')",
    )
    .fetch_one(pool)
    .await?)
}
