//! What the REST benchmarks share: a customer whose limits never refuse them, the
//! `prospector-apiserver` binary started against a database, and oha (`hack/oha.sh`) runs read
//! back from its JSON report.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use prospector_store::customers::{CustomerRecord, QuotaLimits, set_quota_limits, upsert_customer};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, random_suffix, shared_cluster};
use serde_json::Value;
use sqlx::PgPool;

/// `name` from the environment, or `default`.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What oha measured.
#[derive(Debug, Clone)]
pub struct Load {
    pub requests_per_second: f64,
    /// The share of answers that were 200.
    pub success_rate: f64,
    /// oha's latency percentiles ("p50", "p95", "p99", …), in seconds.
    percentiles: serde_json::Map<String, Value>,
}

impl Load {
    /// A latency percentile in milliseconds, e.g. `ms("p95")`.
    pub fn ms(&self, percentile: &str) -> f64 {
        self.percentiles.get(percentile).and_then(Value::as_f64).unwrap_or(f64::NAN) * 1000.0
    }
}

/// One endpoint to load: a GET, or a POST of a JSON body.
pub struct Target<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub json_body: Option<&'a str>,
}

/// Runs oha against `target` for `seconds` with `connections`, at most `rate` requests/s.
pub fn oha(target: &Target<'_>, seconds: u64, connections: u32, rate: Option<f64>) -> Load {
    let oha = prospector_tests::hack::hack_path("oha.sh").expect("hack/oha.sh");
    let mut command = Command::new(oha);
    command.args(["--no-tui", "--output-format", "json", "-z", &format!("{seconds}s"), "-c", &connections.to_string()]);
    if let Some(token) = target.token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = target.json_body {
        command.args(["-m", "POST", "-T", "application/json", "-d", body]);
    }
    if let Some(rate) = rate {
        command.args(["-q", &format!("{rate:.0}")]);
    }
    let output = command.arg(target.url).output().expect("run oha");
    assert!(output.status.success(), "oha failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("oha's JSON report");
    let summary = &report["summary"];
    let statuses = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let ok = statuses.get("200").and_then(Value::as_f64).unwrap_or(0.0);
    let all: f64 = statuses.values().filter_map(Value::as_f64).sum();
    Load {
        requests_per_second: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
        success_rate: if all > 0.0 { ok / all } else { 0.0 },
        percentiles: report["latencyPercentiles"].as_object().cloned().unwrap_or_default(),
    }
}

/// A customer of the enterprise tier whose limits never refuse a benchmark (the limiter runs,
/// and admits), and its API key: `(customer_id, key)`.
pub async fn unlimited_customer(pool: &PgPool) -> (i64, String) {
    let name = format!("bench-{}", random_suffix(6).to_lowercase());
    let record = CustomerRecord {
        k8s_uid: uuid::Uuid::new_v4(),
        name: name.clone(),
        company_name: "Bench Corp".into(),
        email: format!("{name}@example.com"),
        subscription_tier: "enterprise".into(),
        ..Default::default()
    };
    let id = upsert_customer(pool, &record).await.unwrap();
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
    set_quota_limits(pool, id, &limits).await.unwrap();
    let key = prospector_store::api_keys::generate();
    prospector_store::api_keys::activate_key(pool, id, &key).await.unwrap();
    (id, key)
}

/// A started server: the process and its log.
pub struct Server {
    pub process: ManagedProcess,
    pub log: PathBuf,
    pub port: u16,
}

/// Starts `prospector-apiserver` against `database_url` and the harness's control plane, with
/// these extra flags.
pub fn start_apiserver(database_url: &str, flags: &[&str]) -> Server {
    let port = free_port().unwrap();
    let log = process_dir().join(format!("bench-apiserver-{}.log", random_suffix(4)));
    let kubeconfig = shared_cluster().kubeconfig().display().to_string();
    let mut args = vec![format!("--listen=127.0.0.1:{port}")];
    args.extend(flags.iter().map(|f| f.to_string()));
    let process = ManagedProcess::spawn(
        "apiserver",
        std::path::Path::new(env!("CARGO_BIN_EXE_prospector-apiserver")),
        &args,
        RunAs::Current,
        &log,
        &[("DATABASE_URL", database_url), ("KUBECONFIG", kubeconfig.as_str())],
    )
    .expect("start the apiserver");
    Server { process, log, port }
}

/// Waits (up to `timeout`) until `target` answers 200, and returns the answer.
pub async fn first_answer(server: &mut Server, target: &Target<'_>, timeout: Duration) -> String {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        server.process.check_running().expect("the server runs");
        let request = match target.json_body {
            Some(body) => client.post(target.url).header("content-type", "application/json").body(body.to_owned()),
            None => client.get(target.url),
        };
        let request = match target.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            return response.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{} did not answer in {timeout:?}; see {}", target.url, server.log.display());
}
