//! Crash safety: the operator process is SIGKILLed 10 times at random moments while 50 agent
//! creates and deletes land across three customers. Afterwards the state must converge:
//! Kubernetes and Postgres agree, no row is duplicated, no child is orphaned, and every quota
//! counter equals what its rows hold.

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{eventually, unique};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use process::start_operator;
use prospector_crds::conditions::types;
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, HasConditions};
use prospector_tests::fixtures::{agent_of_type, create_customer};
use prospector_tests::{shared_cluster, shared_postgres};
use rand::Rng;
use sqlx::PgPool;

const CUSTOMERS: [(&str, &str); 3] = [
    // (tier, overrides): one bound by the agent limit, one by concurrency, one roomy.
    ("starter", r#"{"maxConcurrentAgents": 50}"#),
    ("starter", r#"{"maxAgents": 50}"#),
    ("pro", "{}"),
];

/// Whether every agent in the namespaces has settled for its current generation.
async fn settled(client: &Client, namespaces: &[String]) -> Option<()> {
    for ns in namespaces {
        let agents = Api::<AgentDeployment>::namespaced(client.clone(), ns).list(&ListParams::default()).await.ok()?;
        for a in agents.items {
            let status = a.status.as_ref()?;
            let phase = status.phase?;
            if a.metadata.deletion_timestamp.is_some()
                || status.observed_generation != a.metadata.generation
                || !matches!(phase, AgentPhase::Running | AgentPhase::QuotaExceeded)
            {
                return None;
            }
        }
    }
    Some(())
}

struct Row {
    uid: String,
    name: String,
    admitted: bool,
    reserved: i32,
}

async fn live_rows(pool: &PgPool, customer_id: i64) -> Vec<Row> {
    let rows: Vec<(uuid::Uuid, String, bool, i32)> = sqlx::query_as(
        "SELECT k8s_uid, name, admitted, quota_reserved_replicas FROM customer_agents
          WHERE customer_id = $1 AND terminated_at IS NULL",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(uid, name, admitted, reserved)| Row { uid: uid.to_string(), name, admitted, reserved })
        .collect()
}

/// Names of the operator-managed children of agents of kind `K` in `namespace`.
async fn managed_names<K>(client: &Client, namespace: &str) -> BTreeSet<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=prospector-operator,prospector.dev/agent"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.name_any())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_converges_after_ten_sigkills_during_a_burst() {
    let client = shared_cluster().client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    common::install_platform(&client).await;

    let mut operator = start_operator(&db.url, false, "crashy-0");
    let names: Vec<String> = CUSTOMERS.iter().map(|_| unique("crash")).collect();
    for (name, (tier, overrides)) in names.iter().zip(CUSTOMERS) {
        create_customer(&client, name, tier, serde_json::from_str(overrides).unwrap()).await;
    }
    let namespaces: Vec<String> = names.iter().map(|n| customer_namespace(n)).collect();
    eventually("the customers' namespaces", Duration::from_secs(60), || async {
        for ns in &namespaces {
            Api::<Namespace>::all(client.clone()).get_opt(ns).await.ok()??;
        }
        Some(())
    })
    .await;

    // The burst: 40 creates and 10 deletes, in random order over a few seconds, while the
    // operator is SIGKILLed and restarted 10 times at random moments.
    let burst = {
        let client = client.clone();
        let namespaces = namespaces.clone();
        tokio::spawn(async move {
            let mut created: Vec<(String, String)> = Vec::new();
            let mut deletes = 0;
            let mut creates = 0;
            while creates + deletes < 50 {
                let (delete, pause, pick, replicas, ns_index) = {
                    let mut rng = rand::rng();
                    let delete = deletes < 10 && !created.is_empty() && rng.random_bool(0.25);
                    (
                        delete,
                        rng.random_range(20..250),
                        rng.random_range(0..1000usize),
                        rng.random_range(1..=2),
                        rng.random_range(0..3),
                    )
                };
                if delete {
                    let (ns, name) = created.remove(pick % created.len());
                    Api::<AgentDeployment>::namespaced(client.clone(), &ns)
                        .delete(&name, &DeleteParams::default())
                        .await
                        .unwrap();
                    deletes += 1;
                } else {
                    let ns = namespaces[ns_index].clone();
                    let name = format!("agent-{creates:02}");
                    Api::<AgentDeployment>::namespaced(client.clone(), &ns)
                        .create(&PostParams::default(), &agent_of_type(&name, "outreach_writer", replicas))
                        .await
                        .unwrap();
                    created.push((ns, name));
                    creates += 1;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        })
    };
    for kill in 1..=10 {
        let pause = rand::rng().random_range(200..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        operator.process.kill();
        operator = start_operator(&db.url, false, &format!("crashy-{kill}"));
    }
    burst.await.unwrap();

    // Converged: every agent settled for its generation, and every customer's usage (refreshed
    // after the last admission or release) counts what its rows hold.
    eventually("every agent settled and every customer's usage current", Duration::from_secs(180), || async {
        settled(&client, &namespaces).await?;
        for name in &names {
            let status = Api::<Customer>::all(client.clone()).get(name).await.ok()?.status?;
            let usage = status.usage?;
            let rows = live_rows(&db.pool, status.customer_id?).await;
            let admitted = rows.iter().filter(|r| r.admitted).count() as i64;
            let reserved: i64 = rows.iter().map(|r| i64::from(r.reserved)).sum();
            (usage.agents.used == admitted && usage.concurrent_agents.used == reserved).then_some(())?;
        }
        Some(())
    })
    .await;
    // It stays converged through a resync: every customer re-applies its children at least once
    // per resync period (5 s here), after which every agent is still settled.
    let converged_at = chrono::Utc::now();
    eventually("a resync after convergence, everything still settled", Duration::from_secs(60), || async {
        for name in &names {
            let applied = Api::<Customer>::all(client.clone()).get(name).await.ok()?.status?.children_applied_at?;
            let applied = chrono::DateTime::parse_from_rfc3339(&applied).ok()?;
            (applied.timestamp() > converged_at.timestamp()).then_some(())?;
        }
        settled(&client, &namespaces).await
    })
    .await;

    let customers: Api<Customer> = Api::all(client.clone());
    for (name, ns) in names.iter().zip(&namespaces) {
        let customer = customers.get(name).await.unwrap();
        let status = customer.status.clone().unwrap();
        assert!(status.condition(types::READY).unwrap().is_true());
        let customer_id = status.customer_id.unwrap();
        let agents =
            Api::<AgentDeployment>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
        let rows = live_rows(&db.pool, customer_id).await;

        // Kubernetes and Postgres describe the same agents, once each.
        let k8s_uids: BTreeSet<String> = agents.iter().map(|a| a.uid().unwrap()).collect();
        let row_uids: BTreeSet<String> = rows.iter().map(|r| r.uid.clone()).collect();
        assert_eq!(k8s_uids, row_uids, "{name}: live rows must match the existing AgentDeployments");
        assert_eq!(rows.len(), row_uids.len(), "{name}: no duplicate rows");
        let dupes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT name FROM customer_agents WHERE customer_id = $1 AND terminated_at IS NULL
              GROUP BY name HAVING count(*) > 1) d",
        )
        .bind(customer_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(dupes, 0);

        // Counters equal what the rows hold, and the limits hold.
        let (agents_count, replicas_count, max_agents, max_replicas): (i32, i32, i32, i32) = sqlx::query_as(
            "SELECT active_agents_count, active_replicas, max_agents, max_concurrent_agents FROM customer_quotas WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let admitted: Vec<&Row> = rows.iter().filter(|r| r.admitted).collect();
        assert_eq!(agents_count as usize, admitted.len(), "{name}: active_agents_count");
        assert_eq!(replicas_count, rows.iter().map(|r| r.reserved).sum::<i32>(), "{name}: active_replicas");
        assert!(agents_count <= max_agents && replicas_count <= max_replicas, "{name}: limits exceeded");

        // Phases agree with admission, and children exist exactly for admitted agents.
        let by_name: BTreeMap<String, &Row> = rows.iter().map(|r| (r.name.clone(), r)).collect();
        let deployments: BTreeSet<String> = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| d.name_any())
            .collect();
        for a in &agents {
            let row = by_name[&a.name_any()];
            let phase = a.status.as_ref().unwrap().phase.unwrap();
            let expected = if row.admitted { AgentPhase::Running } else { AgentPhase::QuotaExceeded };
            assert_eq!(phase, expected, "{name}/{}", a.name_any());
            assert_eq!(
                deployments.contains(&format!("agent-{}", a.name_any())),
                row.admitted,
                "{name}/{}: Deployment",
                a.name_any()
            );
        }
        let agent_names: BTreeSet<String> = agents.iter().map(|a| format!("agent-{}", a.name_any())).collect();
        assert!(deployments.is_subset(&agent_names), "{name}: orphaned Deployments {deployments:?}");
        for children in
            [managed_names::<ServiceAccount>(&client, ns).await, managed_names::<ConfigMap>(&client, ns).await]
        {
            assert!(children.is_subset(&agent_names), "{name}: orphaned children {children:?}");
        }
    }
    // Every terminated row belongs to an agent that no longer exists.
    let terminated_live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM customer_agents WHERE terminated_at IS NOT NULL AND (admitted OR quota_reserved_replicas > 0)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(terminated_live, 0);
    drop(operator);
}
