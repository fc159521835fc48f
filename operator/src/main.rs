//! `prospector-operator`: parses configuration, initialises tracing, and runs one subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use prospector_operator::OperatorError;
use prospector_operator::catalog::AgentCatalog;
use prospector_operator::clock::SystemClock;
use prospector_operator::context::{DocumentSettings, EmbedderMode, JobSettings, Settings, parse_database_secret_keys};
use prospector_operator::leader::LeaseSettings;
use prospector_operator::runtime::{self, RunOptions};
use prospector_operator::status::document::Thresholds;
use prospector_operator::telemetry::{self, LogFormat};
use prospector_operator::tenant_index::TenantIndexSettings;

#[derive(Debug, Parser)]
#[command(name = "prospector-operator", version, about = "The Prospector Kubernetes operator")]
struct Cli {
    /// Log line format.
    #[arg(long, env = "PROSPECTOR_LOG_FORMAT", value_enum, default_value = "json", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies the database migrations and exits (for a Helm pre-install/pre-upgrade hook).
    Migrate {
        /// Postgres connection URL. Never logged. Without it, libpq's PGHOST, PGPORT, PGUSER,
        /// PGPASSWORD, PGDATABASE and PGSSLMODE apply.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Hash partitions of `document_chunks` by customer (1: one table). Chosen at install:
        /// a table that holds chunks keeps its layout, and a different count is refused.
        /// Without it, the layout stays as it is.
        #[arg(long, env = "PROSPECTOR_CHUNK_PARTITIONS")]
        chunk_partitions: Option<u32>,
    },
    /// Runs the controllers (after applying the migrations).
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Postgres connection URL. Never logged. Without it, libpq's PGHOST, PGPORT, PGUSER,
    /// PGPASSWORD, PGDATABASE and PGSSLMODE apply.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Connections in the Postgres pool.
    #[arg(long, env = "PROSPECTOR_DB_CONNECTIONS", default_value_t = 10)]
    db_connections: u32,
    /// The namespace the platform runs in (customer NetworkPolicies admit it).
    #[arg(long, env = "POD_NAMESPACE", default_value = "prospector-system")]
    platform_namespace: String,
    /// The REST API URL agents receive as PROSPECTOR_API_URL.
    #[arg(long, env = "PROSPECTOR_API_URL", default_value = "http://prospector-apiserver.prospector-system.svc:8080")]
    api_url: String,
    /// A YAML file mapping each agent type to an image (Helm's agent catalog).
    #[arg(long, env = "PROSPECTOR_AGENT_CATALOG")]
    agent_catalog: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "PROSPECTOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Elect a leader through a Lease, so only one replica reconciles.
    #[arg(long, env = "PROSPECTOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name (in the platform namespace).
    #[arg(long, env = "PROSPECTOR_LEASE_NAME", default_value = "prospector-operator")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "PROSPECTOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Reconciles running at once, per controller.
    #[arg(long, env = "PROSPECTOR_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// KnowledgeDocument reconciles running at once. Fewer than the other controllers': a burst of
    /// documents then leaves the control plane room for agents and customers, and admitting
    /// documents faster than the workers embed them gains nothing (docs/benchmarks.md,
    /// "Documents at scale").
    #[arg(long, env = "PROSPECTOR_DOCUMENT_CONCURRENCY", default_value_t = prospector_operator::runtime::DEFAULT_DOCUMENT_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..))]
    document_concurrency: u16,
    /// Requests to the Kubernetes API in flight at once.
    #[arg(long, env = "PROSPECTOR_KUBE_MAX_IN_FLIGHT", default_value_t = 64)]
    kube_max_in_flight: usize,
    /// Seconds between retries of an agent waiting for quota (freed quota wakes it at once).
    #[arg(long, env = "PROSPECTOR_WAITING_RETRY_SECONDS", default_value_t = 30)]
    waiting_retry_seconds: u64,
    /// Seconds between periodic re-reads of healthy objects, and between sweeps for rows whose
    /// object is gone.
    #[arg(long, env = "PROSPECTOR_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Where documents are embedded: inline (a worker loop in this process) or external
    /// (`prospector-embedder worker` processes).
    #[arg(long, value_enum, env = "PROSPECTOR_EMBEDDER_MODE", default_value = "inline")]
    embedder_mode: EmbedderMode,
    /// Processing attempts before a document fails for good.
    #[arg(long, env = "PROSPECTOR_DOCUMENT_MAX_ATTEMPTS", default_value_t = 3)]
    document_max_attempts: i32,
    /// Inline mode: the nice value (0-19) of the embedding threads. Above 0, reconciles (and
    /// other processes of the same cgroup) come first while the queue is deep; at the default,
    /// 19, embedding takes only what they leave.
    #[arg(long, env = "PROSPECTOR_INLINE_WORKER_NICE", default_value_t = prospector_operator::context::DEFAULT_INLINE_WORKER_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    inline_worker_nice: i32,
    /// The largest document source, in bytes.
    #[arg(long, env = "PROSPECTOR_MAX_DOCUMENT_BYTES", default_value_t = 50_000_000)]
    max_document_bytes: i64,
    /// Job mode: the embedder image.
    #[arg(long, env = "PROSPECTOR_EMBEDDER_IMAGE", default_value = "ghcr.io/prospector-dev/embedder:0.1.0")]
    embedder_image: String,
    /// Job mode: embedder Jobs running at once, at most.
    #[arg(long, env = "PROSPECTOR_MAX_PARALLEL_JOBS", default_value_t = 4)]
    max_parallel_jobs: u32,
    /// Job mode: queued documents one more Job is started for.
    #[arg(long, env = "PROSPECTOR_DOCUMENTS_PER_JOB", default_value_t = 16)]
    documents_per_job: u32,
    /// Job mode: the Secret in the platform namespace the Jobs read the database settings from.
    #[arg(long, env = "PROSPECTOR_DATABASE_SECRET", default_value = "prospector-database")]
    database_secret: String,
    /// Job mode: which of its keys become which variables, as `VARIABLE=key` pairs separated by
    /// commas: `DATABASE_URL=url`, or `PGHOST=host,PGUSER=username,PGPASSWORD=password,...`.
    #[arg(long, env = "PROSPECTOR_DATABASE_SECRET_KEYS", default_value = "DATABASE_URL=url")]
    database_secret_keys: String,
    /// Job mode: the embedder Jobs' ServiceAccount (it needs no RBAC).
    #[arg(long, env = "PROSPECTOR_EMBEDDER_SERVICE_ACCOUNT", default_value = "prospector-embedder")]
    embedder_service_account: String,
    /// Job mode: GPUs each Job requests (0: CPU).
    #[arg(long, env = "PROSPECTOR_EMBEDDER_GPUS", default_value_t = 0)]
    embedder_gpus: u32,
    /// Job mode: the Jobs' node selector, as JSON ({"accelerator": "nvidia"}).
    #[arg(long, env = "PROSPECTOR_EMBEDDER_NODE_SELECTOR", default_value = "{}")]
    embedder_node_selector: String,
    /// Job mode: the Jobs' tolerations, as a JSON list of Kubernetes tolerations.
    #[arg(long, env = "PROSPECTOR_EMBEDDER_TOLERATIONS", default_value = "[]")]
    embedder_tolerations: String,
    /// Seconds the embedding worker may take to fetch a url source.
    #[arg(long, env = "PROSPECTOR_URL_TIMEOUT_SECONDS", default_value_t = 30)]
    url_timeout_seconds: u64,
    /// Fetch url sources on private, loopback and link-local addresses too (refused by default:
    /// a customer's URL must not reach the cluster's internal services).
    #[arg(long, env = "PROSPECTOR_ALLOW_PRIVATE_URLS")]
    allow_private_urls: bool,
    /// Seconds a document may wait in the queue before its status says QueuedTooLong.
    #[arg(long, env = "PROSPECTOR_QUEUED_TOO_LONG_SECONDS", default_value_t = 600)]
    queued_too_long_seconds: u64,
    /// Seconds a document may be processed before its status says ProcessingTooLong.
    #[arg(long, env = "PROSPECTOR_PROCESSING_TOO_LONG_SECONDS", default_value_t = 900)]
    processing_too_long_seconds: u64,
    /// Chunks at which a customer gets a vector index of its own (a partial HNSW index, built
    /// concurrently; dropped below half of this); smaller customers are searched exactly. 0: no
    /// indexes.
    #[arg(long, env = "PROSPECTOR_TENANT_INDEX_MIN_CHUNKS", default_value_t = TenantIndexSettings::default().min_chunks)]
    tenant_index_min_chunks: i64,
    /// The share of a quota (0–1] at which a customer counts in the
    /// `customers_near_quota_limit` gauge (the chart's alert fires on it).
    #[arg(long, env = "PROSPECTOR_QUOTA_NEAR_LIMIT_RATIO", default_value_t = 0.9)]
    quota_near_limit_ratio: f64,
    /// Seconds an agent's pod may find no node before the agent shows Failed (Unschedulable).
    #[arg(long, env = "PROSPECTOR_UNSCHEDULABLE_SECONDS", default_value_t = 120)]
    unschedulable_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Migrate { database_url, chunk_partitions } => migrate(database_url.as_deref(), chunk_partitions).await,
        Command::Run(args) => run(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, kind = e.metric_label(), "operator command failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: Option<&str>, chunk_partitions: Option<u32>) -> Result<(), OperatorError> {
    let pool = prospector_store::connect_with(prospector_store::connect_options(database_url)?, 2).await?;
    prospector_store::migrate(&pool).await?;
    let applied = prospector_store::applied_migrations(&pool).await?;
    let layout = match chunk_partitions {
        Some(partitions) => prospector_store::partitions::set_chunk_partitions(&pool, partitions).await?,
        None => prospector_store::partitions::chunk_layout(&pool).await?,
    };
    tracing::info!(latest = applied.last().copied(), count = applied.len(), ?layout, "migrations applied");
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), OperatorError> {
    if !(args.quota_near_limit_ratio > 0.0 && args.quota_near_limit_ratio <= 1.0) {
        return Err(OperatorError::Config("--quota-near-limit-ratio must be in (0, 1]".into()));
    }
    let database_secret_keys = parse_database_secret_keys(&args.database_secret_keys)
        .map_err(|e| OperatorError::Config(format!("--database-secret-keys: {e}")))?;
    let options = prospector_store::connect_options(args.database_url.as_deref())?;
    let pool = prospector_store::connect_with(options, args.db_connections).await?;
    prospector_store::migrate(&pool).await?;
    let client = prospector_operator::kube_client(args.kube_max_in_flight).await?;
    let catalog = match &args.agent_catalog {
        Some(path) => AgentCatalog::from_file(path)?,
        None => AgentCatalog::default(),
    };
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("prospector-operator-{}", std::process::id()));
    let options = RunOptions {
        settings: Settings {
            platform_namespace: args.platform_namespace.clone(),
            api_url: args.api_url,
            catalog,
            waiting_retry: Duration::from_secs(args.waiting_retry_seconds),
            resync: Duration::from_secs(args.resync_seconds),
            unschedulable_after: Duration::from_secs(args.unschedulable_seconds),
            quota_near_limit_ratio: args.quota_near_limit_ratio,
            documents: DocumentSettings {
                mode: args.embedder_mode,
                max_attempts: args.document_max_attempts.max(1),
                max_document_bytes: args.max_document_bytes,
                thresholds: Thresholds {
                    queued_too_long: Duration::from_secs(args.queued_too_long_seconds),
                    processing_too_long: Duration::from_secs(args.processing_too_long_seconds),
                },
                url_timeout: Duration::from_secs(args.url_timeout_seconds.max(1)),
                allow_private_urls: args.allow_private_urls,
                inline_worker_nice: Some(args.inline_worker_nice).filter(|nice| *nice > 0),
                jobs: JobSettings {
                    image: args.embedder_image,
                    max_parallel_jobs: args.max_parallel_jobs,
                    documents_per_job: args.documents_per_job.max(1),
                    database_secret: args.database_secret,
                    database_secret_keys,
                    service_account: args.embedder_service_account,
                    idle_exit_seconds: 60,
                    gpus: args.embedder_gpus,
                    node_selector: serde_json::from_str(&args.embedder_node_selector)
                        .map_err(|e| OperatorError::Config(format!("--embedder-node-selector: {e}")))?,
                    tolerations: serde_json::from_str(&args.embedder_tolerations)
                        .map_err(|e| OperatorError::Config(format!("--embedder-tolerations: {e}")))?,
                },
                tenant_indexes: TenantIndexSettings {
                    min_chunks: args.tenant_index_min_chunks.max(0),
                    ..TenantIndexSettings::default()
                },
            },
        },
        lease: args.leader_election.then(|| LeaseSettings {
            namespace: args.platform_namespace,
            name: args.lease_name,
            identity,
            duration: Duration::from_secs(args.lease_seconds),
            retry: Duration::from_secs((args.lease_seconds / 5).max(1)),
        }),
        http_addr: Some(args.http_addr),
        concurrency: args.concurrency,
        document_concurrency: args.document_concurrency,
    };
    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        tracing::info!("shutting down");
    };
    runtime::run(client, pool, options, Arc::new(SystemClock), shutdown).await
}
