//! Two operator replicas against the real control plane: only the Lease holder reconciles, and
//! when it is SIGKILLed the other replica takes over.

mod common;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use common::{eventually, unique};
use prospector_tests::fixtures::{create_customer, wait_customer_ready};

use kube::Client;
use process::{http_get, metric, start_operator};
use prospector_tests::{shared_cluster, shared_postgres};
use serde_json::json;

async fn setup() -> (Client, String) {
    let client = shared_cluster().client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    common::install_platform(&client).await;
    (client, db.url)
}

async fn ready_customer(client: &Client, name: &str) {
    create_customer(client, name, "free", json!({})).await;
    wait_customer_ready(client, name).await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let (client, database_url) = setup().await;
    let mut replicas =
        vec![start_operator(&database_url, true, "replica-a"), start_operator(&database_url, true, "replica-b")];
    let leader_identity = eventually("a leader", Duration::from_secs(60), || process::lease_holder(&client)).await;
    let leader_index = replicas.iter().position(|r| r.identity == leader_identity).expect("the holder is one of ours");
    ready_customer(&client, &unique("first")).await;

    // The follower stands by: it serves health and metrics but has reconciled nothing.
    let follower_index = 1 - leader_index;
    let follower_metrics =
        http_get(replicas[follower_index].http_port, "/metrics").expect("the follower serves /metrics");
    assert_eq!(metric(&follower_metrics, "prospector_operator_leader"), 0.0, "{follower_metrics}");
    assert_eq!(
        metric(&follower_metrics, "prospector_operator_reconciles_total"),
        0.0,
        "the follower must not reconcile"
    );
    assert_eq!(http_get(replicas[follower_index].http_port, "/healthz").as_deref(), Some("ok"));
    assert_eq!(http_get(replicas[follower_index].http_port, "/readyz").as_deref(), Some("ok"));
    let leader_metrics = http_get(replicas[leader_index].http_port, "/metrics").expect("the leader serves /metrics");
    assert_eq!(metric(&leader_metrics, "prospector_operator_leader"), 1.0);
    assert!(metric(&leader_metrics, "prospector_operator_reconciles_total") > 0.0);
    assert!(metric(&leader_metrics, "prospector_operator_reconcile_duration_seconds_count") > 0.0);

    // Failover: the leader dies without releasing the lease.
    replicas[leader_index].process.kill();
    let follower_identity = replicas[follower_index].identity.clone();
    eventually("the follower to take the lease", Duration::from_secs(60), || async {
        (process::lease_holder(&client).await? == follower_identity).then_some(())
    })
    .await;
    ready_customer(&client, &unique("second")).await;
    let metrics = http_get(replicas[follower_index].http_port, "/metrics").unwrap();
    assert_eq!(metric(&metrics, "prospector_operator_leader"), 1.0);
    assert!(metric(&metrics, "prospector_operator_reconciles_total") > 0.0);
    replicas.clear();
}
