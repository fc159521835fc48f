//! Synthetic knowledge for the search benchmarks: unit vectors near mixtures of real chunk
//! embeddings (too slow to make a million of for real on two cores), and the store's own queue
//! path that writes a document's chunks as a worker would.

use std::time::Duration;

use prospector_store::chunks::NewChunk;
use prospector_store::documents::{DocumentRecord, SourceKind, insert_blob, upsert_document};
use prospector_store::queue::{ClaimedTask, CommitOutcome, DocumentIcp, ProcessedDocument, claim, commit, enqueue};
use rand::Rng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The model's dimension.
pub const DIM: usize = 384;

/// Scales `v` to unit length.
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random_range(0.0..1.0));
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// A unit vector near a weighted sum of `count` atoms drawn from `pool` (weights 0.2–1), plus
/// Gaussian noise of norm about `noise`.
pub fn mixture(rng: &mut StdRng, atoms: &[Vec<f32>], pool: &[usize], count: usize, noise: f32) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for _ in 0..count {
        let atom = &atoms[pool[rng.random_range(0..pool.len())]];
        let w: f32 = rng.random_range(0.2..1.0);
        v.iter_mut().zip(atom).for_each(|(x, a)| *x += w * a);
    }
    normalise(&mut v);
    let sigma = noise / (DIM as f32).sqrt();
    v.iter_mut().for_each(|x| *x += sigma * gaussian(rng));
    normalise(&mut v);
    v
}

/// A stored document: its public id and its row.
#[derive(Debug)]
pub struct StoredDocument {
    pub document_id: String,
    pub row_id: i64,
}

/// Writes one document of `customer_id` with these chunks the way a worker does: its blob and
/// row, an embedding task, the claim, and the commit that stores the chunks and marks it
/// processed. For one writer at a time: another's claim could take this task.
pub async fn commit_document(
    pool: &PgPool,
    customer_id: i64,
    namespace: &str,
    name: &str,
    chunks: Vec<NewChunk>,
) -> StoredDocument {
    let stored = queue_document(pool, customer_id, namespace, name).await;
    let task = claim(pool, "bench", 1, Duration::from_secs(600)).await.expect("claim").remove(0);
    commit_chunks(pool, &task, chunks).await;
    stored
}

/// What the operator does for a new document: its blob and row, and an embedding task.
pub async fn queue_document(pool: &PgPool, customer_id: i64, namespace: &str, name: &str) -> StoredDocument {
    let bytes = format!("{namespace}/{name}").into_bytes();
    let sha = Sha256::digest(&bytes).to_vec();
    insert_blob(pool, customer_id, &sha, &bytes, Some("text/plain")).await.expect("blob");
    let row = upsert_document(
        pool,
        &DocumentRecord {
            k8s_uid: Uuid::new_v4(),
            customer_id,
            document_id: format!("doc_{}", &Uuid::new_v4().simple().to_string()[..16]),
            namespace: namespace.into(),
            name: name.into(),
            filename: format!("{name}.txt"),
            source_kind: SourceKind::Blob,
            blob_sha256: Some(sha),
            tags: vec![],
            generation: 1,
            source_url: None,
        },
    )
    .await
    .expect("document");
    enqueue(pool, customer_id, row.id, 3).await.expect("enqueue");
    StoredDocument { document_id: row.document_id, row_id: row.id }
}

/// What a worker does with a claimed task: one commit that stores the chunks and marks the
/// document processed.
pub async fn commit_chunks(pool: &PgPool, task: &ClaimedTask, chunks: Vec<NewChunk>) {
    let result = ProcessedDocument {
        fetched: None,
        text: String::new(),
        chunks,
        embedding_model: "all-MiniLM-L6-v2".into(),
        icp: DocumentIcp::default(),
    };
    assert_eq!(commit(pool, task, &result).await.expect("commit"), CommitOutcome::Committed);
}
