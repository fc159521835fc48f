//! Scale benchmark (not a test): N Customers and M AgentDeployments created against the local
//! control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) and Postgres, with
//! the release-built operator binary. Reports the time until all are Ready, create→Ready
//! latency percentiles, and the operator's peak and steady RSS.
//!
//! `cargo bench -p prospector-operator --bench scale` runs 1,000 customers with 5 agents each.
//! `BENCH_CUSTOMERS` and `BENCH_AGENTS_PER_CUSTOMER` change the size.
//!
//! The peer (`BENCH_MODE=floor`, or `both`, the default, which runs it after the operator) is the
//! floor of what the control plane can do on the same machine: the benchmark client itself
//! creates the very objects the operator would (each customer's namespace, ResourceQuota,
//! LimitRange, NetworkPolicy, ICP ConfigMap and Secret; each agent's ServiceAccount, ConfigMap and Deployment,
//! from the operator's own builders) with no custom resources, no Postgres and no status writes,
//! and waits for every Deployment to have its replica available.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use prospector_crds::conditions::types;
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, HasConditions};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, shared_cluster, shared_postgres};
use serde_json::json;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

type Created = Arc<Mutex<HashMap<String, Instant>>>;

/// Records the first moment each object satisfies `ready`.
fn watch_ready<K>(api: Api<K>, ready: fn(&K) -> bool, seen: Created) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(object)) = stream.try_next().await {
            if ready(&object) {
                let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                seen.lock().unwrap().entry(key).or_insert_with(Instant::now);
            }
        }
    })
}

fn main() {
    let customers_n = env_usize("BENCH_CUSTOMERS", 1000);
    let agents_per_customer = env_usize("BENCH_AGENTS_PER_CUSTOMER", 5);
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "both".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if matches!(mode.as_str(), "both" | "operator") {
        runtime.block_on(bench(customers_n, agents_per_customer));
    }
    if matches!(mode.as_str(), "both" | "floor") {
        runtime.block_on(floor(customers_n, agents_per_customer));
    }
}

/// The control plane's floor: the operator's child objects created directly by the client.
async fn floor(customers_n: usize, agents_per_customer: usize) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, ResourceQuota, Secret, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use prospector_crds::AgentDeploymentSpec;
    use prospector_operator::desired::agent::AgentChildren;
    use prospector_operator::desired::customer::CustomerChildren;

    let cluster = shared_cluster();
    let client: Client = cluster.client().await.unwrap();
    let pro = prospector_tests::fixtures::example_tiers()
        .into_iter()
        .find(|tier| tier.name_any() == "pro")
        .expect("examples/tiers.yaml defines pro");
    let quota = pro.spec.namespace_quota.clone();
    // Owner references would point at objects that do not exist here (the garbage collector
    // would delete the children), so the floor's objects have none.
    let no_owner = OwnerReference::default();
    let agent_spec: AgentDeploymentSpec =
        serde_json::from_value(json!({"agentName": "Agent", "agentType": "lead_qualifier"})).unwrap();

    let agent_created: Created = Arc::default();
    let agent_ready: Created = Arc::default();
    let watcher_task = watch_ready(
        Api::<Deployment>::all(client.clone()),
        |d| d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= 1,
        agent_ready.clone(),
    );
    let start = Instant::now();
    let mut customer_latency: Vec<Duration> = Vec::new();
    let customer_latencies = Arc::new(Mutex::new(Vec::new()));
    futures::stream::iter(0..customers_n)
        .for_each_concurrent(32, |index| {
            let client = client.clone();
            let (quota, no_owner, agent_spec) = (quota.clone(), no_owner.clone(), agent_spec.clone());
            let (agent_created, customer_latencies) = (agent_created.clone(), customer_latencies.clone());
            async move {
                let name = format!("floor-{index:04}");
                let namespace = customer_namespace(&name);
                let children = CustomerChildren {
                    customer_name: &name,
                    customer_id: index as i64 + 1,
                    tier: "pro",
                    namespace: &namespace,
                    platform_namespace: "prospector-system",
                    owner: no_owner.clone(),
                };
                let began = Instant::now();
                let pp = PostParams::default();
                let mut ns = children.namespace();
                ns.metadata.owner_references = None;
                Api::<Namespace>::all(client.clone()).create(&pp, &ns).await.unwrap();
                Api::<ResourceQuota>::namespaced(client.clone(), &namespace)
                    .create(&pp, &children.resource_quota(&quota))
                    .await
                    .unwrap();
                Api::<LimitRange>::namespaced(client.clone(), &namespace)
                    .create(&pp, &children.limit_range())
                    .await
                    .unwrap();
                Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
                    .create(&pp, &children.network_policy())
                    .await
                    .unwrap();
                Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                    .create(&pp, &children.icp_config_map(None))
                    .await
                    .unwrap();
                Api::<Secret>::namespaced(client.clone(), &namespace)
                    .create(&pp, &children.api_key_secret("sa_floor_key"))
                    .await
                    .unwrap();
                customer_latencies.lock().unwrap().push(began.elapsed());
                for i in 0..agents_per_customer {
                    let agent_name = format!("agent-{i}");
                    let deployment_id = format!("agent_{}_{:08x}", index + 1, i);
                    let agent = AgentChildren {
                        name: &agent_name,
                        namespace: &namespace,
                        customer_name: &name,
                        spec: &agent_spec,
                        owner: no_owner.clone(),
                        image: "ghcr.io/prospector/agent:bench",
                        api_url: "http://prospector-api.prospector-system:8080",
                        agent_id: (index * agents_per_customer + i) as i64 + 1,
                        deployment_id: &deployment_id,
                    };
                    let key = format!("{namespace}/{}", prospector_operator::desired::agent::child_name(&agent_name));
                    agent_created.lock().unwrap().insert(key, Instant::now());
                    let strip = |mut meta: ObjectMeta| {
                        meta.owner_references = None;
                        meta
                    };
                    let mut sa = agent.service_account();
                    sa.metadata = strip(sa.metadata);
                    Api::<ServiceAccount>::namespaced(client.clone(), &namespace).create(&pp, &sa).await.unwrap();
                    let mut cm = agent.config_map();
                    cm.metadata = strip(cm.metadata);
                    Api::<ConfigMap>::namespaced(client.clone(), &namespace).create(&pp, &cm).await.unwrap();
                    let mut deployment = agent.deployment(1);
                    deployment.metadata = strip(deployment.metadata);
                    Api::<Deployment>::namespaced(client.clone(), &namespace).create(&pp, &deployment).await.unwrap();
                }
            }
        })
        .await;
    let created_in = start.elapsed();
    let total_agents = customers_n * agents_per_customer;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while agent_ready.lock().unwrap().keys().filter(|k| k.starts_with("cust-floor-")).count() < total_agents {
        if Instant::now() > deadline {
            eprintln!("floor gave up");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ready_in = start.elapsed();
    watcher_task.abort();
    customer_latency.extend(customer_latencies.lock().unwrap().iter().copied());
    customer_latency.sort();
    let agent_latency = latencies(&agent_created, &agent_ready);
    println!(
        "floor (no operator): {customers_n} customers x {agents_per_customer} agents = {total_agents} Deployments"
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!("| all objects created (client side) | {:.1} s |", created_in.as_secs_f64());
    println!("| all Deployments available | {:.1} s |", all_ready_in.as_secs_f64());
    println!("| customer children created p50 | {:.3} s |", percentile(&customer_latency, 0.5).as_secs_f64());
    println!("| customer children created p99 | {:.3} s |", percentile(&customer_latency, 0.99).as_secs_f64());
    println!("| Deployment create→available p50 | {:.3} s |", percentile(&agent_latency, 0.5).as_secs_f64());
    println!("| Deployment create→available p99 | {:.3} s |", percentile(&agent_latency, 0.99).as_secs_f64());
}

/// create→ready durations of the objects seen ready, sorted.
fn latencies(created: &Created, ready: &Created) -> Vec<Duration> {
    let created = created.lock().unwrap();
    let ready = ready.lock().unwrap();
    let mut out: Vec<Duration> =
        created.iter().filter_map(|(k, t)| ready.get(k).map(|r| r.saturating_duration_since(*t))).collect();
    out.sort();
    out
}

async fn bench(customers_n: usize, agents_per_customer: usize) {
    let cluster = shared_cluster();
    let client: Client = cluster.client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    prospector_tests::fixtures::install_platform(&client).await;

    let http_port = free_port().unwrap();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let operator = ManagedProcess::spawn(
        "operator",
        std::path::Path::new(env!("CARGO_BIN_EXE_prospector-operator")),
        &[
            "run".into(),
            format!("--http-addr=127.0.0.1:{http_port}"),
            "--leader-election=false".into(),
            // The benchmark creates no documents; the model would only add to the RSS measured.
            "--embedder-mode=external".into(),
        ],
        RunAs::Current,
        &process_dir().join("bench-operator.log"),
        &[("DATABASE_URL", &db.url), ("KUBECONFIG", &kubeconfig), ("RUST_LOG", "warn")],
    )
    .unwrap();
    let pid = operator.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let customer_created: Created = Arc::default();
    let customer_ready: Created = Arc::default();
    let agent_created: Created = Arc::default();
    let agent_ready: Created = Arc::default();
    let watchers = [
        watch_ready(
            Api::<Customer>::all(client.clone()),
            |c| c.status.as_ref().and_then(|s| s.condition(types::READY)).is_some_and(|r| r.is_true()),
            customer_ready.clone(),
        ),
        watch_ready(
            Api::<AgentDeployment>::all(client.clone()),
            |a| a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running),
            agent_ready.clone(),
        ),
    ];

    let peak_sampler = {
        let peak = Arc::new(Mutex::new(0u64));
        let sampled = peak.clone();
        tokio::spawn(async move {
            loop {
                let rss = rss_kib(pid, "VmRSS:");
                {
                    let mut peak = sampled.lock().unwrap();
                    *peak = (*peak).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        peak
    };

    let start = Instant::now();
    let names: Vec<String> = (0..customers_n).map(|i| format!("bench-{i:04}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(32, |name| {
            let client = client.clone();
            let customer_created = customer_created.clone();
            let agent_created = agent_created.clone();
            let customer_ready = customer_ready.clone();
            async move {
                let customer = prospector_tests::fixtures::customer(&name, "pro", json!({}));
                customer_created.lock().unwrap().insert(format!("/{name}"), Instant::now());
                Api::<Customer>::all(client.clone()).create(&PostParams::default(), &customer).await.unwrap();
                // Agents go into the namespace the operator creates: wait (on the watch, without
                // loading the apiserver) until the customer is Ready.
                let namespace = customer_namespace(&name);
                while !customer_ready.lock().unwrap().contains_key(&format!("/{name}")) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let agents: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
                for i in 0..agents_per_customer {
                    let agent = prospector_tests::fixtures::agent(&format!("agent-{i}"), 1);
                    agent_created.lock().unwrap().insert(format!("{namespace}/agent-{i}"), Instant::now());
                    agents.create(&PostParams::default(), &agent).await.unwrap();
                }
            }
        })
        .await;
    let created_in = start.elapsed();

    let total_agents = customers_n * agents_per_customer;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let customers_ready = customer_ready.lock().unwrap().len();
        let agents_ready = agent_ready.lock().unwrap().len();
        if customers_ready >= customers_n && agents_ready >= total_agents {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "gave up: {customers_ready}/{customers_n} customers and {agents_ready}/{total_agents} agents Ready"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ready_in = start.elapsed();
    let peak_rss = *peak_sampler.lock().unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let steady_rss = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");

    let customer_latency = latencies(&customer_created, &customer_ready);
    let agent_latency = latencies(&agent_created, &agent_ready);
    for w in watchers {
        w.abort();
    }
    println!("scale benchmark: {customers_n} customers x {agents_per_customer} agents = {total_agents} agents");
    println!("| metric | value |");
    println!("|---|---|");
    println!("| all objects created (client side) | {:.1} s |", created_in.as_secs_f64());
    println!("| all Ready (customers Ready, agents Running) | {:.1} s |", all_ready_in.as_secs_f64());
    println!("| customers Ready | {}/{customers_n} |", customer_latency.len());
    println!("| agents Running | {}/{total_agents} |", agent_latency.len());
    for (what, l) in [("customer", &customer_latency), ("agent", &agent_latency)] {
        println!("| {what} create→Ready p50 | {:.3} s |", percentile(l, 0.5).as_secs_f64());
        println!("| {what} create→Ready p99 | {:.3} s |", percentile(l, 0.99).as_secs_f64());
    }
    println!("| operator RSS idle | {:.1} MiB |", idle_rss as f64 / 1024.0);
    println!("| operator RSS peak (VmHWM) | {:.1} MiB |", hwm.max(peak_rss) as f64 / 1024.0);
    println!("| operator RSS steady (15 s after) | {:.1} MiB |", steady_rss as f64 / 1024.0);
    drop(operator);
}
