//! The REST API over real HTTP: the `prospector-apiserver` binary against the harness's
//! control plane and Postgres, with the operator running in-process. Customers: registration
//! (the seed's curl example), the customer and its quotas, the isolation between customers, key
//! rotation and revocation, suspension, the 202 path, and no secret in the server's log.
//! Agents: the seed's deploy example, status, usage reports feeding the quotas, the agent
//! quota, termination, and every agent endpoint refusing another customer's key. Knowledge:
//! uploads of PDF, DOCX and text reaching Ready, search finding them and only them, the list,
//! duplicates, bad uploads and searches, and deletion giving the quota back. Limits: 429 with
//! its headers, and the daily quota exact under 50 concurrent clients. Search through a
//! read-only database URL (a replica).

#[path = "../../embedder/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use prospector_crds::{AgentDeployment, Customer};
use prospector_operator::clock::SystemClock;
use prospector_operator::context::{DocumentSettings, EmbedderMode, Settings};
use prospector_operator::runtime::{RunOptions, run};
use prospector_tests::chart::{
    APISERVER_ACCOUNT, OPERATOR_ACCOUNT, client_under_chart_rbac, kubeconfig_under_chart_rbac,
};
use prospector_tests::fixtures::{PLATFORM_NAMESPACE, install_platform};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{eventually, process_dir, random_suffix, shared_cluster, shared_postgres};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

/// Every apiserver of these tests acts as the chart's ServiceAccount, under the chart's RBAC.
fn apiserver_kubeconfig() -> String {
    let kubeconfig = kubeconfig_under_chart_rbac(shared_cluster(), APISERVER_ACCOUNT, "inline").expect("chart RBAC");
    kubeconfig.display().to_string()
}

/// Starts a `prospector-apiserver` of this platform on a free port, as the chart's ServiceAccount,
/// with `args` besides `--listen` and `env` besides `KUBECONFIG`; returns it, its base URL and its
/// log file. Each caller waits for it as its test needs.
fn start_apiserver(name: &str, log: PathBuf, args: &[&str], env: &[(&str, &str)]) -> (ManagedProcess, String, PathBuf) {
    let port = free_port().unwrap();
    let kubeconfig = apiserver_kubeconfig();
    let mut all_args = vec![format!("--listen=127.0.0.1:{port}")];
    all_args.extend(args.iter().map(|a| (*a).to_owned()));
    let mut all_env = vec![("KUBECONFIG", kubeconfig.as_str())];
    all_env.extend_from_slice(env);
    let process = ManagedProcess::spawn(
        name,
        std::path::Path::new(env!("CARGO_BIN_EXE_prospector-apiserver")),
        &all_args,
        RunAs::Current,
        &log,
        &all_env,
    )
    .unwrap_or_else(|e| panic!("start {name}: {e}"));
    (process, format!("http://127.0.0.1:{port}"), log)
}

struct Stack {
    base: String,
    log: PathBuf,
    database_url: String,
}

/// The operator in-process on its own runtime, and the apiserver binary, sharing one database;
/// one per test process. Both live on a thread that never ends (the apiserver process dies
/// with the thread that started it).
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let cluster = shared_cluster();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let db = shared_postgres().migrated_database().await.expect("a database");
                install_platform(&cluster.client().await.expect("an admin client")).await;
                // Both run as the chart's ServiceAccounts, under the chart's RBAC.
                let client = client_under_chart_rbac(cluster, OPERATOR_ACCOUNT, "inline").await.expect("chart RBAC");
                let options = RunOptions {
                    settings: Settings {
                        platform_namespace: PLATFORM_NAMESPACE.into(),
                        resync: Duration::from_secs(3),
                        waiting_retry: Duration::from_secs(2),
                        // Documents are processed in-process, as `make dev` does.
                        documents: DocumentSettings { mode: EmbedderMode::Inline, ..DocumentSettings::default() },
                        ..Settings::default()
                    },
                    ..RunOptions::default()
                };
                let (_apiserver, base, log) = start_apiserver(
                    "apiserver",
                    process_dir().join(format!("apiserver-{}.log", random_suffix(4))),
                    &["--register-wait-seconds=30"],
                    &[("DATABASE_URL", db.url.as_str()), ("PROSPECTOR_ADMIN_TOKEN", ADMIN_TOKEN)],
                );
                let stack = Stack { base, log, database_url: db.url.clone() };
                ready_tx.send(stack).unwrap();
                let result = run(client, db.pool, options, Arc::new(SystemClock), std::future::pending()).await;
                panic!("the operator stopped: {result:?}");
            });
        });
        let stack = ready_rx.recv_timeout(Duration::from_secs(120)).expect("the stack starts");
        let ready = (0..300).any(|_| {
            let answered = std::net::TcpStream::connect(stack.base.trim_start_matches("http://")).is_ok();
            if !answered {
                std::thread::sleep(Duration::from_millis(100));
            }
            answered
        });
        assert!(ready, "the apiserver listens");
        stack
    })
}

async fn call(method: reqwest::Method, url: String, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the apiserver answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(stack: &Stack, path: &str, token: &str) -> (StatusCode, Value) {
    call(reqwest::Method::GET, format!("{}{path}", stack.base), Some(token), None).await
}

async fn register(stack: &Stack, body: Value) -> (StatusCode, Value) {
    call(reqwest::Method::POST, format!("{}/api/customers/register", stack.base), Some(ADMIN_TOKEN), Some(body)).await
}

#[tokio::test]
async fn customer_endpoints_over_http() {
    let stack = stack();
    eventually("the apiserver to be ready", WAIT, || async {
        let response = reqwest::get(format!("{}/readyz", stack.base)).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let email = |who: &str| format!("{who}-{}@example.com", random_suffix(6).to_lowercase());

    // The seed's curl example, plus the admin token.
    let (status, a) = register(
        stack,
        json!({"email": email("test"), "password": "SecurePass123", "company_name": "Test Corp", "subscription_tier": "pro"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    for field in ["customer_id", "email", "company_name", "api_key", "subscription_tier", "status", "created_at"] {
        assert!(!a[field].is_null(), "the seed's field {field} is missing: {a}");
    }
    assert_eq!((a["subscription_tier"].as_str(), a["status"].as_str()), (Some("pro"), Some("active")));
    let a_id = a["customer_id"].as_i64().unwrap();
    let a_key = a["api_key"].as_str().unwrap().to_owned();
    assert!(a_key.starts_with("sa_"));

    // The customer and its quotas, with its own key.
    let (status, customer) = get(stack, &format!("/api/customers/{a_id}"), &a_key).await;
    assert_eq!(status, StatusCode::OK, "{customer}");
    assert_eq!(customer["company_name"], "Test Corp");
    let (status, quotas) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
    assert_eq!(status, StatusCode::OK, "{quotas}");
    assert_eq!((quotas["max_agents"].as_i64(), quotas["max_storage_mb"].as_f64()), (Some(20), Some(10_000.0)));
    assert_eq!(quotas["active_agents_count"], 0);

    // Errors: an e-mail address in use, an unknown tier.
    let (status, body) =
        register(stack, json!({"email": a["email"], "company_name": "Again", "subscription_tier": "pro"})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
    let (status, body) =
        register(stack, json!({"email": email("gold"), "company_name": "Gold", "subscription_tier": "gold"})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_tier")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("starter"), "names the tiers there are: {body}");

    // Isolation: B's id with A's key answers exactly like an id that does not exist.
    let (status, b) = register(stack, json!({"email": email("other"), "company_name": "Other Inc"})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["subscription_tier"], "free", "the default tier");
    let b_id = b["customer_id"].as_i64().unwrap();
    for suffix in ["", "/quotas"] {
        let foreign = get(stack, &format!("/api/customers/{b_id}{suffix}"), &a_key).await;
        let missing = get(stack, &format!("/api/customers/999999999{suffix}"), &a_key).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND);
        assert_eq!(foreign, missing, "a foreign id must look like a missing one");
        let rotate = call(
            reqwest::Method::POST,
            format!("{}/api/customers/{b_id}/api-keys/rotate", stack.base),
            Some(&a_key),
            None,
        );
        assert_eq!(rotate.await.0, StatusCode::NOT_FOUND);
    }
    // The admin reaches every customer.
    assert_eq!(get(stack, &format!("/api/customers/{b_id}"), ADMIN_TOKEN).await.0, StatusCode::OK);

    // Rotation: a new key, shown once; the old one stops working within a second.
    let (status, rotated) =
        call(reqwest::Method::POST, format!("{}/api/customers/{a_id}/api-keys/rotate", stack.base), Some(&a_key), None)
            .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, a_key);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get(stack, &format!("/api/customers/{a_id}"), &a_key).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{body}");
    assert_eq!(get(stack, &format!("/api/customers/{a_id}"), &new_key).await.0, StatusCode::OK);
    // The operator's next reconciles keep the new key, and only it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(get(stack, &format!("/api/customers/{a_id}"), &new_key).await.0, StatusCode::OK);
    assert_eq!(get(stack, &format!("/api/customers/{a_id}"), &a_key).await.0, StatusCode::UNAUTHORIZED);

    // Suspension: the key is refused with its own error; lifting it restores the key.
    let client = shared_cluster().client().await.unwrap();
    let customers: Api<Customer> = Api::all(client);
    let a_name = customer["customer_name"].as_str().unwrap().to_owned();
    let suspend = |on: bool| {
        let customers = customers.clone();
        let a_name = a_name.clone();
        async move {
            let patch = json!({"spec": {"suspended": on}});
            customers.patch(&a_name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    };
    suspend(true).await;
    let body = eventually("the suspended customer's key to be refused", WAIT, || async {
        let (status, body) = get(stack, &format!("/api/customers/{a_id}"), &new_key).await;
        (status == StatusCode::FORBIDDEN).then_some(body)
    })
    .await;
    assert_eq!(body["error"], "customer_suspended");
    suspend(false).await;
    eventually("the key to work again", WAIT, || async {
        (get(stack, &format!("/api/customers/{a_id}"), &new_key).await.0 == StatusCode::OK).then_some(())
    })
    .await;

    // `?wait=false`: 202 at once, then the status URL hands the key out exactly once.
    let url = format!("{}/api/customers/register?wait=false", stack.base);
    let (status, pending) = call(
        reqwest::Method::POST,
        url,
        Some(ADMIN_TOKEN),
        Some(json!({"email": email("later"), "company_name": "Later Ltd", "subscription_tier": "starter"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let status_url = format!("{}{}", stack.base, pending["status_url"].as_str().unwrap());
    let ready = eventually("the registration to complete", WAIT, || async {
        let (status, body) = call(reqwest::Method::GET, status_url.clone(), Some(ADMIN_TOKEN), None).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    let later_key = ready["api_key"].as_str().expect("the first answer carries the key").to_owned();
    let (status, again) = call(reqwest::Method::GET, status_url.clone(), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again.get("api_key").is_none(), "the key is shown once: {again}");
    assert_eq!(get(stack, &format!("/api/customers/{}", ready["customer_id"]), &later_key).await.0, StatusCode::OK);
    // Without the admin token the status URL says nothing.
    let (status, _) = call(reqwest::Method::GET, status_url, Some(&later_key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert!(std::fs::read_to_string(&stack.log).unwrap().contains("customer registered"), "the log is captured");
    assert_no_secret_logged(stack, &[&a_key, &new_key, &later_key, "SecurePass123"]);
}

/// No secret in the server's log after a journey: its keys and passwords, the admin token and
/// the database password.
fn assert_no_secret_logged(stack: &Stack, secrets: &[&str]) {
    let log = std::fs::read_to_string(&stack.log).unwrap();
    let password = url_password(&stack.database_url);
    for secret in secrets.iter().copied().chain([ADMIN_TOKEN]).chain(password.as_deref()) {
        assert!(!log.contains(secret), "a secret ({}…) is in the apiserver's log", &secret[..4.min(secret.len())]);
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let credentials = rest.split_once('@')?.0;
    credentials.split_once(':').map(|(_, p)| p.to_owned()).filter(|p| !p.is_empty())
}

async fn post(stack: &Stack, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(reqwest::Method::POST, format!("{}{path}", stack.base), Some(token), Some(body)).await
}

#[tokio::test]
async fn agent_journey_over_http() {
    let stack = stack();
    // Free-tier customers (2 agents at most), with room for the test's pace of requests.
    let (a_id, a_key) = customer_with_overrides(stack, "agents", fast()).await;
    let (_, b_key) = customer_with_overrides(stack, "nosy", fast()).await;
    let (_, a) = get(stack, &format!("/api/customers/{a_id}"), &a_key).await;

    // The seed's deploy example, plus the key.
    let seed_body = json!({"agent_name": "Lead Qualifier", "agent_type": "lead_qualifier", "model": "llama3.1-8b"});
    let (status, deployed) =
        post(stack, &format!("/api/customers/{a_id}/agents/deploy"), &a_key, seed_body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    for field in ["agent_id", "deployment_id", "agent_name", "agent_type", "status", "model", "deployed_at"] {
        assert!(!deployed[field].is_null(), "the seed's field {field} is missing: {deployed}");
    }
    assert_eq!(deployed["agent_type"], "lead_qualifier");
    assert_eq!(deployed["status"], "deployed");
    let deployment_id = deployed["deployment_id"].as_str().unwrap().to_owned();
    assert!(deployment_id.starts_with(&format!("agent_{a_id}_")), "{deployment_id}");

    // Bad input: an unknown agent type, a config that is not an object.
    let (status, body) = post(
        stack,
        &format!("/api/customers/{a_id}/agents/deploy"),
        &a_key,
        json!({"agent_name": "x", "agent_type": "wizard"}),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{body}");
    let (status, _) = post(
        stack,
        &format!("/api/customers/{a_id}/agents/deploy"),
        &a_key,
        json!({"agent_name": "x", "agent_type": "custom", "config": [1, 2]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Usage: the agent reports with the customer's key; quotas and status show it.
    let usage = json!({"tasks": 4, "completed_tasks": 3, "failed_tasks": 1, "total_latency_ms": 800.0,
                       "api_calls": 12, "leads": 2, "cost_usd": 1.25, "tokens": 5000});
    let (status, body) = post(stack, &format!("/api/agents/{deployment_id}/usage"), &a_key, usage.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post(stack, &format!("/api/agents/{deployment_id}/usage"), &b_key, usage.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another customer's key cannot report for this agent: {body}");
    let (_, quotas) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
    assert_eq!(
        (quotas["leads_this_month"].as_i64(), quotas["cost_this_month_usd"].as_f64()),
        (Some(2), Some(1.25)),
        "{quotas}"
    );
    assert_eq!(quotas["active_agents_count"], 1);
    let performance = eventually("the agent's status to carry its performance", WAIT, || async {
        let (_, body) = get(stack, &format!("/api/customers/{a_id}/agents/status"), &a_key).await;
        let agent = body["agents"].as_array()?.iter().find(|a| a["deployment_id"] == deployment_id.as_str())?.clone();
        (agent["performance"]["total_tasks"] == 4).then_some(agent["performance"].clone())
    })
    .await;
    assert_eq!(
        (performance["failed_tasks"].as_i64(), performance["average_latency_ms"].as_f64()),
        (Some(1), Some(200.0))
    );

    // The agent quota (free tier: 2 agents, 1 replica at once): a second agent fits with no
    // replicas, a third is refused and leaves nothing behind.
    let second = json!({"agent_name": "Researcher", "agent_type": "lead_researcher", "replicas": 0});
    let (status, body) = post(stack, &format!("/api/customers/{a_id}/agents/deploy"), &a_key, second).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let third = json!({"agent_name": "Writer", "agent_type": "outreach_writer"});
    let (status, body) = post(stack, &format!("/api/customers/{a_id}/agents/deploy"), &a_key, third).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("quota_exceeded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains('2'), "names the limit: {body}");
    let namespace = prospector_crds::customer::customer_namespace(a["customer_name"].as_str().unwrap());
    let agents: Api<AgentDeployment> = Api::namespaced(shared_cluster().client().await.unwrap(), &namespace);
    eventually("the refused agent to be gone", WAIT, || async {
        let items = agents.list(&Default::default()).await.ok()?.items;
        (items.len() == 2).then_some(())
    })
    .await;

    // Another customer's key reaches none of it, exactly like ids that do not exist.
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/customers/{a_id}/agents/status")),
        (reqwest::Method::POST, format!("/api/customers/{a_id}/agents/deploy")),
        (reqwest::Method::DELETE, format!("/api/customers/{a_id}/agents/{deployment_id}")),
    ] {
        let body = (method == reqwest::Method::POST).then(|| seed_body.clone());
        let foreign = call(method.clone(), format!("{}{path}", stack.base), Some(&b_key), body.clone()).await;
        let missing_path = path.replace(&format!("/customers/{a_id}/"), "/customers/999999999/");
        let missing = call(method, format!("{}{missing_path}", stack.base), Some(&b_key), body).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(foreign, missing, "{path}");
    }

    // Termination: the agent goes, its quota comes back, an unknown deployment id is a 404.
    let url = format!("{}/api/customers/{a_id}/agents/{deployment_id}", stack.base);
    let (status, body) = call(reqwest::Method::DELETE, url.clone(), Some(&a_key), None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("terminating")), "{body}");
    eventually("the agent's quota to be released", WAIT, || async {
        let (_, quotas) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
        (quotas["active_agents_count"] == 1).then_some(())
    })
    .await;
    eventually("the terminated agent to be gone", WAIT, || async {
        let (status, _) = call(reqwest::Method::DELETE, url.clone(), Some(&a_key), None).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (status, _) = post(stack, &format!("/api/agents/{deployment_id}/usage"), &a_key, usage).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a terminated agent reports nothing");
    assert_no_secret_logged(stack, &[&a_key, &b_key]);
}

async fn upload(stack: &Stack, token: &str, customer_id: i64, filename: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .text("customer_id", customer_id.to_string())
        .text("tags", "sales,icp")
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
    let response = reqwest::Client::new()
        .post(format!("{}/api/knowledge/upload", stack.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("the apiserver answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn search_for(stack: &Stack, token: &str, customer_id: i64, query: &str) -> (StatusCode, Value) {
    post(stack, "/api/knowledge/search", token, json!({"customer_id": customer_id, "query": query, "top_k": 3})).await
}

#[tokio::test]
async fn knowledge_journey_over_http() {
    let stack = stack();
    let (a_id, a_key) = customer_with_overrides(stack, "docs", fast()).await;
    let (b_id, b_key) = customer_with_overrides(stack, "rival", fast()).await;

    // Three formats, each about something else.
    let text = "Our customers are hospitals and clinics in Germany. We sell patient scheduling software \
                to the CIO and the head of operations of mid-sized hospitals.";
    let pdf = support::pdf(
        &[support::column(
            72.0,
            &[
                "Wind turbines convert the kinetic energy of moving air into electricity.",
                "Offshore wind farms reach higher capacity factors than onshore ones.",
            ],
        )],
        true,
    );
    let docx = support::docx(
        "Recipes",
        &["A sourdough bread needs flour, water, salt and a lively starter.", "Bake it in a hot Dutch oven."],
        &[],
    );
    let mut ids = std::collections::BTreeMap::new();
    for (filename, bytes) in [("icp.txt", text.as_bytes().to_vec()), ("wind.pdf", pdf), ("bread.docx", docx)] {
        let (status, body) = upload(stack, &a_key, a_id, filename, bytes).await;
        assert_eq!(status, StatusCode::CREATED, "{filename}: {body}");
        assert_eq!((body["filename"].as_str(), body["processing_status"].as_str()), (Some(filename), Some("pending")));
        assert!(body["icp"].is_null() && body["file_size"].as_i64().unwrap() > 0, "{body}");
        ids.insert(filename, body["document_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        upload(stack, &a_key, a_id, "icp.txt", text.as_bytes().to_vec()).await.1["document_id"].as_str(),
        Some(ids["icp.txt"].as_str()),
        "the same bytes again are the same document"
    );

    // Every document reaches Ready; the list shows them with their ICP.
    let list = eventually("the uploads to be processed", Duration::from_secs(180), || async {
        let (_, list) = get(stack, &format!("/api/knowledge/docs/{a_id}"), &a_key).await;
        let documents = list["documents"].as_array()?;
        let failed: Vec<_> = documents.iter().filter(|d| d["processing_status"] == "failed").collect();
        assert!(failed.is_empty(), "a document failed: {failed:?}");
        (documents.len() == 3 && documents.iter().all(|d| d["processing_status"] == "completed")).then_some(list)
    })
    .await;
    assert_eq!(list["total"], 3);
    let icp_doc = list["documents"].as_array().unwrap().iter().find(|d| d["filename"] == "icp.txt").unwrap().clone();
    assert_eq!(icp_doc["document_id"].as_str(), Some(ids["icp.txt"].as_str()));
    assert!(icp_doc["icp"]["target_industries"].as_array().unwrap().contains(&json!("healthcare")), "{icp_doc}");
    assert_eq!(icp_doc["tags"], json!(["sales", "icp"]));

    // Search finds each document by its topic.
    for (query, filename) in [
        ("software for hospital scheduling", "icp.txt"),
        ("renewable electricity from wind", "wind.pdf"),
        ("how to bake bread", "bread.docx"),
    ] {
        let (status, found) = search_for(stack, &a_key, a_id, query).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found["query"], query);
        let top = &found["results"][0];
        assert_eq!(top["document_id"].as_str(), Some(ids[filename].as_str()), "{query}: {found}");
        assert!(top["text"].as_str().unwrap().len() > 10 && top["score"].as_f64().is_some(), "{top}");
        assert_eq!(top["filename"], filename, "{top}");
        // Vector mode alone ranks the same document first.
        let body = json!({"customer_id": a_id, "query": query, "top_k": 3, "mode": "vector"});
        let (status, found) = post(stack, "/api/knowledge/search", &a_key, body).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found["results"][0]["document_id"].as_str(), Some(ids[filename].as_str()), "vector: {found}");
    }
    // Filters: a document filter keeps only that document's chunks, even for a query about
    // another; a tag no document carries finds nothing; the documents' own tag finds them.
    let search_with = |filter: Value| {
        let mut body = json!({"customer_id": a_id, "query": "how to bake bread", "top_k": 5});
        body.as_object_mut().unwrap().extend(filter.as_object().unwrap().clone());
        post(stack, "/api/knowledge/search", &a_key, body)
    };
    let (status, found) = search_with(json!({"document_ids": [ids["wind.pdf"]]})).await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(!results.is_empty() && results.iter().all(|r| r["document_id"] == ids["wind.pdf"].as_str()), "{found}");
    let (_, found) = search_with(json!({"tags": ["no-such-tag"]})).await;
    assert_eq!(found["results"], json!([]), "{found}");
    let (_, found) = search_with(json!({"tags": ["icp"], "mode": "vector"})).await;
    assert_eq!(found["results"][0]["document_id"].as_str(), Some(ids["bread.docx"].as_str()), "{found}");

    // Isolation: B finds none of A's text, and cannot name A's customer or documents.
    let (status, found) = search_for(stack, &b_key, b_id, "software for hospital scheduling").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["results"], json!([]), "B has no documents: {found}");
    let foreign = search_for(stack, &b_key, a_id, "hospital").await;
    let missing = search_for(stack, &b_key, 999_999_999, "hospital").await;
    assert_eq!((foreign.0, &foreign), (StatusCode::NOT_FOUND, &missing));
    let (status, _) = get(stack, &format!("/api/knowledge/docs/{a_id}"), &b_key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let url = format!("{}/api/knowledge/docs/{b_id}/{}", stack.base, ids["icp.txt"]);
    let (status, _) = call(reqwest::Method::DELETE, url, Some(&b_key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "A's document id under B's customer id");
    let (status, _) = upload(stack, &b_key, a_id, "x.txt", b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "B uploads into A");

    // Bad uploads and searches: each its own 4xx, nothing stored.
    let (_, before) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.extend(std::iter::repeat_n(0u8, 4096));
    let (status, body) = upload(stack, &a_key, a_id, "report.pdf", elf).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_type")),
        "{body}"
    );
    let (status, body) = upload(stack, &a_key, a_id, "huge.txt", vec![b'a'; 60_000_000]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")), "{body}");
    let truncated = reqwest::Client::new()
        .post(format!("{}/api/knowledge/upload", stack.base))
        .bearer_auth(&a_key)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"customer_id\"\r\n\r\n1\r\n--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhalf a fi")
        .send()
        .await
        .unwrap();
    assert_eq!(truncated.status(), StatusCode::BAD_REQUEST);
    let (status, _) =
        post(stack, "/api/knowledge/search", &a_key, json!({"customer_id": a_id, "query": "x", "top_k": 100_000}))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let utf16: Vec<u8> = "{\"customer_id\": 1, \"query\": \"x\"}".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let response = reqwest::Client::new()
        .post(format!("{}/api/knowledge/search", stack.base))
        .bearer_auth(&a_key)
        .header("content-type", "application/json")
        .body(utf16)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (_, after) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
    assert_eq!(
        (before["documents_count"].clone(), before["storage_used_mb"].clone()),
        (after["documents_count"].clone(), after["storage_used_mb"].clone())
    );

    // Deletion: the document goes from the list and the search, its quota comes back.
    let url = format!("{}/api/knowledge/docs/{a_id}/{}", stack.base, ids["wind.pdf"]);
    let (status, body) = call(reqwest::Method::DELETE, url.clone(), Some(&a_key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the deleted document to leave the list and the quota", WAIT, || async {
        let (_, list) = get(stack, &format!("/api/knowledge/docs/{a_id}"), &a_key).await;
        let (_, quotas) = get(stack, &format!("/api/customers/{a_id}/quotas"), &a_key).await;
        (list["total"] == 2 && quotas["documents_count"] == 2).then_some(())
    })
    .await;
    let (_, found) = search_for(stack, &a_key, a_id, "renewable electricity from wind").await;
    assert!(
        found["results"].as_array().unwrap().iter().all(|r| r["document_id"] != ids["wind.pdf"].as_str()),
        "{found}"
    );
    let (status, _) = call(reqwest::Method::DELETE, url, Some(&a_key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice");
    assert_no_secret_logged(stack, &[&a_key, &b_key]);
}

/// Limits the journeys' pace of requests stays within (the free tier allows 2 a second).
fn fast() -> Value {
    json!({"rateLimitPerSecond": 1000, "rateLimitPerMinute": 60000})
}

/// Registers a free-tier customer with these quota overrides, and waits until they apply.
async fn customer_with_overrides(stack: &Stack, who: &str, overrides: Value) -> (i64, String) {
    let email = format!("{who}-{}@example.com", random_suffix(6).to_lowercase());
    let (status, body) = register(stack, json!({"email": email, "company_name": format!("{who} Co")})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (id, key) = (body["customer_id"].as_i64().unwrap(), body["api_key"].as_str().unwrap().to_owned());
    let customers: Api<Customer> = Api::all(shared_cluster().client().await.unwrap());
    let patch = json!({"spec": {"quotaOverrides": overrides}});
    customers
        .patch(body["customer_name"].as_str().unwrap(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let expected_day = overrides.get("maxApiCallsPerDay").cloned();
    eventually("the overrides to apply", WAIT, || async {
        let (_, quotas) = get(stack, &format!("/api/customers/{id}/quotas"), ADMIN_TOKEN).await;
        (expected_day.as_ref().is_none_or(|d| quotas["max_api_calls_per_day"] == *d)
            && quotas["rate_limit_per_minute"] == overrides["rateLimitPerMinute"])
            .then_some(())
    })
    .await;
    (id, key)
}

#[tokio::test]
async fn rate_limits_answer_429_with_their_headers() {
    let stack = stack();
    let (id, key) =
        customer_with_overrides(stack, "ratelimited", json!({"rateLimitPerSecond": 100, "rateLimitPerMinute": 3}))
            .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = client.get(format!("{}/api/customers/{id}", stack.base)).bearer_auth(&key).send().await.unwrap();
        statuses.push(response.status().as_u16());
        answers.push(response);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429], "3 per minute");
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    // Admitted answers count the minute's window down.
    for (answer, remaining) in answers.iter().zip(["2", "1", "0"]) {
        assert_eq!(header(answer, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(answer, "ratelimit-remaining").as_deref(), Some(remaining));
        let reset: u64 = header(answer, "ratelimit-reset").expect("RateLimit-Reset").parse().unwrap();
        assert!(reset <= 60, "{reset}");
    }
    let refused = answers.pop().unwrap();
    let retry_after: u64 = header(&refused, "retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "one request per 20 s refills: {retry_after}");
    assert_eq!(header(&refused, "ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(header(&refused, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&refused, "ratelimit-reset"), Some(retry_after.to_string()), "reset is when to retry");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("3 requests per minute"), "{body}");
    // The admin token is never limited.
    let (status, _) = get(stack, &format!("/api/customers/{id}"), ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_daily_quota_holds_exactly_under_50_concurrent_clients() {
    let stack = stack();
    const PER_DAY: i64 = 40;
    let (id, key) = customer_with_overrides(
        stack,
        "daily",
        json!({"maxApiCallsPerDay": PER_DAY, "rateLimitPerSecond": 1000, "rateLimitPerMinute": 60000}),
    )
    .await;
    let client = reqwest::Client::new();
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (client, key, url) = (client.clone(), key.clone(), format!("{}/api/customers/{id}/quotas", stack.base));
            tokio::spawn(async move {
                let mut admitted = 0i64;
                loop {
                    let response = client.get(&url).bearer_auth(&key).send().await.unwrap();
                    match response.status() {
                        StatusCode::OK => admitted += 1,
                        StatusCode::TOO_MANY_REQUESTS => {
                            let body: Value = response.json().await.unwrap();
                            assert!(body["message"].as_str().unwrap().contains("maxApiCallsPerDay"), "{body}");
                            return admitted;
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for client in clients {
        admitted += client.await.unwrap();
    }
    // One replica: no over-admission at all (docs/api.md gives the bound for several).
    assert_eq!(admitted, PER_DAY);
    // An agent's usage report is the one call the used-up quota lets through (to its handler:
    // this deployment does not exist), so the cost cap still learns of the agents' costs.
    let (status, body) =
        post(stack, &format!("/api/agents/agent_{id}_00000000/usage"), &key, json!({"tasks": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let counted = eventually("the calls to be flushed to usage_daily", WAIT, || async {
        let (_, quotas) = get(stack, &format!("/api/customers/{id}/quotas"), ADMIN_TOKEN).await;
        (quotas["api_calls_today"] == PER_DAY + 1).then_some(quotas["api_calls_today"].clone())
    })
    .await;
    assert_eq!(counted, PER_DAY + 1, "the report counts too");
}

async fn post_with_key(stack: &Stack, path: &str, token: &str, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", stack.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("the apiserver answers")
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer_and_create_nothing_twice() {
    let stack = stack();
    let email = format!("retry-{}@example.com", random_suffix(6).to_lowercase());
    let body = json!({"email": email, "company_name": "Retry Co", "subscription_tier": "starter"});
    let key = format!("register-{}", random_suffix(8));

    // A registration retried: the same customer, the same key, once.
    let first = post_with_key(stack, "/api/customers/register", ADMIN_TOKEN, &key, body.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = post_with_key(stack, "/api/customers/register", ADMIN_TOKEN, &key, body.clone()).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again, "the retry gets the first answer, API key included");
    let customers: Api<Customer> = Api::all(shared_cluster().client().await.unwrap());
    let same_email =
        customers.list(&Default::default()).await.unwrap().items.into_iter().filter(|c| c.spec.email == email);
    assert_eq!(same_email.count(), 1, "one customer");
    // The key is not in Postgres, not even in the kept answer.
    let pool = prospector_store::connect(&stack.database_url, 1).await.unwrap();
    let api_key = first["api_key"].as_str().unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE position($1::bytea in body) > 0")
        .bind(api_key.as_bytes())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    // The same key with another request is refused.
    let other = json!({"email": "x-other@example.com", "company_name": "Other"});
    let reused = post_with_key(stack, "/api/customers/register", ADMIN_TOKEN, &key, other).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(reused["error"], "idempotency_key_reused");

    // A deploy and an upload retried: one agent, one document.
    let id = first["customer_id"].as_i64().unwrap();
    let deploy = json!({"agent_name": "Once", "agent_type": "custom", "replicas": 0});
    let path = format!("/api/customers/{id}/agents/deploy");
    let a = post_with_key(stack, &path, api_key, "deploy-1", deploy.clone()).await.json::<Value>().await.unwrap();
    let b = post_with_key(stack, &path, api_key, "deploy-1", deploy).await.json::<Value>().await.unwrap();
    assert_eq!(a["deployment_id"], b["deployment_id"], "{a} {b}");
    let (_, agents) = get(stack, &format!("/api/customers/{id}/agents/status"), api_key).await;
    assert_eq!(agents["total"], 1, "{agents}");
    // A client that hangs up while its deploy waits for admission, then retries: the request ran
    // to its end without it, and the retry gets that answer instead of a second agent.
    let hangup = json!({"agent_name": "Hangup", "agent_type": "custom", "replicas": 0});
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(20)).build().unwrap();
    let gone = impatient
        .post(format!("{}{path}", stack.base))
        .bearer_auth(api_key)
        .header("idempotency-key", "deploy-2")
        .json(&hangup)
        .send()
        .await;
    assert!(gone.is_err(), "the client hung up before the answer: {gone:?}");
    let retried = eventually("the hung-up deploy's answer", WAIT, || async {
        let response = post_with_key(stack, &path, api_key, "deploy-2", hangup.clone()).await;
        // 409: the first run has not finished yet.
        (response.status() != StatusCode::CONFLICT).then_some(response)
    })
    .await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(retried.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let (_, agents) = get(stack, &format!("/api/customers/{id}/agents/status"), api_key).await;
    assert_eq!(agents["total"], 2, "Once and Hangup, each once: {agents}");
    // A JSON body over the JSON limit is 413 with or without a key (with one, the middleware
    // reads it, and holds it to the same limit).
    let huge = json!({"agent_name": "x".repeat(3 << 20), "agent_type": "custom"});
    let with_key = post_with_key(stack, &path, api_key, "deploy-huge", huge.clone()).await;
    let (without_key, _) = post(stack, &path, api_key, huge).await;
    assert_eq!((with_key.status(), without_key), (StatusCode::PAYLOAD_TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE));
    // Another customer's identical key is its own.
    let (other_id, other_key) = customer_with_overrides(stack, "otherretry", fast()).await;
    let other_path = format!("/api/customers/{other_id}/agents/deploy");
    let c = post_with_key(
        stack,
        &other_path,
        &other_key,
        "deploy-1",
        json!({"agent_name": "Mine", "agent_type": "custom", "replicas": 0}),
    )
    .await;
    assert_eq!(c.status(), StatusCode::CREATED, "keys are per customer");

    // A replayed rotation whose key was rotated again since is refused, not answered with a
    // revoked key.
    let rotate = format!("/api/customers/{id}/api-keys/rotate");
    let rotated = post_with_key(stack, &rotate, api_key, "rotate-1", json!({})).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_key = rotated.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();
    let replayed = post_with_key(stack, &rotate, &new_key, "rotate-1", json!({})).await;
    assert_eq!(replayed.status(), StatusCode::OK, "the same answer, the key still current");
    assert_eq!(replayed.json::<Value>().await.unwrap()["api_key"].as_str(), Some(new_key.as_str()));
    let newer = post_with_key(stack, &rotate, &new_key, "rotate-2", json!({})).await;
    let newer_key = newer.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = post_with_key(stack, &rotate, &newer_key, "rotate-1", json!({})).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
}

/// One request of the isolation matrix: method, path and body for customer `id` with agent
/// `deployment` and document `document`.
fn endpoints(id: i64, deployment: &str, document: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, format!("/api/customers/{id}"), None),
        (Method::GET, format!("/api/customers/{id}/quotas"), None),
        (Method::POST, format!("/api/customers/{id}/api-keys/rotate"), None),
        (
            Method::POST,
            format!("/api/customers/{id}/agents/deploy"),
            Some(json!({"agent_name": "Probe", "agent_type": "custom", "replicas": 0})),
        ),
        (Method::GET, format!("/api/customers/{id}/agents/status"), None),
        (Method::DELETE, format!("/api/customers/{id}/agents/{deployment}"), None),
        (Method::POST, format!("/api/agents/{deployment}/usage"), Some(json!({"tasks": 1}))),
        (Method::POST, "/api/knowledge/search".into(), Some(json!({"customer_id": id, "query": "secret"}))),
        (Method::GET, format!("/api/knowledge/docs/{id}"), None),
        (Method::DELETE, format!("/api/knowledge/docs/{id}/{document}"), None),
    ]
}

async fn call_raw(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", stack.base));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_isolation_matrix() {
    let stack = stack();
    // A: the victim, with an agent and a document. B: another customer. C: suspended.
    let (a_id, a_key) = customer_with_overrides(stack, "victim", fast()).await;
    let (b_id, b_key) = customer_with_overrides(stack, "intruder", fast()).await;
    let (c_id, c_key) = customer_with_overrides(stack, "suspended", fast()).await;
    let (status, agent) = post(
        stack,
        &format!("/api/customers/{a_id}/agents/deploy"),
        &a_key,
        json!({"agent_name": "Victim agent", "agent_type": "custom", "replicas": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let deployment = agent["deployment_id"].as_str().unwrap().to_owned();
    let (status, document) =
        upload(stack, &a_key, a_id, "secret.txt", b"The secret plan of the victim.".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{document}");
    let document = document["document_id"].as_str().unwrap().to_owned();
    // A revoked key: B's key before a rotation.
    let (status, rotated) = post(stack, &format!("/api/customers/{b_id}/api-keys/rotate"), &b_key, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let revoked = b_key.clone();
    let b_key = rotated["api_key"].as_str().unwrap().to_owned();
    // C suspended.
    let customers: Api<Customer> = Api::all(shared_cluster().client().await.unwrap());
    let (_, c) = get(stack, &format!("/api/customers/{c_id}"), &c_key).await;
    let patch = json!({"spec": {"suspended": true}});
    customers
        .patch(c["customer_name"].as_str().unwrap(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("C's key to be refused", WAIT, || async {
        (get(stack, &format!("/api/customers/{c_id}"), &c_key).await.0 == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let revoked_auth = format!("Bearer {revoked}");
    let suspended_auth = format!("Bearer {c_key}");
    let intruder_auth = format!("Bearer {b_key}");
    let targets = endpoints(a_id, &deployment, &document);
    let missing = endpoints(999_999_999, "agent_999999999_deadbeef", "doc_00000000deadbeef");
    for ((method, path, body), (_, missing_path, missing_body)) in targets.into_iter().zip(missing) {
        let what = format!("{method} {path}");
        let anonymous = call_raw(stack, method.clone(), &path, None, body.clone()).await;
        assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{what} without a key: {}", anonymous.1);
        for malformed in ["Bearer", "Basic dXNlcjpwYXNz", "Bearer sa_not-a-key", "Bearer  ", "sa_abc"] {
            let answer = call_raw(stack, method.clone(), &path, Some(malformed), body.clone()).await;
            assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{what} with {malformed:?}: {}", answer.1);
        }
        let answer = call_raw(stack, method.clone(), &path, Some(&revoked_auth), body.clone()).await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{what} with a revoked key: {}", answer.1);
        let answer = call_raw(stack, method.clone(), &path, Some(&suspended_auth), body.clone()).await;
        assert_eq!(
            (answer.0, answer.1["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("customer_suspended")),
            "{what}"
        );
        let foreign = call_raw(stack, method.clone(), &path, Some(&intruder_auth), body.clone()).await;
        let absent = call_raw(stack, method.clone(), &missing_path, Some(&intruder_auth), missing_body).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{what} with another customer's key: {}", foreign.1);
        assert_eq!(foreign, absent, "{what}: a foreign id must look exactly like a missing one");
    }
    // Uploads name the customer in the form: the same rows.
    let upload_as = |auth: Option<String>, customer_id: i64| async move {
        let form = reqwest::multipart::Form::new()
            .text("customer_id", customer_id.to_string())
            .part("file", reqwest::multipart::Part::bytes(b"intruder".to_vec()).file_name("x.txt"));
        let mut request = reqwest::Client::new().post(format!("{}/api/knowledge/upload", stack.base)).multipart(form);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(upload_as(None, a_id).await.0, StatusCode::UNAUTHORIZED);
    for malformed in ["Bearer", "Basic dXNlcjpwYXNz", "Bearer sa_not-a-key", "sa_abc"] {
        assert_eq!(upload_as(Some(malformed.into()), a_id).await.0, StatusCode::UNAUTHORIZED, "{malformed:?}");
    }
    assert_eq!(upload_as(Some(revoked_auth.clone()), a_id).await.0, StatusCode::UNAUTHORIZED);
    let suspended = upload_as(Some(suspended_auth.clone()), c_id).await;
    assert_eq!((suspended.0, suspended.1["error"].as_str()), (StatusCode::FORBIDDEN, Some("customer_suspended")));
    let foreign = upload_as(Some(intruder_auth.clone()), a_id).await;
    assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{}", foreign.1);
    assert_eq!(foreign, upload_as(Some(intruder_auth.clone()), 999_999_999).await, "upload: foreign like missing");

    // B's own customer id with A's agent or document: exactly like one that does not exist.
    for (method, path, missing_path) in [
        (
            reqwest::Method::DELETE,
            format!("/api/customers/{b_id}/agents/{deployment}"),
            format!("/api/customers/{b_id}/agents/agent_{b_id}_deadbeef"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/knowledge/docs/{b_id}/{document}"),
            format!("/api/knowledge/docs/{b_id}/doc_00000000deadbeef"),
        ),
    ] {
        let foreign = call_raw(stack, method.clone(), &path, Some(&intruder_auth), None).await;
        let absent = call_raw(stack, method, &missing_path, Some(&intruder_auth), None).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{path}: {}", foreign.1);
        assert_eq!(foreign, absent, "{path}: a foreign id must look exactly like a missing one");
    }
    let search = |ids: Value| json!({"customer_id": b_id, "query": "secret plan", "document_ids": ids});
    let foreign = post(stack, "/api/knowledge/search", &b_key, search(json!([document]))).await;
    let absent = post(stack, "/api/knowledge/search", &b_key, search(json!(["doc_00000000deadbeef"]))).await;
    assert_eq!((foreign.0, &foreign.1["results"]), (StatusCode::OK, &json!([])));
    assert_eq!(foreign, absent, "searching A's document id from B finds what a missing one does");

    // A is untouched: its agent, document and key are as they were.
    let (_, agents) = get(stack, &format!("/api/customers/{a_id}/agents/status"), &a_key).await;
    assert_eq!(agents["total"], 1, "{agents}");
    let (_, documents) = get(stack, &format!("/api/knowledge/docs/{a_id}"), &a_key).await;
    assert_eq!(documents["total"], 1, "{documents}");
}

#[tokio::test]
async fn uploads_racing_the_document_limit_and_oversized_requests() {
    let stack = stack();
    let overrides = json!({"maxDocuments": 3, "rateLimitPerSecond": 1000, "rateLimitPerMinute": 60000});
    let (id, key) = customer_with_overrides(stack, "racer", overrides).await;
    let uploads: Vec<_> = (0..10)
        .map(|i| {
            let key = key.clone();
            tokio::spawn(async move {
                let text = format!("Upload number {i} of the race, about lighthouses and their keepers.");
                upload(stack, &key, id, &format!("race-{i}.txt"), text.into_bytes()).await
            })
        })
        .collect();
    let mut created = 0;
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => {
                assert_eq!(body["error"], "quota_exceeded");
                assert!(body["message"].as_str().unwrap().contains("maxDocuments"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 3, "exactly the document limit");
    let (_, quotas) = get(stack, &format!("/api/customers/{id}/quotas"), &key).await;
    assert_eq!(quotas["documents_count"], 3, "{quotas}");

    // A 1 MB query string is refused before any handler, and the server carries on. (Sent by
    // hand: HTTP clients refuse to build such a request.)
    let status = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(stack.base.trim_start_matches("http://")).await.unwrap();
        let head = format!(
            "GET /api/customers/{id}?q={} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
            "x".repeat(1 << 20)
        );
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        answer.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok())
    };
    assert!(status.is_some_and(|code| (400..500).contains(&code)), "a 4xx status line, got {status:?}");
    assert_eq!(get(stack, &format!("/api/customers/{id}"), &key).await.0, StatusCode::OK);
}

#[tokio::test]
async fn open_self_registration_is_free_tier_only_and_reads_its_status_with_its_token() {
    let stack = stack();
    // A second server of the same platform, with self-registration on.
    let (_open, base, log) = start_apiserver(
        "apiserver-open",
        process_dir().join(format!("apiserver-open-{}.log", random_suffix(4))),
        &["--open-registration", "--search=false"],
        &[("DATABASE_URL", stack.database_url.as_str())],
    );
    let open = Stack { base, log, database_url: stack.database_url.clone() };
    eventually("the second apiserver to be ready", WAIT, || async {
        reqwest::get(format!("{}/readyz", open.base)).await.ok()?.status().is_success().then_some(())
    })
    .await;
    let email = |who: &str| format!("{who}-{}@example.com", random_suffix(6).to_lowercase());
    let url = format!("{}/api/customers/register", open.base);

    let (status, body) = call(
        reqwest::Method::POST,
        url.clone(),
        None,
        Some(json!({"email": email("self"), "company_name": "Self Co"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["subscription_tier"], "free");
    assert!(body["api_key"].as_str().is_some_and(|k| k.starts_with("sa_")), "{body}");
    let body_pro = json!({"email": email("greedy"), "company_name": "Greedy Co", "subscription_tier": "pro"});
    let (status, body) = call(reqwest::Method::POST, url.clone(), None, Some(body_pro)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{body}");

    // The 202 path: the token in the answer reads the status, and nothing else does.
    let (status, pending) = call(
        reqwest::Method::POST,
        format!("{url}?wait=false"),
        None,
        Some(json!({"email": email("later"), "company_name": "Later Self Co"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let token = pending["registration_token"].as_str().expect("a registration token").to_owned();
    let status_url = format!("{}{}", open.base, pending["status_url"].as_str().unwrap());
    let (status, _) = call(reqwest::Method::GET, status_url.clone(), Some("rt_wrong"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let done = eventually("the self-registration to complete", WAIT, || async {
        let (status, body) = call(reqwest::Method::GET, status_url.clone(), Some(&token), None).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert!(done["api_key"].as_str().is_some_and(|k| k.starts_with("sa_")), "{done}");
    let (_, again) = call(reqwest::Method::GET, status_url, Some(&token), None).await;
    assert!(again.get("api_key").is_none(), "once: {again}");
}

/// schemathesis (`hack/schemathesis.sh`) against `/openapi.json`, with a customer's key and its
/// id in the paths: no 5xx, no undocumented status, no answer outside its schema. The key
/// rotation and registration are left out: one would end the run's key, the other takes the
/// admin token.
#[tokio::test]
async fn the_api_holds_to_its_openapi_description_under_generated_requests() {
    let stack = stack();
    let overrides = json!({"rateLimitPerSecond": 10000, "rateLimitPerMinute": 600000,
                           "maxApiCallsPerDay": 1000000, "maxApiCallsPerMonth": 10000000});
    let (id, key) = customer_with_overrides(stack, "fuzzed", overrides).await;
    let schemathesis = prospector_tests::hack::hack_path("schemathesis.sh").expect("hack/schemathesis.sh");
    let dir = process_dir().join(format!("schemathesis-{}", random_suffix(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, format!("[parameters]\n\"path.customer_id\" = {id}\n")).unwrap();
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(&dir)
        .args(["--config-file", config.to_str().unwrap(), "run", &format!("{}/openapi.json", stack.base)])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--exclude-path", "/api/customers/{customer_id}/api-keys/rotate"])
        .args(["--exclude-path", "/api/customers/register"])
        .args(["--max-examples", "12", "--seed", "7", "--workers", "1", "--max-time", "100"])
        .output()
        .await
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found failures:\n{report}");
    assert!(report.contains("Tested: 11"), "every selected operation was tested:\n{report}");
}

/// Runs `curl` with `args`, and parses its answer.
fn curl(args: &[&str]) -> Value {
    let output = std::process::Command::new("curl").arg("-sS").args(args).output().expect("curl runs");
    assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)))
}

/// The seed's three curl examples as its README writes them, plus an `Authorization` header
/// (and the real customer id where the seed assumes 1).
#[tokio::test]
async fn the_seeds_curl_examples_work_with_an_authorization_header() {
    let stack = stack();
    let base = stack.base.clone();
    let admin = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let registered = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/customers/register"),
        "-H",
        "Content-Type: application/json",
        "-H",
        &admin,
        "-d",
        r#"{
    "email": "test@example.com",
    "password": "SecurePass123",
    "company_name": "Test Corp",
    "subscription_tier": "pro"
  }"#,
    ]);
    for field in ["customer_id", "email", "company_name", "api_key", "subscription_tier", "status", "created_at"] {
        assert!(!registered[field].is_null(), "{field} missing: {registered}");
    }
    let id = registered["customer_id"].as_i64().unwrap().to_string();
    let auth = format!("Authorization: Bearer {}", registered["api_key"].as_str().unwrap());

    let dir = process_dir().join(format!("seed-curl-{}", random_suffix(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let pdf = support::pdf(&[support::column(72.0, &["We sell to hospitals in Germany."])], true);
    std::fs::write(dir.join("icp_document.pdf"), pdf).unwrap();
    let uploaded = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/knowledge/upload"),
        "-H",
        &auth,
        "-F",
        &format!("customer_id={id}"),
        "-F",
        &format!("file=@{}", dir.join("icp_document.pdf").display()),
    ]);
    for field in ["document_id", "filename", "content_type", "file_size", "processing_status"] {
        assert!(!uploaded[field].is_null(), "{field} missing: {uploaded}");
    }
    assert_eq!(
        (uploaded["filename"].as_str(), uploaded["content_type"].as_str()),
        (Some("icp_document.pdf"), Some("application/pdf"))
    );

    let deployed = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/customers/{id}/agents/deploy"),
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        r#"{
    "agent_name": "Lead Qualifier",
    "agent_type": "lead_qualifier",
    "model": "llama3.1-8b"
  }"#,
    ]);
    for field in ["agent_id", "deployment_id", "agent_name", "agent_type", "status", "model", "deployed_at"] {
        assert!(!deployed[field].is_null(), "{field} missing: {deployed}");
    }
    assert_eq!(deployed["agent_name"], "Lead Qualifier");
}

#[tokio::test]
async fn an_upload_deleted_at_once_gives_everything_back() {
    let stack = stack();
    let (id, key) = customer_with_overrides(stack, "hasty", fast()).await;
    let pool = prospector_store::connect(&stack.database_url, 1).await.unwrap();
    for round in 0..3 {
        let text = format!("A document deleted as soon as it exists, round {round}.");
        let (status, body) = upload(stack, &key, id, "hasty.txt", text.into_bytes()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let url = format!("{}/api/knowledge/docs/{id}/{}", stack.base, body["document_id"].as_str().unwrap());
        let (status, body) = call(reqwest::Method::DELETE, url, Some(&key), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    eventually("every reservation, row and byte to be released", WAIT, || async {
        let (_, quotas) = get(stack, &format!("/api/customers/{id}/quotas"), &key).await;
        let rows = prospector_tests::fixtures::document_rows(&pool, id).await;
        (quotas["documents_count"] == 0 && quotas["storage_used_mb"] == 0.0 && rows == (0, 0, 0, 0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rotated_admin_token_file_takes_effect_without_a_restart() {
    let stack = stack();
    let dir = process_dir().join(format!("admin-token-{}", random_suffix(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    let (first, second) = (format!("first-{}", random_suffix(16)), format!("second-{}", random_suffix(16)));
    std::fs::write(&file, &first).unwrap();
    let (_server, base, log) = start_apiserver(
        "apiserver-token-file",
        dir.join("apiserver.log"),
        &["--search=false"],
        &[("DATABASE_URL", stack.database_url.as_str()), ("PROSPECTOR_ADMIN_TOKEN_FILE", file.to_str().unwrap())],
    );
    eventually("the apiserver to be ready", WAIT, || async {
        reqwest::get(format!("{base}/readyz")).await.ok()?.status().is_success().then_some(())
    })
    .await;
    let url = format!("{base}/api/customers/999999999");
    // A missing customer answers 404 to the admin and 401 to anyone else.
    eventually("the first token to work", WAIT, || async {
        (call(reqwest::Method::GET, url.clone(), Some(&first), None).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    std::fs::write(&file, &second).unwrap();
    eventually("the second token to replace the first", Duration::from_secs(30), || async {
        let old = call(reqwest::Method::GET, url.clone(), Some(&first), None).await.0;
        let new = call(reqwest::Method::GET, url.clone(), Some(&second), None).await.0;
        (old == StatusCode::UNAUTHORIZED && new == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(&first) && !log.contains(&second), "no admin token in the log");
}

/// With `PROSPECTOR_SEARCH_DATABASE_URL`, searches read through that connection (a replica's,
/// in production): here a role whose transactions are read-only and that may only `SELECT`.
#[tokio::test]
async fn search_reads_through_the_read_only_database_url_when_one_is_given() {
    let stack = stack();
    let (id, key) = customer_with_overrides(stack, "replica", fast()).await;
    let text = "Our buyers are logistics companies that run refrigerated truck fleets across Europe.";
    let (status, body) = upload(stack, &key, id, "fleet.txt", text.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually("the document to be processed", Duration::from_secs(120), || async {
        let (_, list) = get(stack, &format!("/api/knowledge/docs/{id}"), &key).await;
        (list["documents"][0]["processing_status"] == "completed").then_some(())
    })
    .await;

    let admin = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let role = format!("search_ro_{}", random_suffix(6));
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("ALTER ROLE {role} SET default_transaction_read_only = on"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&statement).execute(&admin).await.unwrap();
    }
    let primary: sqlx::postgres::PgConnectOptions = stack.database_url.parse().unwrap();
    let read_only_url =
        format!("postgres://{role}@{}:{}/{}", primary.get_host(), primary.get_port(), primary.get_database().unwrap());
    let (_replica_reader, base, log) = start_apiserver(
        "apiserver-replica",
        process_dir().join(format!("apiserver-replica-{}.log", random_suffix(4))),
        &[],
        &[
            ("DATABASE_URL", stack.database_url.as_str()),
            ("PROSPECTOR_SEARCH_DATABASE_URL", read_only_url.as_str()),
            ("PROSPECTOR_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let second = Stack { base, log, database_url: stack.database_url.clone() };
    let found = eventually("the second apiserver to answer", WAIT, || async {
        let response = reqwest::Client::new()
            .post(format!("{}/api/knowledge/search", second.base))
            .bearer_auth(&key)
            .json(&json!({"customer_id": id, "query": "refrigerated trucks", "top_k": 3}))
            .send()
            .await
            .ok()?;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(found["results"][0]["filename"], "fleet.txt", "{found}");

    // The search ran as the read-only role: its connection is the one the pool keeps.
    let readers: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
        .bind(&role)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(readers >= 1, "no connection of {role}");
    // And that role can write nothing, so nothing but reads can have gone that way.
    let mut reader = <sqlx::PgConnection as sqlx::Connection>::connect(&read_only_url).await.unwrap();
    let refused = sqlx::query("DELETE FROM document_chunks").execute(&mut reader).await.unwrap_err();
    assert!(refused.to_string().contains("read-only transaction"), "{refused}");
}

/// What the chart's alerts read of the apiserver, it exports: every `prospector_apiserver_*`
/// metric the PrometheusRule names, with the `status` label its 5xx ratio selects on.
#[tokio::test]
async fn the_apiserver_exports_every_metric_the_charts_alerts_read() {
    let stack = stack();
    let (status, _) = get(stack, "/api/customers/1/quotas", "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "one answered request, so the counters have a series");
    let wanted = prospector_tests::chart::alert_metrics("prospector_apiserver_").expect("render the chart's alerts");
    assert!(!wanted.is_empty());
    let body = reqwest::get(format!("{}/metrics", stack.base)).await.unwrap().text().await.unwrap();
    for name in &wanted {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "the alerts read {name}, which the apiserver does not export"
        );
    }
    assert!(
        body.lines().any(|l| l.starts_with("prospector_apiserver_requests_total{") && l.contains("status=\"401\"")),
        "requests are counted by status: {body}"
    );
}
