//! GitOps: `examples/kustomization.yaml`, applied the way Argo CD and Flux apply it (rendered by
//! kustomize, server-side apply), reaches Ready with the operator running under the chart's
//! RBAC. And the Argo CD health check Prospector ships (`examples/gitops/argocd/health.lua`, run
//! by `hack/argocd-health`: the gopher-lua library Argo CD embeds, with the object as the global
//! `obj`, as Argo CD passes it) reads each real object's state: Progressing before the
//! operator has seen it, Healthy once Ready, Degraded for a customer whose tier does not exist,
//! Progressing for a document waiting for its ConfigMap, Suspended for a suspended customer.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually, shared_operator};
use prospector_tests::hack::{hack_path, repo_root};
use prospector_tests::process::output_with_input;
use prospector_tests::shared_cluster;
use serde::Deserialize;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(180);

fn kubectl(args: &[&str], stdin: &[u8]) -> Output {
    shared_cluster().kubectl(args, stdin).expect("run kubectl")
}

fn succeeded(what: &str, output: Output) -> Vec<u8> {
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Argo CD's verdict on one object: `(status, message)`.
fn health(object: &Value) -> (String, String) {
    let script = repo_root().join("examples/gitops/argocd/health.lua");
    let mut command = Command::new(hack_path("argocd-health.sh").unwrap());
    command.arg(script);
    let output = output_with_input(&mut command, &serde_json::to_vec(object).unwrap()).unwrap();
    let verdict: Value = serde_json::from_slice(&succeeded("argocd-health", output)).unwrap();
    (verdict["status"].as_str().unwrap().to_owned(), verdict["message"].as_str().unwrap().to_owned())
}

/// The object as the cluster has it now.
fn live(kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    serde_json::from_slice(&succeeded("kubectl get", kubectl(&args, b""))).unwrap()
}

fn apply(manifest: &str) {
    let applied =
        kubectl(&["apply", "--server-side", "--field-manager=argocd-controller", "-f", "-"], manifest.as_bytes());
    succeeded("kubectl apply", applied);
}

async fn health_becomes(kind: &str, namespace: Option<&str>, name: &str, status: &str) -> String {
    let what = format!("{kind}/{name} to be {status}");
    eventually(&what, WAIT, || async {
        let (now, message) = health(&live(kind, namespace, name));
        (now == status).then_some(message)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_sync_and_argo_cd_reads_their_health() {
    shared_operator();
    let rendered = String::from_utf8(succeeded("kubectl kustomize", kubectl(&["kustomize", "examples"], b""))).unwrap();
    let objects: Vec<Value> =
        serde_yaml::Deserializer::from_str(&rendered).map(|document| Value::deserialize(document).unwrap()).collect();
    let ours: Vec<(String, Option<String>, String)> = objects
        .iter()
        .filter(|o| o["apiVersion"].as_str().unwrap().starts_with("prospector.dev/"))
        .map(|o| {
            let metadata = &o["metadata"];
            (
                o["kind"].as_str().unwrap().to_lowercase(),
                metadata["namespace"].as_str().map(str::to_owned),
                metadata["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ours.len(), 4, "a customer, two documents and an agent: {ours:?}");
    // As Git holds them (no status): waiting for the operator.
    for object in &objects {
        if object["apiVersion"].as_str().unwrap().starts_with("prospector.dev/") {
            assert_eq!(health(object).0, "Progressing", "{object}");
        }
    }

    apply(&rendered);
    for (kind, namespace, name) in &ours {
        health_becomes(kind, namespace.as_deref(), name, "Healthy").await;
    }

    // A customer on a tier that does not exist needs a person.
    apply(
        "apiVersion: prospector.dev/v1alpha1\nkind: Customer\nmetadata: {name: gitops-gold}\n\
         spec: {companyName: Gold Co, email: gold@example.com, tier: gold}\n",
    );
    let message = health_becomes("customer", None, "gitops-gold", "Degraded").await;
    assert!(message.contains("gold"), "{message}");

    // A document whose ConfigMap has not been synced yet waits for it, and then goes on.
    let waiting = "apiVersion: prospector.dev/v1alpha1\nkind: KnowledgeDocument\n\
                   metadata: {name: later, namespace: cust-acme}\n\
                   spec: {filename: later.md, contentType: text/markdown, source: {configMapKeyRef: {name: later, key: later.md}}}\n";
    apply(waiting);
    eventually("the document to wait for its source", WAIT, || async {
        let document = live("knowledgedocument", Some("cust-acme"), "later");
        let conditions = document["status"]["conditions"].as_array()?.clone();
        conditions.iter().any(|c| c["type"] == "Ready" && c["reason"] == "SourceNotFound").then_some(())
    })
    .await;
    assert_eq!(health(&live("knowledgedocument", Some("cust-acme"), "later")).0, "Progressing");
    apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later, namespace: cust-acme}\n\
         data: {later.md: 'Trade fairs in Hanover are where we meet industrial buyers.'}\n",
    );
    health_becomes("knowledgedocument", Some("cust-acme"), "later", "Healthy").await;

    // Suspending the customer (a change in Git) shows as Suspended, not as a failure.
    apply(
        "apiVersion: prospector.dev/v1alpha1\nkind: Customer\nmetadata: {name: acme}\n\
         spec: {companyName: Acme Corp, email: ops@acme.example, tier: starter, suspended: true}\n",
    );
    health_becomes("customer", None, "acme", "Suspended").await;
}
