//! `prospector-operator`: parses configuration and runs one subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prospector_operator::telemetry::{self, LogFormat};

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
        /// Postgres connection URL. Never logged.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Migrate { database_url } => migrate(&database_url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, kind = e.metric_label(), "operator command failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: &str) -> Result<(), prospector_operator::OperatorError> {
    let pool = prospector_store::connect(database_url, 2).await?;
    prospector_store::migrate(&pool).await?;
    let applied = prospector_store::applied_migrations(&pool).await?;
    tracing::info!(latest = applied.last().copied(), count = applied.len(), "migrations applied");
    Ok(())
}
