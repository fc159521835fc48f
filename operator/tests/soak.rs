//! Fault soak: a seeded random workload creates, edits and deletes tiers, customers, agents and
//! documents (text, PDF, DOCX and corrupt files), while a second loop, on a schedule drawn from
//! the same seed, SIGKILLs the operator's leader and its standby and the embedding worker, and
//! restarts Postgres and kube-apiserver. A supervisor starts any process that exits again, as a
//! kubelet would. With the faults stopped, everything must converge within a bound, and then:
//! Kubernetes and Postgres agree on every object; every counter equals a recount from the rows;
//! no orphan namespace, child, chunk, blob or task is left; no document is left outside
//! Ready/Failed (or Pending on a refusal that holds nothing); no log holds a panic.
//!
//! `PROSPECTOR_SOAK_SECONDS` (default 180: the profile `make test` runs; 1800 for the long one)
//! and `PROSPECTOR_SOAK_SEED` (default: drawn, and printed with the fault schedule) replay a run.
//! Its own test binary: it restarts the control plane's apiserver under every test of its
//! process.

mod common;
#[path = "common/process.rs"]
mod process;
#[path = "../../embedder/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use process::{OperatorProcess, embedder_binary, start_operator};
use prospector_crds::conditions::types;
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, DocumentPhase, HasConditions, KnowledgeDocument, Tier};
use prospector_tests::process::{ManagedProcess, RunAs};
use prospector_tests::{ControlPlane, PostgresServer, process_dir, random_suffix, shared_cluster};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The field manager the workload applies with.
const MANAGER: &str = "soak-workload";
/// The customers the workload picks from (created, edited, deleted and created again).
const CUSTOMERS: usize = 6;
/// Agents and documents per customer the workload picks from.
const AGENTS: usize = 5;
const DOCUMENTS: usize = 6;
/// Tiers of the soak's own (besides the example tiers, which stay).
const SOAK_TIERS: [&str; 2] = ["soak-small", "soak-large"];
/// How long everything may take to converge once the faults stop.
const CONVERGENCE: Duration = Duration::from_secs(300);

/// A fault the schedule injects.
#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillStandby,
    KillWorker,
    /// Postgres down for this long.
    RestartPostgres(Duration),
    /// kube-apiserver down for this long.
    RestartApiserver(Duration),
}

/// The faults at their offsets from the start, drawn from the seed.
fn fault_schedule(seed: u64, length: Duration) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut at = Duration::from_secs(5);
    let mut schedule = Vec::new();
    loop {
        at += Duration::from_millis(rng.random_range(6_000..20_000));
        if at >= length {
            return schedule;
        }
        let down = Duration::from_millis(rng.random_range(1_000..6_000));
        let fault = match rng.random_range(0..5) {
            0 => Fault::KillLeader,
            1 => Fault::KillStandby,
            2 => Fault::KillWorker,
            3 => Fault::RestartPostgres(down),
            _ => Fault::RestartApiserver(down),
        };
        schedule.push((at, fault));
    }
}

/// The processes the faults hit, and every log they wrote.
struct Fleet {
    cluster: &'static ControlPlane,
    postgres: PostgresServer,
    database_url: String,
    operators: Vec<OperatorProcess>,
    worker: ManagedProcess,
    logs: Vec<PathBuf>,
    starts: u32,
    /// Processes that exited without being killed, with how.
    exits: Vec<String>,
}

impl Fleet {
    fn start_operator(&mut self) -> OperatorProcess {
        self.starts += 1;
        let operator = start_operator(&self.database_url, true, &format!("soak-{}", self.starts));
        self.logs.push(operator.log.clone());
        operator
    }

    fn start_worker(&mut self) -> ManagedProcess {
        self.starts += 1;
        let (worker, log) = start_worker(&self.database_url, self.starts);
        self.logs.push(log);
        worker
    }

    /// Starts again, as a kubelet would, every process that exited by itself.
    fn supervise(&mut self) {
        for index in 0..self.operators.len() {
            if let Some(status) = self.operators[index].process.exit_status() {
                self.exits.push(format!("operator {} exited: {status}", self.operators[index].identity));
                self.operators[index] = self.start_operator();
            }
        }
        if let Some(status) = self.worker.exit_status() {
            self.exits.push(format!("worker exited: {status}"));
            self.worker = self.start_worker();
        }
    }
}

/// Starts `prospector-embedder worker` (the `n`th process of the soak) and returns it with its log.
/// Its lease is short, so that a task a killed worker held is taken again soon.
fn start_worker(database_url: &str, n: u32) -> (ManagedProcess, PathBuf) {
    let log = process_dir().join(format!("soak-worker-{n}.log"));
    let identity = format!("soak-worker-{n}");
    let worker = ManagedProcess::spawn(
        "soak-worker",
        &embedder_binary(),
        &["worker".to_owned(), "--poll-seconds=1".to_owned(), "--lease-seconds=10".to_owned()],
        RunAs::Current,
        &log,
        &[("DATABASE_URL", database_url), ("PROSPECTOR_WORKER_IDENTITY", identity.as_str()), ("RUST_LOG", "info")],
    )
    .expect("start the worker");
    (worker, log)
}

async fn inject(fleet: &Arc<tokio::sync::Mutex<Fleet>>, client: &Client, fault: Fault) {
    match fault {
        Fault::KillLeader | Fault::KillStandby => {
            let holder = process::lease_holder(client).await;
            let mut fleet = fleet.lock().await;
            let leader_index = fleet.operators.iter().position(|o| Some(&o.identity) == holder.as_ref());
            let index = match (fault, leader_index) {
                (Fault::KillLeader, Some(i)) => i,
                (Fault::KillStandby, Some(i)) => 1 - i,
                // No leader known (the apiserver is down, or the lease is free): either one.
                _ => 0,
            };
            fleet.operators[index].process.kill();
            fleet.operators[index] = fleet.start_operator();
        }
        Fault::KillWorker => {
            let mut fleet = fleet.lock().await;
            fleet.worker.kill();
            fleet.worker = fleet.start_worker();
        }
        Fault::RestartPostgres(down) => {
            fleet.lock().await.postgres.kill();
            tokio::time::sleep(down).await;
            let mut fleet = fleet.lock().await;
            tokio::task::block_in_place(|| fleet.postgres.start_again()).expect("Postgres starts again");
        }
        Fault::RestartApiserver(down) => {
            let cluster = fleet.lock().await.cluster;
            cluster.kill_apiserver();
            tokio::time::sleep(down).await;
            cluster.start_apiserver_again().await.expect("kube-apiserver starts again");
        }
    }
}

/// What the workload does next.
#[derive(Debug)]
enum Action {
    ApplyTier(&'static str),
    DeleteTier(&'static str),
    ApplyCustomer(usize),
    DeleteCustomer(usize),
    ApplyAgent(usize, usize),
    DeleteAgent(usize, usize),
    ApplyDocument(usize, usize),
    DeleteDocument(usize, usize),
}

fn customer_name(seed: u64, index: usize) -> String {
    format!("soak-{:x}-{index}", seed & 0xffff)
}

/// The next action; agents and documents mostly go to customers the workload has applied and not
/// deleted since (`live`), so that most land.
fn draw(rng: &mut StdRng, live: &BTreeSet<usize>) -> Action {
    let customer = match live.iter().nth(rng.random_range(0..live.len().max(1))) {
        Some(&index) if rng.random_bool(0.9) => index,
        _ => rng.random_range(0..CUSTOMERS),
    };
    match rng.random_range(0..100) {
        0..3 => Action::ApplyTier(SOAK_TIERS[rng.random_range(0..2)]),
        3..5 => Action::DeleteTier(SOAK_TIERS[rng.random_range(0..2)]),
        5..17 => Action::ApplyCustomer(customer),
        17..21 => Action::DeleteCustomer(customer),
        21..45 => Action::ApplyAgent(customer, rng.random_range(0..AGENTS)),
        45..55 => Action::DeleteAgent(customer, rng.random_range(0..AGENTS)),
        55..88 => Action::ApplyDocument(customer, rng.random_range(0..DOCUMENTS)),
        _ => Action::DeleteDocument(customer, rng.random_range(0..DOCUMENTS)),
    }
}

/// Fixture PDFs small enough for a ConfigMap, extractable or not.
fn fixture_pdfs() -> Vec<Vec<u8>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../embedder/tests/fixtures/pdf/py-pdf-sample-files/");
    [
        "001-trivial/minimal-document.pdf",
        "004-pdflatex-4-pages/pdflatex-4-pages.pdf",
        "005-libreoffice-writer-password/libreoffice-writer-password.pdf",
        "011-google-doc-document/google-doc-document.pdf",
        "014-outlines/mistitled_outlines_example.pdf",
        "026-latex-multicolumn/multicolumn.pdf",
    ]
    .iter()
    .map(|path| std::fs::read(format!("{root}{path}")).unwrap_or_else(|e| panic!("{path}: {e}")))
    .collect()
}

const SENTENCES: [&str; 8] = [
    "We sell fleet telematics to logistics companies with 50 to 500 trucks in Germany.",
    "Our buyers are CFOs and heads of finance at mid-market banks in Ohio.",
    "The platform helps hospitals schedule nurses; the buyer is the chief nursing officer.",
    "Pricing starts at 400 dollars per month for teams of up to twenty people.",
    "Case study: a regional insurer cut claims handling time by a third.",
    "Objection handling: when they say the budget is spent, offer a pilot next quarter.",
    "We do not sell to pharma companies; be polite and move on.",
    "Our territory is the Nordics and the Benelux, selling to CISOs at SaaS companies.",
];

/// A document's spec, the bytes of the ConfigMap it reads when it reads one, and what kind of
/// file it is.
fn document_source(rng: &mut StdRng, pdfs: &[Vec<u8>], name: &str) -> (Value, Option<Vec<u8>>, &'static str) {
    let text = |rng: &mut StdRng| -> String {
        (0..rng.random_range(1..12))
            .map(|_| SENTENCES[rng.random_range(0..SENTENCES.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let from_config_map = |filename: String| json!({"filename": filename, "source": {"configMapKeyRef": {"name": format!("src-{name}"), "key": "file"}}});
    match rng.random_range(0..6) {
        0 | 1 => (json!({"filename": format!("{name}.txt"), "source": {"text": text(rng)}}), None, "text"),
        2 => (from_config_map(format!("{name}.pdf")), Some(pdfs[rng.random_range(0..pdfs.len())].clone()), "pdf"),
        3 => {
            let paragraphs: Vec<String> = (0..3).map(|_| text(rng)).collect();
            let paragraphs: Vec<&str> = paragraphs.iter().map(String::as_str).collect();
            (from_config_map(format!("{name}.docx")), Some(support::docx("Sales brief", &paragraphs, &[])), "docx")
        }
        4 => {
            // A corrupt file: a PDF cut short, or random bytes under a PDF or DOCX name.
            let pdf = &pdfs[rng.random_range(0..pdfs.len())];
            let bytes = if rng.random_bool(0.5) {
                pdf[..pdf.len() / 3].to_vec()
            } else {
                (0..rng.random_range(10..5000)).map(|_| rng.random::<u8>()).collect()
            };
            let extension = if rng.random_bool(0.5) { "pdf" } else { "docx" };
            (from_config_map(format!("{name}.{extension}")), Some(bytes), "corrupt")
        }
        _ => (from_config_map(format!("{name}.docx")), Some(support::docx_bomb(200_000_000)), "zip bomb"),
    }
}

/// Runs one action and says what it did; the apiserver may be down or the namespace gone, which
/// the workload tolerates as any client would.
async fn act(
    client: &Client,
    rng: &mut StdRng,
    seed: u64,
    pdfs: &[Vec<u8>],
    action: &Action,
) -> Result<String, kube::Error> {
    let done = format!("{action:?}").split('(').next().unwrap_or_default().to_owned();
    let apply = PatchParams::apply(MANAGER).force();
    let result = match *action {
        Action::ApplyTier(name) => {
            let small = name == "soak-small";
            let tier = json!({
                "apiVersion": "prospector.dev/v1alpha1", "kind": "Tier", "metadata": {"name": name},
                "spec": {
                    "displayName": name, "maxApiCallsPerDay": 1000, "maxApiCallsPerMonth": 30000,
                    "rateLimitPerSecond": 10, "rateLimitPerMinute": 100,
                    "maxAgents": if small { rng.random_range(1..3) } else { rng.random_range(3..8) },
                    "maxConcurrentAgents": if small { rng.random_range(1..3) } else { rng.random_range(3..12) },
                    "maxStorageMb": if small { 1 } else { 100 },
                    "maxDocuments": if small { rng.random_range(1..4) } else { rng.random_range(4..20) },
                    "maxLeadsPerMonth": 1000, "maxCostPerMonthUsd": 100,
                    "namespaceQuota": {"cpu": "8", "memory": "16Gi", "pods": 20, "gpus": 0}
                }
            });
            Api::<Tier>::all(client.clone()).patch(name, &apply, &Patch::Apply(tier)).await.map(drop)
        }
        Action::DeleteTier(name) => {
            Api::<Tier>::all(client.clone()).delete(name, &DeleteParams::default()).await.map(drop)
        }
        Action::ApplyCustomer(index) => {
            let name = customer_name(seed, index);
            let tier = ["starter", "pro", SOAK_TIERS[0], SOAK_TIERS[1]][rng.random_range(0..4)];
            let mut spec = json!({
                "companyName": format!("Soak {index}"), "email": format!("{name}@example.com"), "tier": tier,
                "suspended": rng.random_bool(0.15),
            });
            if rng.random_bool(0.3) {
                spec["quotaOverrides"] =
                    json!({"maxDocuments": rng.random_range(1..6), "maxAgents": rng.random_range(1..4)});
            }
            let customer = json!({
                "apiVersion": "prospector.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name}, "spec": spec,
            });
            Api::<Customer>::all(client.clone()).patch(&name, &apply, &Patch::Apply(customer)).await.map(drop)
        }
        Action::DeleteCustomer(index) => Api::<Customer>::all(client.clone())
            .delete(&customer_name(seed, index), &DeleteParams::default())
            .await
            .map(drop),
        Action::ApplyAgent(customer, index) => {
            let namespace = customer_namespace(&customer_name(seed, customer));
            let agent = json!({
                "apiVersion": "prospector.dev/v1alpha1", "kind": "AgentDeployment", "metadata": {"name": format!("a{index}")},
                "spec": {"agentName": format!("Agent {index}"), "agentType": "lead_qualifier",
                         "model": "llama3.1-8b", "replicas": rng.random_range(1..=3)}
            });
            Api::<AgentDeployment>::namespaced(client.clone(), &namespace)
                .patch(&format!("a{index}"), &apply, &Patch::Apply(agent))
                .await
                .map(drop)
        }
        Action::DeleteAgent(customer, index) => {
            let namespace = customer_namespace(&customer_name(seed, customer));
            Api::<AgentDeployment>::namespaced(client.clone(), &namespace)
                .delete(&format!("a{index}"), &DeleteParams::default())
                .await
                .map(drop)
        }
        Action::ApplyDocument(customer, index) => {
            let namespace = customer_namespace(&customer_name(seed, customer));
            let name = format!("d{index}");
            let documents = Api::<KnowledgeDocument>::namespaced(client.clone(), &namespace);
            let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
            let write_bytes = |bytes: Vec<u8>| {
                let config_map = json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("src-{name}")},
                    "binaryData": {"file": ByteString(bytes)},
                });
                let config_maps = config_maps.clone();
                let (name, apply) = (format!("src-{name}"), apply.clone());
                async move { config_maps.patch(&name, &apply, &Patch::Apply(config_map)).await.map(drop) }
            };
            if let Some(existing) = documents.get_opt(&name).await? {
                // The source is immutable: an edit changes the tags, or the bytes of the
                // ConfigMap the document reads (a new generation of its content).
                if existing.spec.source.config_map_key_ref.is_some() && rng.random_bool(0.4) {
                    let bytes = loop {
                        if let (_, Some(bytes), _) = document_source(rng, pdfs, &name) {
                            break bytes;
                        }
                    };
                    write_bytes(bytes).await?;
                    return Ok("EditDocumentBytes".to_owned());
                }
                let mut spec = serde_json::to_value(&existing.spec).expect("a spec serialises");
                spec["tags"] = json!([format!("tag-{}", rng.random_range(0..5))]);
                let document = json!({
                    "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": name},
                    "spec": spec,
                });
                documents.patch(&name, &apply, &Patch::Apply(document)).await?;
                return Ok("EditDocument".to_owned());
            }
            let (spec, bytes, kind) = document_source(rng, pdfs, &name);
            if let Some(bytes) = bytes {
                write_bytes(bytes).await?;
            }
            let document = json!({
                "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": name},
                "spec": spec,
            });
            return documents.patch(&name, &apply, &Patch::Apply(document)).await.map(|_| format!("{done} ({kind})"));
        }
        Action::DeleteDocument(customer, index) => {
            let namespace = customer_namespace(&customer_name(seed, customer));
            Api::<KnowledgeDocument>::namespaced(client.clone(), &namespace)
                .delete(&format!("d{index}"), &DeleteParams::default())
                .await
                .map(drop)
        }
    };
    result.map(|()| done)
}

/// What the cluster holds once the invariants hold: customers, and agents and documents by phase.
#[derive(Debug, Default)]
struct Converged {
    customers: usize,
    ready_customers: usize,
    agents: BTreeMap<String, usize>,
    documents: BTreeMap<String, usize>,
}

/// The first invariant that does not hold, or what the cluster holds when all do.
async fn check(client: &Client, pool: &PgPool) -> Result<Converged, String> {
    let mut converged = Converged::default();
    let list = |e: kube::Error| format!("list: {e}");
    let sql = |e: sqlx::Error| format!("sql: {e}");
    let settled = |meta: &kube::api::ObjectMeta, observed: Option<i64>, what: String| {
        if meta.deletion_timestamp.is_some() {
            return Err(format!("{what} is still being deleted"));
        }
        if observed != meta.generation {
            return Err(format!("{what}: observed generation {observed:?}, generation {:?}", meta.generation));
        }
        Ok(())
    };

    // Tiers: every one settled, and counting the customers on it.
    let tiers = Api::<Tier>::all(client.clone()).list(&ListParams::default()).await.map_err(list)?.items;
    let customers = Api::<Customer>::all(client.clone()).list(&ListParams::default()).await.map_err(list)?.items;
    for tier in &tiers {
        let status = tier.status.clone().unwrap_or_default();
        settled(&tier.metadata, status.observed_generation, format!("tier {}", tier.name_any()))?;
        let on_it = customers.iter().filter(|c| c.spec.tier == tier.name_any()).count() as i32;
        if status.customers != on_it {
            return Err(format!(
                "tier {}: status.customers {} but {on_it} customers",
                tier.name_any(),
                status.customers
            ));
        }
    }

    // Customers: Kubernetes and Postgres agree; no namespace without its customer.
    let rows: Vec<(i64, uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, k8s_uid, name FROM customers WHERE deleted_at IS NULL")
            .fetch_all(pool)
            .await
            .map_err(sql)?;
    let row_uids: BTreeMap<String, i64> = rows.iter().map(|(id, uid, _)| (uid.to_string(), *id)).collect();
    let mut customer_ids = BTreeMap::new();
    for customer in &customers {
        let status = customer.status.clone().unwrap_or_default();
        let name = customer.name_any();
        settled(&customer.metadata, status.observed_generation, format!("customer {name}"))?;
        let uid = customer.uid().unwrap_or_default();
        let ready = status.condition(types::READY).is_some_and(|c| c.is_true());
        converged.customers += 1;
        converged.ready_customers += usize::from(ready);
        // A customer with a row shows its id, Ready or not (a deleted tier); one without a row
        // was never set up, shows none and is not Ready.
        match (row_uids.get(&uid), ready) {
            (Some(id), _) if status.customer_id == Some(*id) => {
                customer_ids.insert(name.clone(), (*id, customer.clone()));
            }
            (None, false) if status.customer_id.is_none() => {}
            (row, _) => {
                return Err(format!(
                    "customer {name}: row {row:?}, status.customerId {:?}, Ready {ready}",
                    status.customer_id
                ));
            }
        }
    }
    let live_uids: BTreeSet<String> = customers.iter().filter_map(|c| c.uid()).collect();
    if let Some((id, uid, name)) = rows.iter().find(|(_, uid, _)| !live_uids.contains(&uid.to_string())) {
        return Err(format!("customer row {id} ({name}, {uid}) is live without its Customer"));
    }
    let namespaces = Api::<Namespace>::all(client.clone()).list(&ListParams::default()).await.map_err(list)?.items;
    let customer_names: BTreeSet<String> = customers.iter().map(|c| c.name_any()).collect();
    for namespace in namespaces.iter().map(|n| n.name_any()).filter(|n| n.starts_with("cust-")) {
        if !customer_names.iter().any(|c| customer_namespace(c) == namespace) {
            return Err(format!("namespace {namespace} outlives its customer"));
        }
    }

    // Per customer with a row: agents, documents and their counters.
    for (name, (customer_id, customer)) in &customer_ids {
        let namespace = customer_namespace(name);
        let status = customer.status.clone().unwrap_or_default();
        let agents = Api::<AgentDeployment>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(list)?
            .items;
        let agent_rows: Vec<(uuid::Uuid, String, bool, i32)> = sqlx::query_as(
            "SELECT k8s_uid, name, admitted, quota_reserved_replicas FROM customer_agents
              WHERE customer_id = $1 AND terminated_at IS NULL",
        )
        .bind(customer_id)
        .fetch_all(pool)
        .await
        .map_err(sql)?;
        let by_uid: BTreeMap<String, bool> =
            agent_rows.iter().map(|(uid, _, admitted, _)| (uid.to_string(), *admitted)).collect();
        if by_uid.len() != agent_rows.len() {
            return Err(format!("{namespace}: duplicate agent rows"));
        }
        let agent_uids: BTreeSet<String> = agents.iter().filter_map(|a| a.uid()).collect();
        if let Some((uid, _)) = by_uid.iter().find(|(uid, _)| !agent_uids.contains(*uid)) {
            return Err(format!("{namespace}: live agent row {uid} without its AgentDeployment"));
        }
        let deployments: BTreeSet<String> = Api::<Deployment>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(list)?
            .items
            .iter()
            .map(|d| d.name_any())
            .collect();
        let customer_ready = status.condition(types::READY).is_some_and(|c| c.is_true());
        for agent in &agents {
            let agent_status = agent.status.clone().unwrap_or_default();
            let what = format!("agent {namespace}/{}", agent.name_any());
            settled(&agent.metadata, agent_status.observed_generation, what.clone())?;
            let admitted = by_uid.get(&agent.uid().unwrap_or_default()).copied();
            let phase = agent_status.phase;
            *converged.agents.entry(format!("{phase:?}")).or_default() += 1;
            let has_deployment = deployments.contains(&format!("agent-{}", agent.name_any()));
            let expected = match phase {
                Some(AgentPhase::Running) => admitted == Some(true) && has_deployment,
                Some(AgentPhase::QuotaExceeded) => admitted == Some(false) && !has_deployment,
                // Held (the customer suspended): scaled down, whatever its admission.
                Some(AgentPhase::Suspended) => admitted.is_some(),
                // Waiting for its customer (a deleted tier, say).
                Some(AgentPhase::Pending) => !customer_ready,
                _ => false,
            };
            if !expected {
                return Err(format!(
                    "{what}: phase {phase:?}, admitted {admitted:?}, Deployment {has_deployment}, customer Ready {customer_ready}"
                ));
            }
        }
        let agent_children: BTreeSet<String> = agents.iter().map(|a| format!("agent-{}", a.name_any())).collect();
        if !deployments.is_subset(&agent_children) {
            return Err(format!("{namespace}: orphan Deployments in {deployments:?}"));
        }
        let managed =
            ListParams::default().labels("app.kubernetes.io/managed-by=prospector-operator,prospector.dev/agent");
        let accounts =
            Api::<ServiceAccount>::namespaced(client.clone(), &namespace).list(&managed).await.map_err(list)?.items;
        let maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace).list(&managed).await.map_err(list)?.items;
        for child in accounts.iter().map(|a| a.name_any()).chain(maps.iter().map(|m| m.name_any())) {
            if !agent_children.contains(&child) {
                return Err(format!("{namespace}: orphan agent child {child}"));
            }
        }

        let documents = Api::<KnowledgeDocument>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(list)?
            .items;
        let document_rows: Vec<(uuid::Uuid, bool, i64, i64, i64)> = sqlx::query_as(
            "SELECT d.k8s_uid, d.quota_reserved, d.storage_reserved_bytes,
                    (SELECT count(*) FROM document_chunks c WHERE c.customer_id = d.customer_id AND c.document_id = d.id),
                    (SELECT count(*) FROM embedding_tasks t WHERE t.document_id = d.id AND t.status IN ('queued', 'running'))
               FROM knowledge_documents d WHERE d.customer_id = $1 AND d.deleted_at IS NULL",
        )
        .bind(customer_id)
        .fetch_all(pool)
        .await
        .map_err(sql)?;
        let rows_by_uid: BTreeMap<String, (bool, i64, i64, i64)> =
            document_rows.iter().map(|(uid, q, s, c, t)| (uid.to_string(), (*q, *s, *c, *t))).collect();
        if rows_by_uid.len() != document_rows.len() {
            return Err(format!("{namespace}: duplicate document rows"));
        }
        for document in &documents {
            let document_status = document.status.clone().unwrap_or_default();
            let what = format!("document {namespace}/{}", document.name_any());
            settled(&document.metadata, document_status.observed_generation, what.clone())?;
            let row = rows_by_uid.get(&document.uid().unwrap_or_default()).copied();
            let phase = document_status.phase;
            *converged.documents.entry(format!("{phase:?}")).or_default() += 1;
            let holds = |row: Option<(bool, i64, i64, i64)>| row.is_some_and(|(quota, bytes, _, _)| quota || bytes > 0);
            let fine = match phase {
                Some(DocumentPhase::Ready) => row.is_some_and(|(quota, _, chunks, tasks)| {
                    quota && tasks == 0 && chunks > 0 && Some(chunks as i32) == document_status.chunk_count
                }),
                Some(DocumentPhase::Failed) => {
                    row.is_some_and(|(_, _, chunks, tasks)| chunks == 0 && tasks == 0) && !holds(row)
                }
                // Refused (quota, customer not Ready, source missing): waits holding nothing.
                Some(DocumentPhase::Pending) => {
                    !holds(row) && row.is_none_or(|(_, _, chunks, tasks)| chunks == 0 && tasks == 0)
                }
                _ => false,
            };
            if !fine {
                return Err(format!(
                    "{what}: phase {phase:?} with row (quota, bytes, chunks, open tasks) {row:?} ({:?})",
                    document_status.error
                ));
            }
        }
        let document_uids: BTreeSet<String> = documents.iter().filter_map(|d| d.uid()).collect();
        if let Some(uid) = rows_by_uid.keys().find(|uid| !document_uids.contains(*uid)) {
            return Err(format!("{namespace}: live document row {uid} without its KnowledgeDocument"));
        }

        // Counters equal a recount of the rows, and the customer's status says the same.
        let (agents_count, replicas, documents_count, storage): (i32, i32, i32, i64) = sqlx::query_as(
            "SELECT active_agents_count, active_replicas, documents_count, storage_used_bytes FROM customer_quotas WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_one(pool)
        .await
        .map_err(sql)?;
        let admitted = agent_rows.iter().filter(|r| r.2).count() as i32;
        let reserved: i32 = agent_rows.iter().map(|r| r.3).sum();
        let reserved_documents = document_rows.iter().filter(|r| r.1).count() as i32;
        let reserved_bytes: i64 = document_rows.iter().map(|r| r.2).sum();
        let counted = (agents_count, replicas, documents_count, storage);
        let recounted = (admitted, reserved, reserved_documents, reserved_bytes);
        if counted != recounted {
            return Err(format!(
                "{name}: counters (agents, replicas, documents, bytes) {counted:?}, rows {recounted:?}"
            ));
        }
        if !customer_ready {
            continue;
        }
        let usage = status.usage.clone().ok_or(format!("{name}: no usage in its status"))?;
        let shown = (usage.agents.used, usage.concurrent_agents.used, usage.documents.used);
        if shown != (i64::from(admitted), i64::from(reserved), i64::from(reserved_documents))
            || (usage.storage_mb.used - reserved_bytes as f64 / 1e6).abs() > 0.01
        {
            return Err(format!("{name}: status.usage {shown:?} {} MB, rows {recounted:?}", usage.storage_mb.used));
        }
    }

    // Nothing of deleted customers or documents is left: chunks, blobs, tasks.
    let (chunks, blobs, tasks, documents_left, agents_left): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM document_chunks c JOIN knowledge_documents d ON d.customer_id = c.customer_id AND d.id = c.document_id
                  WHERE d.deleted_at IS NOT NULL),
                (SELECT count(*) FROM document_blobs b WHERE NOT EXISTS
                    (SELECT 1 FROM knowledge_documents d WHERE d.customer_id = b.customer_id AND d.blob_sha256 = b.sha256
                        AND d.deleted_at IS NULL)),
                (SELECT count(*) FROM embedding_tasks t JOIN knowledge_documents d ON d.id = t.document_id
                  WHERE d.deleted_at IS NOT NULL AND t.status IN ('queued', 'running')),
                (SELECT count(*) FROM knowledge_documents d JOIN customers c ON c.id = d.customer_id
                  WHERE c.deleted_at IS NOT NULL AND d.deleted_at IS NULL),
                (SELECT count(*) FROM customer_agents a JOIN customers c ON c.id = a.customer_id
                  WHERE c.deleted_at IS NOT NULL AND a.terminated_at IS NULL)",
    )
    .fetch_one(pool)
    .await
    .map_err(sql)?;
    if (chunks, blobs, tasks, documents_left, agents_left) != (0, 0, 0, 0, 0) {
        return Err(format!(
            "orphans: {chunks} chunks and {tasks} open tasks of deleted documents, {blobs} unreferenced blobs, \
             {documents_left} live documents and {agents_left} live agents of deleted customers"
        ));
    }
    Ok(converged)
}

/// Creates a customer of its own on `pro` once the faults stopped, then an agent and a text
/// document in its namespace; returns its name.
async fn sentinel(client: &Client, seed: u64) -> String {
    let name = format!("soak-{:x}-sentinel", seed & 0xffff);
    let apply = PatchParams::apply(MANAGER).force();
    let customer = json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name},
        "spec": {"companyName": "Sentinel", "email": format!("{name}@example.com"), "tier": "pro"},
    });
    Api::<Customer>::all(client.clone()).patch(&name, &apply, &Patch::Apply(customer)).await.unwrap();
    let namespace = customer_namespace(&name);
    common::eventually("the sentinel's namespace", Duration::from_secs(120), || async {
        Api::<Namespace>::all(client.clone()).get_opt(&namespace).await.ok()?.map(|_| ())
    })
    .await;
    let agent = json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "AgentDeployment", "metadata": {"name": "sentinel"},
        "spec": {"agentName": "Sentinel", "agentType": "lead_qualifier", "model": "llama3.1-8b", "replicas": 1},
    });
    Api::<AgentDeployment>::namespaced(client.clone(), &namespace)
        .patch("sentinel", &apply, &Patch::Apply(agent))
        .await
        .unwrap();
    let document = json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": "sentinel"},
        "spec": {"filename": "sentinel.txt", "source": {"text": SENTENCES.join(" ")}},
    });
    Api::<KnowledgeDocument>::namespaced(client.clone(), &namespace)
        .patch("sentinel", &apply, &Patch::Apply(document))
        .await
        .unwrap();
    name
}

/// The lines of `logs` that contain `needle`, each with its log's path.
fn log_lines(logs: &[PathBuf], needle: &str) -> Vec<String> {
    logs.iter()
        .flat_map(|log| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.lines().filter(|l| l.contains(needle)).map(|l| format!("{}: {l}", log.display())).collect::<Vec<_>>()
        })
        .collect()
}

/// Log lines that show a panic.
fn panics(logs: &[PathBuf]) -> Vec<String> {
    let mut lines = log_lines(logs, "panicked at");
    lines.extend(log_lines(logs, "RUST_BACKTRACE"));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_converges_after_a_seeded_soak_of_churn_and_faults() {
    let seconds: u64 = std::env::var("PROSPECTOR_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let seed: u64 =
        std::env::var("PROSPECTOR_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::rng().random());
    let length = Duration::from_secs(seconds);
    let schedule = fault_schedule(seed, length);
    println!("soak: seed {seed}, {seconds} s (replay: PROSPECTOR_SOAK_SEED={seed} PROSPECTOR_SOAK_SECONDS={seconds})");
    for (at, fault) in &schedule {
        println!("soak: fault at {:>6.1} s: {fault:?}", at.as_secs_f64());
    }

    let cluster = shared_cluster();
    let client = cluster.client().await.unwrap();
    common::install_platform(&client).await;
    let postgres =
        PostgresServer::start_local(&process_dir().join(format!("soak-postgres-{}", random_suffix(4)))).unwrap();
    let db = postgres.create_database("prospector").await.unwrap();
    prospector_store::migrate(&db.pool).await.unwrap();
    let fleet = {
        let (worker, worker_log) = start_worker(&db.url, 0);
        let mut fleet = Fleet {
            cluster,
            postgres,
            database_url: db.url.clone(),
            operators: Vec::new(),
            worker,
            logs: vec![worker_log],
            starts: 0,
            exits: Vec::new(),
        };
        let first = fleet.start_operator();
        let second = fleet.start_operator();
        fleet.operators = vec![first, second];
        Arc::new(tokio::sync::Mutex::new(fleet))
    };

    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let supervisor = {
        let (fleet, stop) = (fleet.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fleet.lock().await.supervise();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let faults = {
        let (fleet, client) = (fleet.clone(), client.clone());
        let schedule = schedule.clone();
        tokio::spawn(async move {
            for (at, fault) in schedule {
                tokio::time::sleep_until((started + at).into()).await;
                inject(&fleet, &client, fault).await;
            }
        })
    };
    // Actions applied, by what they did, and refusals by their message (the apiserver down, a
    // namespace gone).
    let outcomes = Arc::new(Mutex::new((BTreeMap::<String, u32>::new(), BTreeMap::<String, u32>::new())));
    let workload = {
        let (client, outcomes) = (client.clone(), outcomes.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let pdfs = fixture_pdfs();
            let mut live = BTreeSet::new();
            for tier in SOAK_TIERS {
                let _ = act(&client, &mut rng, seed, &pdfs, &Action::ApplyTier(tier)).await;
            }
            while started.elapsed() < length {
                let action = draw(&mut rng, &live);
                let result = act(&client, &mut rng, seed, &pdfs, &action).await;
                match (&action, &result) {
                    (Action::ApplyCustomer(index), Ok(_)) => {
                        live.insert(*index);
                    }
                    (Action::DeleteCustomer(index), _) => {
                        live.remove(index);
                    }
                    _ => {}
                }
                {
                    let mut outcomes = outcomes.lock().unwrap();
                    match &result {
                        Ok(done) => *outcomes.0.entry(done.clone()).or_default() += 1,
                        Err(e) => {
                            let kind = match e {
                                kube::Error::Api(status) if status.code == 422 => format!("422 {}", status.message),
                                kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
                                other => other.to_string().chars().take(60).collect(),
                            };
                            *outcomes.1.entry(kind).or_default() += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
            }
        })
    };
    workload.await.unwrap();
    faults.await.unwrap();
    // The soak's tiers come back, so that customers the workload left on a deleted tier must
    // heal too, not only settle; and a customer made after the faults, with an agent and a
    // document, must come up whatever the workload left behind.
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let pdfs = fixture_pdfs();
        for tier in SOAK_TIERS {
            act(&client, &mut rng, seed, &pdfs, &Action::ApplyTier(tier)).await.expect("the soak's tiers apply");
        }
    }
    let sentinel = sentinel(&client, seed).await;
    let (done, refused) = outcomes.lock().unwrap().clone();
    println!("soak: applied {done:?}");
    println!("soak: refused or failed {refused:?}");

    // Faults stopped: converge within the bound, then every invariant holds.
    let converging = Instant::now();
    let converged = loop {
        let last = match check(&client, &db.pool).await {
            Ok(converged) => break converged,
            Err(problem) => problem,
        };
        if converging.elapsed() > CONVERGENCE {
            let fleet = fleet.lock().await;
            panic!(
                "soak (seed {seed}): not converged {CONVERGENCE:?} after the faults stopped: {last}\nexits: {:?}\noperator logs:\n{}",
                fleet.exits,
                fleet.operators.iter().map(|o| o.process.log_tail(15)).collect::<Vec<_>>().join("\n--\n"),
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!("soak: converged {:.1} s after the faults stopped: {converged:?}", converging.elapsed().as_secs_f64());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    supervisor.await.unwrap();
    let fleet = fleet.lock().await;
    println!("soak: processes that exited by themselves: {:?}", fleet.exits);
    // Rows a deposed leader wrote for objects already gone, which the orphan sweep released.
    println!("soak: orphaned rows released: {}", log_lines(&fleet.logs, "released the row of an object").len());
    let panicked = panics(&fleet.logs);
    assert!(panicked.is_empty(), "soak (seed {seed}): panics in the logs:\n{}", panicked.join("\n"));
    // The workload really churned: it created, edited and deleted every kind of object, and
    // documents of every kind of file.
    let kinds = [
        "ApplyTier",
        "DeleteTier",
        "ApplyCustomer",
        "DeleteCustomer",
        "ApplyAgent",
        "DeleteAgent",
        "ApplyDocument (text)",
        "ApplyDocument (pdf)",
        "ApplyDocument (docx)",
        "ApplyDocument (corrupt)",
        "EditDocument",
        "EditDocumentBytes",
        "DeleteDocument",
    ];
    let missing: Vec<&str> = kinds.into_iter().filter(|kind| !done.contains_key(*kind)).collect();
    assert!(missing.is_empty(), "soak (seed {seed}): the workload never did {missing:?}");
    // And the invariants held over a cluster with something in it: documents the worker took
    // to Ready, agents running.
    let namespace = customer_namespace(&sentinel);
    let customer = Api::<Customer>::all(client.clone()).get(&sentinel).await.unwrap();
    let agent = Api::<AgentDeployment>::namespaced(client.clone(), &namespace).get("sentinel").await.unwrap();
    let document = Api::<KnowledgeDocument>::namespaced(client.clone(), &namespace).get("sentinel").await.unwrap();
    assert!(
        customer.status.as_ref().and_then(|s| s.condition(types::READY)).is_some_and(|c| c.is_true())
            && agent.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
            && document.status.as_ref().and_then(|s| s.phase) == Some(DocumentPhase::Ready),
        "soak (seed {seed}): the customer made after the faults is not Ready with its agent and document: {:?} {:?} {:?}",
        customer.status,
        agent.status,
        document.status
    );
}
