//! `prospector-apiserver`: parses configuration, connects to Postgres lazily and to the
//! Kubernetes API, and serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use prospector_apiserver::auth::AdminToken;
use prospector_apiserver::query_embedding::QueryEmbedders;
use prospector_apiserver::{ApiSettings, AppState, router};
use prospector_embedder::embed::EmbedderConfig;
use prospector_embedder::paths::{self, ProcessEnv};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Not `Debug`: it holds the database URL and the admin token.
#[derive(Parser)]
#[command(name = "prospector-apiserver", version, about = "Prospector's REST API")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PROSPECTOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Postgres connection URL. Never logged. Without it, libpq's PGHOST, PGPORT, PGUSER,
    /// PGPASSWORD, PGDATABASE and PGSSLMODE apply.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A read-only Postgres URL for search (a replica, e.g. CloudNativePG's `-ro` service), so
    /// search load leaves the primary to writes. Never logged. Without it, search uses the primary.
    #[arg(long, env = "PROSPECTOR_SEARCH_DATABASE_URL", hide_env_values = true)]
    search_database_url: Option<String>,
    /// Or: a read-only host for search with the primary's other settings (a replica's Service,
    /// e.g. CloudNativePG's `<cluster>-ro`), for databases configured by parts.
    #[arg(long, env = "PROSPECTOR_SEARCH_DATABASE_HOST", conflicts_with = "search_database_url")]
    search_database_host: Option<String>,
    /// The platform admin token. Never logged; prefer --admin-token-file.
    #[arg(long, env = "PROSPECTOR_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    admin_token: Option<String>,
    /// A file holding the platform admin token (a mounted Secret); read again every 10 s, so a
    /// rotated token takes effect without a restart.
    #[arg(long, env = "PROSPECTOR_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Lets anyone register a free-tier customer without the admin token.
    #[arg(long, env = "PROSPECTOR_OPEN_REGISTRATION")]
    open_registration: bool,
    /// Seconds registration waits for the customer to be ready before answering 202.
    #[arg(long, env = "PROSPECTOR_REGISTER_WAIT_SECONDS", default_value_t = 30)]
    register_wait_seconds: u64,
    /// Serves `POST /api/knowledge/search`: loads the model (PROSPECTOR_MODEL_DIR, ORT_DYLIB_PATH
    /// or the cache of hack/deps.sh) at start, and fails to start without it.
    #[arg(long, env = "PROSPECTOR_SEARCH", default_value_t = true, action = clap::ArgAction::Set)]
    search: bool,
    /// The largest file an upload may carry, in bytes.
    #[arg(long, env = "PROSPECTOR_MAX_UPLOAD_BYTES", default_value_t = 50_000_000)]
    max_upload_bytes: usize,
    /// Query models for search, each on one thread (searches embed this many queries at once).
    #[arg(long, env = "PROSPECTOR_SEARCH_THREADS", default_value_t = 2)]
    search_threads: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG` when set (e.g. `prospector_apiserver=debug`), `info` otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_env_filter(filter).init();
    let admin_token = match (&cli.admin_token, &cli.admin_token_file) {
        (Some(token), _) => AdminToken::new(token),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(token) => AdminToken::new(&token),
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot read the admin token file");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => None,
    };
    if admin_token.is_none() {
        tracing::warn!("no admin token: only customers' API keys authenticate");
    }
    // Lazy: the server starts (and reports not-ready) while the database is down.
    let (primary, search) = match database_options(&cli) {
        Ok(options) => options,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure the database");
            return ExitCode::FAILURE;
        }
    };
    let pool = lazy_pool(primary);
    let search_pool = search.map(lazy_pool);
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure the Kubernetes client");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, listen = %cli.listen, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let settings = ApiSettings {
        open_registration: cli.open_registration,
        register_wait: Duration::from_secs(cli.register_wait_seconds),
        max_upload_bytes: cli.max_upload_bytes,
        ..ApiSettings::default()
    };
    let mut state = AppState::new(pool, client, settings, admin_token);
    if let Some(search_pool) = search_pool {
        state = state.with_search_pool(search_pool);
    }
    if let Some(path) = &cli.admin_token_file {
        state.watch_admin_token_file(path.clone());
    }
    if cli.search {
        match load_embedder(cli.search_threads) {
            Ok(embedder) => state = state.with_embedder(embedder),
            Err(e) => {
                tracing::error!(error = %e, "cannot load the model for search (or run with --search=false)");
                return ExitCode::FAILURE;
            }
        }
    }
    tracing::info!(listen = %cli.listen, search = cli.search, "serving");
    state.spawn_background();
    let app = router(state);
    // Kubernetes stops pods with SIGTERM; a terminal with Ctrl-C. Either drains in-flight requests.
    let shutdown = async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
    };
    match axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The query models for search.
fn load_embedder(sessions: usize) -> Result<QueryEmbedders, String> {
    let paths = paths::resolve(&ProcessEnv).map_err(|e| e.to_string())?;
    paths.check().map_err(|e| e.to_string())?;
    let config = EmbedderConfig::new(&paths.model_dir, &paths.onnxruntime);
    QueryEmbedders::load(&config, sessions).map_err(|e| e.to_string())
}

/// The primary's connection settings, and search's when it reads elsewhere.
fn database_options(cli: &Cli) -> Result<(PgConnectOptions, Option<PgConnectOptions>), prospector_store::StoreError> {
    let primary = prospector_store::connect_options(cli.database_url.as_deref())?;
    let search = match (&cli.search_database_url, &cli.search_database_host) {
        (Some(url), _) => Some(prospector_store::connect_options(Some(url))?),
        (None, Some(host)) => Some(primary.clone().host(host)),
        (None, None) => None,
    };
    Ok((primary, search))
}

/// A pool that connects on first use.
fn lazy_pool(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_can_read_from_another_host_with_the_primarys_credentials() {
        let cli = Cli::parse_from([
            "prospector-apiserver",
            "--database-url=postgres://app:pw@primary:5432/prospector",
            "--search-database-host=replica-ro",
        ]);
        let (primary, search) = database_options(&cli).unwrap();
        let search = search.expect("a search pool");
        assert_eq!((primary.get_host(), search.get_host()), ("primary", "replica-ro"));
        assert_eq!((search.get_username(), search.get_database()), ("app", Some("prospector")));
        let cli = Cli::parse_from(["prospector-apiserver", "--database-url=postgres://app:pw@primary/prospector"]);
        assert!(database_options(&cli).unwrap().1.is_none(), "without either flag, search reads the primary");
        let both = Cli::try_parse_from([
            "prospector-apiserver",
            "--database-url=postgres://a@p/d",
            "--search-database-url=postgres://a@r/d",
            "--search-database-host=r",
        ]);
        assert!(both.is_err(), "a URL and a host for search conflict");
    }
}
