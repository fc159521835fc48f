//! Tenant-filtered search benchmark (not a test): `BENCH_CHUNKS` chunks (1,000,000) over
//! `BENCH_TENANTS` customers (1,000) with Zipf sizes (exponent 1: the largest holds about 13%),
//! written through the store's own queue and commit path into a Postgres 18 + pgvector started
//! for the run. Reports, per tenant size from the largest down to the smallest, p50/p95 latency
//! and recall@10 against brute force, for queries on the tenant's topics and off them:
//!
//! 1. **exact**: `store::search` before any index exists (every customer scanned exactly);
//! 2. **Prospector**: `store::search` after the operator's own index manager
//!    (`tenant_index::reconcile_indexes`, `min_chunks` = `BENCH_MIN_CHUNKS`, default the
//!    operator's) built the large customers' partial HNSW indexes; at several `ef_search`;
//! 3. **peer**: one global HNSW index (m 16, ef_construction 64) with the plain
//!    `WHERE customer_id = $1 ORDER BY embedding <=> $2 LIMIT 10`, at pgvector's defaults and
//!    with 0.8's iterative scans.
//!
//! Vectors: real embeddings are too slow to make a million of here, so each chunk is a mixture
//! of three real chunk embeddings ("atoms": all-MiniLM-L6-v2 on the chunks of the fixture PDFs)
//! plus small noise; each tenant draws from its own subset of atoms (more for larger tenants).
//! An on-topic query is a fresh mixture of the tenant's atoms, an off-topic one of atoms the
//! tenant does not have.
//!
//! Customers' documents are written interleaved (as uploads arrive), the measured tenants include
//! the two on either side of the index threshold, `ef_search` is swept on one set of queries and
//! the shipped setting and the peers are reported on another, after a warm-up on a third.
//!
//! `cargo bench -p prospector-operator --bench tenant_search` (about 25 minutes on 2 cores;
//! `BENCH_PEER=0` skips the peer).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::embed::Embedder;
use prospector_operator::tenant_index::{TenantIndexSettings, reconcile_indexes};
use prospector_store::chunks::NewChunk;
use prospector_store::customers::{CustomerRecord, upsert_customer};
use prospector_store::search::{SearchMode, SearchPath, SearchRequest, SearchTuning, search_path, search_tuned};
use prospector_tests::postgres::PostgresServer;
use prospector_tests::synthetic;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sqlx::PgPool;
use uuid::Uuid;

/// Chunks per document, as a large upload would have.
const CHUNKS_PER_DOCUMENT: usize = 2_000;
/// Mixed atoms per vector, and the noise added to the normalised mixture (its norm).
const ATOMS_PER_VECTOR: usize = 3;
const NOISE: f32 = 0.2;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A unit vector near a mixture of atoms drawn from `pool`.
fn mixture(rng: &mut StdRng, atoms: &[Vec<f32>], pool: &[usize]) -> Vec<f32> {
    synthetic::mixture(rng, atoms, pool, ATOMS_PER_VECTOR, NOISE)
}

/// The atoms: embeddings of the real chunks of the fixture PDFs (prose only, deduplicated).
fn atoms(embedder: &Embedder, limit: usize) -> Vec<Vec<f32>> {
    let chunker = Chunker::new(embedder.tokenizer(), ChunkConfig::default());
    let mut texts = common::fixture_prose(&chunker);
    texts.truncate(limit);
    eprintln!("atoms: {} prose chunks of the fixture PDFs", texts.len());
    let started = Instant::now();
    // `embed` batches by its own token budget.
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let atoms = embedder.embed(&refs).expect("embed atoms");
    eprintln!("atoms embedded in {:.1} s", started.elapsed().as_secs_f64());
    atoms
}

/// Zipf sizes (exponent 1) summing to `total`, largest first.
fn zipf_sizes(total: usize, tenants: usize) -> Vec<usize> {
    let harmonic: f64 = (1..=tenants).map(|r| 1.0 / r as f64).sum();
    let mut sizes: Vec<usize> =
        (1..=tenants).map(|r| ((total as f64 / (harmonic * r as f64)).round() as usize).max(1)).collect();
    let sum: usize = sizes.iter().sum();
    sizes[0] = (sizes[0] + total).saturating_sub(sum).max(1);
    sizes
}

struct Tenant {
    rank: usize,
    customer_id: i64,
    size: usize,
    /// The atoms this tenant's chunks mix.
    topics: Vec<usize>,
    /// The public document ids, in order: chunk `i` is document `i / CHUNKS_PER_DOCUMENT`.
    documents: Vec<String>,
    /// Internal document row ids, in the same order.
    document_rows: Vec<i64>,
    /// Its vectors, kept only for the tenants measured.
    vectors: Option<Vec<Vec<f32>>>,
}

impl Tenant {
    fn position(&self, document_id: &str, chunk_index: i32) -> usize {
        let d = self.documents.iter().position(|x| x == document_id).expect("a document of this tenant");
        d * CHUNKS_PER_DOCUMENT + chunk_index as usize
    }

    fn position_by_row(&self, row: i64, chunk_index: i32) -> usize {
        let d = self.document_rows.iter().position(|x| *x == row).expect("a document of this tenant");
        d * CHUNKS_PER_DOCUMENT + chunk_index as usize
    }
}

/// A customer, its topics and (for measured tenants) room for its vectors; no documents yet.
async fn create_tenant(pool: &PgPool, rng: &mut StdRng, atoms: usize, rank: usize, size: usize, keep: bool) -> Tenant {
    let customer_id = upsert_customer(
        pool,
        &CustomerRecord {
            k8s_uid: Uuid::new_v4(),
            name: format!("tenant-{rank}"),
            company_name: format!("Tenant {rank}"),
            email: format!("tenant-{rank}@example.com"),
            subscription_tier: "enterprise".into(),
            ..Default::default()
        },
    )
    .await
    .expect("customer");
    let mut all: Vec<usize> = (0..atoms).collect();
    all.shuffle(rng);
    let topics: Vec<usize> = all[..(size / 500).clamp(6, 250).min(atoms / 2)].to_vec();
    let documents = size.div_ceil(CHUNKS_PER_DOCUMENT);
    Tenant {
        rank,
        customer_id,
        size,
        topics,
        documents: vec![String::new(); documents],
        document_rows: vec![0; documents],
        vectors: keep.then(|| vec![Vec::new(); size]),
    }
}

/// Writes document `d` of `tenant` through the queue's commit, as a worker would. Its vectors
/// come from a generator seeded by (seed, tenant, document), so the order documents are written
/// in does not change them.
async fn load_document(pool: &PgPool, seed: u64, atoms: &[Vec<f32>], tenant: &mut Tenant, d: usize) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((tenant.rank as u64) << 32) ^ d as u64);
    let (rank, customer_id) = (tenant.rank, tenant.customer_id);
    let start = d * CHUNKS_PER_DOCUMENT;
    let count = CHUNKS_PER_DOCUMENT.min(tenant.size - start);
    let chunks: Vec<NewChunk> = (0..count)
        .map(|i| {
            let embedding = mixture(&mut rng, atoms, &tenant.topics);
            if let Some(kept) = tenant.vectors.as_mut() {
                kept[start + i] = embedding.clone();
            }
            NewChunk {
                chunk_index: i as i32,
                content: format!("tenant {rank} document {d} chunk {i}"),
                token_count: 8,
                embedding,
            }
        })
        .collect();
    let stored =
        synthetic::commit_document(pool, customer_id, &format!("cust-tenant-{rank}"), &format!("document-{d}"), chunks)
            .await;
    tenant.documents[d] = stored.document_id;
    tenant.document_rows[d] = stored.row_id;
}

fn exact_top10(vectors: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(usize, f32)> =
        vectors.iter().enumerate().map(|(i, v)| (i, v.iter().zip(query).map(|(a, b)| a * b).sum())).collect();
    let nth = 9.min(scored.len() - 1);
    scored.select_nth_unstable_by(nth, |a, b| b.1.total_cmp(&a.1));
    scored.truncate(10);
    scored.into_iter().map(|(i, _)| i).collect()
}

#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    found: usize,
    wanted: usize,
}

impl Measured {
    fn add(&mut self, latency: Duration, got: &[usize], truth: &[usize]) {
        self.latencies.push(latency);
        self.found += truth.iter().filter(|t| got.contains(t)).count();
        self.wanted += truth.len();
    }

    fn row(&mut self) -> String {
        self.latencies.sort();
        let p = |q: f64| self.latencies[((self.latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        format!("{:>6.2} {:>7.2} {:>6.3}", p(0.5), p(0.95), self.found as f64 / self.wanted.max(1) as f64)
    }
}

struct Queries {
    on_topic: Vec<Vec<f32>>,
    off_topic: Vec<Vec<f32>>,
}

fn queries(rng: &mut StdRng, atoms: &[Vec<f32>], tenant: &Tenant, n: usize) -> Queries {
    let others: Vec<usize> = (0..atoms.len()).filter(|a| !tenant.topics.contains(a)).collect();
    Queries {
        on_topic: (0..n).map(|_| mixture(rng, atoms, &tenant.topics)).collect(),
        off_topic: (0..n).map(|_| mixture(rng, atoms, &others)).collect(),
    }
}

/// `store::search` (vector mode, top 10) over a tenant's queries: (on-topic, off-topic).
async fn measure_store(pool: &PgPool, tenant: &Tenant, queries: &Queries, tuning: SearchTuning) -> [Measured; 2] {
    let vectors = tenant.vectors.as_ref().expect("a measured tenant");
    let mut out = [Measured::default(), Measured::default()];
    for (kind, set) in [&queries.on_topic, &queries.off_topic].into_iter().enumerate() {
        for query in set {
            let request = SearchRequest {
                top_k: 10,
                mode: SearchMode::Vector,
                ..SearchRequest::new(tenant.customer_id, query, "")
            };
            let started = Instant::now();
            let hits = search_tuned(pool, &request, tuning).await.expect("search");
            let latency = started.elapsed();
            let got: Vec<usize> = hits.iter().map(|h| tenant.position(&h.document_id, h.chunk_index)).collect();
            out[kind].add(latency, &got, &exact_top10(vectors, query));
        }
    }
    out
}

/// The peer's statement over the global index, with its session settings.
async fn measure_peer(pool: &PgPool, tenant: &Tenant, queries: &Queries, settings: &str) -> [Measured; 2] {
    let vectors = tenant.vectors.as_ref().expect("a measured tenant");
    let mut out = [Measured::default(), Measured::default()];
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::raw_sql(settings).execute(&mut *conn).await.expect("peer settings");
    for (kind, set) in [&queries.on_topic, &queries.off_topic].into_iter().enumerate() {
        for query in set {
            let started = Instant::now();
            let rows: Vec<(i64, i32)> = sqlx::query_as(
                "SELECT document_id, chunk_index FROM document_chunks WHERE customer_id = $1
                  ORDER BY embedding <=> $2 LIMIT 10",
            )
            .bind(tenant.customer_id)
            .bind(pgvector::Vector::from(query.clone()))
            // Planned for its values each time, as store::search is.
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .expect("peer query");
            let latency = started.elapsed();
            let got: Vec<usize> = rows.iter().map(|(d, i)| tenant.position_by_row(*d, *i)).collect();
            out[kind].add(latency, &got, &exact_top10(vectors, query));
        }
    }
    sqlx::raw_sql("RESET ALL").execute(&mut *conn).await.expect("reset");
    out
}

fn header(title: &str) {
    println!("\n{title}");
    println!(
        "{:>5} {:>7} {:>8} {:>8} | {:>6} {:>7} {:>6} | {:>6} {:>7} {:>6}",
        "rank", "chunks", "select%", "path", "p50ms", "p95ms", "recall", "p50ms", "p95ms", "recall"
    );
    println!("{:>32} | {:^22} | {:^22}", "", "on-topic", "off-topic");
}

fn line(tenant: &Tenant, total: usize, path: &str, m: &mut [Measured; 2]) {
    println!(
        "{:>5} {:>7} {:>8.3} {:>8} | {} | {}",
        tenant.rank,
        tenant.size,
        100.0 * tenant.size as f64 / total as f64,
        path,
        m[0].row(),
        m[1].row()
    );
}

async fn run() {
    let total: usize = env("BENCH_CHUNKS", 1_000_000);
    let tenants_n: usize = env("BENCH_TENANTS", 1_000);
    let per_kind: usize = env("BENCH_QUERIES", 100);
    let seed: u64 = env("BENCH_SEED", 42);
    let with_peer: u32 = env("BENCH_PEER", 1);
    let min_chunks: i64 = env("BENCH_MIN_CHUNKS", TenantIndexSettings::default().min_chunks);
    let mut rng = StdRng::seed_from_u64(seed);
    println!(
        "tenant search: {total} chunks, {tenants_n} tenants (Zipf 1), {per_kind}+{per_kind} queries per tenant, seed {seed}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let embedder = Embedder::load(&prospector_embedder::paths::installed_config().expect("model installed"))
        .expect("load the model");
    let atoms = atoms(&embedder, 3_000);
    drop(embedder);

    let dir = std::env::temp_dir().join(format!("prospector-bench-search-{}", std::process::id()));
    let server = PostgresServer::start_local_with(
        &dir,
        &[
            "shared_buffers=6GB",
            "maintenance_work_mem=2GB",
            "max_parallel_maintenance_workers=1",
            "effective_cache_size=16GB",
            "work_mem=64MB",
            "max_wal_size=16GB",
            "checkpoint_timeout=30min",
        ],
    )
    .expect("start Postgres");
    let db = server.migrated_database().await.expect("database");
    let pool = db.pool.clone();

    let sizes = zipf_sizes(total, tenants_n);
    // Measured tenants: from the largest down to the smallest, at about halving selectivities,
    // and the two on either side of the index threshold.
    let around_threshold: Vec<usize> =
        (1..sizes.len()).find(|&i| (sizes[i] as i64) < min_chunks).map_or(vec![], |i| vec![i, i + 1]);
    let mut measured_ranks: Vec<usize> = [1, 2, 3, 4, 6, 10, 20, 40, 130, 400, tenants_n]
        .into_iter()
        .chain(around_threshold)
        .filter(|r| *r <= tenants_n)
        .collect();
    measured_ranks.sort_unstable();
    measured_ranks.dedup();
    let mut all_tenants = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let rank = i + 1;
        all_tenants
            .push(create_tenant(&pool, &mut rng, atoms.len(), rank, *size, measured_ranks.contains(&rank)).await);
    }
    // Documents of all tenants interleaved, as customers upload at the same time: a tenant's
    // rows are spread over the table, not packed together for its scans.
    let mut order: Vec<(usize, usize)> = all_tenants
        .iter()
        .enumerate()
        .flat_map(|(t, tenant)| (0..tenant.documents.len()).map(move |d| (t, d)))
        .collect();
    order.shuffle(&mut rng);
    let started = Instant::now();
    for (n, (t, d)) in order.iter().enumerate() {
        load_document(&pool, seed, &atoms, &mut all_tenants[*t], *d).await;
        if (n + 1) % 100 == 0 {
            eprintln!("loaded {} of {} documents in {:.0} s", n + 1, order.len(), started.elapsed().as_secs_f64());
        }
    }
    let tenants: Vec<Tenant> = all_tenants.into_iter().filter(|t| t.vectors.is_some()).collect();
    let load_seconds = started.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE document_chunks").execute(&pool).await.expect("analyze");
    println!(
        "load: {total} chunks in {} documents, tenants interleaved, through the queue's commit in {load_seconds:.0} s ({:.0} chunks/s)",
        order.len(),
        total as f64 / load_seconds
    );
    // Separate queries choose ef_search (the sweep) and report the chosen setting and the peers.
    let tuning_sets: Vec<Queries> = tenants.iter().map(|t| queries(&mut rng, &atoms, t, per_kind)).collect();
    let query_sets: Vec<Queries> = tenants.iter().map(|t| queries(&mut rng, &atoms, t, per_kind)).collect();
    let warm_sets: Vec<Queries> = tenants.iter().map(|t| queries(&mut rng, &atoms, t, 10)).collect();

    // 1. Every tenant scanned exactly.
    header("exact scan (no index)");
    for ((tenant, queries), warm) in tenants.iter().zip(&query_sets).zip(&warm_sets) {
        assert_eq!(search_path(&pool, tenant.customer_id).await.unwrap(), SearchPath::Exact);
        let _ = measure_store(&pool, tenant, warm, SearchTuning::default()).await;
        let mut m = measure_store(&pool, tenant, queries, SearchTuning::default()).await;
        line(tenant, total, "exact", &mut m);
    }

    // 2. The operator's index manager, then store::search as the API runs it.
    let settings = TenantIndexSettings { min_chunks, build_memory_mib: 2048, ..TenantIndexSettings::default() };
    let started = Instant::now();
    let mut built = 0;
    loop {
        let round = reconcile_indexes(&pool, &settings, &HashSet::new()).await.expect("tenant indexes");
        assert!(round.failed_build.is_none(), "{:?}", round.failed_build);
        if round.plan.build.is_empty() {
            break;
        }
        built += 1;
    }
    let build_seconds = started.elapsed().as_secs_f64();
    println!("\ntenant indexes: {built} built (customers with ≥ {min_chunks} chunks) in {build_seconds:.1} s in all");
    let default_ef = prospector_store::search::DEFAULT_EF_SEARCH;
    for ef_search in [100, 200, 400, 1000] {
        header(&format!("ef_search sweep on the tuning queries: ef_search {ef_search}"));
        for ((tenant, queries), warm) in tenants.iter().zip(&tuning_sets).zip(&warm_sets) {
            if search_path(&pool, tenant.customer_id).await.unwrap() == SearchPath::Exact {
                continue;
            }
            let tuning = SearchTuning { ef_search };
            let _ = measure_store(&pool, tenant, warm, tuning).await;
            let mut m = measure_store(&pool, tenant, queries, tuning).await;
            line(tenant, total, "indexed", &mut m);
        }
    }
    header(&format!("Prospector: store::search as shipped (ef_search {default_ef}), on the report queries"));
    for ((tenant, queries), warm) in tenants.iter().zip(&query_sets).zip(&warm_sets) {
        let path = search_path(&pool, tenant.customer_id).await.unwrap();
        let _ = measure_store(&pool, tenant, warm, SearchTuning::default()).await;
        let mut m = measure_store(&pool, tenant, queries, SearchTuning::default()).await;
        line(tenant, total, if path == SearchPath::Exact { "exact" } else { "indexed" }, &mut m);
    }

    if with_peer == 0 {
        return;
    }
    // 3. The peer: the tenant indexes go, one global index comes.
    let off = TenantIndexSettings { min_chunks: 0, ..settings.clone() };
    let dropped = reconcile_indexes(&pool, &off, &HashSet::new()).await.unwrap();
    assert!(!dropped.plan.drop.is_empty() || built == 0);
    let started = Instant::now();
    sqlx::raw_sql(
        "SET maintenance_work_mem = '6GB';
         CREATE INDEX global_hnsw ON document_chunks USING hnsw (embedding vector_cosine_ops)
           WITH (m = 16, ef_construction = 64)",
    )
    .execute(&pool)
    .await
    .expect("global index");
    println!("\nglobal HNSW index over {total} chunks built in {:.0} s", started.elapsed().as_secs_f64());
    sqlx::query("ANALYZE document_chunks").execute(&pool).await.expect("analyze");
    // The planner decides per query whether the global index or the customer_id btree (an exact
    // scan) serves it; `enable_sort = off` makes it take the index, as the strategy under test.
    let taken = "SET enable_sort = off; SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 400";
    for (title, settings) in [
        ("peer: global HNSW, the planner's choice, pgvector defaults (ef_search 40)", "SELECT 1".to_owned()),
        ("peer: global HNSW taken (enable_sort off), pgvector defaults (ef_search 40)", "SET enable_sort = off".into()),
        ("peer: global HNSW taken, iterative scan relaxed_order, ef_search 400", taken.into()),
        (
            "peer: global HNSW taken, iterative scan relaxed_order, ef_search 400, max_scan_tuples 1,000,000",
            format!("{taken}; SET hnsw.max_scan_tuples = 1000000"),
        ),
    ] {
        header(title);
        let unbounded = settings.contains("max_scan_tuples");
        for ((tenant, queries), warm) in tenants.iter().zip(&query_sets).zip(&warm_sets) {
            // Unbounded, an off-topic query on a small tenant walks most of the graph (seconds
            // each, measured down to rank 40): the smaller tenants would take most of an hour.
            if unbounded && tenant.size < total / 400 {
                continue;
            }
            let _ = measure_peer(&pool, tenant, warm, &settings).await;
            let mut m = measure_peer(&pool, tenant, queries, &settings).await;
            line(tenant, total, "global", &mut m);
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}
