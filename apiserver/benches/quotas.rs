//! REST overhead benchmark (not a test): the authenticated, rate-limited
//! `GET /api/customers/{id}/quotas` of the `prospector-apiserver` binary (request id, metrics,
//! key lookup, limiter, the quota read from Postgres, JSON) against a bare axum handler that does
//! only the same Postgres read and JSON (no auth, no limits, no middleware), both on this
//! machine against the same database, loaded by oha (`hack/oha.sh`) in the same run:
//!
//! 1. the most each answers: oha with `BENCH_CONNECTIONS` (16) connections for
//!    `BENCH_SECONDS` (10);
//! 2. latency at 70% of the apiserver's most: oha at that fixed rate against both.
//!
//! `cargo bench -p prospector-apiserver --bench quotas`

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::Datelike;
use prospector_store::customers::{CustomerRecord, QuotaLimits, set_quota_limits, upsert_customer, usage_snapshot};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, random_suffix, shared_cluster, shared_postgres};
use serde_json::Value;

/// What oha measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    success_rate: f64,
}

fn oha(oha: &str, url: &str, token: Option<&str>, seconds: u64, connections: u32, rate: Option<f64>) -> Load {
    let mut command = Command::new(oha);
    command.args(["--no-tui", "--output-format", "json", "-z", &format!("{seconds}s"), "-c", &connections.to_string()]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(rate) = rate {
        command.args(["-q", &format!("{rate:.0}")]);
    }
    let output = command.arg(url).output().expect("run oha");
    assert!(output.status.success(), "oha failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("oha's JSON report");
    let summary = &report["summary"];
    let percentiles = &report["latencyPercentiles"];
    let statuses = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let ok = statuses.get("200").and_then(Value::as_f64).unwrap_or(0.0);
    let all: f64 = statuses.values().filter_map(Value::as_f64).sum();
    Load {
        requests_per_second: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: percentiles["p50"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        p99_ms: percentiles["p99"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        success_rate: if all > 0.0 { ok / all } else { 0.0 },
    }
}

/// The bare peer: the same quota read from Postgres and a JSON answer, nothing else.
fn serve_bare(database_url: String, customer_id: i64) -> SocketAddr {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let pool = prospector_store::connect(&database_url, 16).await.unwrap();
            let app = Router::new().route(
                "/api/customers/{customer_id}/quotas",
                get(move || {
                    let pool = pool.clone();
                    async move {
                        let today = chrono::Utc::now().date_naive();
                        let month_start = today.with_day(1).unwrap();
                        let usage =
                            usage_snapshot(&pool, customer_id, today, month_start).await.unwrap().unwrap_or_default();
                        axum::Json(serde_json::json!({
                            "customer_id": customer_id,
                            "max_api_calls_per_day": usage.limits.max_api_calls_per_day,
                            "api_calls_today": usage.api_calls_today,
                            "max_api_calls_per_month": usage.limits.max_api_calls_per_month,
                            "api_calls_this_month": usage.api_calls_this_month,
                            "rate_limit_per_second": usage.limits.rate_limit_per_second,
                            "rate_limit_per_minute": usage.limits.rate_limit_per_minute,
                            "max_agents": usage.limits.max_agents,
                            "active_agents_count": usage.active_agents,
                            "max_concurrent_agents": usage.limits.max_concurrent_agents,
                            "active_replicas": usage.active_replicas,
                            "max_leads_per_month": usage.limits.max_leads_per_month,
                            "leads_this_month": usage.leads_this_month,
                            "max_storage_mb": usage.limits.max_storage_bytes as f64 / 1e6,
                            "storage_used_mb": usage.storage_bytes as f64 / 1e6,
                            "max_documents": usage.limits.max_documents,
                            "documents_count": usage.documents,
                            "max_cost_per_month_usd": usage.limits.max_cost_per_month_usd,
                            "cost_this_month_usd": usage.cost_this_month_usd,
                        }))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    receiver.recv().unwrap()
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let connections: u32 = std::env::var("BENCH_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let oha_path = prospector_tests::hack::hack_path("oha.sh").expect("hack/oha.sh").display().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // A customer whose limits never refuse the benchmark: the limiter runs, and admits.
    let (database_url, key, customer_id) = runtime.block_on(async {
        let db = shared_postgres().migrated_database().await.expect("a database");
        let name = format!("bench-{}", random_suffix(6).to_lowercase());
        let record = CustomerRecord {
            k8s_uid: uuid::Uuid::new_v4(),
            name: name.clone(),
            company_name: "Bench Corp".into(),
            email: format!("{name}@example.com"),
            subscription_tier: "enterprise".into(),
            ..Default::default()
        };
        let id = upsert_customer(&db.pool, &record).await.unwrap();
        let limits = QuotaLimits {
            max_api_calls_per_day: 1_000_000_000_000,
            max_api_calls_per_month: 1_000_000_000_000,
            rate_limit_per_second: 1_000_000_000,
            rate_limit_per_minute: 1_000_000_000,
            max_agents: 100,
            max_concurrent_agents: 50,
            max_storage_bytes: 100_000_000_000,
            max_documents: 10_000,
            max_leads_per_month: 100_000,
            max_cost_per_month_usd: 10_000.0,
        };
        set_quota_limits(&db.pool, id, &limits).await.unwrap();
        let key = prospector_store::api_keys::generate();
        prospector_store::api_keys::activate_key(&db.pool, id, &key).await.unwrap();
        std::mem::forget(db.pool);
        (db.url.clone(), key, id)
    });

    let port = free_port().unwrap();
    let log = process_dir().join(format!("bench-apiserver-{}.log", random_suffix(4)));
    let kubeconfig = shared_cluster().kubeconfig().display().to_string();
    let _apiserver = ManagedProcess::spawn(
        "apiserver",
        std::path::Path::new(env!("CARGO_BIN_EXE_prospector-apiserver")),
        &[format!("--listen=127.0.0.1:{port}"), "--search=false".into()],
        RunAs::Current,
        &log,
        &[("DATABASE_URL", database_url.as_str()), ("KUBECONFIG", kubeconfig.as_str())],
    )
    .expect("start the apiserver");
    let url = format!("http://127.0.0.1:{port}/api/customers/{customer_id}/quotas");
    let answer = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(response) = reqwest::Client::new().get(&url).bearer_auth(&key).send().await
                && response.status().is_success()
            {
                return response.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the apiserver did not answer; see {}", log.display());
    });
    let bare = serve_bare(database_url.clone(), customer_id);
    let bare_url = format!("http://{bare}/api/customers/{customer_id}/quotas");
    println!(
        "REST overhead: GET quotas, {connections} connections, {seconds} s per run, answer {} bytes",
        answer.len()
    );

    // Warm both up, then the most each answers.
    oha(&oha_path, &url, Some(&key), 2, connections, None);
    oha(&oha_path, &bare_url, None, 2, connections, None);
    let apiserver_max = oha(&oha_path, &url, Some(&key), seconds, connections, None);
    let bare_max = oha(&oha_path, &bare_url, None, seconds, connections, None);
    // Latency at 70% of the apiserver's most, for both.
    let rate = apiserver_max.requests_per_second * 0.7;
    let apiserver_paced = oha(&oha_path, &url, Some(&key), seconds, connections, Some(rate));
    let bare_paced = oha(&oha_path, &bare_url, None, seconds, connections, Some(rate));

    println!("| server | load | requests/s | p50 ms | p99 ms | 200s | apiserver ÷ bare, requests/s |");
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, load: &str, l: Load, ratio: Option<f64>| {
        println!(
            "| {name} | {load} | {:.0} | {:.2} | {:.2} | {:.1}% | {} |",
            l.requests_per_second,
            l.p50_ms,
            l.p99_ms,
            l.success_rate * 100.0,
            ratio.map_or("".into(), |r| format!("{r:.3}×"))
        )
    };
    row(
        "prospector-apiserver (key, limits, Postgres)",
        "most",
        apiserver_max,
        Some(apiserver_max.requests_per_second / bare_max.requests_per_second),
    );
    row("bare axum handler (the same Postgres read)", "most", bare_max, None);
    row("prospector-apiserver (key, limits, Postgres)", &format!("{rate:.0}/s (70%)"), apiserver_paced, None);
    row("bare axum handler (the same Postgres read)", &format!("{rate:.0}/s"), bare_paced, None);
}
