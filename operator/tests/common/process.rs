//! Operator processes for the tests that need real processes: crash safety (SIGKILL) and leader
//! election between replicas.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use prospector_tests::chart::{OPERATOR_ACCOUNT, kubeconfig_under_chart_rbac};
use prospector_tests::process::{ManagedProcess, RunAs, free_port};
use prospector_tests::{process_dir, random_suffix, shared_cluster};

/// A running `prospector-operator run`.
#[derive(Debug)]
pub struct OperatorProcess {
    pub process: ManagedProcess,
    pub http_port: u16,
    pub identity: String,
    pub log: PathBuf,
}

/// Starts the operator binary against the shared cluster and `database_url`.
pub fn start_operator(database_url: &str, leader_election: bool, identity: &str) -> OperatorProcess {
    let http_port = free_port().unwrap();
    let log = process_dir().join(format!("operator-{identity}-{}.log", random_suffix(4)));
    // As the chart's ServiceAccount, under the chart's RBAC (the mode below starts no Jobs).
    let kubeconfig = kubeconfig_under_chart_rbac(shared_cluster(), OPERATOR_ACCOUNT, "external").unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let args = vec![
        "run".to_owned(),
        format!("--http-addr=127.0.0.1:{http_port}"),
        format!("--leader-election={leader_election}"),
        "--lease-seconds=4".to_owned(),
        format!("--identity={identity}"),
        "--platform-namespace=prospector-system".to_owned(),
        "--waiting-retry-seconds=2".to_owned(),
        "--resync-seconds=5".to_owned(),
        // These tests create no documents: no model to load in every restarted process.
        "--embedder-mode=external".to_owned(),
    ];
    let process = ManagedProcess::spawn(
        &format!("operator-{identity}"),
        std::path::Path::new(env!("CARGO_BIN_EXE_prospector-operator")),
        &args,
        RunAs::Current,
        &log,
        &[("DATABASE_URL", database_url), ("KUBECONFIG", &kubeconfig), ("RUST_LOG", "info")],
    )
    .expect("start the operator");
    OperatorProcess { process, http_port, identity: identity.to_owned(), log }
}

/// The `prospector-embedder` binary of this build (built first when this test binary's build did
/// not build it).
pub fn embedder_binary() -> PathBuf {
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_owned();
    let binary = target.join("prospector-embedder");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "prospector-embedder", "--bin", "prospector-embedder"])
            .current_dir(prospector_tests::hack::repo_root())
            .status()
            .unwrap();
        assert!(status.success(), "cannot build prospector-embedder");
    }
    binary
}

/// The identity holding the operator's Lease; `None` when it is free or cannot be read.
pub async fn lease_holder(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases = kube::Api::<Lease>::namespaced(client.clone(), "prospector-system");
    let lease = leases.get_opt("prospector-operator").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// GETs `path` from 127.0.0.1:`port` over plain HTTP/1.0; `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The value of an unlabelled metric, or the sum of a labelled one's samples.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
