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
//! This VM's speed drifts by tens of percent within minutes, so each phase runs `BENCH_ROUNDS`
//! (3) rounds that alternate the two servers, and the report takes medians: of each round's
//! ratio, and of each server's requests/s and p99.
//!
//! `cargo bench -p prospector-apiserver --bench quotas`

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::Datelike;
use prospector_store::customers::usage_snapshot;
use prospector_tests::shared_postgres;
use support::{Load, Target, env, first_answer, oha, start_apiserver, unlimited_customer};

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
    let seconds: u64 = env("BENCH_SECONDS", 10);
    let connections: u32 = env("BENCH_CONNECTIONS", 16);
    let rounds: usize = env("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let (database_url, key, customer_id) = runtime.block_on(async {
        let db = shared_postgres().migrated_database().await.expect("a database");
        let (id, key) = unlimited_customer(&db.pool).await;
        std::mem::forget(db.pool);
        (db.url.clone(), key, id)
    });

    let mut apiserver = start_apiserver(&database_url, &["--search=false"]);
    let url = format!("http://127.0.0.1:{}/api/customers/{customer_id}/quotas", apiserver.port);
    let target = Target { url: &url, token: Some(&key), json_body: None };
    let answer = runtime.block_on(first_answer(&mut apiserver, &target, Duration::from_secs(20)));
    let bare = serve_bare(database_url.clone(), customer_id);
    let bare_url = format!("http://{bare}/api/customers/{customer_id}/quotas");
    let bare_target = Target { url: &bare_url, token: None, json_body: None };
    println!(
        "REST overhead: GET quotas, {connections} connections, {seconds} s per run, answer {} bytes",
        answer.len()
    );

    // Warm both up, then the most each answers, alternating.
    oha(&target, 2, connections, None);
    oha(&bare_target, 2, connections, None);
    let (mut apiserver_most, mut bare_most) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        apiserver_most.push(oha(&target, seconds, connections, None));
        bare_most.push(oha(&bare_target, seconds, connections, None));
    }
    let ratios: Vec<f64> =
        apiserver_most.iter().zip(&bare_most).map(|(a, b)| a.requests_per_second / b.requests_per_second).collect();
    // Latency at 70% of the apiserver's median most, for both, alternating.
    let rate = median(apiserver_most.iter().map(|l| l.requests_per_second).collect()) * 0.7;
    let (mut apiserver_paced, mut bare_paced) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        apiserver_paced.push(oha(&target, seconds, connections, Some(rate)));
        bare_paced.push(oha(&bare_target, seconds, connections, Some(rate)));
    }

    let rounds_of = |runs: &[Load], what: &dyn Fn(&Load) -> f64| {
        runs.iter().map(|l| format!("{:.2}", what(l))).collect::<Vec<_>>().join(", ")
    };
    println!(
        "| server | load | requests/s (median) | p50 ms | p99 ms (median) | 200s | apiserver ÷ bare, requests/s (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, load: &str, runs: &[Load], ratio: Option<f64>| {
        let rps = median(runs.iter().map(|l| l.requests_per_second).collect());
        let p50 = median(runs.iter().map(|l| l.ms("p50")).collect());
        let p99 = median(runs.iter().map(|l| l.ms("p99")).collect());
        let ok = runs.iter().map(|l| l.success_rate).fold(1.0, f64::min);
        println!(
            "| {name} | {load} | {rps:.0} | {p50:.2} | {p99:.2} | {:.1}% | {} |",
            ok * 100.0,
            ratio.map_or("".into(), |r| format!("{r:.3}×"))
        )
    };
    let apiserver = "prospector-apiserver (key, limits, Postgres)";
    let bare = "bare axum handler (the same Postgres read)";
    row(apiserver, "most", &apiserver_most, Some(median(ratios.clone())));
    row(bare, "most", &bare_most, None);
    row(apiserver, &format!("{rate:.0}/s (70%)"), &apiserver_paced, None);
    row(bare, &format!("{rate:.0}/s"), &bare_paced, None);
    println!();
    println!("rounds: apiserver ÷ bare {}", ratios.iter().map(|r| format!("{r:.3}×")).collect::<Vec<_>>().join(", "));
    println!(
        "rounds: p99 ms at {rate:.0}/s: apiserver {}; bare {}",
        rounds_of(&apiserver_paced, &|l| l.ms("p99")),
        rounds_of(&bare_paced, &|l| l.ms("p99"))
    );
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}
