//! The document tables against the real Postgres 18 + pgvector the harness starts: document and
//! storage quota decided atomically under concurrency; the embedding queue's protocol (one task
//! per generation, SKIP LOCKED claims, fencing by attempt, retries, the lease reaper, superseded
//! generations); deletion in any state leaving no rows; and search (exact cosine order, hybrid
//! fusion, filters) that never crosses customers.

use std::time::Duration;

use futures::future::join_all;
use prospector_store::chunks::{EMBEDDING_DIM, NewChunk};
use prospector_store::customers::{CustomerRecord, QuotaLimits, set_quota_limits, upsert_customer};
use prospector_store::documents::{
    DocumentAdmission, DocumentRecord, DocumentRefusal, ProcessingStatus, SourceKind, delete_document, find_document,
    insert_blob, read_blob, reserve_document_quota, upsert_document,
};
use prospector_store::queue::{
    self, ClaimedTask, CommitOutcome, DocumentIcp, FailOutcome, ProcessedDocument, claim, commit, enqueue,
};
use prospector_store::search::{SearchMode, SearchPath, SearchRequest, explain, search, search_path};
use prospector_store::tenant_index::{TenantIndex, build_index, drop_index, index_name, tenant_indexes};
use prospector_tests::shared_postgres;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// A customer with `max_documents` documents and `max_storage_bytes` of storage.
async fn customer(pool: &PgPool, name: &str, max_documents: i32, max_storage_bytes: i64) -> i64 {
    let id = upsert_customer(
        pool,
        &CustomerRecord {
            k8s_uid: Uuid::new_v4(),
            name: name.into(),
            company_name: format!("{name} Corp"),
            email: format!("{name}-{}@example.com", Uuid::new_v4().simple()),
            subscription_tier: "starter".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let limits = QuotaLimits {
        max_api_calls_per_day: 1000,
        max_api_calls_per_month: 30_000,
        rate_limit_per_second: 10,
        rate_limit_per_minute: 100,
        max_agents: 5,
        max_concurrent_agents: 3,
        max_storage_bytes,
        max_documents,
        max_leads_per_month: 1000,
        max_cost_per_month_usd: 100.0,
    };
    set_quota_limits(pool, id, &limits).await.unwrap();
    id
}

/// Stores `content` as a blob and a document on it; returns the object's UID and the row.
async fn stored_document(
    pool: &PgPool,
    customer_id: i64,
    content: &[u8],
    tags: &[&str],
) -> (Uuid, prospector_store::documents::DocumentRow) {
    let sha = Sha256::digest(content).to_vec();
    insert_blob(pool, customer_id, &sha, content, Some("text/plain")).await.unwrap();
    let uid = Uuid::new_v4();
    let row = upsert_document(
        pool,
        &DocumentRecord {
            k8s_uid: uid,
            customer_id,
            document_id: format!("doc_{}", &Uuid::new_v4().simple().to_string()[..16]),
            namespace: "cust-test".into(),
            name: format!("doc-{}", &uid.simple().to_string()[..8]),
            filename: "notes.txt".into(),
            source_kind: SourceKind::Blob,
            blob_sha256: Some(sha),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            generation: 1,
            source_url: None,
        },
    )
    .await
    .unwrap();
    (uid, row)
}

async fn counters(pool: &PgPool, customer_id: i64) -> (i32, i64) {
    sqlx::query_as("SELECT documents_count, storage_used_bytes FROM customer_quotas WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Twenty documents that reserve `bytes` each, all at once; the documents and the outcomes.
async fn twenty_at_once(
    pool: &PgPool,
    customer_id: i64,
    bytes: i64,
) -> (Vec<(Uuid, prospector_store::documents::DocumentRow)>, Vec<Result<DocumentAdmission, prospector_store::StoreError>>)
{
    let mut documents = Vec::new();
    for i in 0..20 {
        documents.push(stored_document(pool, customer_id, format!("document {i}").as_bytes(), &[]).await);
    }
    let outcomes =
        join_all(documents.iter().map(|(_, row)| reserve_document_quota(pool, customer_id, row.id, bytes))).await;
    (documents, outcomes)
}

#[tokio::test]
async fn twenty_concurrent_documents_admit_exactly_the_document_limit_and_deletion_frees_exactly() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "docs", 10, 1_000_000).await;
    let (documents, outcomes) = twenty_at_once(&db.pool, customer_id, 100).await;
    let admitted = outcomes.iter().filter(|o| matches!(o, Ok(DocumentAdmission::Admitted { .. }))).count();
    assert_eq!(admitted, 10, "{outcomes:?}");
    for outcome in &outcomes {
        if let Ok(DocumentAdmission::Refused(refusal)) = outcome {
            assert_eq!(refusal, &DocumentRefusal::DocumentLimit { used: 10, max: 10 });
        }
    }
    assert_eq!(counters(&db.pool, customer_id).await, (10, 1000));

    // A replayed reservation changes nothing; deleting an admitted document frees exactly its
    // slot and bytes, once.
    let (uid, row) = documents
        .iter()
        .zip(&outcomes)
        .find(|(_, o)| matches!(o, Ok(DocumentAdmission::Admitted { .. })))
        .map(|(d, _)| d.clone())
        .unwrap();
    reserve_document_quota(&db.pool, customer_id, row.id, 100).await.unwrap();
    assert_eq!(counters(&db.pool, customer_id).await, (10, 1000));
    assert!(delete_document(&db.pool, uid).await.unwrap().deleted);
    assert!(!delete_document(&db.pool, uid).await.unwrap().deleted, "a replay deletes nothing");
    assert_eq!(counters(&db.pool, customer_id).await, (9, 900));
    assert!(find_document(&db.pool, uid).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_documents_never_pass_the_storage_limit() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "bytes", 100, 1_000).await;
    let (_, outcomes) = twenty_at_once(&db.pool, customer_id, 300).await;
    let admitted = outcomes.iter().filter(|o| matches!(o, Ok(DocumentAdmission::Admitted { .. }))).count();
    assert_eq!(admitted, 3, "3 x 300 bytes fit in 1,000: {outcomes:?}");
    assert_eq!(counters(&db.pool, customer_id).await, (3, 900));
    let refused = outcomes.iter().find_map(|o| match o {
        Ok(DocumentAdmission::Refused(r)) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(refused, Some(DocumentRefusal::StorageLimit { used: 900, wanted: 300, max: 1_000 }));
}

/// A processed result for `task` with `n` chunks whose vectors come from `rng`.
fn processed(task: &ClaimedTask, n: usize, rng: &mut StdRng) -> ProcessedDocument {
    ProcessedDocument {
        fetched: None,
        text: format!("text of {}", task.document_id),
        chunks: (0..n)
            .map(|i| NewChunk {
                chunk_index: i as i32,
                content: format!("chunk {i} of {}", task.document_id),
                token_count: 5,
                embedding: random_unit_vector(rng),
            })
            .collect(),
        embedding_model: "all-MiniLM-L6-v2".into(),
        icp: DocumentIcp {
            target_industries: vec!["healthcare".into()],
            details: serde_json::json!({"labels": []}),
            ..Default::default()
        },
    }
}

async fn chunk_count(pool: &PgPool, document_row: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM document_chunks WHERE document_id = $1")
        .bind(document_row)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn status_of(pool: &PgPool, uid: Uuid) -> ProcessingStatus {
    find_document(pool, uid).await.unwrap().unwrap().processing_status
}

#[tokio::test]
async fn the_queue_claims_each_task_once_and_fences_stale_workers() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let customer_id = customer(&db.pool, "queue", 100, 1_000_000).await;
    let mut documents = Vec::new();
    for i in 0..6 {
        let (uid, row) = stored_document(&db.pool, customer_id, format!("queued {i}").as_bytes(), &[]).await;
        assert!(enqueue(&db.pool, customer_id, row.id, 3).await.unwrap());
        assert!(!enqueue(&db.pool, customer_id, row.id, 3).await.unwrap(), "a replay queues nothing twice");
        assert_eq!(status_of(&db.pool, uid).await, ProcessingStatus::Queued);
        documents.push((uid, row));
    }

    // Two workers claiming at once get disjoint tasks, oldest first.
    let (a, b) = tokio::join!(claim(&db.pool, "worker-a", 4, LEASE), claim(&db.pool, "worker-b", 4, LEASE));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 6, "every task claimed: {a:?} {b:?}");
    assert!(a.iter().all(|t| b.iter().all(|u| u.task_id != t.task_id)), "no task claimed twice");
    assert!(claim(&db.pool, "worker-c", 4, LEASE).await.unwrap().is_empty());
    assert_eq!(status_of(&db.pool, documents[0].0).await, ProcessingStatus::Processing);

    // The lease of one claim expires; the reaper takes it back and another worker claims it.
    let stale = a[0].clone();
    sqlx::query("UPDATE embedding_tasks SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(stale.task_id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(queue::reap_expired_leases(&db.pool).await.unwrap(), 1);
    let retaken = claim(&db.pool, "worker-c", 1, LEASE).await.unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!((retaken[0].task_id, retaken[0].attempts), (stale.task_id, 2));
    // The stale worker can neither heartbeat nor commit: the attempt number fences it.
    assert!(!queue::heartbeat(&db.pool, &stale, LEASE).await.unwrap());
    let result = processed(&stale, 3, &mut rng);
    assert_eq!(commit(&db.pool, &stale, &result).await.unwrap(), CommitOutcome::LeaseLost);
    assert_eq!(chunk_count(&db.pool, stale.document_row).await, 0, "a fenced commit writes no chunk");
    assert!(queue::heartbeat(&db.pool, &retaken[0], LEASE).await.unwrap());
    assert_eq!(
        commit(&db.pool, &retaken[0], &processed(&retaken[0], 3, &mut rng)).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(chunk_count(&db.pool, stale.document_row).await, 3);

    // A re-commit with fewer chunks (a new generation) replaces the old ones atomically.
    let (uid, row) = &documents.iter().find(|(_, r)| r.id == a[1].document_row).unwrap();
    assert_eq!(commit(&db.pool, &a[1], &processed(&a[1], 5, &mut rng)).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(status_of(&db.pool, *uid).await, ProcessingStatus::Ready);
    let mut next = DocumentRecord {
        k8s_uid: *uid,
        customer_id,
        document_id: row.document_id.clone(),
        namespace: "cust-test".into(),
        name: "doc".into(),
        filename: "notes.txt".into(),
        source_kind: SourceKind::Blob,
        blob_sha256: None,
        tags: vec![],
        generation: 2,
        source_url: None,
    };
    assert_eq!(upsert_document(&db.pool, &next).await.unwrap().processing_status, ProcessingStatus::Pending);
    assert!(enqueue(&db.pool, customer_id, row.id, 3).await.unwrap(), "a new generation is queued again");
    let again = claim(&db.pool, "worker-a", 1, LEASE).await.unwrap();
    assert_eq!(again[0].generation, 2);
    // While it runs, generation 3 arrives: generation 2's result is refused and the task is
    // queued again for generation 3, without spending an attempt.
    next.generation = 3;
    upsert_document(&db.pool, &next).await.unwrap();
    enqueue(&db.pool, customer_id, row.id, 3).await.unwrap();
    assert_eq!(
        commit(&db.pool, &again[0], &processed(&again[0], 2, &mut rng)).await.unwrap(),
        CommitOutcome::Superseded
    );
    let third = claim(&db.pool, "worker-a", 1, LEASE).await.unwrap();
    assert_eq!((third[0].generation, third[0].attempts), (3, 1));
    assert_eq!(
        commit(&db.pool, &third[0], &processed(&third[0], 2, &mut rng)).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(chunk_count(&db.pool, row.id).await, 2, "chunk indexes beyond the new count are gone");
}

#[tokio::test]
async fn failures_retry_with_backoff_then_fail_for_good_with_the_message() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "flaky", 100, 1_000_000).await;
    let (uid, row) = stored_document(&db.pool, customer_id, b"flaky", &[]).await;
    enqueue(&db.pool, customer_id, row.id, 2).await.unwrap();

    let first = claim(&db.pool, "w", 1, LEASE).await.unwrap().remove(0);
    assert!(!first.is_last_attempt());
    let outcome = queue::fail(&db.pool, &first, "the URL timed out", Some(Duration::from_secs(3600))).await.unwrap();
    assert_eq!(outcome, FailOutcome::Retrying);
    let waiting = find_document(&db.pool, uid).await.unwrap().unwrap();
    assert_eq!(waiting.processing_status, ProcessingStatus::Queued);
    assert_eq!(waiting.processing_error.as_deref(), Some("the URL timed out"));
    assert!(claim(&db.pool, "w", 1, LEASE).await.unwrap().is_empty(), "in backoff");
    let stats = queue::stats(&db.pool).await.unwrap();
    assert_eq!((stats.queued, stats.claimable, stats.running), (1, 0, 0), "waiting out its backoff");

    sqlx::query("UPDATE embedding_tasks SET not_before = now() WHERE id = $1")
        .bind(first.task_id)
        .execute(&db.pool)
        .await
        .unwrap();
    let last = claim(&db.pool, "w", 1, LEASE).await.unwrap().remove(0);
    assert!(last.is_last_attempt());
    let message = "encrypted PDF: upload a decrypted copy";
    assert_eq!(queue::fail(&db.pool, &last, message, Some(Duration::ZERO)).await.unwrap(), FailOutcome::Failed);
    let failed = find_document(&db.pool, uid).await.unwrap().unwrap();
    assert_eq!(
        (failed.processing_status, failed.processing_error.as_deref()),
        (ProcessingStatus::Failed, Some(message))
    );
    assert_eq!(queue::fail(&db.pool, &last, message, None).await.unwrap(), FailOutcome::LeaseLost, "recorded once");
}

#[tokio::test]
async fn deletion_in_any_state_leaves_no_rows_and_keeps_shared_blobs() {
    deletion_in_any_state_leaves_no_rows_and_keeps_shared_blobs_with(1).await;
}

/// The same on `document_chunks` in 8 hash partitions by customer.
#[tokio::test]
async fn deletion_in_any_state_leaves_no_rows_and_keeps_shared_blobs_in_partitions() {
    deletion_in_any_state_leaves_no_rows_and_keeps_shared_blobs_with(8).await;
}

async fn deletion_in_any_state_leaves_no_rows_and_keeps_shared_blobs_with(partitions: u32) {
    let db = database(partitions).await;
    let mut rng = StdRng::seed_from_u64(5);
    let customer_id = customer(&db.pool, "tidy", 100, 1_000_000).await;
    // Pending, queued, processing and ready documents; two of them share their bytes.
    let (pending, _) = stored_document(&db.pool, customer_id, b"pending", &[]).await;
    let (queued, queued_row) = stored_document(&db.pool, customer_id, b"shared bytes", &[]).await;
    let (processing, processing_row) = stored_document(&db.pool, customer_id, b"shared bytes", &[]).await;
    let (ready, ready_row) = stored_document(&db.pool, customer_id, b"ready", &[]).await;
    for row in [&ready_row, &processing_row, &queued_row] {
        reserve_document_quota(&db.pool, customer_id, row.id, 10).await.unwrap();
        enqueue(&db.pool, customer_id, row.id, 3).await.unwrap();
    }
    let claimed = claim(&db.pool, "w", 2, LEASE).await.unwrap();
    let ready_task = claimed.iter().find(|t| t.document_row == ready_row.id).unwrap();
    commit(&db.pool, ready_task, &processed(ready_task, 4, &mut rng)).await.unwrap();
    let processing_task = claimed.iter().find(|t| t.document_row == processing_row.id).unwrap().clone();
    assert_eq!(status_of(&db.pool, queued).await, ProcessingStatus::Queued);

    let shared_sha = Sha256::digest(b"shared bytes").to_vec();
    let deleted = delete_document(&db.pool, processing).await.unwrap();
    assert!(deleted.deleted && !deleted.blob_deleted, "the queued document still uses the bytes");
    assert!(read_blob(&db.pool, customer_id, &shared_sha).await.unwrap().is_some());
    // The worker holding the deleted document finds its claim gone.
    assert_eq!(
        commit(&db.pool, &processing_task, &processed(&processing_task, 2, &mut rng)).await.unwrap(),
        CommitOutcome::Superseded
    );
    for uid in [pending, queued, ready] {
        delete_document(&db.pool, uid).await.unwrap();
    }
    assert!(read_blob(&db.pool, customer_id, &shared_sha).await.unwrap().is_none(), "the last user took the bytes");
    let left = prospector_tests::fixtures::document_rows(&db.pool, customer_id).await;
    assert_eq!(left, (0, 0, 0, 0), "chunks, tasks, blobs and live documents");
    assert_eq!(counters(&db.pool, customer_id).await, (0, 0));
}

fn random_unit_vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

/// A Ready document of `customer_id` with one chunk per `(text, vector)`, through the queue.
async fn ready_document(pool: &PgPool, customer_id: i64, tags: &[&str], chunks: &[(String, Vec<f32>)]) -> String {
    let (_, row) = stored_document(pool, customer_id, Uuid::new_v4().as_bytes(), tags).await;
    enqueue(pool, customer_id, row.id, 3).await.unwrap();
    let task = claim(pool, "w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(task.document_row, row.id);
    let result = ProcessedDocument {
        fetched: None,
        text: chunks.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(" "),
        chunks: chunks
            .iter()
            .enumerate()
            .map(|(i, (text, v))| NewChunk {
                chunk_index: i as i32,
                content: text.clone(),
                token_count: 5,
                embedding: v.clone(),
            })
            .collect(),
        embedding_model: "all-MiniLM-L6-v2".into(),
        icp: DocumentIcp::default(),
    };
    assert_eq!(commit(pool, &task, &result).await.unwrap(), CommitOutcome::Committed);
    row.document_id
}

/// A migrated database with `document_chunks` in `partitions` hash partitions (1: one table).
async fn database(partitions: u32) -> prospector_tests::TestDatabase {
    let db = shared_postgres().migrated_database().await.unwrap();
    let layout = prospector_store::partitions::set_chunk_partitions(&db.pool, partitions).await.unwrap();
    let expected = match partitions {
        1 => prospector_store::partitions::ChunkLayout::Plain,
        n => prospector_store::partitions::ChunkLayout::Partitioned(n),
    };
    assert_eq!(layout, expected);
    assert_eq!(prospector_store::partitions::chunk_layout(&db.pool).await.unwrap(), expected);
    db
}

fn request<'a>(customer_id: i64, embedding: &'a [f32], text: &'a str, mode: SearchMode) -> SearchRequest<'a> {
    SearchRequest { top_k: 10, mode, ..SearchRequest::new(customer_id, embedding, text) }
}

#[tokio::test]
async fn search_is_exact_within_one_customer_and_never_crosses_customers() {
    search_is_exact_within_one_customer_and_never_crosses_customers_with(1).await;
}

/// The same on `document_chunks` in 8 hash partitions by customer.
#[tokio::test]
async fn search_is_exact_within_one_customer_and_never_crosses_customers_in_partitions() {
    search_is_exact_within_one_customer_and_never_crosses_customers_with(8).await;
}

async fn search_is_exact_within_one_customer_and_never_crosses_customers_with(partitions: u32) {
    let db = database(partitions).await;
    let mut rng = StdRng::seed_from_u64(7);
    let alice = customer(&db.pool, "alice", 100, 1_000_000).await;
    let bob = customer(&db.pool, "bob", 100, 1_000_000).await;
    let alice_chunks: Vec<(String, Vec<f32>)> =
        (0..300).map(|i| (format!("alice chunk {i}"), random_unit_vector(&mut rng))).collect();
    let bob_chunks: Vec<(String, Vec<f32>)> = (0..300)
        .map(|i| (format!("bob chunk {i} about quarterly pipeline reviews"), random_unit_vector(&mut rng)))
        .collect();
    let alice_doc = ready_document(&db.pool, alice, &[], &alice_chunks).await;
    ready_document(&db.pool, bob, &[], &bob_chunks).await;
    sqlx::query("ANALYZE document_chunks").execute(&db.pool).await.unwrap();

    for _ in 0..5 {
        // A query equal to one of Bob's chunks, words included, must still only find Alice's.
        let (bob_text, query) = bob_chunks[rng.random_range(0..300)].clone();
        for mode in [SearchMode::Vector, SearchMode::Hybrid] {
            let hits = search(&db.pool, &request(alice, &query, &bob_text, mode)).await.unwrap();
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| h.document_id == alice_doc), "only the caller's chunks: {hits:?}");
            if mode == SearchMode::Vector {
                let mut expected: Vec<(usize, f64)> =
                    alice_chunks.iter().enumerate().map(|(i, (_, v))| (i, cosine(&query, v))).collect();
                expected.sort_by(|a, b| b.1.total_cmp(&a.1));
                let expected_indexes: Vec<i32> = expected.iter().take(10).map(|(i, _)| *i as i32).collect();
                let got: Vec<i32> = hits.iter().map(|h| h.chunk_index).collect();
                assert_eq!(got, expected_indexes, "top-10 must be the exact cosine order");
                for (hit, (_, similarity)) in hits.iter().zip(&expected) {
                    assert!((hit.score - similarity).abs() < 1e-5, "score {} vs {similarity}", hit.score);
                }
            }
        }
    }
}

#[tokio::test]
async fn hybrid_search_lifts_keyword_matches_and_filters_by_tag_and_document() {
    hybrid_search_lifts_keyword_matches_and_filters_by_tag_and_document_with(1).await;
}

/// The same on `document_chunks` in 8 hash partitions by customer.
#[tokio::test]
async fn hybrid_search_lifts_keyword_matches_and_filters_by_tag_and_document_in_partitions() {
    hybrid_search_lifts_keyword_matches_and_filters_by_tag_and_document_with(8).await;
}

async fn hybrid_search_lifts_keyword_matches_and_filters_by_tag_and_document_with(partitions: u32) {
    let db = database(partitions).await;
    let mut rng = StdRng::seed_from_u64(11);
    let customer_id = customer(&db.pool, "hybrid", 100, 1_000_000).await;
    let query = random_unit_vector(&mut rng);
    // The vector ranking alone puts the keyword chunk last; the words bring it to the top.
    let mut chunks: Vec<(String, Vec<f32>)> =
        (0..40).map(|i| (format!("filler paragraph number {i}"), random_unit_vector(&mut rng))).collect();
    let opposite: Vec<f32> = query.iter().map(|x| -x).collect();
    chunks.push(("Hospitals in Germany buy our radiology scheduling suite".into(), opposite));
    let playbook = ready_document(&db.pool, customer_id, &["playbook"], &chunks).await;
    let other = ready_document(&db.pool, customer_id, &["pricing"], &[("pricing sheet".into(), query.clone())]).await;

    let words = "radiology scheduling hospitals";
    let vector = search(&db.pool, &request(customer_id, &query, words, SearchMode::Vector)).await.unwrap();
    assert!(!vector.iter().any(|h| h.text.contains("radiology")), "not in the vector top-10 by itself");
    let hybrid = search(&db.pool, &request(customer_id, &query, words, SearchMode::Hybrid)).await.unwrap();
    // Ranked last by vector and first by words, it scores 1/(60+42) + 1/(60+1): first. The exact
    // vector match, 1/(60+1) alone, comes second.
    assert!(hybrid[0].text.contains("radiology"), "fused to the top: {hybrid:?}");
    assert_eq!(hybrid[1].document_id, other, "the exact vector match follows");

    let tags = vec!["playbook".to_owned()];
    let tagged = SearchRequest { tags: &tags, ..request(customer_id, &query, words, SearchMode::Hybrid) };
    let hits = search(&db.pool, &tagged).await.unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.document_id == playbook), "{hits:?}");
    let only = vec![other.clone()];
    let by_id = SearchRequest { document_ids: &only, ..request(customer_id, &query, words, SearchMode::Vector) };
    let hits = search(&db.pool, &by_id).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].document_id.as_str(), hits[0].filename.as_str()), (other.as_str(), "notes.txt"));
}

/// A unit vector near a mixture of two of `topics`: clustered like real embeddings, so that
/// nearest neighbours are well defined (uniformly random vectors are all about equally far).
fn topical_vector(rng: &mut StdRng, topics: &[Vec<f32>]) -> Vec<f32> {
    let (a, b) = (&topics[rng.random_range(0..topics.len())], &topics[rng.random_range(0..topics.len())]);
    let w = rng.random_range(0.2f32..0.8);
    let noise = random_unit_vector(rng);
    let v: Vec<f32> = (0..EMBEDDING_DIM).map(|i| w * a[i] + (1.0 - w) * b[i] + 0.35 * noise[i]).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn exact_top(query: &[f32], chunks: &[(String, Vec<f32>)], k: usize) -> Vec<i32> {
    let mut scored: Vec<(i32, f64)> =
        chunks.iter().enumerate().map(|(i, (_, v))| (i as i32, cosine(query, v))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(k).map(|(i, _)| i).collect()
}

/// Right after a bulk load the planner's statistics do not know the customer's chunks yet; the
/// results are still looked up by id, in every mode and on both paths, not by joining the ranked
/// ids with every chunk of the customer (measured 95 ms instead of 21 ms at 12,000 chunks).
#[tokio::test]
async fn results_are_looked_up_by_id_even_before_statistics_know_a_bulk_load() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let mut rng = StdRng::seed_from_u64(31);
    let topics: Vec<Vec<f32>> = (0..8).map(|_| random_unit_vector(&mut rng)).collect();
    let bulk = customer(&db.pool, "bulk", 100, 1_000_000).await;
    for d in 0..4 {
        let chunks: Vec<(String, Vec<f32>)> = (0..1500)
            .map(|i| (format!("bulk attention paper {d} part {i}"), topical_vector(&mut rng, &topics)))
            .collect();
        ready_document(&db.pool, bulk, &[], &chunks).await;
    }
    let query = topical_vector(&mut rng, &topics);
    for indexed in [false, true] {
        if indexed {
            build_index(&db.pool, bulk, 64).await.unwrap();
        }
        for mode in [SearchMode::Vector, SearchMode::Hybrid] {
            let (path, plan) = explain(&db.pool, &request(bulk, &query, "attention paper", mode)).await.unwrap();
            assert_eq!(path == SearchPath::Indexed, indexed);
            assert!(plan.contains("document_chunks_pkey"), "{path:?} {mode:?}: results by id:\n{plan}");
            assert!(!plan.contains("Hash Join"), "{path:?} {mode:?}: no join with every chunk:\n{plan}");
            let hits = search(&db.pool, &request(bulk, &query, "attention paper", mode)).await.unwrap();
            assert_eq!(hits.len(), 10);
        }
    }
}

#[tokio::test]
async fn a_customers_own_index_serves_its_searches_and_filtered_or_unindexed_searches_are_exact() {
    a_customers_own_index_serves_its_searches_and_filtered_or_unindexed_searches_are_exact_with(1).await;
}

/// The same on `document_chunks` in 8 hash partitions by customer.
#[tokio::test]
async fn a_customers_own_index_serves_its_searches_and_filtered_or_unindexed_searches_are_exact_in_partitions() {
    a_customers_own_index_serves_its_searches_and_filtered_or_unindexed_searches_are_exact_with(8).await;
}

async fn a_customers_own_index_serves_its_searches_and_filtered_or_unindexed_searches_are_exact_with(partitions: u32) {
    let db = database(partitions).await;
    let mut rng = StdRng::seed_from_u64(23);
    let topics: Vec<Vec<f32>> = (0..12).map(|_| random_unit_vector(&mut rng)).collect();
    let large = customer(&db.pool, "large", 100, 1_000_000).await;
    let other = customer(&db.pool, "other", 100, 1_000_000).await;
    let make = |rng: &mut StdRng, label: &str, n: usize, topics: &[Vec<f32>]| -> Vec<(String, Vec<f32>)> {
        (0..n).map(|i| (format!("{label} {i}"), topical_vector(rng, topics))).collect()
    };
    let first = make(&mut rng, "first", 1500, &topics[..6]);
    let second = make(&mut rng, "second", 1500, &topics[6..]);
    let small = make(&mut rng, "small", 20, &topics);
    let documents = [
        ready_document(&db.pool, large, &["first"], &first).await,
        ready_document(&db.pool, large, &["second"], &second).await,
        ready_document(&db.pool, large, &["small"], &small).await,
    ];
    // Every chunk of the large customer in one list: document d's chunk i is at offset[d] + i.
    let all: Vec<(String, Vec<f32>)> = first.iter().chain(&second).chain(&small).cloned().collect();
    let position = |hit: &prospector_store::search::SearchHit| {
        let d = documents.iter().position(|d| *d == hit.document_id).expect("one of the customer's documents");
        [0, 1500, 3000][d] + hit.chunk_index as usize
    };
    // The other customer holds the best matches of every query below. Recall is an average over
    // 40 queries: on these orthogonal topics about one HNSW build in a hundred leaves one query's
    // neighbours out of reach at ef_search 400 (measured over 750 builds), which is 0.9 over ten
    // queries and 0.975 over forty.
    let queries: Vec<Vec<f32>> = (0..40).map(|_| topical_vector(&mut rng, &topics)).collect();
    let copies: Vec<(String, Vec<f32>)> = queries.iter().map(|q| ("copy".to_owned(), q.clone())).collect();
    ready_document(&db.pool, other, &["small"], &copies).await;
    sqlx::query("ANALYZE document_chunks").execute(&db.pool).await.unwrap();

    assert_eq!(search_path(&db.pool, large).await.unwrap(), SearchPath::Exact);
    build_index(&db.pool, large, 64).await.unwrap();
    let built = TenantIndex { customer_id: large, valid: true, building: false };
    assert_eq!(tenant_indexes(&db.pool).await.unwrap(), vec![built]);
    assert_eq!(search_path(&db.pool, large).await.unwrap(), SearchPath::Indexed);
    assert_eq!(search_path(&db.pool, other).await.unwrap(), SearchPath::Exact, "one customer's index only");

    let exact_positions = |query: &[f32], among: &dyn Fn(usize) -> bool| -> Vec<usize> {
        let candidates: Vec<(String, Vec<f32>)> =
            all.iter().enumerate().filter(|(i, _)| among(*i)).map(|(_, c)| c.clone()).collect();
        let offsets: Vec<usize> = (0..all.len()).filter(|i| among(*i)).collect();
        exact_top(query, &candidates, 10).into_iter().map(|i| offsets[i as usize]).collect()
    };
    let (mut found, mut wanted) = (0, 0);
    for query in &queries {
        let (path, plan) = explain(&db.pool, &request(large, query, "", SearchMode::Vector)).await.unwrap();
        assert_eq!(path, SearchPath::Indexed);
        assert!(plan.contains(&index_name(large)), "through the customer's index:\n{plan}");
        let hits = search(&db.pool, &request(large, query, "", SearchMode::Vector)).await.unwrap();
        assert_eq!(hits.len(), 10);
        let got: Vec<usize> = hits.iter().map(position).collect();
        let expected = exact_positions(query, &|_| true);
        found += expected.iter().filter(|i| got.contains(i)).count();
        wanted += expected.len();

        // A tag that only 20 of the 3,020 chunks carry: exact, so the top ten are the true ten
        // (a graph walk stopping after a bounded number of rows could miss them).
        let tags = vec!["small".to_owned()];
        let tagged = SearchRequest { tags: &tags, ..request(large, query, "", SearchMode::Vector) };
        assert_eq!(explain(&db.pool, &tagged).await.unwrap().0, SearchPath::Exact);
        let hits = search(&db.pool, &tagged).await.unwrap();
        let got: Vec<usize> = hits.iter().map(position).collect();
        assert_eq!(got, exact_positions(query, &|i| i >= 3000), "the exact top ten of the tagged document");
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 through the index: {recall}");

    // A build that died half-way leaves an invalid index: search scans exactly meanwhile, and the
    // next build replaces it.
    sqlx::query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)")
        .bind(index_name(large))
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(search_path(&db.pool, large).await.unwrap(), SearchPath::Exact);
    let hits = search(&db.pool, &request(large, &queries[0], "", SearchMode::Vector)).await.unwrap();
    let got: Vec<usize> = hits.iter().map(position).collect();
    assert_eq!(got, exact_positions(&queries[0], &|_| true), "exact while the index is invalid");
    let leftover = TenantIndex { customer_id: large, valid: false, building: false };
    assert_eq!(tenant_indexes(&db.pool).await.unwrap(), vec![leftover]);
    build_index(&db.pool, large, 64).await.unwrap();
    assert_eq!(search_path(&db.pool, large).await.unwrap(), SearchPath::Indexed);

    drop_index(&db.pool, large).await.unwrap();
    assert!(tenant_indexes(&db.pool).await.unwrap().is_empty());
    assert_eq!(search_path(&db.pool, large).await.unwrap(), SearchPath::Exact);
}

#[tokio::test]
async fn new_source_bytes_start_a_new_generation_and_free_the_old_bytes() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "gitops", 100, 1_000_000).await;
    let (uid, row) = stored_document(&db.pool, customer_id, b"playbook v1", &[]).await;
    let mut record = DocumentRecord {
        k8s_uid: uid,
        customer_id,
        document_id: row.document_id.clone(),
        namespace: "cust-test".into(),
        name: "doc".into(),
        filename: "notes.txt".into(),
        source_kind: SourceKind::ConfigMap,
        blob_sha256: None,
        tags: vec![],
        generation: 1,
        source_url: None,
    };
    // A replay (same object generation, no new bytes) changes nothing.
    let same = upsert_document(&db.pool, &record).await.unwrap();
    assert_eq!((same.generation, same.blob_sha256.clone()), (1, row.blob_sha256.clone()));

    // The ConfigMap was edited: new bytes, same object generation.
    let v2 = b"playbook v2";
    let sha2 = Sha256::digest(v2).to_vec();
    insert_blob(&db.pool, customer_id, &sha2, v2, None).await.unwrap();
    record.blob_sha256 = Some(sha2.clone());
    let next = upsert_document(&db.pool, &record).await.unwrap();
    assert_eq!((next.generation, next.processing_status), (2, ProcessingStatus::Pending));
    assert!(read_blob(&db.pool, customer_id, &Sha256::digest(b"playbook v1")).await.unwrap().is_none(), "v1 is freed");
    assert_eq!(read_blob(&db.pool, customer_id, &sha2).await.unwrap().as_deref(), Some(&v2[..]));
}

#[tokio::test]
async fn a_failure_of_an_older_generation_queues_the_new_one_instead_of_failing_it() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "edited", 100, 1_000_000).await;
    let (uid, row) = stored_document(&db.pool, customer_id, b"broken v1", &[]).await;
    enqueue(&db.pool, customer_id, row.id, 3).await.unwrap();
    let old = claim(&db.pool, "w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!((old.generation, old.attempts), (1, 1));

    // While the worker holds v1, the user fixes the source: v2 is stored and queued.
    let v2 = b"fixed v2";
    let sha2 = Sha256::digest(v2).to_vec();
    insert_blob(&db.pool, customer_id, &sha2, v2, None).await.unwrap();
    let record = DocumentRecord {
        k8s_uid: uid,
        customer_id,
        document_id: row.document_id.clone(),
        namespace: "cust-test".into(),
        name: "doc".into(),
        filename: "notes.txt".into(),
        source_kind: SourceKind::ConfigMap,
        blob_sha256: Some(sha2),
        tags: vec![],
        generation: 1,
        source_url: None,
    };
    assert_eq!(upsert_document(&db.pool, &record).await.unwrap().generation, 2);
    enqueue(&db.pool, customer_id, row.id, 3).await.unwrap();

    // v1's failure is not v2's: the task is queued again for v2 with its full budget.
    let outcome = queue::fail(&db.pool, &old, "the PDF is corrupt (corrupt): re-export", None).await.unwrap();
    assert_eq!(outcome, FailOutcome::Superseded);
    assert_eq!(status_of(&db.pool, uid).await, ProcessingStatus::Queued);
    let new = claim(&db.pool, "w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!((new.task_id, new.generation, new.attempts), (old.task_id, 2, 1));
    assert!(!queue::heartbeat(&db.pool, &old, LEASE).await.unwrap(), "the old claim is fenced out");
}

#[tokio::test]
async fn the_sweep_takes_only_old_unreferenced_bytes() {
    use prospector_store::documents::sweep_orphan_blobs;
    let db = shared_postgres().migrated_database().await.unwrap();
    let customer_id = customer(&db.pool, "sweep", 100, 1_000_000).await;
    let (_, used) = stored_document(&db.pool, customer_id, b"in use", &[]).await;
    let orphan = Sha256::digest(b"an upload whose document never came").to_vec();
    insert_blob(&db.pool, customer_id, &orphan, b"an upload whose document never came", None).await.unwrap();
    assert_eq!(sweep_orphan_blobs(&db.pool, Duration::from_secs(3600)).await.unwrap(), 0, "within the grace period");
    assert_eq!(sweep_orphan_blobs(&db.pool, Duration::ZERO).await.unwrap(), 1);
    assert!(read_blob(&db.pool, customer_id, &orphan).await.unwrap().is_none());
    assert!(read_blob(&db.pool, customer_id, used.blob_sha256.as_deref().unwrap()).await.unwrap().is_some());
}
