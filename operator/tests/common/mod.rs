//! Shared set-up of the operator's integration tests: one operator per test process, run
//! in-process on its own runtime against the harness's control plane and a fresh database,
//! with the example tiers installed and a clock the tests can set. The operator acts as the
//! chart's ServiceAccount under the chart's RBAC, never as the admin: a verb the chart lacks
//! fails the test that needs it.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use kube::Client;
use prospector_operator::clock::ManualClock;
use prospector_operator::context::{DocumentSettings, Settings};
use prospector_operator::runtime::{DEFAULT_DOCUMENT_CONCURRENCY, RunOptions, run};
use prospector_operator::tenant_index::TenantIndexSettings;
use prospector_tests::{shared_cluster, shared_postgres};
use sqlx::PgPool;

/// The operator every test of this process shares.
#[derive(Debug)]
pub struct SharedOperator {
    pub database_url: String,
    pub clock: ManualClock,
}

impl SharedOperator {
    /// A pool for this test's runtime.
    pub async fn pool(&self) -> PgPool {
        prospector_store::connect(&self.database_url, 4).await.expect("connect to the operator's database")
    }
}

/// How long the shared operator lets a pod find no node before the agent fails.
pub const UNSCHEDULABLE_AFTER: Duration = Duration::from_secs(3);

/// How long the shared operator's worker waits for a url source.
pub const URL_TIMEOUT: Duration = Duration::from_secs(2);

/// Chunks at which the shared operator gives a customer its own vector index.
pub const TEST_TENANT_INDEX_MIN_CHUNKS: i64 = 5;

pub fn shared_operator() -> &'static SharedOperator {
    static OPERATOR: OnceLock<SharedOperator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        let cluster = shared_cluster();
        let postgres = shared_postgres();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-operator".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                runtime.block_on(async move {
                    let db = postgres.migrated_database().await.expect("operator database");
                    install_platform(&cluster.client().await.expect("admin client")).await;
                    let client = operator_client("inline").await;
                    let clock = ManualClock::new(Utc::now());
                    let options = RunOptions {
                        settings: Settings {
                            platform_namespace: PLATFORM_NAMESPACE.into(),
                            waiting_retry: Duration::from_secs(2),
                            resync: Duration::from_secs(3),
                            unschedulable_after: UNSCHEDULABLE_AFTER,
                            documents: DocumentSettings {
                                // The url tests serve documents from 127.0.0.1, and one
                                // stalls past this limit.
                                allow_private_urls: true,
                                url_timeout: URL_TIMEOUT,
                                // Small enough that a test's customer with a few documents
                                // gets a vector index of its own, and its searches use it.
                                tenant_indexes: TenantIndexSettings {
                                    min_chunks: TEST_TENANT_INDEX_MIN_CHUNKS,
                                    interval: Duration::from_secs(1),
                                    ..TenantIndexSettings::default()
                                },
                                ..DocumentSettings::default()
                            },
                            ..Settings::default()
                        },
                        lease: None,
                        http_addr: None,
                        concurrency: 16,
                        document_concurrency: DEFAULT_DOCUMENT_CONCURRENCY,
                    };
                    ready_tx.send((db.url.clone(), clock.clone())).unwrap();
                    let result = run(client, db.pool, options, Arc::new(clock), std::future::pending()).await;
                    panic!("the shared operator stopped: {result:?}");
                });
            })
            .unwrap();
        let (database_url, clock) =
            ready_rx.recv_timeout(Duration::from_secs(120)).expect("the shared operator starts");
        SharedOperator { database_url, clock }
    })
}

// Each test file uses some of these.
#[allow(unused_imports)]
pub use prospector_tests::eventually;
#[allow(unused_imports)]
pub use prospector_tests::fixtures::{PLATFORM_NAMESPACE, install_platform, unique};

/// A client acting as the chart's operator ServiceAccount, with the chart's RBAC for this
/// embedder mode applied: the operator under test has exactly the rights a Helm install gives.
pub async fn operator_client(embedder_mode: &str) -> Client {
    use prospector_tests::chart::{OPERATOR_ACCOUNT, client_under_chart_rbac};
    client_under_chart_rbac(shared_cluster(), OPERATOR_ACCOUNT, embedder_mode).await.expect("the chart's RBAC applies")
}

/// A new client for this test's runtime.
pub async fn client() -> Client {
    shared_cluster().client().await.expect("a client")
}
