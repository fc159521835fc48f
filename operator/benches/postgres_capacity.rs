//! What one Postgres does for Prospector's workload, for `docs/scaling.md`: how many chunks a
//! second the embedding workers' commit writes, and how many searches a second `store::search`
//! answers, at 1, 2 and 4 concurrent clients (a write is a worker's claim and commit; latency is
//! the commit's), and what each costs Postgres in CPU time. The CPU
//! figure is the one that extrapolates to a bigger database server: Postgres and this process
//! share this machine's cores, so throughput here is bounded by both, while the CPU Postgres's
//! own processes spent per operation (from /proc) is Postgres's alone.
//!
//! ```sh
//! cargo bench -p prospector-operator --bench postgres_capacity   # BENCH_CUSTOMERS, BENCH_CHUNKS_PER_CUSTOMER, BENCH_BIG_CUSTOMER_CHUNKS, BENCH_SECONDS
//! ```
//!
//! The corpus: customers of `BENCH_CHUNKS_PER_CUSTOMER` chunks (below the per-customer index
//! threshold: searched exactly, as most customers are) and one large customer with an HNSW
//! index of its own. Chunk texts are the fixture PDFs' prose, vectors mixtures of its real
//! embeddings. Queries are fresh mixtures, for random customers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::embed::Embedder;
use prospector_store::chunks::NewChunk;
use prospector_store::customers::{CustomerRecord, upsert_customer};
use prospector_store::queue::claim;
use prospector_store::search::{SearchMode, SearchRequest, search};
use prospector_tests::postgres::PostgresServer;
use prospector_tests::synthetic::{self, mixture};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

const CHUNKS_PER_DOCUMENT: usize = 50;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Clock ticks per second, the unit of /proc's CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK is a number")
    })
}

/// Fields 3 on of /proc/<pid>/stat (after the command, which may hold spaces); `None` once the
/// process is gone.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect())
}

/// CPU seconds (user + system) that `pid` has spent so far.
fn cpu_seconds_of(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f[10] + f[11]) as f64 / clock_ticks())
}

/// CPU seconds the whole Postgres server has spent so far: the postmaster, its live children,
/// and (from the postmaster's cutime/cstime) every child it has reaped, so that an autovacuum
/// or parallel worker that starts and exits between two readings is counted too.
fn postgres_cpu_seconds(postmaster: u32) -> f64 {
    let fields = stat_fields(postmaster).expect("the postmaster runs");
    let own_and_reaped = (fields[10] + fields[11] + fields[12] + fields[13]) as f64 / clock_ticks();
    let mut live_children = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if stat_fields(pid).is_some_and(|f| f.first() == Some(&u64::from(postmaster))) {
            live_children += cpu_seconds_of(pid);
        }
    }
    own_and_reaped + live_children
}

fn own_cpu_seconds() -> f64 {
    cpu_seconds_of(std::process::id())
}

struct Corpus {
    texts: Vec<String>,
    atoms: Vec<Vec<f32>>,
}

fn corpus() -> Corpus {
    let config = prospector_embedder::paths::installed_config().expect("model installed");
    let embedder = Embedder::load(&config).expect("load the model");
    let chunker = Chunker::new(embedder.tokenizer(), ChunkConfig::default());
    let texts = common::fixture_prose(&chunker);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let atoms = embedder.embed(&refs).expect("embed the fixtures' prose");
    Corpus { texts, atoms }
}

async fn customer(pool: &PgPool, name: &str) -> i64 {
    let record = CustomerRecord {
        k8s_uid: Uuid::new_v4(),
        name: name.into(),
        company_name: name.into(),
        email: format!("{name}@example.com"),
        subscription_tier: "enterprise".into(),
        ..Default::default()
    };
    upsert_customer(pool, &record).await.expect("customer")
}

fn document_chunks(corpus: &Corpus, rng: &mut StdRng) -> Vec<NewChunk> {
    let all: Vec<usize> = (0..corpus.atoms.len()).collect();
    (0..CHUNKS_PER_DOCUMENT)
        .map(|i| NewChunk {
            chunk_index: i as i32,
            content: corpus.texts[rng.random_range(0..corpus.texts.len())].clone(),
            token_count: 200,
            embedding: mixture(rng, &corpus.atoms, &all, 3, 0.2),
        })
        .collect()
}

/// Measured: operations, wall seconds, Postgres CPU seconds, this process's CPU seconds.
struct Measured {
    operations: usize,
    seconds: f64,
    postgres_cpu: f64,
    client_cpu: f64,
    latencies_ms: Vec<f64>,
}

impl Measured {
    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        self.latencies_ms.sort_by(f64::total_cmp);
        self.latencies_ms[((self.latencies_ms.len() - 1) as f64 * p).round() as usize]
    }
}

/// Queues `documents` documents over `customers` (as the operator does; not measured), then
/// `writers` workers claim them and commit 50 chunks each until the queue is empty (measured).
async fn write(
    pool: &PgPool,
    postmaster: u32,
    corpus: &Arc<Corpus>,
    customers: &[i64],
    documents: usize,
    writers: usize,
) -> Measured {
    static QUEUED: AtomicUsize = AtomicUsize::new(0);
    for d in 0..documents {
        let customer_id = customers[d % customers.len()];
        let n = QUEUED.fetch_add(1, Ordering::Relaxed);
        synthetic::queue_document(pool, customer_id, &format!("cust-{customer_id}"), &format!("doc-{n}")).await;
    }
    let (pg_before, own_before, started) = (postgres_cpu_seconds(postmaster), own_cpu_seconds(), Instant::now());
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (pool, corpus) = (pool.clone(), corpus.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64);
                let mut latencies = Vec::new();
                loop {
                    let claimed =
                        claim(&pool, &format!("bench-{w}"), 1, Duration::from_secs(600)).await.expect("claim");
                    let Some(task) = claimed.into_iter().next() else { return latencies };
                    let chunks = document_chunks(&corpus, &mut rng);
                    let t = Instant::now();
                    synthetic::commit_chunks(&pool, &task, chunks).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for task in tasks {
        latencies_ms.extend(task.await.expect("writer"));
    }
    assert_eq!(latencies_ms.len(), documents, "every queued document was committed once");
    Measured {
        operations: documents * CHUNKS_PER_DOCUMENT,
        seconds: started.elapsed().as_secs_f64(),
        postgres_cpu: postgres_cpu_seconds(postmaster) - pg_before,
        client_cpu: own_cpu_seconds() - own_before,
        latencies_ms,
    }
}

/// Searches random customers of `customers` for `seconds` with `clients` concurrent clients.
async fn read(
    pool: &PgPool,
    postmaster: u32,
    corpus: &Arc<Corpus>,
    customers: &[i64],
    mode: SearchMode,
    clients: usize,
    seconds: f64,
) -> Measured {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (pg_before, own_before, started) = (postgres_cpu_seconds(postmaster), own_cpu_seconds(), Instant::now());
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (pool, corpus, customers) = (pool.clone(), corpus.clone(), customers.to_vec());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(1000 + c as u64);
                let all: Vec<usize> = (0..corpus.atoms.len()).collect();
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let query = mixture(&mut rng, &corpus.atoms, &all, 2, 0.1);
                    let words = &corpus.texts[rng.random_range(0..corpus.texts.len())];
                    let text: String = words.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
                    let customer_id = customers[rng.random_range(0..customers.len())];
                    let request = SearchRequest { mode, ..SearchRequest::new(customer_id, &query, &text) };
                    let t = Instant::now();
                    let hits = search(&pool, &request).await.expect("search");
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    assert!(!hits.is_empty(), "a customer with chunks finds some");
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for task in tasks {
        latencies_ms.extend(task.await.expect("client"));
    }
    Measured {
        operations: latencies_ms.len(),
        seconds: started.elapsed().as_secs_f64(),
        postgres_cpu: postgres_cpu_seconds(postmaster) - pg_before,
        client_cpu: own_cpu_seconds() - own_before,
        latencies_ms,
    }
}

fn report(what: &str, concurrency: usize, unit: &str, per: (f64, &str), m: &mut Measured) {
    let rate = m.operations as f64 / m.seconds;
    let (p50, p95) = (m.percentile(0.5), m.percentile(0.95));
    println!(
        "{what:<34} {concurrency:>2} | {rate:>9.0} {unit}/s | Postgres {:>6.3} CPU-ms per {} ({:>8.0} {unit}/s per core) | client {:>4.2} cores | p50 {p50:>6.2} ms p95 {p95:>6.2} ms",
        m.postgres_cpu * 1000.0 * per.0 / m.operations as f64,
        per.1,
        m.operations as f64 / m.postgres_cpu.max(1e-9),
        m.client_cpu / m.seconds,
    );
}

async fn run() {
    let customers_n: usize = env("BENCH_CUSTOMERS", 100);
    let per_customer: usize = env("BENCH_CHUNKS_PER_CUSTOMER", 1_000);
    let big: usize = env("BENCH_BIG_CUSTOMER_CHUNKS", 20_000);
    let seconds: f64 = env("BENCH_SECONDS", 8.0);
    println!(
        "postgres capacity: {customers_n} customers x {per_customer} chunks + one of {big} with its own index, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let corpus = Arc::new(corpus());
    let dir = std::env::temp_dir().join(format!("prospector-bench-capacity-{}", std::process::id()));
    let server =
        PostgresServer::start_local_with(&dir, &["shared_buffers=2GB", "max_wal_size=8GB"]).expect("start Postgres");
    let db = server.migrated_database().await.expect("database");
    let pool = db.pool.clone();
    let data_directory: String = sqlx::query_scalar("SHOW data_directory").fetch_one(&pool).await.unwrap();
    let postmaster: u32 = std::fs::read_to_string(format!("{data_directory}/postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the postmaster's pid");

    let mut customers = Vec::new();
    for c in 0..customers_n {
        customers.push(customer(&pool, &format!("capacity-{c}")).await);
    }
    // Writes: the corpus in three parts, each at one concurrency.
    let documents = customers_n * per_customer / CHUNKS_PER_DOCUMENT;
    let writes = [1usize, 2, 4];
    for (i, writers) in writes.iter().enumerate() {
        let part = documents / writes.len() + usize::from(i < documents % writes.len());
        let wal_before: String =
            sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&pool).await.unwrap();
        let mut m = write(&pool, postmaster, &corpus, &customers, part, *writers).await;
        report("chunks written (queue commit)", *writers, "chunks", (1000.0, "1000 chunks"), &mut m);
        let wal: f64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
            .bind(&wal_before)
            .fetch_one(&pool)
            .await
            .unwrap();
        println!("  WAL written: {:.2} MB per 1000 chunks", wal / 1e6 * 1000.0 / m.operations as f64);
    }
    let (bytes, chunks): (i64, i64) =
        sqlx::query_as("SELECT pg_total_relation_size('document_chunks'), (SELECT count(*) FROM document_chunks)")
            .fetch_one(&pool)
            .await
            .unwrap();
    println!(
        "document_chunks with its indexes: {:.2} MB per 1000 chunks ({chunks} chunks, {:.0} MB)",
        bytes as f64 / 1e6 * 1000.0 / chunks as f64,
        bytes as f64 / 1e6
    );
    let large = customer(&pool, "capacity-large").await;
    write(&pool, postmaster, &corpus, &[large], big / CHUNKS_PER_DOCUMENT, 2).await;
    let started = Instant::now();
    prospector_store::tenant_index::build_index(&pool, large, 1024).await.expect("build the large customer's index");
    println!("the large customer's HNSW index: {big} chunks in {:.1} s", started.elapsed().as_secs_f64());
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();

    for (label, set, mode) in [
        ("search, vector, exact (1k chunks)", customers.clone(), SearchMode::Vector),
        ("search, hybrid, exact (1k chunks)", customers.clone(), SearchMode::Hybrid),
        ("search, vector, indexed (large)", vec![large], SearchMode::Vector),
        ("search, hybrid, indexed (large)", vec![large], SearchMode::Hybrid),
    ] {
        // A warm-up round that is not reported.
        read(&pool, postmaster, &corpus, &set, mode, 2, 1.0).await;
        for clients in [1usize, 2, 4] {
            let mut m = read(&pool, postmaster, &corpus, &set, mode, clients, seconds).await;
            report(label, clients, "queries", (1.0, "query"), &mut m);
        }
    }
    // The data directory holds over a gigabyte: stop the server, then remove it.
    drop((pool, db, server));
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap().block_on(run());
}
