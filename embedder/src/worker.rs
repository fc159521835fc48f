//! The embedding worker: claims documents from the `embedding_tasks` queue, extracts, chunks,
//! embeds (chunks of every claimed document batched together for the model) and extracts the
//! ICP, then commits each document in one transaction. The same loop runs as the
//! `prospector-embedder worker` process (Job mode) and inside the operator (inline mode).
//!
//! Leases are renewed while a batch runs; a worker that dies loses its claims to the reaper,
//! which any worker runs. Extraction failures are properties of the document and fail it at
//! once with a message a person can act on; other failures retry with backoff.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prospector_store::StoreError;
use prospector_store::chunks::NewChunk;
use prospector_store::documents::read_blob;
use prospector_store::queue::{
    self, ClaimedTask, CommitOutcome, DocumentIcp, FailOutcome, FetchedSource, ProcessedDocument,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::chunk::{ChunkConfig, Chunker};
use crate::embed::{EmbedError, Embedder};
use crate::extract::{self, ExtractErrorKind, Limits};
use crate::fetch::{self, FetchPolicy};
use crate::icp;

/// The name a committed document records as its `embeddingModel`.
pub const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2";

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Who claims (pod name, process id): recorded on each claim.
    pub identity: String,
    /// Documents claimed and embedded together.
    pub batch_documents: i64,
    /// How long a claim holds without a heartbeat; heartbeats go every third of it.
    pub lease: Duration,
    /// How often an idle worker looks for work without a notification (backoff ends notify
    /// nobody), and reaps lost leases.
    pub poll: Duration,
    /// Stop after this long without work (Job mode); `None` runs until shutdown.
    pub idle_exit: Option<Duration>,
    /// The first retry's delay; each further attempt doubles it.
    pub retry_backoff: Duration,
    pub limits: Limits,
    /// How url sources are fetched.
    pub fetch: FetchPolicy,
    /// The nice value of the threads that extract and embed; `None` leaves them at the
    /// process's. An inline worker shares its process's cores with the reconciles: a higher
    /// value lets those run first while the queue is deep. (Nice ranks threads within one
    /// cgroup: other pods are not affected, processes sharing the cgroup are.)
    pub nice: Option<i32>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            identity: format!("embedder-{}", std::process::id()),
            batch_documents: 8,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            idle_exit: None,
            retry_backoff: Duration::from_secs(5),
            limits: Limits::default(),
            fetch: FetchPolicy::default(),
            nice: None,
        }
    }
}

/// What a worker did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub committed: u64,
    pub failed: u64,
    pub retried: u64,
    pub chunks: u64,
}

/// Why a worker stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listening for queued work: {0}")]
    Listen(#[source] sqlx::Error),
    #[error("the processing thread stopped: {0}")]
    Join(String),
}

impl WorkerError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            WorkerError::Store(e) => e.metric_label(),
            WorkerError::Listen(_) => "listen",
            WorkerError::Join(_) => "join",
        }
    }
}

/// Why one document could not be processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// For a person: what happened and what to do.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

/// The message and retry decision for an extraction error: it names the error's kind and says
/// what to do about it. Extraction is deterministic, so only a timeout is worth retrying.
pub fn extraction_failure(kind: &ExtractErrorKind) -> Failure {
    let advice = match kind {
        ExtractErrorKind::Encrypted => "upload a decrypted copy",
        ExtractErrorKind::NoTextLayer { .. } => "upload a PDF with a text layer (run OCR on scans first)",
        ExtractErrorKind::Corrupt { .. } => "re-export the file from its source and upload it again",
        ExtractErrorKind::EmptyText => "upload a document that contains text",
        ExtractErrorKind::Unsupported(_) => "upload PDF, DOCX, plain text, Markdown or HTML",
        ExtractErrorKind::InvalidEncoding { .. } => "save the text as UTF-8 and upload it again",
        ExtractErrorKind::InputTooLarge { .. }
        | ExtractErrorKind::TooManyPages { .. }
        | ExtractErrorKind::DecompressedTooLarge { .. }
        | ExtractErrorKind::NestingTooDeep { .. }
        | ExtractErrorKind::TextTooLarge { .. } => "split the document into smaller ones",
        ExtractErrorKind::Timeout { .. } => "it will be retried; if it keeps failing, split the document",
        ExtractErrorKind::ParserPanicked { .. } => "this is a bug in Prospector's parser; please report it",
    };
    Failure {
        message: format!("{} ({}): {advice}", kind, kind.label()),
        retryable: matches!(kind, ExtractErrorKind::Timeout { .. }),
    }
}

/// The delay before retrying after `attempts` failed attempts: `base`, doubling, at most an hour.
pub fn retry_delay(base: Duration, attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(16);
    base.saturating_mul(1 << doublings).min(Duration::from_secs(3600))
}

/// A claimed document with its source bytes, or why they could not be had.
struct Job {
    task: ClaimedTask,
    source: Result<Vec<u8>, Failure>,
    /// Whether the bytes were fetched from a url (and are to be stored with the result).
    fetched: bool,
}

/// Processes a batch: extraction and chunking per document, one embedding pass over the chunks
/// of all of them, then the ICP of each. Runs on a thread of its own ([`on_worker_thread`]).
fn process_batch(embedder: &Embedder, jobs: &[Job], limits: &Limits) -> Vec<Result<ProcessedDocument, Failure>> {
    let chunker = Chunker::new(embedder.tokenizer(), ChunkConfig::default());
    let texts: Vec<Result<(String, Vec<crate::chunk::Chunk>), Failure>> = jobs
        .iter()
        .map(|job| {
            let bytes = job.source.as_ref().map_err(Clone::clone)?;
            let name = format!("{} ({})", job.task.filename, job.task.document_id);
            let extracted = extract::extract_with_watchdog(&name, bytes.clone().into(), None, limits)
                .map_err(|e| extraction_failure(&e.kind))?;
            let chunks = chunker
                .chunk(&extracted.text)
                .map_err(|e| Failure { message: format!("chunking failed: {e}"), retryable: true })?;
            Ok((extracted.text, chunks))
        })
        .collect();
    let all_chunks: Vec<&str> =
        texts.iter().flatten().flat_map(|(_, chunks)| chunks.iter().map(|c| c.text.as_str())).collect();
    let vectors = match embedder.embed(&all_chunks) {
        Ok(vectors) => vectors,
        Err(e) => return jobs.iter().map(|_| Err(embed_failure(&e))).collect(),
    };
    let mut vectors = vectors.into_iter();
    texts
        .into_iter()
        .map(|document| {
            let (text, chunks) = document?;
            // This document's vectors, taken before anything below can fail, so the next
            // document's stay aligned.
            let embeddings: Vec<Vec<f32>> = vectors.by_ref().take(chunks.len()).collect();
            let chunk_texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
            let icp = icp::extract(&chunk_texts, Some(embedder)).map_err(|e| embed_failure(&e))?;
            let criteria = icp.criteria();
            let new_chunks = chunks
                .iter()
                .zip(embeddings)
                .map(|(chunk, embedding)| NewChunk {
                    chunk_index: i32::try_from(chunk.index).unwrap_or(i32::MAX),
                    content: chunk.text.clone(),
                    token_count: i32::try_from(chunk.tokens.max(1)).unwrap_or(i32::MAX),
                    embedding,
                })
                .collect();
            Ok(ProcessedDocument {
                fetched: None,
                text,
                chunks: new_chunks,
                embedding_model: EMBEDDING_MODEL.to_owned(),
                icp: DocumentIcp {
                    target_industries: criteria.target_industries,
                    company_sizes: criteria.company_sizes,
                    decision_makers: criteria.decision_makers,
                    target_regions: criteria.target_regions,
                    details: serde_json::to_value(&icp).unwrap_or_default(),
                },
            })
        })
        .collect()
}

fn embed_failure(error: &EmbedError) -> Failure {
    Failure { message: format!("embedding failed ({}): {error}", error.label()), retryable: true }
}

/// Runs the worker loop until `shutdown` resolves (the current batch is finished first) or, with
/// `idle_exit`, until no work came for that long.
pub async fn run(
    pool: PgPool,
    embedder: Arc<Embedder>,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerReport, WorkerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut listener = PgListener::connect_with(&pool).await.map_err(WorkerError::Listen)?;
    listener.listen(queue::QUEUED_CHANNEL).await.map_err(WorkerError::Listen)?;
    let held: Arc<Mutex<Vec<ClaimedTask>>> = Arc::default();
    let heartbeat = tokio::spawn(renew_leases(pool.clone(), held.clone(), config.lease));
    let mut report = WorkerReport::default();
    let mut last_work = Instant::now();
    let result = loop {
        if let Err(e) = queue::reap_expired_leases(&pool).await {
            tracing::warn!(error = %e, "cannot reap expired leases");
        }
        let claimed = match queue::claim(&pool, &config.identity, config.batch_documents, config.lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim work; retrying");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            if config.idle_exit.is_some_and(|idle| last_work.elapsed() >= idle) {
                break Ok(());
            }
            let wait = config.idle_exit.map_or(config.poll, |idle| config.poll.min(idle));
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                notified = listener.recv() => {
                    if let Err(e) = notified {
                        tracing::warn!(error = %e, "queue notifications interrupted");
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        last_work = Instant::now();
        *held.lock().unwrap_or_else(|p| p.into_inner()) = claimed.clone();
        let outcome = process_and_record(&pool, &embedder, &config, claimed, &mut report).await;
        held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if let Err(e) = outcome {
            // A database outage or a deadlock with a concurrent deletion: the claims not recorded
            // go back to the queue when their leases expire. Keep working.
            tracing::warn!(error = %e, "a batch could not be recorded; its claims return to the queue");
            tokio::time::sleep(config.poll).await;
        }
        // A shutdown that came during the batch stops the loop now that the batch is recorded.
        if futures_ready(&mut shutdown) {
            break Ok(());
        }
    };
    heartbeat.abort();
    result.map(|()| report)
}

/// Runs `work` on a thread of its own at scheduling priority `nice` (the threads it starts,
/// extraction's and the model's, inherit it), and waits for it without blocking the runtime.
/// Not a runtime blocking thread: a thread's nice value cannot be lowered back without
/// privileges, and the runtime reuses its blocking threads for other work.
pub async fn on_worker_thread<T: Send + 'static>(
    nice: Option<i32>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("embed".into())
        .spawn(move || {
            if let Some(nice) = nice
                && let Err(e) = lower_thread_priority(nice)
            {
                // Work at the usual priority is slower for others, not wrong.
                tracing::warn!(nice, error = %e, "cannot lower the embedding thread's priority");
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|m| (*m).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                format!("the embedding thread panicked: {message}")
            });
            let _ = done.send(outcome);
        })
        .map_err(|e| WorkerError::Join(e.to_string()))?;
    result
        .await
        .map_err(|_| WorkerError::Join("the embedding thread ended without a result".into()))?
        .map_err(WorkerError::Join)
}

/// Sets the calling thread's nice value. Linux keeps it per thread, and new threads inherit it;
/// the images and the harness run on Linux.
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(None, nice).map_err(std::io::Error::from)
}

/// The calling thread's nice value.
pub fn thread_priority() -> std::io::Result<i32> {
    rustix::process::getpriority_process(None).map_err(std::io::Error::from)
}

/// Whether `future` is already complete, without waiting for it.
fn futures_ready(future: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    future.as_mut().poll(&mut context).is_ready()
}

/// Loads the claimed documents' sources, processes them on a thread of their own, and records
/// each outcome.
async fn process_and_record(
    pool: &PgPool,
    embedder: &Arc<Embedder>,
    config: &WorkerConfig,
    claimed: Vec<ClaimedTask>,
    report: &mut WorkerReport,
) -> Result<(), WorkerError> {
    let mut jobs = Vec::with_capacity(claimed.len());
    for task in claimed {
        let (source, fetched) = load_source(pool, &task, &config.fetch).await?;
        jobs.push(Job { task, source, fetched });
    }
    let (embedder, limits) = (embedder.clone(), config.limits.clone());
    let (jobs, results) = on_worker_thread(config.nice, move || {
        let results = process_batch(&embedder, &jobs, &limits);
        (jobs, results)
    })
    .await?;
    for (job, result) in jobs.into_iter().zip(results) {
        let task = &job.task;
        match result {
            Ok(mut document) => {
                if let (true, Ok(bytes)) = (job.fetched, job.source) {
                    let sha256 = Sha256::digest(&bytes).to_vec();
                    document.fetched = Some(FetchedSource { sha256, bytes });
                }
                let chunks = document.chunks.len() as u64;
                match queue::commit(pool, task, &document).await? {
                    CommitOutcome::Committed => {
                        report.committed += 1;
                        report.chunks += chunks;
                    }
                    CommitOutcome::StorageRefused { bytes } => {
                        let message = format!(
                            "the fetched document is {bytes} bytes, more than the customer's storage has left \
                             (storage_limit_reached): free storage or raise maxStorageMb"
                        );
                        if queue::fail(pool, task, &message, None).await? == FailOutcome::Failed {
                            report.failed += 1;
                        }
                    }
                    outcome => tracing::info!(document = %task.document_id, ?outcome, "result not recorded"),
                }
            }
            Err(failure) => {
                let retry = failure.retryable.then(|| retry_delay(config.retry_backoff, task.attempts));
                tracing::info!(document = %task.document_id, error = %failure.message, retrying = retry.is_some(), "document failed");
                match queue::fail(pool, task, &failure.message, retry).await? {
                    FailOutcome::Retrying => report.retried += 1,
                    FailOutcome::Failed => report.failed += 1,
                    FailOutcome::Superseded | FailOutcome::LeaseLost => {}
                }
            }
        }
    }
    Ok(())
}

/// A claimed document's source: its stored bytes, or those of its url, fetched under `policy`.
/// Returns whether they were fetched.
async fn load_source(
    pool: &PgPool,
    task: &ClaimedTask,
    policy: &FetchPolicy,
) -> Result<(Result<Vec<u8>, Failure>, bool), WorkerError> {
    if let Some(sha) = &task.blob_sha256 {
        let stored = read_blob(pool, task.customer_id, sha).await?;
        // Gone bytes mean new ones replaced them (a newer generation, which the failure's fence
        // turns into a requeue), or the document is being deleted: worth another look, not final.
        let message = "the document's stored bytes are gone; it is being replaced or deleted".to_owned();
        return Ok((stored.ok_or(Failure { message, retryable: true }), false));
    }
    let Some(url) = &task.source_url else {
        let message = "the document's source is not stored; recreate the document".to_owned();
        return Ok((Err(Failure { message, retryable: false }), false));
    };
    let fetched = fetch::fetch(url, policy)
        .await
        .map_err(|e| Failure { message: format!("{e} ({}: {})", e.label(), e.advice()), retryable: e.is_retryable() });
    Ok((fetched, true))
}

/// Renews the leases of the claims the worker holds, every third of the lease.
async fn renew_leases(pool: PgPool, held: Arc<Mutex<Vec<ClaimedTask>>>, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let tasks = held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for task in &tasks {
            match queue::heartbeat(&pool, task, lease).await {
                Ok(true) => {}
                Ok(false) => tracing::info!(document = %task.document_id, "claim lost; its result will be refused"),
                Err(e) => tracing::warn!(error = %e, "cannot renew a lease"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedding thread runs at the nice value asked for, the threads it starts (extraction,
    /// the model's) inherit it, and the caller's thread keeps its own.
    #[tokio::test]
    async fn work_runs_at_the_nice_value_asked_for_and_its_threads_inherit_it() {
        let caller = thread_priority().unwrap();
        let wanted = (caller + 3).min(19);
        assert_ne!(wanted, caller, "the test runs at nice 19 already: it cannot tell a change");
        let (own, started) = on_worker_thread(Some(wanted), || {
            (thread_priority().unwrap(), std::thread::spawn(|| thread_priority().unwrap()).join().unwrap())
        })
        .await
        .unwrap();
        assert_eq!((own, started), (wanted, wanted));
        assert_eq!(thread_priority().unwrap(), caller, "the caller's priority changed");
        let unchanged = on_worker_thread(None, || thread_priority().unwrap()).await.unwrap();
        assert_eq!(unchanged, caller);
        // A panic is an error that says what panicked, not a lost batch or a hung worker.
        let panicked = on_worker_thread(None, || -> () { panic!("a malformed batch") }).await.unwrap_err();
        assert!(panicked.to_string().contains("a malformed batch"), "{panicked}");
    }

    #[test]
    fn extraction_failures_name_the_kind_and_say_what_to_do() {
        let encrypted = extraction_failure(&ExtractErrorKind::Encrypted);
        assert_eq!(encrypted.message, "the PDF is encrypted and needs a password (encrypted): upload a decrypted copy");
        assert!(!encrypted.retryable, "retrying cannot decrypt it");
        let scanned = extraction_failure(&ExtractErrorKind::NoTextLayer { pages: 3 });
        assert!(scanned.message.contains("(no_text_layer)") && scanned.message.contains("OCR"), "{}", scanned.message);
        let slow = extraction_failure(&ExtractErrorKind::Timeout { limit: Duration::from_secs(30) });
        assert!(slow.retryable);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(20));
        assert_eq!(retry_delay(base, 30), Duration::from_secs(3600));
    }
}
