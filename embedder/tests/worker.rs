//! The worker against the real Postgres 18 + pgvector and the real model: queued documents
//! become Ready with chunks, 384-d vectors and their ICP, and are found by search; documents
//! that cannot be read fail at once with a message naming the cause, never stuck in the queue.

use std::sync::Arc;
use std::time::Duration;

use prospector_embedder::embed::Embedder;
use prospector_embedder::paths;
use prospector_embedder::worker::{self, WorkerConfig};
use prospector_store::customers::{CustomerRecord, QuotaLimits, set_quota_limits, upsert_customer};
use prospector_store::documents::{
    DocumentRecord, ProcessingStatus, SourceKind, find_document, insert_blob, reserve_document_quota, upsert_document,
};
use prospector_store::queue::enqueue;
use prospector_store::search::{SearchMode, SearchRequest, search};
use prospector_tests::shared_postgres;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

fn embedder() -> Embedder {
    let mut config = paths::installed_config().unwrap_or_else(|e| panic!("{e}: run `make deps` (hack/deps.sh) first"));
    config.threads = 2;
    Embedder::load(&config).unwrap()
}

fn fixture(path: &str) -> Vec<u8> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pdf/py-pdf-sample-files/");
    std::fs::read(format!("{root}{path}")).unwrap()
}

async fn customer(pool: &PgPool) -> i64 {
    let record = CustomerRecord {
        k8s_uid: Uuid::new_v4(),
        name: format!("worker-{}", &Uuid::new_v4().simple().to_string()[..8]),
        company_name: "Acme".into(),
        email: format!("{}@example.com", Uuid::new_v4().simple()),
        subscription_tier: "starter".into(),
        ..Default::default()
    };
    let id = upsert_customer(pool, &record).await.unwrap();
    let limits = QuotaLimits { max_documents: 100, max_storage_bytes: 100_000_000, ..Default::default() };
    set_quota_limits(pool, id, &limits).await.unwrap();
    id
}

/// Stores `content`, creates its document and queues it; returns the object's UID.
async fn queued(pool: &PgPool, customer_id: i64, filename: &str, content: &[u8]) -> Uuid {
    let sha = Sha256::digest(content).to_vec();
    insert_blob(pool, customer_id, &sha, content, None).await.unwrap();
    queue_document(pool, customer_id, filename, Some(sha), None).await
}

/// Creates a document (stored bytes, or a url to fetch) and queues it; returns its UID.
async fn queue_document(
    pool: &PgPool,
    customer_id: i64,
    filename: &str,
    sha: Option<Vec<u8>>,
    url: Option<String>,
) -> Uuid {
    let uid = Uuid::new_v4();
    let record = DocumentRecord {
        k8s_uid: uid,
        customer_id,
        document_id: format!("doc_{}", &Uuid::new_v4().simple().to_string()[..16]),
        namespace: "cust-test".into(),
        name: filename.replace('.', "-"),
        filename: filename.into(),
        source_kind: if url.is_some() { SourceKind::Url } else { SourceKind::Blob },
        blob_sha256: sha,
        tags: vec![],
        generation: 1,
        source_url: url,
    };
    let row = upsert_document(pool, &record).await.unwrap();
    // As the operator does before queueing: the document's slot (a url's bytes are counted
    // when the worker has them).
    reserve_document_quota(pool, customer_id, row.id, 0).await.unwrap();
    assert!(enqueue(pool, customer_id, row.id, 3).await.unwrap());
    uid
}

const PITCH: &str = "We sell radiology scheduling software to hospitals in Germany and France. Our customers \
    are health systems with more than 1,000 employees, and the CIO signs the contract. We do not sell to \
    government agencies.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_documents_become_searchable_or_fail_with_their_cause() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool).await;
    let pitch = queued(&db.pool, customer_id, "pitch.txt", PITCH.as_bytes()).await;
    let paper =
        queued(&db.pool, customer_id, "multicolumn.pdf", &fixture("026-latex-multicolumn/multicolumn.pdf")).await;
    let locked = queued(
        &db.pool,
        customer_id,
        "locked.pdf",
        &fixture("005-libreoffice-writer-password/libreoffice-writer-password.pdf"),
    )
    .await;
    let scanned = queued(&db.pool, customer_id, "scan.pdf", &fixture("019-grayscale-image/grayscale-image.pdf")).await;
    let broken =
        queued(&db.pool, customer_id, "broken.pdf", &fixture("017-unreadable-meta-data/unreadablemetadata.pdf")).await;

    let embedder = Arc::new(embedder());
    let config = WorkerConfig {
        identity: "test-worker".into(),
        idle_exit: Some(Duration::from_secs(1)),
        poll: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        worker::run(db.pool.clone(), embedder.clone(), config, std::future::pending()),
    )
    .await
    .expect("the worker exits once the queue is idle")
    .unwrap();
    assert_eq!((report.committed, report.failed, report.retried), (2, 3, 0), "{report:?}");
    assert!(report.chunks >= 2);

    // The Ready documents: chunks with 384-d vectors, text, and the pitch's ICP.
    for uid in [pitch, paper] {
        let row = find_document(&db.pool, uid).await.unwrap().unwrap();
        assert_eq!(row.processing_status, ProcessingStatus::Ready, "{row:?}");
        let (chunks, dims, chunk_count): (i64, Option<i32>, Option<i32>) = sqlx::query_as(
            "SELECT count(c.id), max(vector_dims(c.embedding)), max(d.chunk_count)
               FROM knowledge_documents d JOIN document_chunks c ON c.document_id = d.id WHERE d.id = $1",
        )
        .bind(row.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(chunks >= 1 && Some(chunks as i32) == chunk_count, "{chunks} chunks, chunk_count {chunk_count:?}");
        assert_eq!(dims, Some(384));
    }
    let icp: (serde_json::Value, serde_json::Value, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT target_industries, company_sizes, decision_makers, target_regions FROM knowledge_documents WHERE k8s_uid = $1",
    )
    .bind(pitch)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(icp.0.as_array().unwrap().iter().any(|v| v == "healthcare"), "{icp:?}");
    assert!(!icp.0.as_array().unwrap().iter().any(|v| v == "government"), "negated: {icp:?}");
    assert!(icp.1.as_array().unwrap().iter().any(|v| v == "enterprise"), "{icp:?}");
    assert!(icp.2.as_array().unwrap().iter().any(|v| v == "CIO"), "{icp:?}");
    assert!(icp.3.as_array().unwrap().iter().any(|v| v == "Europe"), "{icp:?}");

    // A question about the pitch finds it first.
    let query = "which hospitals buy radiology scheduling";
    let vector = embedder.embed(&[query]).unwrap().remove(0);
    for mode in [SearchMode::Vector, SearchMode::Hybrid] {
        let request = SearchRequest { top_k: 3, mode, ..SearchRequest::new(customer_id, &vector, query) };
        let hits = search(&db.pool, &request).await.unwrap();
        assert_eq!(hits[0].filename, "pitch.txt", "{mode:?}: {hits:?}");
    }

    // The unreadable ones failed at once, each naming its cause and what to do.
    for (uid, kind, advice) in [
        (locked, "(encrypted)", "upload a decrypted copy"),
        (scanned, "(no_text_layer)", "OCR"),
        (broken, "(corrupt)", "re-export"),
    ] {
        let row = find_document(&db.pool, uid).await.unwrap().unwrap();
        assert_eq!(row.processing_status, ProcessingStatus::Failed);
        assert_eq!(row.attempts, 1, "retrying cannot help, so no retry");
        let error = row.processing_error.unwrap();
        assert!(error.contains(kind) && error.contains(advice), "{error}");
    }
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM embedding_tasks WHERE status IN ('queued', 'running')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(live, 0, "nothing left in the queue");
}

async fn count(pool: &PgPool, sql: &str, customer_id: i64) -> i64 {
    sqlx::query_scalar(sql).bind(customer_id).fetch_one(pool).await.unwrap()
}

/// A `prospector-embedder worker` process on one thread against `database_url`, with `extra`
/// flags.
fn worker_process(name: &str, extra: &[&str], database_url: &str) -> prospector_tests::process::ManagedProcess {
    use prospector_tests::process::{ManagedProcess, RunAs};
    let log = prospector_tests::process_dir().join(format!("{name}-{}.log", &Uuid::new_v4().simple().to_string()[..6]));
    let args: Vec<String> = ["worker", "--threads", "1", "--database-url", database_url]
        .into_iter()
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_prospector-embedder"));
    ManagedProcess::spawn(name, binary, &args, RunAs::Current, &log, &[]).unwrap()
}

/// Waits until `n` of the customer's tasks are claimed by a worker.
async fn wait_until_claimed(
    pool: &PgPool,
    customer_id: i64,
    n: i64,
    worker: &prospector_tests::process::ManagedProcess,
) {
    let running = "SELECT count(*) FROM embedding_tasks WHERE customer_id = $1 AND status = 'running'";
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while count(pool, running, customer_id).await < n {
        assert!(std::time::Instant::now() < deadline, "the worker never claimed: {}", worker.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_its_claims_and_another_finishes_them() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool).await;
    let documents = [
        queued(&db.pool, customer_id, "geotopo.pdf", &fixture("009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")).await,
        queued(&db.pool, customer_id, "multicolumn.pdf", &fixture("026-latex-multicolumn/multicolumn.pdf")).await,
        queued(&db.pool, customer_id, "pitch.txt", PITCH.as_bytes()).await,
    ];

    // A worker process claims the batch; it is SIGKILLed while the batch runs.
    let mut doomed =
        worker_process("doomed", &["--identity", "doomed", "--lease-seconds", "3", "--poll-seconds", "1"], &db.url);
    wait_until_claimed(&db.pool, customer_id, 3, &doomed).await;
    doomed.kill();
    let ready = "SELECT count(*) FROM knowledge_documents WHERE customer_id = $1 AND processing_status = 'ready'";

    // Another worker takes the claims back once their leases expire, and finishes them.
    let config = WorkerConfig {
        identity: "survivor".into(),
        idle_exit: Some(Duration::from_secs(10)),
        poll: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        worker::run(db.pool.clone(), Arc::new(embedder()), config, std::future::pending()),
    )
    .await
    .expect("the worker exits once the queue is idle")
    .unwrap();
    assert!(report.committed >= 1 && report.failed == 0, "{report:?}");
    assert_eq!(count(&db.pool, ready, customer_id).await, 3);
    for uid in documents {
        let row = find_document(&db.pool, uid).await.unwrap().unwrap();
        // Every chunk index from 0 to chunk_count - 1, each once.
        let (rows, distinct, lowest, highest, chunk_count): (i64, i64, Option<i32>, Option<i32>, Option<i32>) =
            sqlx::query_as(
                "SELECT count(*), count(DISTINCT c.chunk_index), min(c.chunk_index), max(c.chunk_index), max(d.chunk_count)
                   FROM document_chunks c JOIN knowledge_documents d ON d.id = c.document_id WHERE d.id = $1",
            )
            .bind(row.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let n = chunk_count.unwrap();
        assert_eq!((rows, distinct, lowest, highest), (i64::from(n), i64::from(n), Some(0), Some(n - 1)), "{row:?}");
    }
    let retried: i64 = count(
        &db.pool,
        "SELECT count(*) FROM embedding_tasks WHERE customer_id = $1 AND leased_by = 'survivor' AND attempts = 2",
        customer_id,
    )
    .await;
    assert!(retried >= 1, "the survivor finished what the killed worker had claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_are_fetched_within_the_policy_and_fail_with_their_cause() {
    use std::collections::HashMap;

    use prospector_embedder::fetch::FetchPolicy;
    use prospector_store::documents::read_blob;
    use prospector_tests::http::{Answer, TestHttpServer};

    let server = TestHttpServer::start(HashMap::from([
        ("/pitch.txt".to_owned(), Answer::Body(PITCH.as_bytes().to_vec())),
        ("/moved".to_owned(), Answer::Redirect("/pitch.txt".into())),
        ("/huge".to_owned(), Answer::Unsized(200_000)),
        ("/slow".to_owned(), Answer::Stall),
        ("/broken".to_owned(), Answer::Status(503)),
    ]))
    .await
    .unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool).await;
    let url = |path: &str| Some(server.url(path));
    let moved = queue_document(&db.pool, customer_id, "moved.txt", None, url("/moved")).await;
    let missing = queue_document(&db.pool, customer_id, "missing.txt", None, url("/missing")).await;
    let huge = queue_document(&db.pool, customer_id, "huge.txt", None, url("/huge")).await;
    let slow = queue_document(&db.pool, customer_id, "slow.txt", None, url("/slow")).await;
    let broken = queue_document(&db.pool, customer_id, "broken.txt", None, url("/broken")).await;
    let config = WorkerConfig {
        identity: "fetcher".into(),
        idle_exit: Some(Duration::from_secs(1)),
        poll: Duration::from_millis(100),
        retry_backoff: Duration::ZERO,
        fetch: FetchPolicy {
            max_bytes: 100_000,
            timeout: Duration::from_secs(1),
            allow_private: true,
            ..FetchPolicy::default()
        },
        ..WorkerConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        worker::run(db.pool.clone(), Arc::new(embedder()), config, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((report.committed, report.failed), (1, 4), "{report:?}");

    // The redirect was followed and the fetched bytes are stored as the document's source.
    let fetched = find_document(&db.pool, moved).await.unwrap().unwrap();
    assert_eq!(fetched.processing_status, ProcessingStatus::Ready);
    let stored = read_blob(&db.pool, customer_id, fetched.blob_sha256.as_deref().unwrap()).await.unwrap();
    assert_eq!(stored.as_deref(), Some(PITCH.as_bytes()));

    // Refused at once: a 404 and a body over the cap. Retried up to the budget of 3 attempts: a
    // server that stalls and one that answers 503. Each message names its kind.
    for (uid, attempts, says) in [
        (missing, 1, "404 Not Found (url_refused"),
        (huge, 1, "larger than the limit of"),
        (huge, 1, "(url_too_large"),
        (slow, 3, "took longer than 1s (url_timed_out"),
        (broken, 3, "503 Service Unavailable (url_unreachable"),
    ] {
        let row = find_document(&db.pool, uid).await.unwrap().unwrap();
        let error = row.processing_error.clone().unwrap();
        assert_eq!((row.processing_status, row.attempts), (ProcessingStatus::Failed, attempts), "{error}");
        assert!(error.contains(says), "{error}");
    }

    // A private address is refused unless the policy allows it.
    let private = queue_document(&db.pool, customer_id, "private.txt", None, url("/pitch.txt")).await;
    let strict = WorkerConfig {
        identity: "strict".into(),
        idle_exit: Some(Duration::from_secs(1)),
        poll: Duration::from_millis(100),
        ..WorkerConfig::default()
    };
    worker::run(db.pool.clone(), Arc::new(embedder()), strict, std::future::pending()).await.unwrap();
    let row = find_document(&db.pool, private).await.unwrap().unwrap();
    let error = row.processing_error.unwrap();
    assert_eq!((row.processing_status, row.attempts), (ProcessingStatus::Failed, 1));
    assert!(error.contains("private") && error.contains("url_not_allowed"), "{error}");

    // Fetched bytes that do not fit the customer's storage are neither stored nor counted.
    let tight = customer(&db.pool).await;
    let limits = QuotaLimits { max_documents: 10, max_storage_bytes: 20, ..Default::default() };
    set_quota_limits(&db.pool, tight, &limits).await.unwrap();
    let over = queue_document(&db.pool, tight, "over.txt", None, url("/pitch.txt")).await;
    let config = WorkerConfig {
        identity: "tight".into(),
        idle_exit: Some(Duration::from_secs(1)),
        poll: Duration::from_millis(100),
        fetch: FetchPolicy { allow_private: true, ..FetchPolicy::default() },
        ..WorkerConfig::default()
    };
    worker::run(db.pool.clone(), Arc::new(embedder()), config, std::future::pending()).await.unwrap();
    let row = find_document(&db.pool, over).await.unwrap().unwrap();
    assert_eq!((row.processing_status, row.blob_sha256), (ProcessingStatus::Failed, None));
    assert!(row.processing_error.unwrap().contains("(storage_limit_reached)"));
    let (used, blobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT storage_used_bytes FROM customer_quotas WHERE customer_id = $1),
                (SELECT count(*) FROM document_blobs WHERE customer_id = $1)",
    )
    .bind(tight)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((used, blobs), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_before_the_worker_exits() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool).await;
    for (name, bytes) in [
        ("geotopo.pdf", fixture("009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")),
        ("multicolumn.pdf", fixture("026-latex-multicolumn/multicolumn.pdf")),
        ("pitch.txt", PITCH.as_bytes().to_vec()),
    ] {
        queued(&db.pool, customer_id, name, &bytes).await;
    }
    let mut worker = worker_process("sigterm", &[], &db.url);
    wait_until_claimed(&db.pool, customer_id, 3, &worker).await;
    let running = "SELECT count(*) FROM embedding_tasks WHERE customer_id = $1 AND status = 'running'";
    let term = std::process::Command::new("kill").args(["-TERM", &worker.pid().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = worker.exit_status() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the worker did not stop: {}", worker.log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}: {}", worker.log_tail(20));
    // It finished the batch it held, then stopped, and said so.
    let ready = "SELECT count(*) FROM knowledge_documents WHERE customer_id = $1 AND processing_status = 'ready'";
    assert_eq!(count(&db.pool, ready, customer_id).await, 3);
    assert_eq!(count(&db.pool, running, customer_id).await, 0);
    assert!(worker.log_tail(5).contains("\"committed\":3"), "{}", worker.log_tail(5));
}
