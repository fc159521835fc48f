//! Scale benchmark (not a test): N Customers and M AgentDeployments created against a fresh local
//! control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) and Postgres, with
//! the release-built operator binary. Reports the time until all are Ready, create→Ready
//! latency percentiles, and the operator's peak and steady RSS.
//!
//! `cargo bench -p prospector-operator --bench scale` runs 1,000 customers with 5 agents each.
//! `BENCH_CUSTOMERS` and `BENCH_AGENTS_PER_CUSTOMER` change the size; `BENCH_SCALES` (e.g.
//! `0.25,0.5,1,2`) runs several sizes, as fractions of it, one after the other, and
//! `BENCH_PLOT=docs/scale-growth.svg` draws the time per object and the RSS per 1,000 objects
//! of every size.
//!
//! The peer (`BENCH_MODE=floor`, or `both`, the default, which runs it before the operator at
//! each size) is the floor of what the control plane can do on the same machine for the same
//! custom resources: the benchmark client creates the same Customers and AgentDeployments, then
//! itself the very children the operator would (each customer's namespace, ResourceQuota,
//! LimitRange, NetworkPolicy, ICP ConfigMap and Secret; each agent's ServiceAccount, ConfigMap
//! and Deployment, from the operator's own builders, owned by their custom resource), and writes
//! one status on each: the customer's Ready once its children exist, the agent's Running once its
//! Deployment has its replica available. No Postgres, no finalizers, no reads. Both modes are
//! measured the same way (the same watches see the same conditions), each on a control plane of
//! its own, so neither run inherits the other's objects.
//!
//! `BENCH_MODE=api-shape` (or `all`: floor, api-shape, operator) is a second peer: the client
//! makes the operator's own requests itself, in the operator's shape (its finalizers, server-side
//! apply of the children, two status writes per agent and customer as `prospector_operator`'s
//! status code derives them, its Events), with no operator and no Postgres. Against the floor it
//! measures what the reconcile style costs the control plane; against the operator, what the
//! operator itself adds. Not mirrored, so counted as the operator's own: its reads (pod lists
//! while an agent starts, reads on a cache miss), its Tier status writes and its watches.
//! `BENCH_SHAPE_WITHOUT` (some of `finalizers`, `events`, `extra-status`, `apply`,
//! `full-status`; see `shape_without`) leaves parts of that shape out, to see what each costs.
//! An operator run also prints its reconciles by controller and its database's transactions
//! over the run.
//!
//! `BENCH_APISERVER_PROFILE=<dir>` also takes a CPU profile of kube-apiserver in each run
//! (`BENCH_PROFILE_SECONDS`, default 30, starting `BENCH_PROFILE_AFTER` seconds in, default 10),
//! written to `<dir>/apiserver-<mode>-<customers>.pprof`, for `go tool pprof -top`.
//! `BENCH_OPERATOR_HEAPTRACK=<file>` records the operator's allocations with heaptrack (see
//! `start_operator`). Each run prints the operator's peak RSS split into its anonymous part
//! (heap, stacks) and its file-backed part (its code, and the shared libraries it maps).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use prospector_crds::conditions::types;
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, AgentPhase, Customer, HasConditions};
use prospector_tests::ControlPlane;
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, shared_postgres};
use serde_json::json;

// The operator tests' helpers for a running operator (its `/metrics`).
#[path = "../tests/common/process.rs"]
mod process;

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

/// Whether a customer shows Ready=True: when both modes count it ready.
fn customer_is_ready(customer: &Customer) -> bool {
    customer.status.as_ref().and_then(|s| s.condition(types::READY)).is_some_and(|r| r.is_true())
}

/// Whether an agent shows phase Running: when both modes count it ready.
fn agent_is_running(agent: &AgentDeployment) -> bool {
    agent.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The release operator reconciles what the client creates.
    Operator,
    /// The client does the operator's unavoidable API work itself (the peer).
    Floor,
    /// The client makes the operator's own API requests itself, shaped as the operator makes
    /// them (finalizers, server-side apply, two status writes per agent and customer, Events),
    /// with no Postgres and no controller: what the project's reconcile style costs the
    /// apiserver, apart from the operator.
    ApiShape,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Operator => "operator",
            Mode::Floor => "floor",
            Mode::ApiShape => "api-shape",
        }
    }
}

/// The operator's memory over a run, in KiB.
struct Rss {
    idle: u64,
    peak: u64,
    steady: u64,
    /// The largest anonymous part seen (heap, stacks): what the caches and the work in flight
    /// take.
    peak_anonymous: u64,
    /// The largest file-backed part seen: mostly the binary's code pages.
    peak_file: u64,
}

/// What one run measured.
struct Run {
    customers: usize,
    agents: usize,
    created_in: Duration,
    all_ready_in: Duration,
    customer_latency: Vec<Duration>,
    agent_latency: Vec<Duration>,
    rss: Option<Rss>,
    /// The apiserver's requests over the run, by verb and resource, most first.
    requests: Vec<(String, f64)>,
    /// The Events of the run, by who reported them and why, most first.
    events: Vec<(String, usize)>,
    /// CPU seconds each component used over the run, most first.
    cpu: Vec<(String, f64)>,
    /// The operator's own work over the run (operator mode only).
    operator_work: Option<OperatorWork>,
}

/// What the operator did over a run: where its and Postgres's CPU went.
struct OperatorWork {
    /// Reconciles started, by controller (`prospector_operator_reconciles_total`).
    reconciles: Vec<(String, f64)>,
    /// Postgres transactions committed and rows inserted, updated and deleted in the operator's
    /// database (`pg_stat_database`).
    transactions: i64,
    rows_written: i64,
}

impl Run {
    fn objects(&self) -> usize {
        self.customers + self.agents
    }

    fn ms_per_object(&self) -> f64 {
        self.all_ready_in.as_secs_f64() * 1000.0 / self.objects() as f64
    }

    fn print(&self, mode: Mode) {
        println!(
            "{}: {} customers x {} agents = {} agents",
            mode.label(),
            self.customers,
            self.agents / self.customers.max(1),
            self.agents
        );
        println!("| metric | value |");
        println!("|---|---|");
        println!("| all objects created (client side) | {:.1} s |", self.created_in.as_secs_f64());
        println!("| all Ready (customers Ready, agents Running) | {:.1} s |", self.all_ready_in.as_secs_f64());
        println!("| customers Ready | {}/{} |", self.customer_latency.len(), self.customers);
        println!("| agents Running | {}/{} |", self.agent_latency.len(), self.agents);
        for (what, l) in [("customer", &self.customer_latency), ("agent", &self.agent_latency)] {
            println!("| {what} create→Ready p50 | {:.3} s |", percentile(l, 0.5).as_secs_f64());
            println!("| {what} create→Ready p99 | {:.3} s |", percentile(l, 0.99).as_secs_f64());
        }
        if let Some(rss) = &self.rss {
            println!("| operator RSS idle | {:.1} MiB |", mib(rss.idle));
            println!("| operator RSS peak (VmHWM) | {:.1} MiB |", mib(rss.peak));
            println!("| operator RSS steady (15 s after) | {:.1} MiB |", mib(rss.steady));
            println!("| operator RSS peak, anonymous (heap, stacks) | {:.1} MiB |", mib(rss.peak_anonymous));
            println!("| operator RSS peak, file-backed (code, libraries) | {:.1} MiB |", mib(rss.peak_file));
        }
        let total: f64 = self.requests.iter().map(|(_, n)| n).sum();
        println!(
            "apiserver requests over the run: {total:.0} ({:.1} per agent); the most frequent:",
            total / self.agents.max(1) as f64
        );
        for (what, count) in self.requests.iter().take(24) {
            println!("  {count:>8.0}  {what}");
        }
        let total: f64 = self.cpu.iter().map(|(_, seconds)| seconds).sum();
        println!("CPU seconds over the run (of {:.0} on 2 cores):", self.all_ready_in.as_secs_f64() * 2.0);
        for (what, seconds) in &self.cpu {
            println!("  {seconds:>8.1}  {what} ({:.0}%)", 100.0 * seconds / total.max(1e-9));
        }
        println!("Events over the run, by reporter and reason:");
        for (what, count) in self.events.iter().take(10) {
            println!("  {count:>8}  {what}");
        }
        if let Some(work) = &self.operator_work {
            let reconciles: f64 = work.reconciles.iter().map(|(_, n)| n).sum();
            println!(
                "operator reconciles: {reconciles:.0} ({:.1} per object); Postgres: {} transactions ({:.1} per object), {} rows written",
                reconciles / self.objects() as f64,
                work.transactions,
                work.transactions as f64 / self.objects() as f64,
                work.rows_written
            );
            for (controller, count) in &work.reconciles {
                println!("  {count:>8.0}  {controller}");
            }
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let customers_n = env_usize("BENCH_CUSTOMERS", 1000);
    let agents_per_customer = env_usize("BENCH_AGENTS_PER_CUSTOMER", 5);
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "both".into());
    let scales: Vec<f64> = std::env::var("BENCH_SCALES")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SCALES: numbers separated by commas"))
        .collect();
    if mode == "documents" {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let customers = env_usize("BENCH_CUSTOMERS", 100);
        runtime.block_on(documents_at_scale(customers, env_usize("BENCH_DOCUMENTS", 1000)));
        return;
    }
    let modes: Vec<Mode> = match mode.as_str() {
        "operator" => vec![Mode::Operator],
        "floor" => vec![Mode::Floor],
        "both" => vec![Mode::Floor, Mode::Operator],
        "api-shape" => vec![Mode::ApiShape],
        "all" => vec![Mode::Floor, Mode::ApiShape, Mode::Operator],
        other => panic!("BENCH_MODE: operator, floor, both, api-shape, all or documents, not {other}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut sizes = Vec::new();
    for scale in scales {
        let customers = ((customers_n as f64 * scale).round() as usize).max(1);
        let mut runs: HashMap<&'static str, Run> = HashMap::new();
        for &mode in &modes {
            let run = runtime.block_on(run(mode, customers, agents_per_customer));
            run.print(mode);
            runs.insert(mode.label(), run);
        }
        sizes.push((scale, runs));
    }
    summary(&sizes);
    if let Ok(path) = std::env::var("BENCH_PLOT") {
        // Relative to the repository (cargo runs benchmarks in the package's directory).
        let path = prospector_tests::hack::repo_root().join(path);
        std::fs::write(&path, plot(&sizes)).expect("write the plot");
        let path = path.display();
        println!("plot written to {path}");
    }
}

/// One line per size: the operator against the floor, per object and per 1,000 objects of RSS.
fn summary(sizes: &[(f64, HashMap<&'static str, Run>)]) {
    println!(
        "| scale | customers | agents | floor all Ready | operator all Ready | operator ÷ floor | floor ms/object | operator ms/object | floor customer p99 | operator customer p99 | operator ÷ floor p99 | floor agent p99 | operator agent p99 | RSS peak | RSS peak: code / heap and stacks | RSS above idle per 1,000 objects |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (scale, runs) in sizes {
        let (floor, operator) = (runs.get("floor"), runs.get("operator"));
        // An api-shape run alone has neither: its line comes below.
        let Some(any) = floor.or(operator) else { continue };
        let secs = |r: Option<&Run>| r.map(|r| format!("{:.1} s", r.all_ready_in.as_secs_f64())).unwrap_or_default();
        let per = |r: Option<&Run>| r.map(|r| format!("{:.2}", r.ms_per_object())).unwrap_or_default();
        let p99 = |r: Option<&Run>, customers: bool| {
            r.map(|r| {
                let l = if customers { &r.customer_latency } else { &r.agent_latency };
                format!("{:.2} s", percentile(l, 0.99).as_secs_f64())
            })
            .unwrap_or_default()
        };
        let ratio = |f: fn(&Run) -> f64| match (floor, operator) {
            (Some(floor), Some(operator)) => format!("{:.2}×", f(operator) / f(floor)),
            _ => String::new(),
        };
        let rss = operator.and_then(|r| r.rss.as_ref().map(|rss| (r, rss)));
        println!(
            "| {scale} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            any.customers,
            any.agents,
            secs(floor),
            secs(operator),
            ratio(|r| r.all_ready_in.as_secs_f64()),
            per(floor),
            per(operator),
            p99(floor, true),
            p99(operator, true),
            ratio(|r| percentile(&r.customer_latency, 0.99).as_secs_f64()),
            p99(floor, false),
            p99(operator, false),
            rss.map(|(_, rss)| format!("{:.1} MiB", mib(rss.peak))).unwrap_or_default(),
            rss.map(|(_, rss)| format!("{:.1} / {:.1} MiB", mib(rss.peak_file), mib(rss.peak_anonymous)))
                .unwrap_or_default(),
            rss.map(|(r, rss)| format!(
                "{:.2} MiB",
                mib(rss.peak.saturating_sub(rss.idle)) * 1000.0 / r.objects() as f64
            ))
            .unwrap_or_default(),
        );
    }
    for (scale, runs) in sizes {
        let (Some(shape), Some(floor)) = (runs.get("api-shape"), runs.get("floor")) else { continue };
        let ready = |r: &Run| r.all_ready_in.as_secs_f64();
        let versus_operator = runs
            .get("operator")
            .map(|operator| format!("; operator ÷ api-shape {:.2}×", ready(operator) / ready(shape)))
            .unwrap_or_default();
        println!(
            "scale {scale}: api-shape all Ready {:.1} s, {:.2}× the floor's{versus_operator}",
            ready(shape),
            ready(shape) / ready(floor)
        );
    }
}

/// An SVG of two panels over the number of objects: ms per object (floor and operator), and the
/// operator's peak RSS with its RSS above idle per 1,000 objects.
fn plot(sizes: &[(f64, HashMap<&'static str, Run>)]) -> String {
    let point = |mode: &str, f: &dyn Fn(&Run) -> Option<f64>| -> Vec<(f64, f64)> {
        sizes.iter().filter_map(|(_, runs)| runs.get(mode).and_then(|r| Some((r.objects() as f64, f(r)?)))).collect()
    };
    let time = [
        ("floor, ms per object", "#888888", point("floor", &|r| Some(r.ms_per_object()))),
        ("operator, ms per object", "#1f77b4", point("operator", &|r| Some(r.ms_per_object()))),
    ];
    let memory = [
        ("operator RSS peak, MiB", "#d62728", point("operator", &|r| r.rss.as_ref().map(|m| mib(m.peak)))),
        (
            "operator RSS above idle per 1,000 objects, MiB",
            "#ff7f0e",
            point("operator", &|r| {
                r.rss.as_ref().map(|m| mib(m.peak.saturating_sub(m.idle)) * 1000.0 / r.objects() as f64)
            }),
        ),
    ];
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"360\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"900\" height=\"360\" fill=\"white\"/>\n",
    );
    panel(&mut svg, 60.0, "time to all Ready per object", &time);
    panel(&mut svg, 510.0, "operator memory", &memory);
    svg.push_str("</svg>\n");
    svg
}

type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

fn panel(svg: &mut String, left: f64, title: &str, series: &[Series]) {
    let (top, width, height) = (40.0, 360.0, 240.0);
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let x_max = xs.fold(1.0f64, f64::max) * 1.05;
    let y_max = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(1e-9f64, f64::max) * 1.2;
    let x = |v: f64| left + v / x_max * width;
    let y = |v: f64| top + height - v / y_max * height;
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"24\" font-size=\"14\">{title}</text>\n<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{height}\" fill=\"none\" stroke=\"#444\"/>\n"
    ));
    for tick in 0..=4 {
        let (vx, vy) = (x_max * f64::from(tick) / 4.0, y_max * f64::from(tick) / 4.0);
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1}</text>\n",
            x(vx),
            top + height + 16.0,
            vx,
            left - 6.0,
            y(vy) + 4.0,
            vy
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">objects (customers + agents)</text>\n",
        left + width / 2.0,
        top + height + 34.0
    ));
    for (index, (label, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> = points.iter().map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py))).collect();
        svg.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
            path.join(" ")
        ));
        for &(px, py) in points {
            svg.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n", x(px), y(py)));
        }
        let legend_y = top + height + 52.0 + 14.0 * index as f64;
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label}</text>\n",
            legend_y - 9.0,
            left + 14.0,
            legend_y
        ));
    }
}

/// A control plane of the run's own in a fresh directory. A port picked free can be taken before
/// a component binds it: then it starts again on new ports, as the shared cluster does.
async fn fresh_cluster(label: &str) -> (ControlPlane, std::path::PathBuf) {
    let mut last = String::new();
    for attempt in 0..3 {
        let dir = process_dir().join(format!("scale-{label}-{attempt}"));
        let _ = std::fs::remove_dir_all(&dir);
        match ControlPlane::start(&dir).await {
            Ok(plane) => return (plane, dir),
            Err(e) => {
                last = e.to_string();
                if !last.contains("address already in use") {
                    break;
                }
            }
        }
    }
    panic!("the benchmark's control plane could not start: {last}")
}

/// The apiserver's request counts (`apiserver_request_total`) summed by verb, resource and
/// subresource, most first: where the API work of a run went.
async fn request_counts(client: &Client) -> Vec<(String, f64)> {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("a static request");
    let Ok(text) = client.request_text(request).await else { return Vec::new() };
    let mut counts: HashMap<String, f64> = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\"")[..])
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let (verb, resource, subresource) = (label("verb"), label("resource"), label("subresource"));
        let key = if subresource.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{subresource}")
        };
        *counts.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    let mut counts: Vec<(String, f64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.total_cmp(&a.1));
    counts
}

/// CPU seconds (user + system) used so far by every process named `name`s, by name: the
/// control plane's components, the operator, Postgres's processes, this benchmark.
fn cpu_seconds(names: &[&str]) -> HashMap<String, f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut out: HashMap<String, f64> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ... utime stime: the fields after the comm's closing parenthesis.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        let Some(name) = names.iter().find(|n| comm.starts_with(**n)) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else { continue };
        let used = utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0);
        *out.entry((*name).to_owned()).or_default() += used / ticks;
    }
    out
}

/// The components whose CPU a run reports (process names as /proc shows them, 15 characters
/// at most).
const COMPONENTS: [&str; 8] =
    ["kube-apiserver", "etcd", "kube-controller", "kube-scheduler", "kwok", "prospector-oper", "postgres", "scale-"];

/// The run's Events counted by reporting controller and reason, most first.
async fn event_counts(client: &Client) -> Vec<(String, usize)> {
    use k8s_openapi::api::events::v1::Event;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let api = Api::<Event>::all(client.clone());
    let mut params = kube::api::ListParams::default().limit(2000);
    loop {
        let Ok(page) = api.list(&params).await else { break };
        for event in &page.items {
            let reporter = event.reporting_controller.clone().unwrap_or_default();
            let key = format!("{reporter} {}", event.reason.clone().unwrap_or_default());
            *counts.entry(key).or_default() += event.deprecated_count.map_or(1, |n| n.max(1) as usize);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|count| std::cmp::Reverse(count.1));
    counts
}

/// The Ready condition both modes' customers and agents end with.
fn ready_condition(generation: Option<i64>) -> serde_json::Value {
    json!([{
        "type": types::READY, "status": "True", "reason": prospector_crds::conditions::reasons::RECONCILED,
        "message": "", "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "observedGeneration": generation,
    }])
}

/// The floor's own work for a customer: its children, owned by it, then one status write.
async fn floor_customer(
    client: &Client,
    customer: &Customer,
    customer_id: i64,
    quota: &prospector_crds::NamespaceQuota,
) {
    use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use prospector_operator::desired::customer::CustomerChildren;

    let name = customer.name_any();
    let namespace = customer_namespace(&name);
    let children = CustomerChildren {
        customer_name: &name,
        customer_id,
        tier: "pro",
        namespace: &namespace,
        platform_namespace: "prospector-system",
        owner: customer.controller_owner_ref(&()).expect("a created Customer has a uid"),
    };
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone()).create(&pp, &children.namespace()).await.unwrap();
    Api::<ResourceQuota>::namespaced(client.clone(), &namespace)
        .create(&pp, &children.resource_quota(quota))
        .await
        .unwrap();
    Api::<LimitRange>::namespaced(client.clone(), &namespace).create(&pp, &children.limit_range()).await.unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), &namespace).create(&pp, &children.network_policy()).await.unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &namespace).create(&pp, &children.icp_config_map(None)).await.unwrap();
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(&pp, &children.api_key_secret("sa_floor_key"))
        .await
        .unwrap();
    let status = json!({
        "apiVersion": Customer::api_version(&()), "kind": Customer::kind(&()),
        "status": {
            "customerId": customer_id, "namespace": namespace, "apiKeySecret": "prospector-api-key",
            "tier": "pro", "observedGeneration": customer.metadata.generation,
            "conditions": ready_condition(customer.metadata.generation),
        }
    });
    Api::<Customer>::all(client.clone())
        .patch_status(&name, &PatchParams::apply(FLOOR_MANAGER).force(), &Patch::Apply(status))
        .await
        .unwrap();
}

/// An agent's children as the operator builds them, with the benchmark's image and API url.
fn bench_agent_children<'a>(
    agent: &'a AgentDeployment,
    name: &'a str,
    namespace: &'a str,
    customer_name: &'a str,
    agent_id: i64,
    deployment_id: &'a str,
) -> prospector_operator::desired::agent::AgentChildren<'a> {
    prospector_operator::desired::agent::AgentChildren {
        name,
        namespace,
        customer_name,
        spec: &agent.spec,
        owner: agent.controller_owner_ref(&()).expect("a created AgentDeployment has a uid"),
        image: "ghcr.io/prospector/agent:bench",
        api_url: "http://prospector-api.prospector-system:8080",
        agent_id,
        deployment_id,
    }
}

/// The floor's own work for an agent: its ServiceAccount, ConfigMap and Deployment, owned by it.
async fn floor_agent(client: &Client, agent: &AgentDeployment, agent_id: i64) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};

    let name = agent.name_any();
    let namespace = agent.namespace().expect("a namespaced agent");
    let customer_name = namespace.trim_start_matches("cust-").to_owned();
    let deployment_id = format!("agent_{agent_id:08x}");
    let children = bench_agent_children(agent, &name, &namespace, &customer_name, agent_id, &deployment_id);
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .create(&pp, &children.service_account())
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &namespace).create(&pp, &children.config_map()).await.unwrap();
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .create(&pp, &children.deployment(agent.spec.replicas))
        .await
        .unwrap();
}

const FLOOR_MANAGER: &str = "bench-floor";

/// Whether `BENCH_SHAPE_WITHOUT` leaves this part out of `BENCH_MODE=api-shape`, to see what
/// each part of the operator's API shape costs. A comma-separated list of:
/// - `finalizers`: no finalizer patches;
/// - `events`: no Events;
/// - `extra-status`: one status write per object, as in the floor (no agent admission status,
///   no customer usage refresh);
/// - `apply`: children created with POST instead of server-side apply;
/// - `full-status`: status bodies cut to the floor's fields (and only the Ready condition).
fn shape_without(part: &str) -> bool {
    static WITHOUT: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    WITHOUT
        .get_or_init(|| {
            let parts: HashSet<String> = std::env::var("BENCH_SHAPE_WITHOUT")
                .unwrap_or_default()
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            let known = ["finalizers", "events", "extra-status", "apply", "full-status"];
            assert!(parts.iter().all(|p| known.contains(&p.as_str())), "BENCH_SHAPE_WITHOUT: some of {known:?}");
            parts
        })
        .contains(part)
}

/// Server-side applies `object`, as the operator does; with `BENCH_SHAPE_WITHOUT=apply`,
/// creates it instead.
async fn shaped_apply<K>(api: &Api<K>, object: &K) -> Result<K, prospector_operator::error::OperatorError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if shape_without("apply") {
        return Ok(api.create(&PostParams::default(), object).await?);
    }
    prospector_operator::controllers::apply(api, object).await
}

/// `BENCH_MODE=api-shape`: the operator's finalizer, added as the operator adds it.
async fn shaped_finalizer<K>(api: &Api<K>, object: &K)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizer = prospector_operator::controllers::FINALIZER;
    if shape_without("finalizers") || object.finalizers().iter().any(|f| f == finalizer) {
        return;
    }
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
    ]))
    .unwrap();
    api.patch(&object.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await.unwrap();
}

/// Status writes of `BENCH_MODE=api-shape` that failed: printed with the run, as a run that
/// lost writes did less than the operator does.
static SHAPE_WRITES_FAILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `BENCH_MODE=api-shape`: a status written as the operator writes it (server-side apply of
/// the whole status, its field manager).
async fn shaped_status<K>(api: &Api<K>, name: &str, status: impl serde::Serialize) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut status = serde_json::to_value(status).unwrap();
    if shape_without("full-status") {
        // The floor's fields only: what the size of the operator's statuses costs.
        let keep = [
            "phase",
            "readyReplicas",
            "observedGeneration",
            "deployedAt",
            "customerId",
            "namespace",
            "apiKeySecret",
            "tier",
        ];
        if let Some(fields) = status.as_object_mut() {
            fields.retain(|field, _| keep.contains(&field.as_str()) || field == "conditions");
            if let Some(conditions) = fields.get_mut("conditions").and_then(|c| c.as_array_mut()) {
                conditions.retain(|c| c["type"] == types::READY);
            }
        }
    }
    let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let params = PatchParams::apply(prospector_operator::context::FIELD_MANAGER).force();
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(written) => Some(written),
        Err(e) => {
            if SHAPE_WRITES_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
                eprintln!("api-shape: a status write of {name} failed: {e}");
            }
            None
        }
    }
}

/// `BENCH_MODE=api-shape`: the Normal Event the operator publishes on `object` when its Ready
/// condition becomes `ready`.
async fn shaped_event<K: Resource<DynamicType = ()>>(client: &Client, object: &K, ready: &prospector_crds::Condition) {
    use kube::runtime::events::{Recorder, Reporter};
    if shape_without("events") {
        return;
    }
    let reporter = Reporter { controller: prospector_operator::context::FIELD_MANAGER.into(), instance: None };
    let note = prospector_operator::controllers::transition_note(ready);
    let event = prospector_operator::context::operator_event(false, &ready.reason, note);
    let _ = Recorder::new(client.clone(), reporter).publish(&event, &object.object_ref(&())).await;
}

/// `BENCH_MODE=api-shape`: a customer's status as the operator derives it, with
/// `agents` of its agents admitted.
async fn shaped_customer_status(
    client: &Client,
    customer: &Customer,
    customer_id: i64,
    agents: i64,
) -> Option<Customer> {
    use prospector_crds::customer::{CustomerUsage, UsageAmount, UsageCount};
    use prospector_operator::status::customer::{CustomerFacts, CustomerState, derive_status};
    let name = customer.name_any();
    let now = chrono::Utc::now();
    let count = |used, limit| UsageCount { used, limit };
    let amount = |used, limit| UsageAmount { used, limit };
    let facts = CustomerFacts {
        customer_id,
        namespace: customer_namespace(&name),
        api_key_secret: prospector_operator::desired::customer::API_KEY_SECRET.into(),
        tier: customer.spec.tier.clone(),
        usage: CustomerUsage {
            // The pro tier's limits (examples/tiers.yaml).
            agents: count(agents, 20),
            concurrent_agents: count(agents, 10),
            documents: count(0, 1000),
            storage_mb: amount(0.0, 10000.0),
            api_calls_today: count(0, 10000),
            api_calls_this_month: count(0, 300000),
            leads_this_month: count(0, 10000),
            cost_this_month_usd: amount(0.0, 1000.0),
        },
        refused_agents: 0,
        suspended: false,
        children_hash: "5f0c2a9d1e7b3c4a8d6e2f10".into(),
        children_applied_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        icp: None,
    };
    let status = derive_status(
        customer.status.as_ref(),
        customer.metadata.generation,
        now,
        &CustomerState::Reconciled(Box::new(facts)),
    );
    shaped_status(&Api::<Customer>::all(client.clone()), &name, status).await
}

/// `BENCH_MODE=api-shape`: a customer's reconcile as the operator's requests make it: the
/// finalizer, the namespace, then its other children together (server-side apply; the API key
/// Secret created), the status and the Reconciled Event.
async fn shaped_customer(
    client: &Client,
    customer: &Customer,
    customer_id: i64,
    quota: &prospector_crds::NamespaceQuota,
) -> Customer {
    use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use prospector_operator::desired::customer::CustomerChildren;

    let name = customer.name_any();
    shaped_finalizer(&Api::<Customer>::all(client.clone()), customer).await;
    let namespace = customer_namespace(&name);
    let children = CustomerChildren {
        customer_name: &name,
        customer_id,
        tier: &customer.spec.tier,
        namespace: &namespace,
        platform_namespace: "prospector-system",
        owner: customer.controller_owner_ref(&()).expect("a created Customer has a uid"),
    };
    let objects = children.namespace_objects(quota, None);
    shaped_apply(&Api::<Namespace>::all(client.clone()), &objects.namespace).await.unwrap();
    let (quotas, limit_ranges, policies, config_maps, secrets) = (
        Api::<ResourceQuota>::namespaced(client.clone(), &namespace),
        Api::<LimitRange>::namespaced(client.clone(), &namespace),
        Api::<NetworkPolicy>::namespaced(client.clone(), &namespace),
        Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        Api::<Secret>::namespaced(client.clone(), &namespace),
    );
    let secret = children.api_key_secret("sa_shape_key");
    tokio::try_join!(
        shaped_apply(&quotas, &objects.quota),
        shaped_apply(&limit_ranges, &objects.limits),
        shaped_apply(&policies, &objects.policy),
        shaped_apply(&config_maps, &objects.icp),
        async {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(prospector_operator::error::OperatorError::from)
        },
    )
    .unwrap();
    let written = shaped_customer_status(client, customer, customer_id, 0).await;
    // Its agents wait for this write: without it the run would never end.
    let written = written.expect("the customer's Ready status write");
    if let Some(ready) = written.status.as_ref().and_then(|s| s.condition(types::READY)) {
        shaped_event(client, customer, ready).await;
    }
    written
}

/// `BENCH_MODE=api-shape`: an agent's customer id, agent id and deployment id, from its
/// namespace (`cust-bench-<index>`), its name (`agent-<i>`) and its uid, the same for both of
/// its status writes (fewer than 100 agents per customer).
fn shaped_ids(namespace: &str, agent: &str, uid: &str) -> (i64, i64, String) {
    let number = |s: &str| s.rsplit('-').next().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
    let customer_id = number(namespace) + 1;
    let agent_id = number(namespace) * 100 + number(agent) + 1;
    (customer_id, agent_id, prospector_operator::quota::deployment_id(customer_id, uid))
}

/// `BENCH_MODE=api-shape`: an agent's status as the operator derives it, admitted, with
/// `available` of its one replica available.
fn shaped_agent_status(
    namespace: &str,
    agent: &str,
    uid: &str,
    generation: Option<i64>,
    available: i32,
) -> prospector_crds::AgentDeploymentStatus {
    use prospector_operator::status::agent::{
        AgentFacts, AgentRecordView, AgentState, DeploymentHealth, derive_status,
    };
    use prospector_store::agents::Admission;
    let now = chrono::Utc::now();
    let (_, agent_id, deployment_id) = shaped_ids(namespace, agent, uid);
    let facts = AgentFacts {
        record: AgentRecordView {
            agent_id,
            deployment_id,
            deployed_at: Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            performance: Default::default(),
        },
        admission: Admission::Admitted { replicas: 1 },
        admitted_before: available > 0,
        hold: None,
        cost_cap: None,
        running_replicas: 1,
        deployment: Some(DeploymentHealth { available, ready: available, failure: None }),
    };
    derive_status(None, generation, now, &AgentState::Evaluated(Box::new(facts)))
}

/// `BENCH_MODE=api-shape`: an agent's first reconcile as the operator's requests make it: the
/// finalizer, its ServiceAccount and ConfigMap together, its Deployment (server-side apply),
/// then the status of its admission.
async fn shaped_agent(client: &Client, agent: &AgentDeployment) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};

    let name = agent.name_any();
    let namespace = agent.namespace().expect("a namespaced agent");
    let agents = Api::<AgentDeployment>::namespaced(client.clone(), &namespace);
    shaped_finalizer(&agents, agent).await;
    let customer_name = namespace.trim_start_matches("cust-").to_owned();
    let uid = agent.uid().expect("a created AgentDeployment has a uid");
    let (_, agent_id, deployment_id) = shaped_ids(&namespace, &name, &uid);
    let children = bench_agent_children(agent, &name, &namespace, &customer_name, agent_id, &deployment_id);
    let (account, config_map) = (children.service_account(), children.config_map());
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    tokio::try_join!(shaped_apply(&accounts, &account), shaped_apply(&config_maps, &config_map)).unwrap();
    shaped_apply(&Api::<Deployment>::namespaced(client.clone(), &namespace), &children.deployment(agent.spec.replicas))
        .await
        .unwrap();
    if !shape_without("extra-status") {
        let status = shaped_agent_status(&namespace, &name, &uid, agent.metadata.generation, 0);
        shaped_status(&agents, &name, status).await;
    }
}

/// `BENCH_MODE=api-shape`: an agent's Running, as the operator writes and announces it.
async fn shaped_agent_running(client: &Client, namespace: &str, agent: &str, uid: &str, generation: Option<i64>) {
    let agents = Api::<AgentDeployment>::namespaced(client.clone(), namespace);
    let status = shaped_agent_status(namespace, agent, uid, generation, 1);
    let ready = status.condition(types::READY).cloned();
    if let (Some(written), Some(ready)) = (shaped_status(&agents, agent, status).await, ready) {
        shaped_event(client, &written, &ready).await;
    }
}

/// The floor's agent status writes: each agent's Running, once its Deployment has a replica
/// available (what the operator waits for too), 32 writes in flight at most.
fn floor_agent_statuses(client: Client, shaped: bool) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    tokio::spawn(async move {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<(String, String, Option<i64>, String)>();
        let writer = {
            let client = client.clone();
            tokio::spawn(receiver.for_each_concurrent(32, move |(namespace, agent, generation, uid)| {
                let client = client.clone();
                async move {
                    if shaped {
                        shaped_agent_running(&client, &namespace, &agent, &uid, generation).await;
                        return;
                    }
                    let status = json!({
                        "apiVersion": AgentDeployment::api_version(&()), "kind": AgentDeployment::kind(&()),
                        "status": {
                            "phase": "Running", "readyReplicas": 1, "observedGeneration": generation,
                            "deployedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "conditions": ready_condition(generation),
                        }
                    });
                    let _ = Api::<AgentDeployment>::namespaced(client, &namespace)
                        .patch_status(&agent, &PatchParams::apply(FLOOR_MANAGER).force(), &Patch::Apply(status))
                        .await;
                }
            }))
        };
        let mut written: HashSet<String> = HashSet::new();
        let stream = watcher(Api::<Deployment>::all(client), watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(deployment)) = stream.try_next().await {
            let available = deployment.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= 1;
            let namespace = deployment.namespace().unwrap_or_default();
            let Some(agent) = deployment.name_any().strip_prefix("agent-").map(str::to_owned) else { continue };
            if available && written.insert(format!("{namespace}/{agent}")) {
                // The agent's generation: 1, as the benchmark never edits an agent.
                let uid = deployment.owner_references().first().map(|o| o.uid.clone()).unwrap_or_default();
                let _ = sender.unbounded_send((namespace, agent, Some(1), uid));
            }
        }
        writer.abort();
    })
}

/// The `ENV` of the Dockerfile's operator stage: the benchmark runs the binary as the image
/// does.
fn operator_image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(prospector_tests::hack::repo_root().join("Dockerfile")).unwrap();
    let stage = dockerfile
        .split("\nFROM ")
        .find(|stage| stage.lines().next().is_some_and(|from| from.trim_end().ends_with(" AS operator")))
        .expect("the Dockerfile's operator stage");
    stage
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Takes a CPU profile of `cluster`'s kube-apiserver (its `/debug/pprof/profile`) a while into
/// the run, into `path`.
fn profile_apiserver(cluster: &ControlPlane, path: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    let (after, seconds) = (env_usize("BENCH_PROFILE_AFTER", 10), env_usize("BENCH_PROFILE_SECONDS", 30));
    // hack/kubectl.sh fetches kubectl if need be and prints its path.
    let fetch = std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/kubectl.sh"))
        .output()
        .expect("run hack/kubectl.sh");
    assert!(fetch.status.success(), "hack/kubectl.sh: {}", String::from_utf8_lossy(&fetch.stderr));
    let kubectl = String::from_utf8(fetch.stdout).expect("a path").trim().to_owned();
    let kubeconfig = cluster.kubeconfig().to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(after as u64)).await;
        let output = tokio::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "--raw", &format!("/debug/pprof/profile?seconds={seconds}")])
            .output()
            .await
            .expect("run kubectl");
        assert!(output.status.success(), "profile: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("create the profile directory");
        std::fs::write(&path, &output.stdout).expect("write the profile");
        println!("kube-apiserver CPU profile ({seconds} s from {after} s in): {}", path.display());
    })
}

/// The release operator against `cluster` and a fresh database, in `embedder_mode`, logging to
/// `log` in the harness's directory, with the operator image's environment.
async fn start_operator(
    cluster: &ControlPlane,
    embedder_mode: &str,
    log: &str,
) -> (ManagedProcess, prospector_tests::TestDatabase, u16) {
    let db = shared_postgres().migrated_database().await.unwrap();
    let http_port = free_port().unwrap();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let image_env = operator_image_env();
    // `BENCH_OPERATOR_LOG=prospector_operator=debug` shows, for one, what each status write changed.
    let log_filter = std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into());
    assert!(!image_env.is_empty(), "the operator stage sets its environment");
    println!("operator environment from its image: {image_env:?}");
    // `BENCH_OPERATOR_HEAPTRACK=<file>` records every allocation of the operator into <file>
    // with heaptrack's preloaded library. Read it afterwards with
    // `/usr/lib/heaptrack/libexec/heaptrack_interpret < <file> | zstd > <file>.zst` and
    // `heaptrack_print -f <file>.zst`. Its bookkeeping adds to the RSS the run reports. The
    // preload goes through `env`: the library records only the first program it is loaded into,
    // which would otherwise be the `setpriv` that starts the operator.
    let operator = std::path::Path::new(env!("CARGO_BIN_EXE_prospector-operator"));
    let mut program = operator;
    let mut args = Vec::new();
    if let Ok(raw) = std::env::var("BENCH_OPERATOR_HEAPTRACK") {
        println!("operator allocations recorded into {raw}");
        program = std::path::Path::new("/usr/bin/env");
        args.extend([
            "LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so".to_owned(),
            format!("DUMP_HEAPTRACK_OUTPUT={raw}"),
            operator.display().to_string(),
        ]);
    }
    args.extend([
        "run".into(),
        format!("--http-addr=127.0.0.1:{http_port}"),
        "--leader-election=false".into(),
        format!("--embedder-mode={embedder_mode}"),
    ]);
    let process = ManagedProcess::spawn(
        "operator",
        program,
        &args,
        RunAs::Current,
        &process_dir().join(log),
        &[("DATABASE_URL", db.url.as_str()), ("KUBECONFIG", kubeconfig.as_str()), ("RUST_LOG", log_filter.as_str())]
            .into_iter()
            .chain(image_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    (process, db, http_port)
}

/// The operator's reconciles by controller, read from its `/metrics`, and what Postgres did
/// in its database.
async fn operator_work(http_port: u16, db: &prospector_tests::TestDatabase, before: (i64, i64)) -> OperatorWork {
    let text = tokio::task::spawn_blocking(move || process::http_get(http_port, "/metrics"))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut reconciles: Vec<(String, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("prospector_operator_reconciles_total{controller=\""))
        .filter_map(|rest| {
            let (controller, value) = rest.split_once("\"} ")?;
            Some((controller.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    reconciles.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (transactions, rows_written) = database_work(db).await;
    OperatorWork { reconciles, transactions: transactions - before.0, rows_written: rows_written - before.1 }
}

/// Transactions committed and rows written so far in the operator's database.
async fn database_work(db: &prospector_tests::TestDatabase) -> (i64, i64) {
    sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap_or((0, 0))
}

async fn run(mode: Mode, customers_n: usize, agents_per_customer: usize) -> Run {
    let (cluster, dir) = fresh_cluster(mode.label()).await;
    let client: Client = cluster.client().await.unwrap();
    prospector_tests::fixtures::install_platform(&client).await;
    let pro = prospector_tests::fixtures::example_tiers()
        .into_iter()
        .find(|tier| tier.name_any() == "pro")
        .expect("examples/tiers.yaml defines pro");
    let quota = pro.spec.namespace_quota.clone();

    let mut operator = None;
    let mut floor_writer = None;
    match mode {
        Mode::Operator => {
            // The benchmark creates no documents; the model would only add to the RSS.
            operator = Some(start_operator(&cluster, "external", &format!("bench-operator-{customers_n}.log")).await);
        }
        Mode::Floor => floor_writer = Some(floor_agent_statuses(client.clone(), false)),
        Mode::ApiShape => floor_writer = Some(floor_agent_statuses(client.clone(), true)),
    }
    let pid = operator.as_ref().map(|(p, _, _)| p.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = pid.map(|pid| rss_kib(pid, "VmRSS:")).unwrap_or(0);

    let customer_created: Created = Arc::default();
    let customer_ready: Created = Arc::default();
    let agent_created: Created = Arc::default();
    let agent_ready: Created = Arc::default();
    let watchers = [
        watch_ready(Api::<Customer>::all(client.clone()), customer_is_ready, customer_ready.clone()),
        watch_ready(Api::<AgentDeployment>::all(client.clone()), agent_is_running, agent_ready.clone()),
    ];

    // Peaks of the whole, the anonymous and the file-backed parts.
    let peak = Arc::new(Mutex::new([0u64; 3]));
    let sampler = pid.map(|pid| {
        let sampled = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = ["VmRSS:", "RssAnon:", "RssFile:"].map(|field| rss_kib(pid, field));
                {
                    let mut peak = sampled.lock().unwrap();
                    for (peak, now) in peak.iter_mut().zip(now) {
                        *peak = (*peak).max(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let profiler = std::env::var("BENCH_APISERVER_PROFILE").ok().map(|dir| {
        profile_apiserver(
            &cluster,
            std::path::Path::new(&dir).join(format!("apiserver-{}-{customers_n}.pprof", mode.label())),
        )
    });
    let cpu_before = cpu_seconds(&COMPONENTS);
    let database_before = match &operator {
        Some((_, db, _)) => database_work(db).await,
        None => (0, 0),
    };
    if mode == Mode::ApiShape {
        let without = std::env::var("BENCH_SHAPE_WITHOUT").unwrap_or_default();
        println!("api-shape without: {}", if without.is_empty() { "nothing" } else { without.as_str() });
    }
    let start = Instant::now();
    futures::stream::iter(0..customers_n)
        .for_each_concurrent(32, |index| {
            let client = client.clone();
            let (quota, customer_created, agent_created, customer_ready) =
                (quota.clone(), customer_created.clone(), agent_created.clone(), customer_ready.clone());
            async move {
                let name = format!("bench-{index:05}");
                let customer = prospector_tests::fixtures::customer(&name, "pro", json!({}));
                customer_created.lock().unwrap().insert(format!("/{name}"), Instant::now());
                let customer =
                    Api::<Customer>::all(client.clone()).create(&PostParams::default(), &customer).await.unwrap();
                // api-shape: the customer as its Ready write left it, for its usage refresh.
                let mut shaped = None;
                match mode {
                    Mode::Floor => floor_customer(&client, &customer, index as i64 + 1, &quota).await,
                    Mode::ApiShape => {
                        shaped = Some(shaped_customer(&client, &customer, index as i64 + 1, &quota).await)
                    }
                    Mode::Operator => {}
                }
                // Agents go into the customer's namespace: wait (on the watch, without loading
                // the apiserver) until the customer is Ready.
                let namespace = customer_namespace(&name);
                while !customer_ready.lock().unwrap().contains_key(&format!("/{name}")) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let agents: Api<AgentDeployment> = Api::namespaced(client.clone(), &namespace);
                for i in 0..agents_per_customer {
                    let agent = prospector_tests::fixtures::agent(&format!("agent-{i}"), 1);
                    agent_created.lock().unwrap().insert(format!("{namespace}/agent-{i}"), Instant::now());
                    let agent = agents.create(&PostParams::default(), &agent).await.unwrap();
                    let agent_id = (index * agents_per_customer + i) as i64 + 1;
                    match mode {
                        Mode::Floor => floor_agent(&client, &agent, agent_id).await,
                        Mode::ApiShape => shaped_agent(&client, &agent).await,
                        Mode::Operator => {}
                    }
                }
                if let Some(customer) = shaped.filter(|_| !shape_without("extra-status")) {
                    // The operator's usage refresh: the customer's second status write, a few
                    // seconds after its agents were admitted.
                    let client = client.clone();
                    let agents = agents_per_customer as i64;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        shaped_customer_status(&client, &customer, index as i64 + 1, agents).await;
                    });
                }
            }
        })
        .await;
    let created_in = start.elapsed();

    let total_agents = customers_n * agents_per_customer;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let customers_ready = customer_ready.lock().unwrap().len();
        let agents_ready = agent_ready.lock().unwrap().len();
        if customers_ready >= customers_n && agents_ready >= total_agents {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "{}: gave up: {customers_ready}/{customers_n} customers and {agents_ready}/{total_agents} agents Ready",
                mode.label()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ready_in = start.elapsed();
    let mut cpu: Vec<(String, f64)> = cpu_seconds(&COMPONENTS)
        .into_iter()
        .map(|(name, seconds)| {
            let used = seconds - cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, used)
        })
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Both modes wait the same before the requests are counted: the controller-manager's
    // Events lag behind (its client is rate-limited), and a count taken at once would miss
    // more of them in the faster run. The operator's steady RSS is read at the end of the wait.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rss = pid.map(|pid| {
        let [peak, peak_anonymous, peak_file] = *peak.lock().unwrap();
        Rss {
            idle: idle_rss,
            peak: rss_kib(pid, "VmHWM:").max(peak),
            steady: rss_kib(pid, "VmRSS:"),
            peak_anonymous,
            peak_file,
        }
    });
    for task in watchers.into_iter().chain(floor_writer).chain(sampler) {
        task.abort();
    }
    if let Some(profiler) = profiler {
        profiler.await.unwrap();
    }
    let requests = request_counts(&client).await;
    let events = event_counts(&client).await;
    if mode == Mode::ApiShape {
        let failed = SHAPE_WRITES_FAILED.swap(0, std::sync::atomic::Ordering::Relaxed);
        println!("api-shape status writes that failed: {failed}");
    }
    let operator_work = match &operator {
        Some((_, db, http_port)) => Some(operator_work(*http_port, db, database_before).await),
        None => None,
    };
    let run = Run {
        customers: customers_n,
        agents: total_agents,
        created_in,
        all_ready_in,
        customer_latency: latencies(&customer_created, &customer_ready),
        agent_latency: latencies(&agent_created, &agent_ready),
        rss,
        requests,
        events,
        cpu,
        operator_work,
    };
    drop(operator);
    drop(client);
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
    run
}

/// Texts for the documents of `documents_at_scale`: the hand-written sales documents of the ICP
/// fixtures.
fn sales_texts() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../embedder/tests/fixtures/icp");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the ICP fixtures") {
        let path = entry.expect("a directory entry").path();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).expect("a fixture")) else {
            continue;
        };
        let cases = value.as_array().cloned().or_else(|| value["documents"].as_array().cloned()).unwrap_or_default();
        texts.extend(cases.iter().filter_map(|c| c["text"].as_str().map(str::to_owned)));
    }
    assert!(texts.len() > 50, "{} texts in {}", texts.len(), dir.display());
    texts
}

/// Documents at scale (`BENCH_MODE=documents`): `customers` customers, one agent each created
/// while nothing else happens (their create→Running is the baseline), then `documents`
/// KnowledgeDocuments across them at once, in inline mode, and while their queue is deep one
/// more agent per customer. Reports the time until every document is Ready and the second
/// agents' create→Running against the baseline's.
async fn documents_at_scale(customers: usize, documents: usize) {
    let (cluster, dir) = fresh_cluster("documents").await;
    let client: Client = cluster.client().await.unwrap();
    prospector_tests::fixtures::install_platform(&client).await;
    let (operator, db, _) = start_operator(&cluster, "inline", "bench-documents-operator.log").await;

    let customer_ready: Created = Arc::default();
    let agent_created: Created = Arc::default();
    let agent_ready: Created = Arc::default();
    let document_done: Created = Arc::default();
    let watchers = [
        watch_ready(Api::<Customer>::all(client.clone()), customer_is_ready, customer_ready.clone()),
        watch_ready(Api::<AgentDeployment>::all(client.clone()), agent_is_running, agent_ready.clone()),
        watch_ready(
            Api::<prospector_crds::KnowledgeDocument>::all(client.clone()),
            |d| {
                use prospector_crds::DocumentPhase;
                matches!(d.status.as_ref().and_then(|s| s.phase), Some(DocumentPhase::Ready | DocumentPhase::Failed))
            },
            document_done.clone(),
        ),
    ];
    let wait_for = |seen: Created, keys: Vec<String>, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let missing = {
                let seen = seen.lock().unwrap();
                keys.iter().filter(|k| !seen.contains_key(*k)).count()
            };
            if missing == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{missing} {what} never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    // The customers, and the model warmed up by one document.
    let names: Vec<String> = (0..customers).map(|i| format!("docs-{i:04}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(32, |name| {
            let client = client.clone();
            async move {
                let customer = prospector_tests::fixtures::customer(&name, "pro", json!({}));
                Api::<Customer>::all(client).create(&PostParams::default(), &customer).await.unwrap();
            }
        })
        .await;
    wait_for(customer_ready.clone(), names.iter().map(|n| format!("/{n}")).collect(), "customers").await;
    let texts = sales_texts();
    let document = |name: &str, index: usize| -> prospector_crds::KnowledgeDocument {
        let text: Vec<&str> = (0..6).map(|k| texts[(index * 7 + k * 13) % texts.len()].as_str()).collect();
        serde_json::from_value(json!({
            "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": name},
            "spec": {"filename": format!("{name}.txt"), "source": {"text": text.join("\n\n")}},
        }))
        .unwrap()
    };
    let warm_up = format!("{}/warm-up", customer_namespace(&names[0]));
    Api::<prospector_crds::KnowledgeDocument>::namespaced(client.clone(), &customer_namespace(&names[0]))
        .create(&PostParams::default(), &document("warm-up", 0))
        .await
        .unwrap();
    wait_for(document_done.clone(), vec![warm_up], "warm-up document").await;

    // Agents alone: the baseline.
    let create_agents = |agent: &'static str| {
        let (client, names, agent_created) = (client.clone(), names.clone(), agent_created.clone());
        async move {
            let keys: Vec<String> = names.iter().map(|name| format!("{}/{agent}", customer_namespace(name))).collect();
            futures::stream::iter(names)
                .for_each_concurrent(32, |name| {
                    let (client, agent_created) = (client.clone(), agent_created.clone());
                    async move {
                        let namespace = customer_namespace(&name);
                        agent_created.lock().unwrap().insert(format!("{namespace}/{agent}"), Instant::now());
                        Api::<AgentDeployment>::namespaced(client, &namespace)
                            .create(&PostParams::default(), &prospector_tests::fixtures::agent(agent, 1))
                            .await
                            .unwrap();
                    }
                })
                .await;
            keys
        }
    };
    let quiet = create_agents("quiet").await;
    wait_for(agent_ready.clone(), quiet.clone(), "agents").await;

    // The burst: every document at once, then one more agent per customer while they queue.
    let start = Instant::now();
    let document_keys: Vec<String> =
        (0..documents).map(|i| format!("{}/doc-{i:04}", customer_namespace(&names[i % customers]))).collect();
    futures::stream::iter(0..documents)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            let namespace = customer_namespace(&names[i % customers]);
            let object = document(&format!("doc-{i:04}"), i + 1);
            async move {
                Api::<prospector_crds::KnowledgeDocument>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &object)
                    .await
                    .unwrap();
            }
        })
        .await;
    let documents_created_in = start.elapsed();
    // The second agents come once the queue is deep: half the documents queued (the operator
    // queues each on its first reconcile), or a minute at most.
    let deep = Instant::now() + Duration::from_secs(60);
    let queued = loop {
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM embedding_tasks WHERE status IN ('queued', 'running')")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if queued as usize >= documents / 2 || Instant::now() > deep {
            break queued;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let during = create_agents("during").await;
    wait_for(agent_ready.clone(), during.clone(), "agents").await;
    let documents_left_when_agents_ran = {
        let done = document_done.lock().unwrap();
        document_keys.iter().filter(|k| !done.contains_key(*k)).count()
    };
    wait_for(document_done.clone(), document_keys.clone(), "documents").await;
    let all_done_in = start.elapsed();
    let (ready, chunks): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE processing_status = 'ready'), coalesce(sum(chunk_count), 0)::int8
           FROM knowledge_documents WHERE deleted_at IS NULL AND name LIKE 'doc-%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    for task in watchers {
        task.abort();
    }
    let latency = |keys: &[String]| {
        let created = agent_created.lock().unwrap();
        let ready = agent_ready.lock().unwrap();
        let mut out: Vec<Duration> =
            keys.iter().filter_map(|k| Some(ready.get(k)?.saturating_duration_since(*created.get(k)?))).collect();
        out.sort();
        out
    };
    let (quiet, during) = (latency(&quiet), latency(&during));
    println!("documents at scale: {documents} documents across {customers} customers, inline mode");
    println!("| metric | value |");
    println!("|---|---|");
    println!("| documents created (client side) | {:.1} s |", documents_created_in.as_secs_f64());
    println!("| tasks queued or running when the second agents were created | {queued} |");
    println!("| documents still in the queue when the last second agent ran | {documents_left_when_agents_ran} |");
    println!("| all documents Ready or Failed | {:.1} s |", all_done_in.as_secs_f64());
    println!("| documents Ready | {ready}/{documents} |");
    println!("| chunks | {chunks} ({:.1} chunks/s) |", chunks as f64 / all_done_in.as_secs_f64());
    for (what, l) in [("alone", &quiet), ("during the burst", &during)] {
        println!("| agent create→Running {what}, p50 | {:.3} s |", percentile(l, 0.5).as_secs_f64());
        println!("| agent create→Running {what}, p99 | {:.3} s |", percentile(l, 0.99).as_secs_f64());
    }
    println!(
        "| during ÷ alone, p50 · p99 | {:.2}× · {:.2}× |",
        percentile(&during, 0.5).as_secs_f64() / percentile(&quiet, 0.5).as_secs_f64().max(1e-9),
        percentile(&during, 0.99).as_secs_f64() / percentile(&quiet, 0.99).as_secs_f64().max(1e-9)
    );
    drop(operator);
    drop(client);
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
