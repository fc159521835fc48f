//! Objects and waits the integration tests and benchmarks share: the platform a Helm install
//! would leave (the example tiers, the platform namespace), Customer and AgentDeployment
//! builders, the waits for a customer to be Ready or an agent to reach a phase, and the count
//! of the rows a customer's documents leave.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use prospector_crds::conditions::types;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, HasConditions, Tier};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{eventually, random_suffix};

/// The namespace the platform (operator, apiserver) runs in.
pub const PLATFORM_NAMESPACE: &str = "prospector-system";

/// The field manager of objects the tests apply.
pub const TEST_MANAGER: &str = "prospector-tests";

/// How long a customer or agent may take to settle in a test.
pub const SETTLE: Duration = Duration::from_secs(90);

/// A unique lower-case name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", random_suffix(6))
}

/// The shipped tiers, `examples/tiers.yaml`.
pub fn example_tiers() -> Vec<Tier> {
    let text = std::fs::read_to_string(crate::hack::repo_root().join("examples/tiers.yaml"))
        .expect("read examples/tiers.yaml");
    serde_yaml::Deserializer::from_str(&text).map(|d| Tier::deserialize(d).expect("a Tier")).collect()
}

/// Server-side applies Tiers.
pub async fn apply_tiers(client: &Client, tiers: &[Tier]) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &Tier::api_resource());
    for tier in tiers {
        let object: DynamicObject = serde_json::from_value(serde_json::to_value(tier).unwrap()).unwrap();
        let name = tier.metadata.name.clone().expect("a named Tier");
        api.patch(&name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&object)).await.unwrap();
    }
}

/// Installs the example tiers and the platform namespace, as Helm would. The namespace enforces
/// the restricted Pod Security Standard (as docs/operations.md asks), so a pod the platform
/// starts there that breaks it, such as an embedder Job's, is refused in the tests too.
pub async fn install_platform(client: &Client) {
    apply_tiers(client, &example_tiers()).await;
    let labels = ["enforce", "audit", "warn"]
        .map(|mode| (format!("pod-security.kubernetes.io/{mode}"), "restricted".to_owned()))
        .into_iter()
        .collect();
    let platform = Namespace {
        metadata: ObjectMeta { name: Some(PLATFORM_NAMESPACE.into()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &platform).await;
}

/// A Customer on `tier` with `overrides` as its `quotaOverrides` (`{}` for none).
pub fn customer(name: &str, tier: &str, overrides: Value) -> Customer {
    serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "Customer",
        "metadata": {"name": name},
        "spec": {"companyName": "Acme Corp", "email": format!("{name}@example.com"), "tier": tier,
                 "quotaOverrides": overrides}
    }))
    .expect("a Customer")
}

/// Creates a Customer.
pub async fn create_customer(client: &Client, name: &str, tier: &str, overrides: Value) {
    Api::<Customer>::all(client.clone())
        .create(&PostParams::default(), &customer(name, tier, overrides))
        .await
        .unwrap();
}

/// Whether the customer carries Ready=True; `None` when it cannot be read.
pub async fn customer_ready(client: &Client, name: &str) -> Option<bool> {
    let c = Api::<Customer>::all(client.clone()).get(name).await.ok()?;
    Some(c.status.as_ref().and_then(|s| s.condition(types::READY)).is_some_and(|r| r.is_true()))
}

/// Waits until the customer is Ready, and returns it.
pub async fn wait_customer_ready(client: &Client, name: &str) -> Customer {
    let customers: Api<Customer> = Api::all(client.clone());
    eventually(&format!("customer {name} Ready"), SETTLE, || async {
        let c = customers.get(name).await.ok()?;
        c.status.as_ref().and_then(|s| s.condition(types::READY))?.is_true().then_some(c)
    })
    .await
}

/// Creates a Customer, waits until it is Ready, and returns its namespace and id.
pub async fn ready_customer(client: &Client, name: &str, tier: &str, overrides: Value) -> (String, i64) {
    create_customer(client, name, tier, overrides).await;
    let status = wait_customer_ready(client, name).await.status.expect("a Ready customer has a status");
    (status.namespace.expect("status.namespace"), status.customer_id.expect("status.customerId"))
}

/// An AgentDeployment of `agent_type` (`lead_qualifier`, ...).
pub fn agent_of_type(name: &str, agent_type: &str, replicas: i32) -> AgentDeployment {
    serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": {"agentName": format!("Agent {name}"), "agentType": agent_type, "model": "llama3.1-8b", "replicas": replicas}
    }))
    .expect("an AgentDeployment")
}

/// A lead-qualifier AgentDeployment.
pub fn agent(name: &str, replicas: i32) -> AgentDeployment {
    agent_of_type(name, "lead_qualifier", replicas)
}

/// The phase an agent reports.
pub fn phase(agent: &AgentDeployment) -> Option<AgentPhase> {
    agent.status.as_ref().and_then(|s| s.phase)
}

/// The phase of the agent `name` in `namespace`; `None` when it cannot be read or has none.
pub async fn agent_phase(client: &Client, namespace: &str, name: &str) -> Option<AgentPhase> {
    phase(&Api::<AgentDeployment>::namespaced(client.clone(), namespace).get(name).await.ok()?)
}

/// Waits until the agent reports `wanted`, and returns it.
pub async fn wait_agent_phase(api: &Api<AgentDeployment>, name: &str, wanted: AgentPhase) -> AgentDeployment {
    eventually(&format!("agent {name} {wanted:?}"), SETTLE, || async {
        let a = api.get(name).await.ok()?;
        (phase(&a) == Some(wanted)).then_some(a)
    })
    .await
}

/// Phases of every agent behind `api`, once every agent has one.
pub async fn phases(api: &Api<AgentDeployment>) -> Option<BTreeMap<String, AgentPhase>> {
    let list = api.list(&ListParams::default()).await.ok()?;
    list.items.iter().map(|a| phase(a).map(|p| (a.metadata.name.clone().unwrap_or_default(), p))).collect()
}

/// How many agents of `phases` are in `phase`.
pub fn count(phases: &BTreeMap<String, AgentPhase>, phase: AgentPhase) -> usize {
    phases.values().filter(|p| **p == phase).count()
}

/// Creates one-replica agents and waits until all of them are Running.
pub async fn run_agents(api: &Api<AgentDeployment>, names: &[&str]) {
    for name in names {
        api.create(&PostParams::default(), &agent(name, 1)).await.unwrap();
    }
    eventually("the agents Running", SETTLE, || async {
        let p = phases(api).await?;
        (p.len() == names.len() && count(&p, AgentPhase::Running) == names.len()).then_some(())
    })
    .await;
}

/// The rows a customer's documents hold: chunks, queue entries, stored bytes and live document
/// rows, in that order; all zero once every document is deleted.
pub async fn document_rows(pool: &sqlx::PgPool, customer_id: i64) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM document_chunks WHERE customer_id = $1),
                (SELECT count(*) FROM embedding_tasks WHERE customer_id = $1),
                (SELECT count(*) FROM document_blobs WHERE customer_id = $1),
                (SELECT count(*) FROM knowledge_documents WHERE customer_id = $1 AND deleted_at IS NULL)",
    )
    .bind(customer_id)
    .fetch_one(pool)
    .await
    .expect("count the customer's document rows")
}
