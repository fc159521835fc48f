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
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{AgentDeployment, AgentPhase, Customer, HasConditions};
use prospector_store::agents::{UsageReport, record_usage};
use prospector_tests::fixtures::{SETTLE, agent, count, phase, phases, ready_customer, run_agents, wait_agent_phase};
use serde_json::json;
use sqlx::PgPool;

const WAIT: Duration = SETTLE;

/// Waits until a refused agent's QuotaExceeded condition gives `reason` and names the limit.
async fn wait_refusal(api: &Api<AgentDeployment>, name: &str, reason: &str, names_limit: &str) {
    eventually(&format!("{name} refused for {reason}: {names_limit}"), WAIT, || async {
        let a = api.get(name).await.ok()?;
        let c = a.status.as_ref().and_then(|s| s.condition(types::QUOTA_EXCEEDED))?;
        (c.is_true() && c.reason == reason && c.message.contains(names_limit)).then_some(())
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
    // While admissions are still landing, a refused agent may wait behind an older one; once the
    // customer is full, its next retry names the limit.
    let refused = phases.iter().find(|(_, p)| **p == AgentPhase::QuotaExceeded).unwrap().0;
    wait_refusal(&api, refused, reasons::AGENT_LIMIT_REACHED, "5 of 5 agents allowed by its tier (maxAgents)").await;
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
    wait_refusal(&api, refused, reasons::CONCURRENCY_LIMIT_REACHED, "3 of 3 in use (maxConcurrentAgents)").await;
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
        let cap = a.status.as_ref().and_then(|s| s.condition(types::COST_CAP_EXCEEDED))?;
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
        let cap = a.status.as_ref().and_then(|s| s.condition(types::COST_CAP_EXCEEDED))?;
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
        let ready = a.status.as_ref().and_then(|s| s.condition(types::READY))?;
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

fn condition<'a>(agent: &'a AgentDeployment, type_: &str) -> Option<&'a prospector_crds::Condition> {
    agent.status.as_ref().and_then(|s| s.condition(type_))
}

/// Waits until the agent is Failed for `reason`, and returns the Ready condition's message.
async fn wait_failed(api: &Api<AgentDeployment>, name: &str, reason: &str) -> String {
    eventually(&format!("agent {name} Failed with {reason}"), WAIT, || async {
        let a = api.get(name).await.ok()?;
        let ready = condition(&a, types::READY)?;
        (phase(&a) == Some(AgentPhase::Failed) && ready.reason == reason && !ready.is_true())
            .then(|| ready.message.clone())
    })
    .await
}

#[tokio::test]
async fn agents_whose_pods_cannot_run_fail_with_the_cause_and_recover() {
    let _operator = shared_operator();
    let client = client().await;
    // Room in the namespace quota for a pod no node can hold (the kwok node has 4Ti).
    let overrides = json!({"namespaceQuota": {"cpu": "100", "memory": "20Ti", "pods": 20, "gpus": 0}});
    let (namespace, _) = ready_customer(&client, &unique("failing"), "starter", overrides).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);

    // An image that cannot be pulled (tests/kwok/image-pull-failure.yaml plays the kubelet).
    let mut unpullable = agent("unpullable", 1);
    unpullable.spec.image = Some("registry.invalid/prospector/unpullable:1".into());
    api.create(&PostParams::default(), &unpullable).await.unwrap();
    // A pod no node can hold.
    let mut huge = agent("huge", 1);
    let quantity = |q: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.into());
    let resources = |memory: &str| k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some([("memory".to_owned(), quantity(memory))].into()),
        limits: Some([("memory".to_owned(), quantity(memory))].into()),
        ..Default::default()
    };
    huge.spec.resources = Some(resources("5Ti"));
    api.create(&PostParams::default(), &huge).await.unwrap();
    // A pod the namespace's ResourceQuota refuses (the starter tier has no GPUs).
    let mut gpu = agent("gpu", 1);
    gpu.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some([("nvidia.com/gpu".to_owned(), quantity("1"))].into()),
        limits: Some([("nvidia.com/gpu".to_owned(), quantity("1"))].into()),
        ..Default::default()
    });
    api.create(&PostParams::default(), &gpu).await.unwrap();

    let message = wait_failed(&api, "unpullable", reasons::IMAGE_PULL_FAILED).await;
    assert!(message.contains("ImagePullBackOff") && message.contains("unpullable"), "{message}");
    let message = wait_failed(&api, "huge", reasons::UNSCHEDULABLE).await;
    assert!(message.contains("Insufficient memory"), "{message}");
    let message = wait_failed(&api, "gpu", reasons::POD_CREATION_FAILED).await;
    assert!(message.contains("exceeded quota"), "{message}");
    let unpullable = api.get("unpullable").await.unwrap();
    assert_eq!(condition(&unpullable, types::QUOTA_EXCEEDED).map(|c| c.is_true()), Some(false), "admitted");

    // Each recovers once the cause goes away. Capacity appears without any change to the agent:
    // a node that can hold the pod joins, and the agent goes Running on its own.
    prospector_tests::controlplane::add_fake_node(&client, "kwok-node-big", "8Ti", &[]).await.unwrap();
    let running = wait_agent_phase(&api, "huge", AgentPhase::Running).await;
    assert_eq!(running.status.unwrap().ready_replicas, Some(1));
    // The other two are fixed in their spec: a pullable image, no GPU request.
    let fixes = [
        ("unpullable", json!({"spec": {"image": "registry.example/prospector/agent:2"}})),
        ("gpu", json!({"spec": {"resources": null}})),
    ];
    for (name, fix) in &fixes {
        api.patch(name, &PatchParams::default(), &Patch::Merge(fix)).await.unwrap();
    }
    for (name, _) in &fixes {
        let running = wait_agent_phase(&api, name, AgentPhase::Running).await;
        assert_eq!(running.status.unwrap().ready_replicas, Some(1), "{name}");
    }
}

#[tokio::test]
async fn a_deleting_agent_shows_terminating_until_its_cleanup_finishes() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) = ready_customer(&client, &unique("bye"), "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    run_agents(&api, &["leaving"]).await;
    // Another party's finalizer keeps the object after the operator's cleanup, so the status it
    // ends with can be read.
    let held = api.get("leaving").await.unwrap();
    let mut finalizers = held.metadata.finalizers.clone().unwrap_or_default();
    assert!(finalizers.iter().any(|f| f == "prospector.dev/cleanup"), "{finalizers:?}");
    finalizers.push("prospector.dev/test-hold".into());
    let hold = json!({"metadata": {"finalizers": finalizers}});
    api.patch("leaving", &PatchParams::default(), &Patch::Merge(&hold)).await.unwrap();

    api.delete("leaving", &DeleteParams::default()).await.unwrap();
    let terminating = eventually("Terminating after the cleanup", WAIT, || async {
        let a = api.get("leaving").await.ok()?;
        let cleaned = !a.metadata.finalizers.as_ref()?.iter().any(|f| f == "prospector.dev/cleanup");
        (cleaned && phase(&a) == Some(AgentPhase::Terminating)).then_some(a)
    })
    .await;
    let ready = condition(&terminating, types::READY).unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reasons::TERMINATING));
    assert!(terminating.status.as_ref().unwrap().deployment_id.is_some(), "the ids stay while it terminates");
    assert_eq!(quota_counters(&pool, customer_id).await, (0, 0), "the cleanup released the quota");
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &namespace).get_opt("agent-leaving").await.unwrap().is_none()
    );

    let release = json!({"metadata": {"finalizers": null}});
    api.patch("leaving", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    eventually("the agent gone", WAIT, || async { api.get_opt("leaving").await.ok()?.is_none().then_some(()) }).await;
}

/// The operator adds its finalizer beside one another party set at creation (once, after it),
/// and on deletion removes only its own.
#[tokio::test]
async fn an_agent_created_with_another_finalizer_keeps_it_and_gets_ours_once() {
    const THEIRS: &str = "example.com/gitops-hold";
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) = ready_customer(&client, &unique("shared"), "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    let mut held = agent("held", 1);
    held.metadata.finalizers = Some(vec![THEIRS.into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    let running = wait_agent_phase(&api, "held", AgentPhase::Running).await;
    assert_eq!(running.metadata.finalizers, Some(vec![THEIRS.into(), "prospector.dev/cleanup".into()]));
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 1));

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let cleaned = eventually("our finalizer removed, theirs kept", WAIT, || async {
        let a = api.get("held").await.ok()?;
        (a.metadata.finalizers == Some(vec![THEIRS.into()])).then_some(a)
    })
    .await;
    assert_eq!(phase(&cleaned), Some(AgentPhase::Terminating));
    assert_eq!(quota_counters(&pool, customer_id).await, (0, 0), "the cleanup released the quota");

    let release = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    eventually("the agent gone", WAIT, || async { api.get_opt("held").await.ok()?.is_none().then_some(()) }).await;
}

#[tokio::test]
async fn an_agent_scaled_to_zero_keeps_its_slot_and_is_not_running() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let customer_name = unique("idle");
    let (namespace, customer_id) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &agent("parked", 0)).await.unwrap();
    let parked = eventually("the agent Deployed and scaled to zero", WAIT, || async {
        let a = api.get("parked").await.ok()?;
        let ready = condition(&a, types::READY)?;
        (phase(&a) == Some(AgentPhase::Deployed) && ready.reason == reasons::SCALED_TO_ZERO).then_some(a)
    })
    .await;
    assert_eq!(parked.status.as_ref().unwrap().ready_replicas, Some(0));
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 0), "it counts as an agent, with no replicas");
    assert_eq!(deployment_replicas(&client, &namespace, "agent-parked").await, Some(0));
    let customers: Api<Customer> = Api::all(client.clone());
    eventually("the customer to count the parked agent", WAIT, || async {
        (customers.get(&customer_name).await.ok()?.status?.agents.as_deref() == Some("1/5")).then_some(())
    })
    .await;

    let scale = json!({"spec": {"replicas": 1}});
    api.patch("parked", &PatchParams::default(), &Patch::Merge(&scale)).await.unwrap();
    wait_agent_phase(&api, "parked", AgentPhase::Running).await;
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 1));
}

#[tokio::test]
async fn a_customer_is_quota_exceeded_only_when_something_was_refused() {
    let _operator = shared_operator();
    let client = client().await;
    let customer_name = unique("full");
    let (namespace, _) = ready_customer(&client, &customer_name, "starter", json!({"maxAgents": 2})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    let customers: Api<Customer> = Api::all(client.clone());
    let quota_exceeded =
        |customer: &Customer| customer.status.as_ref().and_then(|s| s.condition(types::QUOTA_EXCEEDED)).cloned();

    // Two of two agents: full, not exceeded.
    run_agents(&api, &["one", "two"]).await;
    let full = eventually("the customer full at 2/2", WAIT, || async {
        let c = customers.get(&customer_name).await.ok()?;
        (c.status.as_ref()?.agents.as_deref() == Some("2/2")).then_some(c)
    })
    .await;
    let condition = quota_exceeded(&full).unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", reasons::WITHIN_LIMITS));
    assert!(condition.message.contains("agents 2/2"), "full stays visible: {}", condition.message);

    // A third is refused: now the customer is over its quota.
    api.create(&PostParams::default(), &agent("three", 1)).await.unwrap();
    wait_agent_phase(&api, "three", AgentPhase::QuotaExceeded).await;
    let message = eventually("QuotaExceeded on the customer", WAIT, || async {
        let condition = quota_exceeded(&customers.get(&customer_name).await.ok()?)?;
        (condition.is_true() && condition.reason == reasons::AGENTS_WAITING).then_some(condition.message)
    })
    .await;
    assert!(message.starts_with("1 agent(s) refused"), "{message}");

    // Withdrawing the refused agent clears it.
    api.delete("three", &DeleteParams::default()).await.unwrap();
    let cleared = || async {
        let condition = quota_exceeded(&customers.get(&customer_name).await.ok()?)?;
        (!condition.is_true()).then_some(())
    };
    eventually("QuotaExceeded cleared", WAIT, cleared).await;

    // A running agent refused a scale-up (1 + 3 replicas of the starter tier's 3) is a refusal
    // too; asking for what fits again clears it.
    let scale = |replicas: i32| json!({"spec": {"replicas": replicas}});
    api.patch("two", &PatchParams::default(), &Patch::Merge(&scale(3))).await.unwrap();
    eventually("QuotaExceeded for the refused scale-up", WAIT, || async {
        let condition = quota_exceeded(&customers.get(&customer_name).await.ok()?)?;
        (condition.is_true() && condition.reason == reasons::AGENTS_WAITING).then_some(())
    })
    .await;
    assert_eq!(agent_phase_of(&api, "two").await, Some(AgentPhase::Running), "it keeps running what it holds");
    api.patch("two", &PatchParams::default(), &Patch::Merge(&scale(1))).await.unwrap();
    eventually("QuotaExceeded cleared after the scale-down", WAIT, cleared).await;
}

async fn agent_phase_of(api: &Api<AgentDeployment>, name: &str) -> Option<AgentPhase> {
    phase(&api.get(name).await.ok()?)
}

#[tokio::test]
async fn changing_the_agent_type_rolls_the_image_and_the_row_together() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, _) = ready_customer(&client, &unique("retype"), "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    run_agents(&api, &["shifty"]).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
    let container = |d: Deployment| d.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let before = container(deployments.get("agent-shifty").await.unwrap());
    assert!(before.image.as_deref().unwrap().contains("agent-lead-qualifier"), "{:?}", before.image);

    let retype = json!({"spec": {"agentType": "outreach_writer"}});
    api.patch("shifty", &PatchParams::default(), &Patch::Merge(&retype)).await.unwrap();
    let after = eventually("the Deployment on the new type's image", WAIT, || async {
        let c = container(deployments.get("agent-shifty").await.ok()?);
        c.image.as_deref()?.contains("agent-outreach-writer").then_some(c)
    })
    .await;
    let env: BTreeMap<String, Option<String>> = after.env.unwrap().into_iter().map(|e| (e.name, e.value)).collect();
    assert_eq!(env["PROSPECTOR_AGENT_TYPE"].as_deref(), Some("outreach_writer"));
    let uid = api.get("shifty").await.unwrap().metadata.uid.unwrap();
    let stored: String = sqlx::query_scalar("SELECT agent_type FROM customer_agents WHERE k8s_uid = $1::uuid")
        .bind(&uid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "outreach_writer", "Postgres follows the type");
    wait_agent_phase(&api, "shifty", AgentPhase::Running).await;
}

/// Leases have no fencing: a replica that just lost its lease can finish a reconcile after the
/// new leader ran the object's cleanup, and leave a row holding quota for an object that is
/// gone (the fault soak found one). The sweep releases such rows, whether the name is free or
/// now another object's, and leaves the rows of live objects alone.
#[tokio::test]
async fn rows_left_for_objects_that_are_gone_are_released_by_the_sweep() {
    use prospector_store::agents::{AgentRecord, reserve_agent_quota, upsert_agent};
    use prospector_store::documents::{DocumentRecord, SourceKind, reserve_document_quota, upsert_document};

    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) = ready_customer(&client, &unique("orphans"), "starter", json!({})).await;
    let api: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    run_agents(&api, &["live"]).await;
    let live_uid = api.get("live").await.unwrap().metadata.uid.unwrap();
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 1));

    // What a deposed leader's late reconciles write: an agent row under the live agent's name
    // but an older object's UID, and a document row whose object no longer exists, each holding
    // quota.
    let ghost_agent = uuid::Uuid::new_v4();
    let month_start = Utc::now().date_naive().with_day(1).unwrap();
    let row = upsert_agent(
        &pool,
        &AgentRecord {
            k8s_uid: ghost_agent,
            customer_id,
            namespace: namespace.clone(),
            name: "live".into(),
            agent_name: "live".into(),
            agent_type: prospector_crds::AgentType::LeadQualifier,
            model: "gpt-4".into(),
            config: json!({}),
            replicas: 1,
            deployment_id: format!("agent_{customer_id}_0bad0bad"),
            created_at: Utc::now() - chrono::Duration::hours(1),
        },
        month_start,
    )
    .await
    .unwrap()
    .row;
    let reservation = reserve_agent_quota(&pool, customer_id, row.id, 1, month_start).await.unwrap();
    assert!(matches!(reservation.admission, prospector_store::agents::Admission::Admitted { .. }), "{reservation:?}");
    let ghost_document = uuid::Uuid::new_v4();
    let document = upsert_document(
        &pool,
        &DocumentRecord {
            k8s_uid: ghost_document,
            customer_id,
            document_id: format!("doc_{}", &ghost_document.simple().to_string()[..16]),
            namespace: namespace.clone(),
            name: "deleted-notes".into(),
            filename: "notes.txt".into(),
            source_kind: SourceKind::Text,
            blob_sha256: None,
            tags: vec![],
            generation: 1,
            source_url: None,
        },
    )
    .await
    .unwrap();
    let admission = reserve_document_quota(&pool, customer_id, document.id, 1_000).await.unwrap();
    assert_eq!(admission, prospector_store::documents::DocumentAdmission::Admitted { bytes: 1_000 });

    let live = |uid: uuid::Uuid, table: &'static str, column: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(&format!("SELECT {column} IS NULL FROM {table} WHERE k8s_uid = $1"))
                .bind(uid)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    eventually("the sweep releases both rows", WAIT, || async {
        let agent = live(ghost_agent, "customer_agents", "terminated_at").await;
        let document = live(ghost_document, "knowledge_documents", "deleted_at").await;
        (!agent && !document).then_some(())
    })
    .await;
    assert!(live(live_uid.parse().unwrap(), "customer_agents", "terminated_at").await, "the live agent's row stays");
    assert_eq!(quota_counters(&pool, customer_id).await, (1, 1), "only the live agent holds quota");
    let documents: (i32, i64) =
        sqlx::query_as("SELECT documents_count, storage_used_bytes FROM customer_quotas WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(documents, (0, 0), "the document's quota is released");
    wait_agent_phase(&api, "live", AgentPhase::Running).await;
}
