//! A real Postgres 18 + pgvector server for tests, run as an unprivileged user (Postgres refuses
//! root, and CI runs as root), with a fresh database per test. `DATABASE_URL` points the harness
//! at an existing server instead; it must allow `CREATE DATABASE`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::HarnessError;
use crate::hack::hack_path;
use crate::process::{ManagedProcess, RunAs, free_port, run_checked};

/// The uid/gid of `nobody`, used when the harness runs as root.
const UNPRIVILEGED: RunAs = RunAs::Unprivileged { uid: 65534, gid: 65534 };

/// A Postgres server: either one the harness started, or the one `DATABASE_URL` names.
#[derive(Debug)]
pub struct PostgresServer {
    admin_url: String,
    local: Option<LocalServer>,
}

/// A server this harness started, and what it takes to start it again.
#[derive(Debug)]
struct LocalServer {
    process: Option<ManagedProcess>,
    pg: PathBuf,
    args: Vec<String>,
    run_as: RunAs,
    log: PathBuf,
}

/// A database created for one test, with a pool connected to it.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

impl PostgresServer {
    /// Uses `DATABASE_URL` when it is set; otherwise initialises and starts a server in `dir`.
    pub fn start(dir: &Path) -> Result<Self, HarnessError> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Self { admin_url: url, local: None });
        }
        Self::start_local(dir)
    }

    /// Initialises and starts a server in `dir`, whatever `DATABASE_URL` says.
    pub fn start_local(dir: &Path) -> Result<Self, HarnessError> {
        Self::start_local_with(dir, &[])
    }

    /// Like `start_local`, with more server settings (`name=value`, e.g. the larger memory
    /// settings of a benchmark); later settings win over the harness's own.
    pub fn start_local_with(dir: &Path, settings: &[&str]) -> Result<Self, HarnessError> {
        let pg = hack_path("postgres.sh")?;
        let run_as = if current_uid() == 0 { UNPRIVILEGED } else { RunAs::Current };
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
        if let RunAs::Unprivileged { uid, gid } = run_as {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| HarnessError::io(dir, e))?;
        }
        let data = dir.join("data");
        run_to_completion(
            run_as,
            &pg.join("bin/initdb"),
            &[
                "-D".into(),
                data.display().to_string(),
                "-U".into(),
                "postgres".into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
            dir,
        )?;
        let port = free_port()?;
        let args: Vec<String> = [
            "-D",
            &data.display().to_string(),
            "-p",
            &port.to_string(),
            "-k",
            &dir.display().to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            // Durability is pointless for throwaway test data; speed is not.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=256MB",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain(settings.iter().flat_map(|s| ["-c".to_owned(), (*s).to_owned()]))
        .collect();
        let local = LocalServer { process: None, pg: pg.clone(), args, run_as, log: dir.join("postgres.log") };
        let mut server =
            Self { admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), local: Some(local) };
        server.start_again()?;
        Ok(server)
    }

    /// Kills the server (SIGKILL, like a crash or a lost node): an outage for everything using it.
    /// Only for a server this harness started.
    pub fn kill(&mut self) {
        if let Some(process) = self.local.as_mut().and_then(|l| l.process.as_mut()) {
            process.kill();
        }
        if let Some(local) = self.local.as_mut() {
            local.process = None;
        }
    }

    /// Starts a killed server again on the same port and data, and waits until it accepts
    /// connections (after crash recovery).
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        let Some(local) = self.local.as_mut() else {
            return Err(HarnessError::Start("DATABASE_URL servers cannot be restarted by the harness".into()));
        };
        let process = ManagedProcess::spawn(
            "postgres",
            &local.pg.join("bin/postgres"),
            &local.args,
            local.run_as,
            &local.log,
            &[],
        )?;
        local.process = Some(process);
        let pg = local.pg.clone();
        self.wait_ready(&pg)
    }

    fn wait_ready(&mut self, pg: &Path) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = self.admin_url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap_or_default();
        loop {
            if let Some(process) = self.local.as_mut().and_then(|l| l.process.as_mut()) {
                process.check_running()?;
            }
            let ready = Command::new(pg.join("bin/pg_isready"))
                .args(["-h", "127.0.0.1", "-p", port, "-U", "postgres", "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Start("Postgres did not accept connections within 60 s".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of the maintenance database, for `CREATE DATABASE`.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Creates an empty database with a unique name.
    pub async fn empty_database(&self) -> Result<TestDatabase, HarnessError> {
        self.create_database(&format!("t_{}", crate::random_suffix(16))).await
    }

    /// Creates an empty database called `name`.
    pub async fn create_database(&self, name: &str) -> Result<TestDatabase, HarnessError> {
        let name = name.to_owned();
        let admin: PgConnectOptions = self.admin_url.parse().map_err(HarnessError::sql)?;
        let mut conn = admin.clone().connect().await.map_err(HarnessError::sql)?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.map_err(HarnessError::sql)?;
        let url = with_database(&self.admin_url, &name);
        let options = admin.database(&name);
        let pool = PgPoolOptions::new().max_connections(20).connect_with(options).await.map_err(HarnessError::sql)?;
        Ok(TestDatabase { name, url, pool })
    }

    /// Creates a database and applies every migration to it.
    pub async fn migrated_database(&self) -> Result<TestDatabase, HarnessError> {
        let db = self.empty_database().await?;
        prospector_store::migrate(&db.pool).await.map_err(|e| HarnessError::Start(format!("migrations: {e}")))?;
        Ok(db)
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && server.len() > server.find("://").unwrap_or(0) + 3 => server,
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

fn run_to_completion(run_as: RunAs, program: &Path, args: &[String], cwd: &Path) -> Result<(), HarnessError> {
    let mut command = Command::new("setpriv");
    if let RunAs::Unprivileged { uid, gid } = run_as {
        command.args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()]);
    }
    command.arg("--").arg(program).args(args).current_dir(cwd);
    run_checked(&mut command, &program.display().to_string()).map_err(HarnessError::Start)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_keep_the_server_and_the_query() {
        assert_eq!(with_database("postgres://u@h:5/postgres", "t_1"), "postgres://u@h:5/t_1");
        assert_eq!(with_database("postgres://u:p@h:5/db?sslmode=require", "x"), "postgres://u:p@h:5/x?sslmode=require");
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
