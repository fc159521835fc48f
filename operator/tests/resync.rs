//! What the operator catches as it happens, and what at its periodic resync. Each test runs an
//! operator of its own with the resync period it needs, one test at a time: two operators
//! would fight over the same objects.
//! - A tier's customer count follows its customers at once: with a resync of an hour, a
//!   customer moving between tiers is recounted on both, and one deleted on its last tier.
//! - A customer's namespace children that drifted are applied again at the next resync, and
//!   children that did not are only compared, never applied.

mod common;
#[path = "common/process.rs"]
mod process;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, unique};
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use process::{http_get, metric};
use prospector_crds::{Customer, Tier};
use prospector_operator::clock::SystemClock;
use prospector_operator::context::{DocumentSettings, EmbedderMode, Settings};
use prospector_operator::controllers::customer::children_match_live;
use prospector_operator::desired::customer::{CustomerChildren, NETWORK_POLICY, RESOURCE_QUOTA};
use prospector_operator::runtime::{DEFAULT_DOCUMENT_CONCURRENCY, RunOptions, run};
use prospector_tests::fixtures::{
    PLATFORM_NAMESPACE, SETTLE, apply_tiers, create_customer, customer_ready, example_tiers,
};
use prospector_tests::process::free_port;
use prospector_tests::{shared_cluster, shared_postgres};
use serde_json::json;
use tokio::sync::Mutex;

/// One operator at a time.
static ONE_OPERATOR: Mutex<()> = Mutex::const_new(());

/// Starts an operator with `resync`, serving its metrics on `http_port`; it stops when the
/// returned task is aborted.
async fn start_operator(
    resync: Duration,
    http_port: Option<u16>,
) -> tokio::task::JoinHandle<Result<(), prospector_operator::error::OperatorError>> {
    let client = shared_cluster().client().await.unwrap();
    common::install_platform(&client).await;
    let db = shared_postgres().migrated_database().await.unwrap();
    let options = RunOptions {
        settings: Settings {
            resync,
            waiting_retry: Duration::from_secs(2),
            documents: DocumentSettings { mode: EmbedderMode::External, ..DocumentSettings::default() },
            ..Settings::default()
        },
        lease: None,
        http_addr: http_port.map(|port| ([127, 0, 0, 1], port).into()),
        concurrency: 8,
        document_concurrency: DEFAULT_DOCUMENT_CONCURRENCY,
    };
    let operator_client = common::operator_client("external").await;
    tokio::spawn(
        async move { run(operator_client, db.pool, options, Arc::new(SystemClock), std::future::pending()).await },
    )
}

async fn wait_ready(client: &kube::Client, name: &str) {
    eventually("the customer Ready", SETTLE, || async { customer_ready(client, name).await?.then_some(()) }).await;
}

async fn counts(tiers: &Api<Tier>, names: [&str; 2]) -> Option<[i32; 2]> {
    let mut counts = [0; 2];
    for (count, name) in counts.iter_mut().zip(names) {
        *count = tiers.get(name).await.ok()?.status?.customers;
    }
    Some(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_moving_between_tiers_is_recounted_on_both_at_once() {
    let _alone = ONE_OPERATOR.lock().await;
    // Far longer than the test: only the watch can bring a count up to date.
    let operator = start_operator(Duration::from_secs(3600), None).await;
    let client = shared_cluster().client().await.unwrap();
    let (left, joined) = (unique("left"), unique("joined"));
    let tiers: Vec<Tier> = [&left, &joined]
        .into_iter()
        .map(|name| {
            let mut tier = example_tiers().remove(0);
            tier.metadata.name = Some(name.clone());
            tier
        })
        .collect();
    apply_tiers(&client, &tiers).await;
    let tier_api: Api<Tier> = Api::all(client.clone());
    let names = [left.as_str(), joined.as_str()];

    let name = unique("mover");
    create_customer(&client, &name, &left, json!({})).await;
    wait_ready(&client, &name).await;
    eventually("one customer on the first tier", SETTLE, || async {
        (counts(&tier_api, names).await? == [1, 0]).then_some(())
    })
    .await;

    // The tier's own status write brings it back for one more count: let that pass, so that
    // only the move itself can recount the tier left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let customers: Api<Customer> = Api::all(client.clone());
    let patch = json!({"spec": {"tier": joined}});
    customers.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("the tier left and the tier joined both recounted", SETTLE, || async {
        (counts(&tier_api, names).await? == [0, 1]).then_some(())
    })
    .await;

    customers.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the deleted customer no longer counted", SETTLE, || async {
        (counts(&tier_api, names).await? == [0, 0]).then_some(())
    })
    .await;
    // Its finalizer done by this operator, not left to the next test's.
    eventually("the customer gone", SETTLE, || async { customers.get_opt(&name).await.ok()?.is_none().then_some(()) })
        .await;
    operator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_namespace_children_are_applied_again_at_the_resync() {
    let _alone = ONE_OPERATOR.lock().await;
    let http_port = free_port().unwrap();
    let operator = start_operator(Duration::from_secs(3), Some(http_port)).await;
    let checks = |result: &str| {
        let body = http_get(http_port, "/metrics").unwrap_or_default();
        metric(&body, &format!("prospector_operator_customer_drift_checks_total{{result=\"{result}\"}}"))
    };
    let client = shared_cluster().client().await.unwrap();
    let name = unique("drift");
    create_customer(&client, &name, "starter", json!({})).await;
    wait_ready(&client, &name).await;

    // The children as the operator builds them for this customer.
    let customers: Api<Customer> = Api::all(client.clone());
    let customer = customers.get(&name).await.unwrap();
    let status = customer.status.clone().unwrap();
    let namespace = status.namespace.clone().unwrap();
    let tier = example_tiers().into_iter().find(|t| t.name_any() == "starter").unwrap();
    let children = CustomerChildren {
        customer_name: &name,
        customer_id: status.customer_id.unwrap(),
        tier: "starter",
        namespace: &namespace,
        platform_namespace: PLATFORM_NAMESPACE,
        owner: customer.controller_owner_ref(&()).unwrap(),
    };
    let quota = tier.spec.namespace_quota.clone();
    let matching = || children_match_live(&client, &children, &quota, None);
    // What the apiserver holds is what the operator applied, read back under the chart's RBAC:
    // at each resync the operator only reads the children, and applies nothing.
    eventually("the apiserver's copies matching what the operator applies", SETTLE, || async {
        matching().await.then_some(())
    })
    .await;
    eventually("two resyncs that found the children current", SETTLE, || async {
        (checks("current") >= 2.0).then_some(())
    })
    .await;
    assert_eq!(checks("drifted"), 0.0, "nothing drifted on its own");

    // Someone else changes the quota and deletes the policy.
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &namespace);
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &namespace);
    let pods = |q: &ResourceQuota| q.spec.as_ref()?.hard.as_ref()?.get("pods").map(|p| p.0.clone());
    let wanted_pods = pods(&children.resource_quota(&quota)).unwrap();
    let edit = json!({"spec": {"hard": {"pods": "99"}}});
    quotas.patch(RESOURCE_QUOTA, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    policies.delete(NETWORK_POLICY, &DeleteParams::default()).await.unwrap();
    assert_eq!(pods(&quotas.get(RESOURCE_QUOTA).await.unwrap()).as_deref(), Some("99"));

    // The next resync finds the drift and applies the children again.
    eventually("the quota and the policy restored", SETTLE, || async {
        let restored = pods(&quotas.get(RESOURCE_QUOTA).await.ok()?)? == wanted_pods
            && policies.get_opt(NETWORK_POLICY).await.ok()?.is_some();
        restored.then_some(())
    })
    .await;
    assert!(checks("drifted") >= 1.0, "the repair came from the drift check");
    eventually("the apiserver's copies matching again", SETTLE, || async { matching().await.then_some(()) }).await;

    customers.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the customer gone", SETTLE, || async { customers.get_opt(&name).await.ok()?.is_none().then_some(()) })
        .await;
    operator.abort();
}
