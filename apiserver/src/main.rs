//! `prospector-apiserver`: parses configuration, connects to Postgres lazily and serves.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Parser)]
#[command(name = "prospector-apiserver", version, about = "Prospector's REST API")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PROSPECTOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Postgres connection URL. Never logged.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().json().with_env_filter(tracing_subscriber::EnvFilter::new("info")).init();
    // Lazy: the server starts (and reports not-ready) while the database is down.
    let pool = match PgPoolOptions::new().max_connections(16).connect_lazy(&cli.database_url) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!(error = %e, "invalid DATABASE_URL");
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
    tracing::info!(listen = %cli.listen, "serving");
    let app = prospector_apiserver::router(prospector_apiserver::AppState { pool });
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
