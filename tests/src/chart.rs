//! The Helm chart (`charts/prospector`) as the integration tests use it: rendered by `helm
//! template`; its RBAC applied to a harness control plane, so the operator and the apiserver run
//! as the chart's ServiceAccounts (through [`ControlPlane::kubeconfig_as`]) instead of the admin
//! and a verb the chart forgot fails the test whose code path needs it; and the metrics its
//! alerts read, so a test can check the binaries export each one.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;

use crate::HarnessError;
use crate::controlplane::ControlPlane;
use crate::fixtures::PLATFORM_NAMESPACE;
use crate::hack::{hack_path, repo_root};

/// The operator's ServiceAccount as the chart names it (release `prospector`).
pub const OPERATOR_ACCOUNT: &str = "system:serviceaccount:prospector-system:prospector-operator";
/// The apiserver's ServiceAccount as the chart names it.
pub const APISERVER_ACCOUNT: &str = "system:serviceaccount:prospector-system:prospector-apiserver";

/// Renders the chart's RBAC for this embedder mode (`job` adds the right to start Jobs) into the
/// platform namespace and applies it; once per control plane and mode.
pub fn apply_chart_rbac(cluster: &ControlPlane, embedder_mode: &str) -> Result<(), HarnessError> {
    static APPLIED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    let mut applied = APPLIED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (cluster.kubeconfig().display().to_string(), embedder_mode.to_owned());
    if applied.contains(&key) {
        return Ok(());
    }
    let mode = format!("operator.embedder.mode={embedder_mode}");
    let rendered = render(&["--show-only", "templates/rbac.yaml", "--set", &mode])?;
    let output = cluster.kubectl(
        &["apply", "--server-side", "--force-conflicts", "--field-manager=prospector-tests", "-f", "-"],
        rendered.as_bytes(),
    )?;
    if !output.status.success() {
        return Err(HarnessError::Start(format!("kubectl apply: {}", String::from_utf8_lossy(&output.stderr))));
    }
    applied.insert(key);
    Ok(())
}

/// A kubeconfig acting as `account` once the chart's RBAC for `embedder_mode` is applied.
pub fn kubeconfig_under_chart_rbac(
    cluster: &ControlPlane,
    account: &str,
    embedder_mode: &str,
) -> Result<std::path::PathBuf, HarnessError> {
    apply_chart_rbac(cluster, embedder_mode)?;
    cluster.kubeconfig_as(account)
}

/// A client acting as `account` once the chart's RBAC for `embedder_mode` is applied.
pub async fn client_under_chart_rbac(
    cluster: &ControlPlane,
    account: &str,
    embedder_mode: &str,
) -> Result<kube::Client, HarnessError> {
    crate::controlplane::client_from_kubeconfig(&kubeconfig_under_chart_rbac(cluster, account, embedder_mode)?).await
}

/// `helm template prospector charts/prospector --namespace prospector-system` with `args`.
pub fn render(args: &[&str]) -> Result<String, HarnessError> {
    let chart = repo_root().join("charts/prospector");
    let rendered = Command::new(hack_path("helm.sh")?)
        .args(["template", "prospector"])
        .arg(&chart)
        .args(["--namespace", PLATFORM_NAMESPACE])
        .args(args)
        .output()
        .map_err(|e| HarnessError::Start(format!("helm: {e}")))?;
    if !rendered.status.success() {
        return Err(HarnessError::Start(format!("helm template: {}", String::from_utf8_lossy(&rendered.stderr))));
    }
    String::from_utf8(rendered.stdout).map_err(|e| HarnessError::Start(e.to_string()))
}

/// The metrics starting with `prefix` that the chart's alerts (its PrometheusRule) read.
pub fn alert_metrics(prefix: &str) -> Result<BTreeSet<String>, HarnessError> {
    let rule =
        render(&["--show-only", "templates/monitoring.yaml", "--set", "monitoring.prometheusRule.enabled=true"])?;
    let mut names = BTreeSet::new();
    for line in rule.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        let mut rest = line;
        while let Some(start) = rest.find(prefix) {
            let name: String = rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[start + name.len()..];
            names.insert(name);
        }
    }
    Ok(names)
}
