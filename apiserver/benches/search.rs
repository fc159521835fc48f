//! REST search benchmark (not a test): `POST /api/knowledge/search` of the `prospector-apiserver`
//! binary (key, limits, the query embedded in-process by ONNX Runtime, `store::search` on the
//! customer's partial HNSW index, JSON) against the seed's approach, `hack/bench/search_peer.py`
//! (FastAPI on uvicorn, sentence-transformers on PyTorch, one pgvector query through psycopg over
//! a table of every customer's chunks with one HNSW index), both on this machine against the same
//! Postgres and the same `BENCH_CHUNKS` (100,000) chunks of one customer, loaded by oha in the
//! same run:
//!
//! 1. the most each answers: oha with `BENCH_CONNECTIONS` (16) connections for `BENCH_SECONDS`
//!    (15), after a warm-up;
//! 2. latency at one fixed rate for all, 70% of the slowest server's most.
//!
//! Prospector runs in vector mode (what the peer does) and in hybrid mode (its default: vector and
//! full-text rankings fused). The peer runs as the seed started it (one uvicorn process, PyTorch
//! on both cores) and with one process per core (one thread each).
//!
//! The chunks: the prose chunks of the fixture PDFs are embedded for real; each of the
//! 100,000 chunks carries one of those texts and a vector near its embedding (a mixture with
//! another chunk's, plus noise), written through the store's queue and commit path in documents
//! of 2,000 chunks. The customer's index is built by the operator's own index manager.
//!
//! `cargo bench -p prospector-apiserver --bench search` (about 10 minutes on 2 cores;
//! `BENCH_PYTHON=0` skips the peer).

#[path = "../../operator/benches/common/mod.rs"]
mod common;
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::embed::Embedder;
use prospector_operator::tenant_index::{TenantIndexSettings, reconcile_indexes};
use prospector_store::chunks::NewChunk;
use prospector_store::search::{SearchPath, search_path};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::synthetic::{commit_document, mixture};
use prospector_tests::{process_dir, random_suffix, shared_postgres};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{Load, Server, Target, env, first_answer, oha};

/// Chunks per document, as a large upload would have.
const CHUNKS_PER_DOCUMENT: usize = 2_000;
/// Results per search.
const TOP_K: usize = 5;
/// The query every request sends (the fixtures are research papers).
const QUERY: &str = "how does attention let a model relate words that are far apart in a sentence";

/// Embeds the fixtures' prose: `(texts, vectors)`.
fn corpus() -> (Vec<String>, Vec<Vec<f32>>) {
    let config = prospector_embedder::paths::installed_config().expect("model installed");
    let embedder = Embedder::load(&config).expect("load the model");
    let chunker = Chunker::new(embedder.tokenizer(), ChunkConfig::default());
    let texts = common::fixture_prose(&chunker);
    let started = Instant::now();
    // `embed` batches by its own token budget.
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs).expect("embed the fixtures' prose");
    eprintln!("{} prose chunks of the fixture PDFs embedded in {:.1} s", texts.len(), started.elapsed().as_secs_f64());
    (texts, vectors)
}

/// Writes `total` chunks of `customer_id`, in documents of [`CHUNKS_PER_DOCUMENT`].
async fn load(pool: &sqlx::PgPool, customer_id: i64, total: usize, texts: &[String], vectors: &[Vec<f32>]) {
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    for (d, start) in (0..total).step_by(CHUNKS_PER_DOCUMENT).enumerate() {
        let chunks: Vec<NewChunk> = (0..CHUNKS_PER_DOCUMENT.min(total - start))
            .map(|i| {
                let own = rng.random_range(0..texts.len());
                let other = rng.random_range(0..texts.len());
                NewChunk {
                    chunk_index: i as i32,
                    content: texts[own].clone(),
                    token_count: 200,
                    // Mostly its own text's vector: two draws from [own, own, other].
                    embedding: mixture(&mut rng, vectors, &[own, own, other], 2, 0.2),
                }
            })
            .collect();
        commit_document(pool, customer_id, "cust-bench", &format!("paper-{d}"), chunks).await;
    }
    eprintln!("{total} chunks written in {:.1} s", started.elapsed().as_secs_f64());
}

/// The Python peer's interpreter and script.
fn python_peer() -> (std::path::PathBuf, std::path::PathBuf) {
    let python = prospector_tests::hack::hack_path("python-peers.sh").expect("hack/python-peers.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/bench/search_peer.py");
    (python, script)
}

/// Starts the peer with `workers` uvicorn processes of `threads` PyTorch threads each.
fn start_peer(database_url: &str, workers: u32, threads: u32) -> Server {
    let (python, script) = python_peer();
    let model_dir = prospector_tests::hack::hack_path("model.sh").expect("hack/model.sh");
    let port = free_port().unwrap();
    let log = process_dir().join(format!("bench-search-peer-{}.log", random_suffix(4)));
    let args = [
        script.display().to_string(),
        "serve".into(),
        model_dir.display().to_string(),
        database_url.into(),
        port.to_string(),
        workers.to_string(),
        threads.to_string(),
    ];
    let process =
        ManagedProcess::spawn("search peer", &python, &args, RunAs::Current, &log, &[]).expect("start the peer");
    Server { process, log, port }
}

/// `(document_id, chunk_index)` of each result of a search answer.
fn hits(answer: &str) -> Vec<(String, i64)> {
    let answer: Value = serde_json::from_str(answer).expect("a JSON answer");
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["document_id"].as_str().unwrap().to_owned(), r["chunk_index"].as_i64().unwrap()))
        .collect()
}

/// A server under load and the request it gets.
struct Contender {
    name: String,
    url: String,
    token: Option<String>,
    body: String,
}

impl Contender {
    fn target(&self) -> Target<'_> {
        Target { url: &self.url, token: self.token.as_deref(), json_body: Some(&self.body) }
    }
}

fn main() {
    let total: usize = env("BENCH_CHUNKS", 100_000);
    let seconds: u64 = env("BENCH_SECONDS", 15);
    let connections: u32 = env("BENCH_CONNECTIONS", 16);
    let with_python = std::env::var("BENCH_PYTHON").map_or(true, |v| v != "0");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let (texts, vectors) = corpus();
    let (database_url, key, customer_id) = runtime.block_on(async {
        let db = shared_postgres().migrated_database().await.expect("a database");
        let (customer_id, key) = support::unlimited_customer(&db.pool).await;
        load(&db.pool, customer_id, total, &texts, &vectors).await;
        // What autovacuum does within a minute of a bulk load: the runs measure steady state.
        sqlx::query("ANALYZE document_chunks, knowledge_documents").execute(&db.pool).await.expect("analyze");
        let started = Instant::now();
        let round = reconcile_indexes(&db.pool, &TenantIndexSettings::default(), &HashSet::new())
            .await
            .expect("the operator's index manager");
        eprintln!("{round:?}: the customer's index built in {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(search_path(&db.pool, customer_id).await.unwrap(), SearchPath::Indexed);
        std::mem::forget(db.pool);
        (db.url.clone(), key, customer_id)
    });
    if with_python {
        let (python, script) = python_peer();
        let output = std::process::Command::new(python)
            .arg(script)
            .args(["setup", &database_url])
            .output()
            .expect("run the peer's setup");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        eprintln!("the peer's table and index: {}", String::from_utf8_lossy(&output.stdout).trim());
    }

    let mut apiserver = support::start_apiserver(&database_url, &["--search=true"]);
    let url = format!("http://127.0.0.1:{}/api/knowledge/search", apiserver.port);
    let body = |mode: Option<&str>| {
        let mut body = json!({"customer_id": customer_id, "query": QUERY, "top_k": TOP_K});
        if let Some(mode) = mode {
            body["mode"] = json!(mode);
        }
        body.to_string()
    };
    let prospector = |name: &str, mode: Option<&str>| Contender {
        name: name.into(),
        url: url.clone(),
        token: Some(key.clone()),
        body: body(mode),
    };
    let mut contenders = vec![
        prospector("prospector-apiserver, vector", Some("vector")),
        prospector("prospector-apiserver, hybrid (its default)", None),
    ];
    let ours = runtime.block_on(first_answer(&mut apiserver, &contenders[0].target(), Duration::from_secs(120)));
    let mut peers = Vec::new();
    if with_python {
        for (workers, threads) in [(1, 2), (2, 1)] {
            let mut peer = start_peer(&database_url, workers, threads);
            let contender = Contender {
                name: format!("seed approach: FastAPI, {workers} uvicorn process(es) × {threads} PyTorch thread(s)"),
                url: format!("http://127.0.0.1:{}/api/knowledge/search", peer.port),
                token: None,
                body: body(None),
            };
            let theirs = runtime.block_on(first_answer(&mut peer, &contender.target(), Duration::from_secs(180)));
            let (a, b) = (hits(&ours), hits(&theirs));
            let shared = a.iter().filter(|h| b.contains(h)).count();
            assert!(shared * 2 > a.len(), "Prospector and the peer disagree: {a:?} and {b:?}");
            eprintln!(
                "{}: {shared} of Prospector's top {} (vector mode) in its top {}",
                contender.name,
                a.len(),
                b.len()
            );
            contenders.push(contender);
            peers.push(peer);
        }
    }
    println!(
        "REST search: {total} chunks of one customer, top {TOP_K}, {connections} connections, {seconds} s per run"
    );

    // The most each answers, after a warm-up; then all at one rate, 70% of the slowest's most.
    let most: Vec<Load> = contenders
        .iter()
        .map(|c| {
            oha(&c.target(), 3, connections, None);
            let load = oha(&c.target(), seconds, connections, None);
            assert!(load.success_rate > 0.999, "{}: {load:?}", c.name);
            load
        })
        .collect();
    let rate = most.iter().map(|l| l.requests_per_second).fold(f64::INFINITY, f64::min) * 0.7;
    let paced: Vec<Load> = contenders.iter().map(|c| oha(&c.target(), seconds, connections, Some(rate))).collect();

    println!(
        "| server | most requests/s | p50 ms | p95 ms | at {rate:.0}/s: p50 ms | p95 ms | Prospector (vector) ÷ this, requests/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((c, m), p) in contenders.iter().zip(&most).zip(&paced) {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× |",
            c.name,
            m.requests_per_second,
            m.ms("p50"),
            m.ms("p95"),
            p.ms("p50"),
            p.ms("p95"),
            most[0].requests_per_second / m.requests_per_second
        );
    }
    drop(peers);
}
