//! A Postgres outage while the operator runs: reconciles fail and back off, nothing is marked
//! Failed, readiness reports the outage, and everything converges once the database is back.

mod common;
#[path = "common/process.rs"]
mod process;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, unique};
use prospector_tests::fixtures::{SETTLE, agent_of_type, agent_phase, create_customer, customer_ready};

use kube::api::{Api, ListParams, PostParams};
use process::{http_get, metric};
use prospector_crds::{AgentDeployment, AgentPhase};
use prospector_operator::clock::SystemClock;
use prospector_operator::context::{DocumentSettings, EmbedderMode, Settings};
use prospector_operator::runtime::{DEFAULT_DOCUMENT_CONCURRENCY, RunOptions, run};
use prospector_tests::process::free_port;
use prospector_tests::{PostgresServer, process_dir, shared_cluster};
use serde_json::json;

const WAIT: Duration = SETTLE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_backs_off_and_recovers_without_failing_objects() {
    let client = shared_cluster().client().await.unwrap();
    common::install_platform(&client).await;

    // A Postgres of this test's own, so it can be taken away.
    let mut postgres = PostgresServer::start_local(&process_dir().join("outage-postgres")).unwrap();
    let db = postgres.create_database("prospector").await.unwrap();
    prospector_store::migrate(&db.pool).await.unwrap();
    let http_port = free_port().unwrap();
    let options = RunOptions {
        settings: Settings {
            waiting_retry: Duration::from_secs(2),
            resync: Duration::from_secs(3),
            documents: DocumentSettings { mode: EmbedderMode::External, ..DocumentSettings::default() },
            ..Settings::default()
        },
        lease: None,
        http_addr: Some(([127, 0, 0, 1], http_port).into()),
        concurrency: 8,
        document_concurrency: DEFAULT_DOCUMENT_CONCURRENCY,
    };
    let operator = tokio::spawn(run(
        common::operator_client("external").await,
        db.pool.clone(),
        options,
        Arc::new(SystemClock),
        std::future::pending(),
    ));

    let before = unique("before");
    create_customer(&client, &before, "starter", json!({})).await;
    eventually("the first customer Ready", WAIT, || async { customer_ready(&client, &before).await?.then_some(()) })
        .await;
    let before_ns = prospector_crds::customer::customer_namespace(&before);
    Api::<AgentDeployment>::namespaced(client.clone(), &before_ns)
        .create(&PostParams::default(), &agent_of_type("steady", "lead_researcher", 1))
        .await
        .unwrap();
    eventually("the first agent Running", WAIT, || async {
        (agent_phase(&client, &before_ns, "steady").await? == AgentPhase::Running).then_some(())
    })
    .await;

    // The outage.
    postgres.kill();
    let during = unique("during");
    create_customer(&client, &during, "starter", json!({})).await;
    Api::<AgentDeployment>::namespaced(client.clone(), &before_ns)
        .create(&PostParams::default(), &agent_of_type("late", "lead_researcher", 1))
        .await
        .unwrap();
    eventually("readiness to report the outage", WAIT, || async {
        let ready = tokio::task::spawn_blocking(move || http_get(http_port, "/readyz")).await.ok()??;
        (ready != "ok").then_some(())
    })
    .await;
    eventually("reconcile errors counted as database errors", WAIT, || async {
        let body = tokio::task::spawn_blocking(move || http_get(http_port, "/metrics")).await.ok()??;
        (metric(&body, "prospector_operator_reconcile_errors_total") > 0.0 && body.contains("error=\"database\""))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(customer_ready(&client, &during).await, Some(false), "no customer becomes Ready without its database");
    assert_eq!(customer_ready(&client, &before).await, Some(true), "an outage does not flip healthy objects");
    let agents =
        Api::<AgentDeployment>::namespaced(client.clone(), &before_ns).list(&ListParams::default()).await.unwrap();
    for agent in &agents.items {
        let phase = agent.status.as_ref().and_then(|s| s.phase);
        assert_ne!(phase, Some(AgentPhase::Failed), "an outage never marks an agent Failed");
    }
    assert_eq!(agent_phase(&client, &before_ns, "steady").await, Some(AgentPhase::Running));

    // Recovery.
    postgres.start_again().unwrap();
    eventually("the customer created during the outage Ready", WAIT, || async {
        customer_ready(&client, &during).await?.then_some(())
    })
    .await;
    eventually("the agent created during the outage Running", WAIT, || async {
        (agent_phase(&client, &before_ns, "late").await? == AgentPhase::Running).then_some(())
    })
    .await;
    assert_eq!(
        tokio::task::spawn_blocking(move || http_get(http_port, "/readyz")).await.unwrap().as_deref(),
        Some("ok")
    );
    operator.abort();
}
