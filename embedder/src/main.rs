//! `prospector-embedder`: the embedding engine's command line. Its commands are a contract that
//! other tools script: output on stdout, a non-zero exit and a one-line reason on stderr on
//! failure.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use prospector_embedder::embed::{DEFAULT_BATCH_TOKENS, Device, Embedder, Graph};
use prospector_embedder::extract::{self, Limits};
use prospector_embedder::fetch::FetchPolicy;
use prospector_embedder::paths::{self, ProcessEnv};
use prospector_embedder::worker::{self, WorkerConfig};
use prospector_embedder::{bench, chunk, icp};
use prospector_store::search::{SearchMode, SearchRequest, search};

#[derive(Debug, Parser)]
#[command(name = "prospector-embedder", version, about = "Prospector's embedding engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints where the model and ONNX Runtime are found, and fails if either is missing.
    Paths,
    /// Prints the text of a document (PDF, DOCX, text, Markdown, HTML).
    Extract {
        file: PathBuf,
        /// The declared content type, a hint for text formats only.
        #[arg(long)]
        content_type: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Prints the chunks of a document as JSON lines.
    Chunk {
        file: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Reads a JSON array of strings on stdin and writes a JSON array of 384-float arrays.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Reads text on stdin and writes its ICP: {"target_industries":[…],"company_sizes":[…],
    /// "decision_makers":[…],"target_regions":[…]}.
    Icp {
        /// Also give each label's confidence, chunk and evidence.
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Extracts documents repeatedly and reports pages/s (the extraction benchmark).
    BenchExtract {
        files: Vec<PathBuf>,
        /// Passes over the files after one warm-up pass.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Processes queued documents from Postgres until stopped (SIGTERM finishes the current
    /// batch) or, with --idle-exit-seconds, until the queue stays empty that long. Prints what it
    /// did as JSON.
    Worker {
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Searches one customer's Ready documents and prints the hits as JSON lines.
    Search {
        /// Postgres, as the operator uses it (without it, libpq's PGHOST, PGUSER, ... apply).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The Customer object's name.
        #[arg(long)]
        customer: String,
        query: String,
        #[arg(long, default_value_t = 5)]
        top_k: i64,
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: SearchModeArg,
        /// Only documents with this tag (repeat for any of several).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Embeds a corpus (a JSON array of strings) and reports chunks/s and real tokens/s.
    Bench {
        #[arg(long)]
        corpus: PathBuf,
        /// Passes over the corpus after one warm-up pass.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// sentence-transformers reference vectors (reference.json) to report accuracy against.
        #[arg(long)]
        reference: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// Postgres, as the operator uses it (without it, libpq's PGHOST, PGUSER, ... apply).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Recorded on each claim (default: embedder-<pid>).
    #[arg(long, env = "PROSPECTOR_WORKER_IDENTITY")]
    identity: Option<String>,
    /// Documents claimed and embedded together.
    #[arg(long, env = "PROSPECTOR_WORKER_BATCH_DOCUMENTS", default_value_t = 8)]
    batch_documents: i64,
    #[arg(long, env = "PROSPECTOR_WORKER_LEASE_SECONDS", default_value_t = 60)]
    lease_seconds: u64,
    #[arg(long, env = "PROSPECTOR_WORKER_POLL_SECONDS", default_value_t = 5)]
    poll_seconds: u64,
    /// Exit after the queue stayed empty this long (Job mode).
    #[arg(long, env = "PROSPECTOR_WORKER_IDLE_EXIT_SECONDS")]
    idle_exit_seconds: Option<u64>,
    /// The first retry's delay; each further attempt doubles it.
    #[arg(long, env = "PROSPECTOR_WORKER_RETRY_BACKOFF_SECONDS", default_value_t = 5)]
    retry_backoff_seconds: u64,
    /// Seconds a url source's fetch may take.
    #[arg(long, env = "PROSPECTOR_URL_TIMEOUT_SECONDS", default_value_t = 30)]
    url_timeout_seconds: u64,
    /// Fetch url sources on private, loopback and link-local addresses too (refused by default:
    /// a customer's URL must not reach the cluster's internal services).
    #[arg(long, env = "PROSPECTOR_ALLOW_PRIVATE_URLS")]
    allow_private_urls: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SearchModeArg {
    Vector,
    Hybrid,
}

#[derive(Debug, Args)]
struct LimitArgs {
    #[arg(long, env = "PROSPECTOR_MAX_INPUT_BYTES", default_value_t = Limits::default().max_input_bytes)]
    max_input_bytes: usize,
    #[arg(long, env = "PROSPECTOR_MAX_PAGES", default_value_t = Limits::default().max_pages)]
    max_pages: usize,
    #[arg(long, env = "PROSPECTOR_MAX_DECOMPRESSED_BYTES", default_value_t = Limits::default().max_decompressed_bytes)]
    max_decompressed_bytes: usize,
    #[arg(long, env = "PROSPECTOR_MAX_NESTING", default_value_t = Limits::default().max_nesting)]
    max_nesting: usize,
    /// Seconds one document may take.
    #[arg(long, env = "PROSPECTOR_MAX_SECONDS", default_value_t = Limits::default().max_duration.as_secs_f64())]
    max_seconds: f64,
    #[arg(long, env = "PROSPECTOR_MAX_TEXT_CHARS", default_value_t = Limits::default().max_text_chars)]
    max_text_chars: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_input_bytes: self.max_input_bytes,
            max_pages: self.max_pages,
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_nesting: self.max_nesting,
            max_duration: std::time::Duration::from_secs_f64(self.max_seconds.max(0.0)),
            max_text_chars: self.max_text_chars,
        }
    }
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// Inference threads (default: all cores).
    #[arg(long, env = "PROSPECTOR_EMBED_THREADS")]
    threads: Option<usize>,
    #[arg(long, value_enum, env = "PROSPECTOR_EMBED_DEVICE", default_value = "cpu")]
    device: Device,
    /// Which form of the model to run: native (Prospector's AVX-512 kernels, the CPU
    /// default; int8 where the CPU lacks AVX-512 VNNI and BF16), the ONNX int8 graph, fused
    /// fp32 (the CUDA default), or the plain fp32 export.
    #[arg(long, value_enum, env = "PROSPECTOR_EMBED_GRAPH", default_value = "native")]
    graph: Graph,
    /// Padded tokens per ONNX Runtime call (the native engine does not pad).
    #[arg(long, env = "PROSPECTOR_EMBED_BATCH_TOKENS", default_value_t = DEFAULT_BATCH_TOKENS)]
    batch_tokens: usize,
}

impl ModelArgs {
    fn load(&self) -> Result<Embedder, String> {
        let mut config = paths::installed_config().map_err(|e| e.to_string())?;
        if let Some(threads) = self.threads {
            config.threads = threads;
        }
        config.device = self.device;
        config.graph = self.graph;
        config.batch_tokens = self.batch_tokens;
        Embedder::load(&config).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    // By default a failure is one line: the backtrace of a parser panic, logged under its own
    // target, shows only when RUST_LOG asks for it.
    let default_filter = format!("warn,lopdf=error,{}=off", extract::PARSER_PANIC_LOG_TARGET);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            // One line, always.
            eprintln!("prospector-embedder: {}", reason.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout. A reader that went away (a closed pipe) is not an error of ours.
fn emit(line: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

/// The one-line reason for a failed extraction; a parser panic says how to see its backtrace.
fn extract_failure(error: extract::ExtractError) -> String {
    match error.kind {
        extract::ExtractErrorKind::ParserPanicked { .. } => {
            format!("{error} (a bug: RUST_LOG=error shows the backtrace)")
        }
        _ => error.to_string(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("tokio runtime: {e}"))
}

/// Runs the worker until SIGTERM or Ctrl-C (the current batch is finished first) or its idle
/// exit, and prints its report.
fn run_worker(args: WorkerArgs, limits: Limits, embedder: Embedder) -> Result<(), String> {
    let config = WorkerConfig {
        identity: args.identity.unwrap_or_else(|| WorkerConfig::default().identity),
        batch_documents: args.batch_documents.max(1),
        lease: Duration::from_secs(args.lease_seconds.max(3)),
        poll: Duration::from_secs(args.poll_seconds.max(1)),
        idle_exit: args.idle_exit_seconds.map(Duration::from_secs),
        retry_backoff: Duration::from_secs(args.retry_backoff_seconds),
        fetch: FetchPolicy {
            max_bytes: limits.max_input_bytes,
            timeout: Duration::from_secs(args.url_timeout_seconds.max(1)),
            allow_private: args.allow_private_urls,
            ..FetchPolicy::default()
        },
        limits,
        // A worker process of its own (a Job's pod) has its cores to itself.
        nice: None,
    };
    let report = runtime()?.block_on(async move {
        // Installed before the first claim: a SIGTERM during the first batch must finish that
        // batch, not kill the process.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let options = prospector_store::connect_options(args.database_url.as_deref()).map_err(|e| e.to_string())?;
        let pool = prospector_store::connect_with(options, 4).await.map_err(|e| e.to_string())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        worker::run(pool, Arc::new(embedder), config, stop).await.map_err(|e| e.to_string())
    })?;
    let line = serde_json::json!({"committed": report.committed, "failed": report.failed,
        "retried": report.retried, "chunks": report.chunks});
    emit(&line.to_string())
}

fn read_document(file: &PathBuf, limits: &Limits) -> Result<Vec<u8>, String> {
    let name = file.display();
    let metadata = std::fs::metadata(file).map_err(|e| format!("{name}: {e}"))?;
    if metadata.len() > limits.max_input_bytes as u64 {
        return Err(format!("{name}: input is {} bytes, over the limit of {}", metadata.len(), limits.max_input_bytes));
    }
    std::fs::read(file).map_err(|e| format!("{name}: {e}"))
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Paths => {
            let resolved = paths::resolve(&ProcessEnv).map_err(|e| e.to_string())?;
            emit(&format!("model_dir={}", resolved.model_dir.display()))?;
            emit(&format!("onnxruntime={}", resolved.onnxruntime.display()))?;
            resolved.check().map_err(|e| e.to_string())
        }
        Command::Extract { file, content_type, limits } => {
            let limits = limits.limits();
            let bytes = read_document(&file, &limits)?;
            let extracted = extract::extract_with_watchdog(
                &file.display().to_string(),
                bytes.into(),
                content_type.as_deref(),
                &limits,
            )
            .map_err(extract_failure)?;
            emit(&extracted.text)
        }
        Command::Chunk { file, limits, model } => {
            let limits = limits.limits();
            let bytes = read_document(&file, &limits)?;
            let extracted = extract::extract_with_watchdog(&file.display().to_string(), bytes.into(), None, &limits)
                .map_err(extract_failure)?;
            let embedder = model.load()?;
            let chunker = chunk::Chunker::new(embedder.tokenizer(), chunk::ChunkConfig::default());
            for c in chunker.chunk(&extracted.text).map_err(|e| e.to_string())? {
                let line = serde_json::json!({"index": c.index, "tokens": c.tokens, "start": c.start, "end": c.end, "text": c.text});
                emit(&line.to_string())?;
            }
            Ok(())
        }
        Command::Embed { model } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).map_err(|e| format!("stdin: {e}"))?;
            let texts: Vec<String> =
                serde_json::from_str(&input).map_err(|e| format!("stdin is not a JSON array of strings: {e}"))?;
            let embedder = model.load()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let tokens = embedder.tokenize(&refs).map_err(|e| e.to_string())?;
            // The model reads 256 tokens; longer texts are embedded by their start, as
            // sentence-transformers does. Say so rather than truncate silently.
            let truncated: Vec<usize> =
                tokens.iter().enumerate().filter(|(_, t)| t.truncated).map(|(i, _)| i).collect();
            if !truncated.is_empty() {
                tracing::warn!(
                    count = truncated.len(),
                    first = truncated[0],
                    "texts longer than 256 tokens were embedded by their first 256 (chunk them first: `prospector-embedder chunk`)"
                );
            }
            let vectors = embedder.embed_tokens(&tokens).map_err(|e| e.to_string())?;
            emit(&serde_json::to_string(&vectors).map_err(|e| e.to_string())?)
        }
        Command::Icp { explain, model } => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("stdin is not UTF-8 text: {e}"))?;
            let embedder = model.load()?;
            let chunker = chunk::Chunker::new(embedder.tokenizer(), chunk::ChunkConfig::default());
            let chunks = chunker.chunk(&text).map_err(|e| e.to_string())?;
            let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
            let extraction = icp::extract(&texts, Some(&embedder)).map_err(|e| e.to_string())?;
            let json = if explain {
                serde_json::to_string(&extraction)
            } else {
                serde_json::to_string(&extraction.criteria())
            };
            emit(&json.map_err(|e| e.to_string())?)
        }
        Command::Worker { worker, limits, model } => run_worker(worker, limits.limits(), model.load()?),
        Command::Search { database_url, customer, query, top_k, mode, tags, model } => {
            let embedder = model.load()?;
            let vector = embedder.embed(&[query.as_str()]).map_err(|e| e.to_string())?.remove(0);
            let hits = runtime()?.block_on(async {
                let options = prospector_store::connect_options(database_url.as_deref()).map_err(|e| e.to_string())?;
                let pool = prospector_store::connect_with(options, 2).await.map_err(|e| e.to_string())?;
                let customer_id = prospector_store::customers::find_customer_id(&pool, &customer)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no customer named {customer}"))?;
                let request = SearchRequest {
                    top_k,
                    tags: &tags,
                    mode: match mode {
                        SearchModeArg::Vector => SearchMode::Vector,
                        SearchModeArg::Hybrid => SearchMode::Hybrid,
                    },
                    ..SearchRequest::new(customer_id, &vector, &query)
                };
                search(&pool, &request).await.map_err(|e| e.to_string())
            })?;
            for hit in hits {
                let line = serde_json::json!({"document_id": hit.document_id, "filename": hit.filename,
                    "chunk_index": hit.chunk_index, "score": hit.score, "text": hit.text});
                emit(&line.to_string())?;
            }
            Ok(())
        }
        Command::BenchExtract { files, repeat } => {
            let documents: Vec<(String, Vec<u8>)> = files
                .iter()
                .map(|f| {
                    std::fs::read(f).map(|b| (f.display().to_string(), b)).map_err(|e| format!("{}: {e}", f.display()))
                })
                .collect::<Result<_, _>>()?;
            let report = bench::extraction(&documents, repeat, &Limits::default()).map_err(extract_failure)?;
            emit(&serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?)
        }
        Command::Bench { corpus, repeat, reference, model } => {
            let text = std::fs::read_to_string(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
            let texts: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a JSON array of strings: {e}", corpus.display()))?;
            let embedder = model.load()?;
            let reference: Option<bench::Reference> = match reference {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                None => None,
            };
            let report = bench::run(&embedder, &texts, repeat, reference.as_ref()).map_err(|e| e.to_string())?;
            emit(&serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?)
        }
    }
}
