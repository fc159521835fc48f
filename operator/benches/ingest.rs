//! Ingestion benchmark (not a test): `BENCH_DOCUMENTS` (200) mixed documents, half the real
//! PDFs of the extraction fixtures (cycled), a quarter DOCX and a quarter plain text (paragraphs
//! of the fixtures' prose and the ICP cases), measured three ways, one after the other on the
//! same machine:
//!
//! 1. **prospector-embedder alone**: extract, chunk and embed every document in this process
//!    (the library the worker runs), nothing stored: the work itself; and once more with the
//!    ICP extraction the worker also runs;
//! 2. **Prospector end to end**: the release operator in inline mode against the harness's
//!    control plane and Postgres, from creating the KnowledgeDocuments (their ConfigMaps and
//!    uploaded blobs exist already, as after `kubectl apply` of a kustomization or a REST
//!    upload) to every document Ready, by a watch;
//! 3. **the seed's pipeline in Python** (`hack/bench/ingest_peer.py`): pypdf, python-docx,
//!    sentence-transformers and psycopg into pgvector, in the Python venv of
//!    `hack/python-peers.sh`.
//!
//! `cargo bench -p prospector-operator --bench ingest` (`BENCH_PYTHON=0` skips the Python peer).

mod common;
#[path = "../../embedder/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use prospector_crds::{DocumentPhase, KnowledgeDocument};
use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::embed::Embedder;
use prospector_embedder::extract::{Limits, extract};
use prospector_tests::fixtures::{install_platform, ready_customer};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, shared_cluster, shared_postgres};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// ConfigMaps hold at most 1 MiB; larger files are uploaded as blobs (as the REST API will).
const CONFIG_MAP_LIMIT: usize = 900 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pdf,
    Docx,
    Text,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Docx => "docx",
            Kind::Text => "text",
        }
    }
}

struct Document {
    name: String,
    filename: String,
    kind: Kind,
    bytes: Vec<u8>,
}

/// The documents: readable fixture PDFs cycled, and DOCX and text files of real prose.
fn corpus(count: usize, chunker: &Chunker) -> Vec<Document> {
    let mut pdfs = Vec::new();
    let mut prose: Vec<String> = Vec::new();
    for path in common::fixture_pdfs() {
        let bytes = std::fs::read(&path).expect("fixture");
        // Only PDFs that succeed: failures are measured by the tests, not here.
        let Ok(extracted) = extract(&path.display().to_string(), &bytes, None, &Limits::default()) else { continue };
        prose.extend(common::prose_chunks(chunker, &extracted.text));
        pdfs.push((path.file_name().unwrap().to_string_lossy().into_owned(), bytes));
    }
    let icp_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../embedder/tests/fixtures/icp");
    for file in ["examples.json", "holdout_cases.json", "own_cases.json"] {
        let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(icp_dir.join(file)).unwrap()).unwrap();
        prose.extend(cases.iter().filter_map(|c| c["text"].as_str().map(str::to_owned)));
    }
    let mut rng = StdRng::seed_from_u64(9);
    (0..count)
        .map(|i| {
            let name = format!("doc-{i:03}");
            let paragraphs: Vec<&str> = (0..12).map(|_| prose.choose(&mut rng).unwrap().as_str()).collect();
            match i % 4 {
                0 | 1 => {
                    let (filename, bytes) = &pdfs[(i / 4 * 2 + i % 4) % pdfs.len()];
                    Document { name, filename: filename.clone(), kind: Kind::Pdf, bytes: bytes.clone() }
                }
                2 => Document {
                    name,
                    filename: format!("brief-{i}.docx"),
                    kind: Kind::Docx,
                    bytes: support::docx(&format!("Brief {i}"), &paragraphs, &[]),
                },
                _ => Document {
                    name,
                    filename: format!("notes-{i}.txt"),
                    kind: Kind::Text,
                    bytes: paragraphs.join("\n\n").into_bytes(),
                },
            }
        })
        .collect()
}

/// Extract, chunk and embed every document in this process, batches of 32 chunks; with `icp`,
/// also extract each document's ICP as the worker does (its industry similarity pass embeds the
/// sentences of documents that name no industry).
fn embedder_alone(embedder: &Embedder, chunker: &Chunker, documents: &[Document], icp: bool) -> (f64, usize) {
    let started = Instant::now();
    let mut chunks = 0;
    for document in documents {
        let extracted = extract(&document.filename, &document.bytes, None, &Limits::default()).expect("readable");
        let pieces = chunker.chunk(&extracted.text).expect("chunks");
        for batch in pieces.chunks(32) {
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            embedder.embed(&texts).expect("embed");
        }
        if icp {
            let texts: Vec<&str> = pieces.iter().map(|c| c.text.as_str()).collect();
            prospector_embedder::icp::extract(&texts, Some(embedder)).expect("icp");
        }
        chunks += pieces.len();
    }
    (started.elapsed().as_secs_f64(), chunks)
}

fn knowledge_document(name: &str, filename: &str, source: Value) -> KnowledgeDocument {
    serde_json::from_value(json!({
        "apiVersion": "prospector.io/v1alpha1",
        "kind": "KnowledgeDocument",
        "metadata": {"name": name},
        "spec": {"filename": filename, "source": source},
    }))
    .unwrap()
}

async fn wait_all_final(api: &Api<KnowledgeDocument>, names: &[String], limit: Duration) -> BTreeMap<String, i64> {
    let done: Arc<Mutex<BTreeMap<String, (DocumentPhase, i64)>>> = Arc::default();
    let seen = done.clone();
    let watching = tokio::spawn({
        let api = api.clone();
        async move {
            let stream = watcher(api, watcher::Config::default()).applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(document)) = stream.try_next().await {
                let status = document.status.clone().unwrap_or_default();
                if matches!(status.phase, Some(DocumentPhase::Ready | DocumentPhase::Failed)) {
                    seen.lock().unwrap().insert(
                        document.name_any(),
                        (status.phase.unwrap(), i64::from(status.chunk_count.unwrap_or(0))),
                    );
                }
            }
        }
    });
    let deadline = Instant::now() + limit;
    while names.iter().any(|n| !done.lock().unwrap().contains_key(n)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.abort();
    let done = done.lock().unwrap();
    let failed: Vec<&String> = done.iter().filter(|(_, (p, _))| *p == DocumentPhase::Failed).map(|(n, _)| n).collect();
    assert!(failed.is_empty(), "documents failed: {failed:?}");
    assert!(names.iter().all(|n| done.contains_key(n)), "not every document was Ready within {limit:?}");
    names.iter().map(|n| (n.clone(), done[n].1)).collect()
}

/// The operator in inline mode, from KnowledgeDocument creation to all Ready.
async fn prospector_end_to_end(documents: &[Document]) -> (f64, usize) {
    let cluster = shared_cluster();
    let client: Client = cluster.client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    install_platform(&client).await;
    let http_port = free_port().unwrap();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let _operator = ManagedProcess::spawn(
        "operator",
        Path::new(env!("CARGO_BIN_EXE_prospector-operator")),
        &[
            "run".into(),
            format!("--http-addr=127.0.0.1:{http_port}"),
            "--leader-election=false".into(),
            "--embedder-mode=inline".into(),
        ],
        RunAs::Current,
        &process_dir().join("bench-ingest-operator.log"),
        &[("DATABASE_URL", &db.url), ("KUBECONFIG", &kubeconfig), ("RUST_LOG", "warn")],
    )
    .unwrap();
    let (namespace, customer_id) = ready_customer(&client, "ingest", "enterprise", json!({})).await;
    let api: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    let pp = PostParams::default();
    // The model loads before the clock starts: one document through the whole pipeline.
    api.create(&pp, &knowledge_document("warm-up", "warm-up.txt", json!({"text": "Warming up the worker."})))
        .await
        .unwrap();
    wait_all_final(&api, &["warm-up".to_owned()], Duration::from_secs(300)).await;

    // Sources in place first, as after a GitOps sync of ConfigMaps or a REST upload.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let mut objects = Vec::new();
    for document in documents {
        let source = match document.kind {
            Kind::Text => json!({"text": String::from_utf8(document.bytes.clone()).unwrap()}),
            _ if document.bytes.len() <= CONFIG_MAP_LIMIT => {
                let config_map = ConfigMap {
                    metadata: ObjectMeta { name: Some(document.name.clone()), ..Default::default() },
                    binary_data: Some([("doc".to_owned(), ByteString(document.bytes.clone()))].into()),
                    ..Default::default()
                };
                config_maps.create(&pp, &config_map).await.unwrap();
                json!({"configMapKeyRef": {"name": document.name, "key": "doc"}})
            }
            _ => {
                let sha = Sha256::digest(&document.bytes);
                prospector_store::documents::insert_blob(&db.pool, customer_id, &sha, &document.bytes, None)
                    .await
                    .unwrap();
                json!({"blob": {"sha256": hex::encode(sha), "size": document.bytes.len()}})
            }
        };
        objects.push(knowledge_document(&document.name, &document.filename, source));
    }
    let names: Vec<String> = documents.iter().map(|d| d.name.clone()).collect();
    let started = Instant::now();
    futures::stream::iter(objects)
        .for_each_concurrent(16, |object| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &object).await.unwrap();
            }
        })
        .await;
    let chunks = wait_all_final(&api, &names, Duration::from_secs(3600)).await;
    let seconds = started.elapsed().as_secs_f64();
    (seconds, chunks.values().map(|c| *c as usize).sum())
}

/// The Python peer, in its own venv, against the same Postgres.
async fn python_peer(documents: &[Document], threads: usize) -> (f64, usize) {
    let dir = process_dir().join("bench-ingest-python");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest: Vec<Value> = documents
        .iter()
        .map(|d| {
            let path = dir.join(format!("{}-{}", d.name, d.filename));
            std::fs::write(&path, &d.bytes).unwrap();
            json!({"name": d.name, "path": path, "kind": d.kind.label()})
        })
        .collect();
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let python = prospector_tests::hack::hack_path("python-peers.sh").expect("hack/python-peers.sh");
    let model_dir = prospector_tests::hack::hack_path("model.sh").expect("hack/model.sh");
    let db = shared_postgres().migrated_database().await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/bench/ingest_peer.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(&manifest_path)
        .arg(model_dir)
        .arg(&db.url)
        .arg(threads.to_string())
        .output()
        .expect("run the Python peer");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(output.stdout.trim_ascii()).expect("the peer's JSON line");
    assert_eq!(report["failed"], 0, "the peer failed documents: {report}");
    (report["seconds"].as_f64().unwrap(), report["chunks"].as_u64().unwrap() as usize)
}

/// A table row; the last two columns are Prospector's documents/s and chunks/s over this
/// pipeline's (the pipelines cut different numbers of chunks).
fn row(
    what: &str,
    documents: usize,
    (seconds, chunks): (f64, usize),
    (pipeline_seconds, pipeline_chunks): (f64, usize),
) -> String {
    let chunk_rate = |chunks: usize, seconds: f64| chunks as f64 / seconds;
    format!(
        "| {what} | {seconds:.1} | {:.2} | {chunks} | {:.1} | {:.3}× | {:.3}× |",
        documents as f64 / seconds,
        chunk_rate(chunks, seconds),
        seconds / pipeline_seconds,
        chunk_rate(pipeline_chunks, pipeline_seconds) / chunk_rate(chunks, seconds)
    )
}

fn main() {
    let count: usize = std::env::var("BENCH_DOCUMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let with_python = std::env::var("BENCH_PYTHON").map_or(true, |v| v != "0");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let config = prospector_embedder::paths::installed_config().expect("model installed");
    let embedder = Embedder::load(&config).expect("load the model");
    let chunker = Chunker::new(embedder.tokenizer(), ChunkConfig::default());
    let documents = corpus(count, &chunker);
    let kinds = |k: Kind| documents.iter().filter(|d| d.kind == k).count();
    let bytes: usize = documents.iter().map(|d| d.bytes.len()).sum();
    println!(
        "ingestion: {count} documents ({} PDF, {} DOCX, {} text; {:.1} MB), {threads} cores",
        kinds(Kind::Pdf),
        kinds(Kind::Docx),
        kinds(Kind::Text),
        bytes as f64 / 1e6
    );

    embedder.embed(&["warm up"]).unwrap();
    let (alone_seconds, alone_chunks) = embedder_alone(&embedder, &chunker, &documents, false);
    let (icp_seconds, icp_chunks) = embedder_alone(&embedder, &chunker, &documents, true);
    drop(embedder);
    let (pipeline_seconds, pipeline_chunks) = runtime.block_on(prospector_end_to_end(&documents));
    let python = with_python.then(|| runtime.block_on(python_peer(&documents, threads)));

    println!(
        "| pipeline | seconds | documents/s | chunks | chunks/s | Prospector ÷ this, documents/s | Prospector ÷ this, chunks/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let rows = [
        Some(("Prospector, end to end (inline mode)", pipeline_seconds, pipeline_chunks)),
        Some(("prospector-embedder alone (extract, chunk, embed)", alone_seconds, alone_chunks)),
        Some(("prospector-embedder alone, with ICP (the worker's work)", icp_seconds, icp_chunks)),
        python.map(|(seconds, chunks)| {
            ("seed pipeline in Python (pypdf, python-docx, sentence-transformers, psycopg)", seconds, chunks)
        }),
    ];
    for (what, seconds, chunks) in rows.into_iter().flatten() {
        println!("{}", row(what, count, (seconds, chunks), (pipeline_seconds, pipeline_chunks)));
    }
}
