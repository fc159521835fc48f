//! `prospector-localenv`: runs a local Prospector environment in the foreground for `make dev`:
//! Postgres 18 + pgvector with the `prospector` database migrated, and a control plane (etcd,
//! kube-apiserver, controller-manager, scheduler, kwok) with the CRDs installed. It writes
//! `<dir>/env` (KUBECONFIG and DATABASE_URL) and `<dir>/ready`, then waits for SIGINT/SIGTERM;
//! every component dies with it.

use std::path::PathBuf;
use std::process::ExitCode;

use prospector_tests::{ControlPlane, PostgresServer};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (Some("--dir"), Some(dir)) => PathBuf::from(dir),
        _ => {
            eprintln!("usage: prospector-localenv --dir DIR");
            return ExitCode::FAILURE;
        }
    };
    match run(dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prospector-localenv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&dir)?;
    let postgres = PostgresServer::start_local(&dir.join("postgres"))?;
    let database = postgres.create_database("prospector").await?;
    prospector_store::migrate(&database.pool).await?;
    let plane = ControlPlane::start(&dir.join("controlplane")).await?;

    let env = format!("export KUBECONFIG='{}'\nexport DATABASE_URL='{}'\n", plane.kubeconfig().display(), database.url);
    std::fs::write(dir.join("env"), env)?;
    std::fs::write(dir.join("ready"), "")?;
    eprintln!("prospector-localenv: ready (apiserver {})", plane.server());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
    eprintln!("prospector-localenv: stopping");
    drop(plane);
    drop(postgres);
    Ok(())
}
