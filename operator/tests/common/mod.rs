//! Shared set-up of the operator's integration tests: one operator per test process, run
//! in-process on its own runtime against the harness's control plane and a fresh database,
//! with the example tiers installed and a clock the tests can set.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use prospector_crds::Tier;
use prospector_operator::clock::ManualClock;
use prospector_operator::context::Settings;
use prospector_operator::runtime::{RunOptions, run};
use prospector_tests::{shared_cluster, shared_postgres};
use serde::Deserialize;
use sqlx::PgPool;

pub const PLATFORM_NAMESPACE: &str = "prospector-system";

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

/// Applies every object of a YAML file (cluster-scoped ones only need no namespace).
pub async fn apply_yaml(client: &Client, text: &str) {
    for document in serde_yaml::Deserializer::from_str(text) {
        let object = DynamicObject::deserialize(document).unwrap();
        let kind = object.types.as_ref().unwrap().kind.clone();
        assert_eq!(kind, "Tier", "apply_yaml only handles Tiers");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &Tier::api_resource());
        let name = object.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("prospector-tests").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

/// Installs the example tiers and the platform namespace, as Helm would.
pub async fn install_platform(client: &Client) {
    let tiers = std::fs::read_to_string(prospector_tests::hack::repo_root().join("examples/tiers.yaml")).unwrap();
    apply_yaml(client, &tiers).await;
    let platform = Namespace {
        metadata: ObjectMeta { name: Some(PLATFORM_NAMESPACE.into()), ..Default::default() },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &platform).await;
}

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
                    let client = cluster.client().await.expect("operator client");
                    install_platform(&client).await;
                    let clock = ManualClock::new(Utc::now());
                    let options = RunOptions {
                        settings: Settings {
                            platform_namespace: PLATFORM_NAMESPACE.into(),
                            waiting_retry: Duration::from_secs(2),
                            resync: Duration::from_secs(3),
                            ..Settings::default()
                        },
                        lease: None,
                        http_addr: None,
                        concurrency: 16,
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

pub use prospector_tests::eventually;

/// A new client for this test's runtime.
pub async fn client() -> Client {
    shared_cluster().client().await.expect("a client")
}

/// A unique lower-case name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", prospector_tests::random_suffix(6))
}
