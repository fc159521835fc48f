//! AgentDeployments against the real apiserver, controller-manager, scheduler, kwok and
//! Postgres, with the operator running in-process: the Deployment with its env and
//! ServiceAccount, Running through kwok, termination; exact quota admission under concurrency;
//! the cost cap; and suspension.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use common::{client, eventually, shared_operator, unique};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use prospector_crds::conditions::types;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, find_condition_in};
use prospector_store::agents::{UsageReport, record_usage};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(90);

/// Creates a Customer and waits until it is Ready; returns its namespace and id.
async fn ready_customer(client: &Client, name: &str, tier: &str, overrides: Value) -> (String, i64) {
    let customers: Api<Customer> = Api::all(client.clone());
    let customer: Customer = serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "Customer",
        "metadata": {"name": name},
        "spec": {"companyName": "Acme", "email": format!("{name}@example.com"), "tier": tier, "quotaOverrides": overrides}
    }))
    .unwrap();
    customers.create(&PostParams::default(), &customer).await.unwrap();
    eventually(&format!("customer {name} Ready"), WAIT, || async {
        let c = customers.get(name).await.ok()?;
        let status = c.status?;
        let ready = find_condition_in(Some(&status.conditions), types::READY)?;
        ready.is_true().then(|| (status.namespace.unwrap(), status.customer_id.unwrap()))
    })
    .await
}

fn agent(name: &str, replicas: i32) -> AgentDeployment {
    serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": {"agentName": format!("Agent {name}"), "agentType": "lead_qualifier", "model": "llama3.1-8b", "replicas": replicas}
    }))
    .unwrap()
}

fn phase(agent: &AgentDeployment) -> Option<AgentPhase> {
    agent.status.as_ref().and_then(|s| s.phase)
}

/// Phases of every agent in `namespace`, once every agent has one.
async fn phases(api: &Api<AgentDeployment>) -> Option<BTreeMap<String, AgentPhase>> {
    let list = api.list(&ListParams::default()).await.ok()?;
    list.items.iter().map(|a| phase(a).map(|p| (a.metadata.name.clone().unwrap(), p))).collect()
}

fn count(phases: &BTreeMap<String, AgentPhase>, phase: AgentPhase) -> usize {
    phases.values().filter(|p| **p == phase).count()
}

/// Creates one-replica agents and waits until all of them are Running.
async fn run_agents(api: &Api<AgentDeployment>, names: &[&str]) {
    for name in names {
        api.create(&PostParams::default(), &agent(name, 1)).await.unwrap();
    }
    eventually("the agents Running", WAIT, || async {
        let p = phases(api).await?;
        (p.len() == names.len() && count(&p, AgentPhase::Running) == names.len()).then_some(())
    })
    .await;
}

async fn quota_counters(pool: &PgPool, customer_id: i64) -> (i32, i32) {
    sqlx::query_as("SELECT active_agents_count, active_replicas FROM customer_quotas WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn agent_lifecycle_runs_a_deployment_and_terminates_cleanly() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) = ready_customer(&client, &unique("agentco"), "starter", json!({})).await;
    let agents: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    agents.create(&PostParams::default(), &agent("qualifier", 1)).await.unwrap();

    let running = eventually("the agent Running", WAIT, || async {
        let a = agents.get("qualifier").await.ok()?;
        (phase(&a) == Some(AgentPhase::Running)).then_some(a)
    })
    .await;
    let status = running.status.unwrap();
    let deployment_id = status.deployment_id.unwrap();
    let prefix = format!("agent_{customer_id}_");
    assert!(deployment_id.starts_with(&prefix) && deployment_id.len() == prefix.len() + 8, "{deployment_id}");
    assert_eq!(status.ready_replicas, Some(1));
    assert!(status.deployed_at.is_some());

    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("agent-qualifier").await.unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("agent-qualifier"));
    let env: BTreeMap<String, Option<String>> =
        pod.containers[0].env.clone().unwrap().into_iter().map(|e| (e.name, e.value)).collect();
    assert_eq!(env["PROSPECTOR_DEPLOYMENT_ID"].as_deref(), Some(deployment_id.as_str()));
    assert_eq!(env["PROSPECTOR_AGENT_ID"], status.agent_id.map(|id| id.to_string()));
    assert_eq!(env["PROSPECTOR_AGENT_TYPE"].as_deref(), Some("lead_qualifier"));
    assert!(env.contains_key("PROSPECTOR_API_KEY") && env.contains_key("PROSPECTOR_API_URL"));
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &namespace).get("agent-qualifier").await.unwrap();
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 1));

    agents.delete("qualifier", &DeleteParams::default()).await.unwrap();
    eventually("the AgentDeployment gone", WAIT, || async {
        agents.get_opt("qualifier").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("the Deployment gone", WAIT, || async {
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt("agent-qualifier")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let terminated: bool =
        sqlx::query_scalar("SELECT terminated_at IS NOT NULL FROM customer_agents WHERE deployment_id = $1")
            .bind(&deployment_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(terminated);
    assert_eq!(quota_counters(&pool, customer_id).await, (0, 0), "the quota is released");
}

/// Applies `n` agents at once, waits for every one to settle, and returns the phases.
async fn burst(api: &Api<AgentDeployment>, n: usize, expect_running: usize) -> BTreeMap<String, AgentPhase> {
    join_all((0..n).map(|i| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &agent(&format!("a{i:02}"), 1)).await.unwrap() }
    }))
    .await;
    eventually(&format!("{expect_running} Running and the rest QuotaExceeded"), WAIT, || async {
        let phases = phases(api).await?;
        (phases.len() == n
            && count(&phases, AgentPhase::Running) == expect_running
            && count(&phases, AgentPhase::QuotaExceeded) == n - expect_running)
            .then_some(phases)
    })
    .await
}

/// Deletes two running agents and checks that exactly the next two waiting ones are admitted.
async fn free_two_and_admit_the_next_two(
    api: &Api<AgentDeployment>,
    pool: &PgPool,
    customer_id: i64,
    running: usize,
    total: usize,
) {
    let before = phases(api).await.unwrap();
    let waiting_in_order: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM customer_agents WHERE customer_id = $1 AND terminated_at IS NULL AND NOT admitted
          ORDER BY created_at, id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await
    .unwrap();
    let victims: Vec<&String> =
        before.iter().filter(|(_, p)| **p == AgentPhase::Running).map(|(n, _)| n).take(2).collect();
    for victim in &victims {
        api.delete(victim, &DeleteParams::default()).await.unwrap();
    }
    let after = eventually("exactly the next two admitted", WAIT, || async {
        let phases = phases(api).await?;
        (phases.len() == total - 2
            && count(&phases, AgentPhase::Running) == running
            && count(&phases, AgentPhase::QuotaExceeded) == total - 2 - running)
            .then_some(phases)
    })
    .await;
    for next in &waiting_in_order[..2] {
        assert_eq!(after[next], AgentPhase::Running, "{next} was first in line: {after:?}");
    }
    for later in &waiting_in_order[2..] {
        assert_eq!(after[later], AgentPhase::QuotaExceeded, "{later} must still wait: {after:?}");
    }
}

#[tokio::test]
async fn twelve_agents_at_once_admit_exactly_the_agent_limit() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    // Only the agent limit (5) binds here.
    let customer_name = unique("burst");
    let (namespace, customer_id) =
        ready_customer(&client, &customer_name, "starter", json!({"maxConcurrentAgents": 50})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    let phases = burst(&api, 12, 5).await;
    // The burst's admissions reach the customer's usage (refreshes coalesce per burst).
    let customers: Api<Customer> = Api::all(client.clone());
    eventually("the customer's usage to count 5 of 5 agents", WAIT, || async {
        let status = customers.get(&customer_name).await.ok()?.status?;
        (status.usage?.agents.used == 5 && status.agents.as_deref() == Some("5/5")).then_some(())
    })
    .await;
    let refused = phases.iter().find(|(_, p)| **p == AgentPhase::QuotaExceeded).unwrap().0;
    let refused = api.get(refused).await.unwrap();
    let condition =
        find_condition_in(refused.status.as_ref().map(|s| s.conditions.as_slice()), types::QUOTA_EXCEEDED).unwrap();
    assert!(
        condition.message.contains("maxAgents") || condition.message.contains("older agent"),
        "{}",
        condition.message
    );
    let deployments =
        Api::<Deployment>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await.unwrap();
    assert_eq!(deployments.items.len(), 5, "refused agents create nothing");
    assert_eq!(quota_counters(&pool, customer_id).await, (5, 5));
    free_two_and_admit_the_next_two(&api, &pool, customer_id, 5, 12).await;
    assert_eq!(quota_counters(&pool, customer_id).await, (5, 5));
}

#[tokio::test]
async fn twelve_agents_at_once_admit_exactly_the_concurrency_limit() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    // Only the concurrent-replica limit (3) binds here.
    let (namespace, customer_id) = ready_customer(&client, &unique("conc"), "starter", json!({"maxAgents": 50})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    let phases = burst(&api, 12, 3).await;
    let refused = phases.iter().find(|(_, p)| **p == AgentPhase::QuotaExceeded).unwrap().0;
    let refused = api.get(refused).await.unwrap();
    let condition =
        find_condition_in(refused.status.as_ref().map(|s| s.conditions.as_slice()), types::QUOTA_EXCEEDED).unwrap();
    assert!(
        condition.message.contains("maxConcurrentAgents") || condition.message.contains("older agent"),
        "{}",
        condition.message
    );
    assert_eq!(quota_counters(&pool, customer_id).await, (3, 3));
    free_two_and_admit_the_next_two(&api, &pool, customer_id, 3, 12).await;
    assert_eq!(quota_counters(&pool, customer_id).await, (3, 3));
}

async fn deployment_replicas(client: &Client, namespace: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), namespace).get(name).await.ok()?.spec?.replicas
}

#[tokio::test]
async fn the_cost_cap_holds_agents_at_zero_until_raised_or_the_month_turns() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let customer_name = unique("spender");
    let (namespace, customer_id) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &agent("worker", 1)).await.unwrap();
    let deployment_id = eventually("the agent Running", WAIT, || async {
        let a = api.get("worker").await.ok()?;
        (phase(&a) == Some(AgentPhase::Running)).then(|| a.status.unwrap().deployment_id.unwrap())
    })
    .await;

    // The agent reports usage past the $100 cap of the starter tier.
    let today = operator.clock.now_date();
    let report = UsageReport {
        tasks: 4,
        completed_tasks: 3,
        failed_tasks: 1,
        total_latency_ms: 400.0,
        api_calls: 9,
        leads: 2,
        cost_usd: 120.0,
        tokens: 1000,
    };
    assert_eq!(record_usage(&pool, &deployment_id, &report, today).await.unwrap(), Some(customer_id));
    let capped = eventually("CostCapExceeded and zero replicas", WAIT, || async {
        let a = api.get("worker").await.ok()?;
        let cap = find_condition_in(a.status.as_ref().map(|s| s.conditions.as_slice()), types::COST_CAP_EXCEEDED)?;
        (cap.is_true()
            && phase(&a) == Some(AgentPhase::Suspended)
            && deployment_replicas(&client, &namespace, "agent-worker").await == Some(0))
        .then_some(a)
    })
    .await;
    let performance = capped.status.unwrap().performance.unwrap();
    assert_eq!((performance.total_tasks, performance.completed_tasks, performance.failed_tasks), (4, 3, 1));
    assert_eq!(performance.average_latency_ms, Some(100.0));
    assert_eq!(performance.total_cost_usd, 120.0);

    // Raising the cap resumes the agent.
    let customers: Api<Customer> = Api::all(client.clone());
    let raise = json!({"spec": {"quotaOverrides": {"maxCostPerMonthUsd": 500.0}}});
    customers.patch(&customer_name, &PatchParams::default(), &Patch::Merge(&raise)).await.unwrap();
    eventually("the agent running again after the raise", WAIT, || async {
        let a = api.get("worker").await.ok()?;
        (phase(&a) == Some(AgentPhase::Running)
            && deployment_replicas(&client, &namespace, "agent-worker").await == Some(1))
        .then_some(())
    })
    .await;

    // Spending past the raised cap holds it again; the turn of the month lifts the hold.
    let report = UsageReport { cost_usd: 400.0, ..Default::default() };
    record_usage(&pool, &deployment_id, &report, today).await.unwrap();
    eventually("held again", WAIT, || async {
        (deployment_replicas(&client, &namespace, "agent-worker").await == Some(0)).then_some(())
    })
    .await;
    let now = operator.clock.now_utc();
    let (year, month) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    operator.clock.set(Utc.with_ymd_and_hms(year, month, 1, 0, 0, 5).unwrap());
    eventually("the agent running in the new month", WAIT, || async {
        let a = api.get("worker").await.ok()?;
        let cap = find_condition_in(a.status.as_ref().map(|s| s.conditions.as_slice()), types::COST_CAP_EXCEEDED)?;
        (phase(&a) == Some(AgentPhase::Running)
            && !cap.is_true()
            && deployment_replicas(&client, &namespace, "agent-worker").await == Some(1))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn suspending_a_customer_scales_its_agents_to_zero_and_back() {
    let _operator = shared_operator();
    let client = client().await;
    let customer_name = unique("paused");
    let (namespace, _) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    run_agents(&api, &["one", "two"]).await;
    let customers: Api<Customer> = Api::all(client.clone());
    for (suspended, expected_phase, replicas) in [(true, AgentPhase::Suspended, 0), (false, AgentPhase::Running, 1)] {
        let patch = json!({"spec": {"suspended": suspended}});
        customers.patch(&customer_name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        eventually(&format!("agents {expected_phase:?} with {replicas} replicas"), WAIT, || async {
            let p = phases(&api).await?;
            let one = deployment_replicas(&client, &namespace, "agent-one").await?;
            let two = deployment_replicas(&client, &namespace, "agent-two").await?;
            (count(&p, expected_phase) == 2 && one == replicas && two == replicas).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn an_agent_outside_a_customer_namespace_is_reported_not_run() {
    let _operator = shared_operator();
    let t = prospector_tests::ClusterTest::new("stray").await;
    let api: Api<AgentDeployment> = Api::namespaced(t.client.clone(), &t.namespace);
    api.create(&PostParams::default(), &agent("stray", 1)).await.unwrap();
    let message = eventually("InvalidSpec on the stray agent", WAIT, || async {
        let a = api.get("stray").await.ok()?;
        let ready = find_condition_in(a.status.as_ref().map(|s| s.conditions.as_slice()), types::READY)?;
        (ready.reason == "InvalidSpec" && phase(&a) == Some(AgentPhase::Pending)).then(|| ready.message.clone())
    })
    .await;
    assert!(message.contains("not a customer namespace"), "{message}");
    let deployments =
        Api::<Deployment>::namespaced(t.client.clone(), &t.namespace).list(&ListParams::default()).await.unwrap();
    assert!(deployments.items.is_empty(), "nothing runs outside a customer namespace");
    // Deletion still works: the finalizer has nothing to release.
    api.delete("stray", &DeleteParams::default()).await.unwrap();
    eventually("the stray agent gone", WAIT, || async { api.get_opt("stray").await.ok()?.is_none().then_some(()) })
        .await;
}

#[tokio::test]
async fn deleting_a_customer_stops_its_agents_and_releases_everything() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let customer_name = unique("leaving");
    let (namespace, customer_id) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    run_agents(&api, &["one", "two"]).await;

    Api::<Customer>::all(client.clone()).delete(&customer_name, &DeleteParams::default()).await.unwrap();
    eventually("the namespace and its agents gone", Duration::from_secs(120), || async {
        let gone =
            Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get_opt(&namespace).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customer_agents WHERE customer_id = $1 AND terminated_at IS NULL")
            .bind(customer_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 0, "every agent row is terminated");
    assert_eq!(quota_counters(&pool, customer_id).await, (0, 0), "the quota is released");
}
