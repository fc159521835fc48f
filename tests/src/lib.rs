//! The integration-test harness: starts the real components every integration test needs (a
//! Kubernetes control plane with kwok, Postgres 18 + pgvector) once per test process, hands each
//! test its own namespace or database, and guarantees no process outlives the test run.
//!
//! A missing dependency is a loud failure: the shared environments panic with the reason, they
//! never skip.

pub mod certs;
pub mod chart;
pub mod controlplane;
pub mod fixtures;
pub mod hack;
pub mod http;
pub mod kube_schemas;
pub mod postgres;
pub mod process;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use rand::distr::Alphanumeric;

pub use controlplane::ControlPlane;
pub use postgres::{PostgresServer, TestDatabase};

/// Why the harness could not provide a component.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("missing dependency: {0}")]
    Dependency(String),
    #[error("cannot start component: {0}")]
    Start(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("kubernetes: {0}")]
    Kube(String),
    #[error("postgres: {0}")]
    Sql(String),
}

impl HarnessError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        HarnessError::Io { path: path.to_owned(), source }
    }

    pub(crate) fn sql(e: impl std::fmt::Display) -> Self {
        HarnessError::Sql(e.to_string())
    }
}

/// A random lower-case alphanumeric string, for unique names.
pub fn random_suffix(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(|c| char::from(c).to_ascii_lowercase()).collect()
}

/// The directory this test process keeps its components' data and logs in. Directories left by
/// earlier processes that no longer run (a killed CI job) are removed on the way.
pub fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join("prospector-harness");
        std::fs::create_dir_all(&base).expect("create the harness directory");
        set_mode(&base, 0o755);
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let alive = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("create the harness directory");
        set_mode(&dir, 0o755);
        dir
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Runs an async start-up on a runtime of its own, so that what it builds is not tied to the
/// calling test's runtime (each `#[tokio::test]` has one, and it ends with the test).
fn block_on_own_runtime<T: Send + 'static>(
    start: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build a tokio runtime")
            .block_on(start())
    })
    .join()
    .expect("start-up thread panicked")
}

/// The control plane shared by every test of this process. Panics (failing the test) when it
/// cannot start.
pub fn shared_cluster() -> &'static ControlPlane {
    static CLUSTER: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let result = CLUSTER.get_or_init(|| {
        init_tracing();
        // A port picked free can be taken before the component binds it (another process's
        // outgoing connection, say): then the start is tried again on new ports, in a new
        // directory. Any other failure is final.
        let mut outcome = Err(String::new());
        for attempt in 0..3 {
            let dir = process_dir().join(if attempt == 0 {
                "controlplane".to_owned()
            } else {
                format!("controlplane-{attempt}")
            });
            outcome = block_on_own_runtime(move || {
                Box::pin(async move { ControlPlane::start(&dir).await.map_err(|e| e.to_string()) })
            });
            match &outcome {
                Err(e) if e.contains("address already in use") => {
                    tracing::warn!(attempt, "a control-plane port was taken; starting again on new ports");
                }
                _ => break,
            }
        }
        outcome
    });
    match result {
        Ok(plane) => plane,
        Err(e) => panic!("the test control plane could not start: {e}"),
    }
}

/// The Postgres server shared by every test of this process. Panics when it cannot start.
pub fn shared_postgres() -> &'static PostgresServer {
    static POSTGRES: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
    let result = POSTGRES.get_or_init(|| {
        init_tracing();
        PostgresServer::start(&process_dir().join("postgres")).map_err(|e| e.to_string())
    });
    match result {
        Ok(server) => server,
        Err(e) => panic!("the test Postgres could not start: {e}"),
    }
}

/// A test's view of the shared cluster: its own client and its own namespace.
#[derive(Clone)]
pub struct ClusterTest {
    pub client: Client,
    pub namespace: String,
}

impl std::fmt::Debug for ClusterTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTest").field("namespace", &self.namespace).finish()
    }
}

impl ClusterTest {
    /// Creates a fresh namespace `<prefix>-<random>` in the shared cluster.
    pub async fn new(prefix: &str) -> ClusterTest {
        let plane = shared_cluster();
        let client = plane.client().await.expect("build a client for the test cluster");
        let namespace = format!("{prefix}-{}", random_suffix(6));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some([("prospector.dev/test".to_owned(), prefix.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces.create(&PostParams::default(), &ns).await.expect("create the test namespace");
        ClusterTest { client, namespace }
    }
}

/// Polls `probe` until it returns `Some`, failing the test after `timeout`. Every wait for the
/// cluster to converge goes through here, so a timeout always names what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
