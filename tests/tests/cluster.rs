//! Cluster tests against the real control plane the harness starts: the CRDs' schema and CEL
//! rules as the apiserver enforces them, server-side printer columns, and Deployments that
//! become available through controller-manager + scheduler + kwok and are garbage-collected
//! with their owner.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, CustomResourceExt, Resource};
use prospector_crds::*;
use prospector_tests::{ClusterTest, random_suffix};
use serde_json::{Value, json};

const MANAGER: &str = "prospector-tests";

fn tier_json(name: &str) -> Value {
    json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "Tier",
        "metadata": {"name": name},
        "spec": {
            "displayName": "Test",
            "maxApiCallsPerDay": 1000, "maxApiCallsPerMonth": 30000,
            "rateLimitPerSecond": 10, "rateLimitPerMinute": 100,
            "maxAgents": 5, "maxConcurrentAgents": 3,
            "maxStorageMb": 1000, "maxDocuments": 100,
            "maxLeadsPerMonth": 1000, "maxCostPerMonthUsd": 100.0,
            "namespaceQuota": {"cpu": "4", "memory": "8Gi", "pods": 20, "gpus": 0}
        }
    })
}

fn customer_json(name: &str) -> Value {
    json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "Customer",
        "metadata": {"name": name},
        "spec": {
            "companyName": "Acme Corp",
            "email": format!("{name}@example.com"),
            "tier": "starter",
            "contact": {"name": "Ada", "title": "CTO"},
            "quotaOverrides": {"maxAgents": 7}
        }
    })
}

fn agent_json(name: &str) -> Value {
    json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": {
            "agentName": "Lead Qualifier Pro",
            "agentType": "lead_qualifier",
            "model": "llama3.1-8b",
            "config": {"temperature": 0.2, "nested": {"any": ["thing"]}},
            "replicas": 2
        }
    })
}

fn document_json(name: &str, source: Value) -> Value {
    json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "KnowledgeDocument",
        "metadata": {"name": name},
        "spec": {"filename": "icp.txt", "contentType": "text/plain", "tags": ["icp"], "source": source}
    })
}

fn dynamic_api(client: &Client, resource: ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

async fn create(api: &Api<DynamicObject>, object: Value) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).expect("valid DynamicObject JSON");
    api.create(&PostParams::default(), &object).await
}

/// Asserts the apiserver refused the request as invalid, with `message` in its explanation.
#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(result: Result<T, kube::Error>, message: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(
                status.message.contains(message),
                "expected '{message}' in the apiserver's message: {}",
                status.message
            );
        }
        other => panic!("expected the apiserver to reject the object with '{message}', got {other:?}"),
    }
}

#[tokio::test]
async fn valid_resources_are_accepted_and_typed_reads_round_trip() {
    let t = ClusterTest::new("crd-valid").await;
    let suffix = random_suffix(6);

    let tiers = dynamic_api(&t.client, Tier::api_resource(), None);
    create(&tiers, tier_json(&format!("tier-{suffix}"))).await.expect("a valid Tier is accepted");
    let tier: Tier = Api::all(t.client.clone()).get(&format!("tier-{suffix}")).await.unwrap();
    assert_eq!(tier.spec.max_agents, 5);
    assert_eq!(tier.spec.namespace_quota.memory, "8Gi");

    let customers = dynamic_api(&t.client, Customer::api_resource(), None);
    create(&customers, customer_json(&format!("acme-{suffix}"))).await.expect("a valid Customer is accepted");
    let customer: Customer = Api::all(t.client.clone()).get(&format!("acme-{suffix}")).await.unwrap();
    assert_eq!(customer.spec.quota_overrides.unwrap().max_agents, Some(7));
    assert!(!customer.spec.suspended, "suspended defaults to false");

    let agents = dynamic_api(&t.client, AgentDeployment::api_resource(), Some(&t.namespace));
    create(&agents, agent_json("qualifier")).await.expect("a valid AgentDeployment is accepted");
    let agent: AgentDeployment = Api::namespaced(t.client.clone(), &t.namespace).get("qualifier").await.unwrap();
    assert_eq!(agent.spec.agent_type, AgentType::LeadQualifier);
    assert_eq!(agent.spec.config.unwrap()["nested"]["any"][0], "thing", "free-form config is preserved");

    let documents = dynamic_api(&t.client, KnowledgeDocument::api_resource(), Some(&t.namespace));
    for (name, source) in [
        ("inline", json!({"text": "We sell to fintech CFOs in Europe."})),
        ("uploaded", json!({"blob": {"sha256": "a".repeat(64), "size": 12}})),
        ("remote", json!({"url": "https://example.com/icp.pdf"})),
        ("gitops", json!({"configMapKeyRef": {"name": "icp", "key": "icp.md"}})),
    ] {
        create(&documents, document_json(name, source)).await.unwrap_or_else(|e| panic!("{name} is accepted: {e}"));
    }

    // The operator writes status through the status subresource; the schema accepts it.
    let status = json!({"status": {
        "phase": "Running", "agentId": 42, "deploymentId": "agent_1_a1b2c3d4", "readyReplicas": 2,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    }});
    let typed: Api<AgentDeployment> = Api::namespaced(t.client.clone(), &t.namespace);
    typed
        .patch_status("qualifier", &PatchParams::apply(MANAGER), &Patch::Merge(&status))
        .await
        .expect("status is writable");
    let agent = typed.get("qualifier").await.unwrap();
    let agent_status = agent.status.unwrap();
    assert_eq!(agent_status.phase, Some(AgentPhase::Running));
    assert_eq!(agent_status.deployment_id.as_deref(), Some("agent_1_a1b2c3d4"));
}

#[tokio::test]
async fn schema_and_cel_rules_reject_bad_objects_with_their_messages() {
    let t = ClusterTest::new("crd-invalid").await;
    let suffix = random_suffix(6);
    let tiers = dynamic_api(&t.client, Tier::api_resource(), None);
    let customers = dynamic_api(&t.client, Customer::api_resource(), None);
    let agents = dynamic_api(&t.client, AgentDeployment::api_resource(), Some(&t.namespace));
    let documents = dynamic_api(&t.client, KnowledgeDocument::api_resource(), Some(&t.namespace));

    // Documents: exactly one source.
    assert_rejected(
        create(&documents, document_json("two", json!({"text": "a", "url": "https://example.com/a"}))).await,
        "exactly one of blob, url, configMapKeyRef or text must be set",
    );
    assert_rejected(
        create(&documents, document_json("none", json!({}))).await,
        "exactly one of blob, url, configMapKeyRef or text must be set",
    );
    assert_rejected(
        create(&documents, document_json("ftp", json!({"url": "ftp://example.com/a"}))).await,
        "url must start with http:// or https://",
    );
    assert_rejected(
        create(&documents, document_json("big", json!({"text": "x".repeat(262_145)}))).await,
        "Too long: may not be more than 262144",
    );
    assert_rejected(
        create(&documents, document_json("badsha", json!({"blob": {"sha256": "XYZ", "size": 1}}))).await,
        "spec.source.blob.sha256",
    );

    // Documents: the source is immutable.
    create(&documents, document_json("fixed", json!({"text": "first"}))).await.unwrap();
    let change = json!({"spec": {"source": {"text": "second"}}});
    assert_rejected(
        documents.patch("fixed", &PatchParams::default(), &Patch::Merge(&change)).await,
        "source is immutable; create a new document instead",
    );
    // Other fields stay editable.
    let retag = json!({"spec": {"tags": ["icp", "2026"]}});
    documents.patch("fixed", &PatchParams::default(), &Patch::Merge(&retag)).await.expect("tags are mutable");

    // Customers: e-mail shape and immutability.
    let mut bad_email = customer_json(&format!("bad-{suffix}"));
    bad_email["spec"]["email"] = json!("not-an-address");
    assert_rejected(create(&customers, bad_email).await, "email must be an address such as name@example.com");
    let name = format!("acme-{suffix}");
    create(&customers, customer_json(&name)).await.unwrap();
    let change = json!({"spec": {"email": "other@example.com"}});
    assert_rejected(
        customers.patch(&name, &PatchParams::default(), &Patch::Merge(&change)).await,
        "email is immutable",
    );
    let mut negative_override = customer_json(&format!("neg-{suffix}"));
    negative_override["spec"]["quotaOverrides"] = json!({"maxDocuments": -1});
    assert_rejected(
        create(&customers, negative_override).await,
        "spec.quotaOverrides.maxDocuments: Invalid value: -1: spec.quotaOverrides.maxDocuments in body should be greater than or equal to 0",
    );

    // Agents: replicas within 0..=100, a known agent type.
    let mut too_many = agent_json("too-many");
    too_many["spec"]["replicas"] = json!(101);
    assert_rejected(create(&agents, too_many).await, "spec.replicas in body should be less than or equal to 100");
    let mut negative = agent_json("negative");
    negative["spec"]["replicas"] = json!(-1);
    assert_rejected(create(&agents, negative).await, "spec.replicas in body should be greater than or equal to 0");
    let mut zero = agent_json("zero");
    zero["spec"]["replicas"] = json!(0);
    create(&agents, zero).await.expect("replicas 0 is allowed");
    let mut unknown = agent_json("unknown");
    unknown["spec"]["agentType"] = json!("cold_caller");
    assert_rejected(create(&agents, unknown).await, "Unsupported value: \"cold_caller\"");
    let mut blank = agent_json("blank");
    blank["spec"]["agentName"] = json!("   ");
    assert_rejected(create(&agents, blank).await, "agentName must not be blank");
    let long_name = "a".repeat(58);
    assert_rejected(create(&agents, agent_json(&long_name)).await, "metadata.name must be at most 57 characters");
    create(&agents, agent_json(&"b".repeat(57))).await.expect("a 57-character name is allowed");
    // agentType may change on a live agent (the operator rolls its pods onto the new image).
    let retyped = json!({"spec": {"agentType": "outreach_writer"}});
    agents.patch("zero", &PatchParams::default(), &Patch::Merge(&retyped)).await.expect("agentType is mutable");

    // Tiers: non-negative limits and quantities.
    let mut negative_tier = tier_json(&format!("neg-{suffix}"));
    negative_tier["spec"]["maxAgents"] = json!(-5);
    assert_rejected(create(&tiers, negative_tier).await, "spec.maxAgents in body should be greater than or equal to 0");
    let mut negative_cost = tier_json(&format!("cost-{suffix}"));
    negative_cost["spec"]["maxCostPerMonthUsd"] = json!(-0.01);
    assert_rejected(
        create(&tiers, negative_cost).await,
        "spec.maxCostPerMonthUsd in body should be greater than or equal to 0",
    );
    let mut bad_quantity = tier_json(&format!("qty-{suffix}"));
    bad_quantity["spec"]["namespaceQuota"]["cpu"] = json!("lots");
    assert_rejected(create(&tiers, bad_quantity).await, "cpu must be a Kubernetes quantity such as 4 or 500m");
    let mut missing = tier_json(&format!("missing-{suffix}"));
    missing["spec"].as_object_mut().unwrap().remove("maxDocuments");
    assert_rejected(create(&tiers, missing).await, "spec.maxDocuments: Required value");
}

/// Fetches a server-side Table, as `kubectl get` does.
async fn table(client: &Client, path: &str) -> Value {
    let request = http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let body = client.request_text(request).await.expect("table request");
    serde_json::from_str(&body).expect("a Table is JSON")
}

fn column_names(table: &Value) -> Vec<String> {
    table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

/// The cells of the row for `name`, by column name.
fn row(table: &Value, name: &str) -> std::collections::HashMap<String, Value> {
    let columns = column_names(table);
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {table}"));
    columns.into_iter().zip(row["cells"].as_array().unwrap().iter().cloned()).collect()
}

#[tokio::test]
async fn server_side_tables_list_the_printer_columns() {
    let t = ClusterTest::new("crd-table").await;
    let suffix = random_suffix(6);
    let tier_name = format!("tier-{suffix}");
    create(&dynamic_api(&t.client, Tier::api_resource(), None), tier_json(&tier_name)).await.unwrap();
    let customer_name = format!("acme-{suffix}");
    create(&dynamic_api(&t.client, Customer::api_resource(), None), customer_json(&customer_name)).await.unwrap();
    create(&dynamic_api(&t.client, AgentDeployment::api_resource(), Some(&t.namespace)), agent_json("qualifier"))
        .await
        .unwrap();
    create(
        &dynamic_api(&t.client, KnowledgeDocument::api_resource(), Some(&t.namespace)),
        document_json("inline", json!({"text": "hello"})),
    )
    .await
    .unwrap();
    let status = json!({"status": {"customerId": 17, "namespace": format!("cust-{customer_name}"), "agents": "2/7",
        "replicas": "2/3", "documents": "3/100",
        "usage": {"documents": {"used": 3, "limit": 100}, "agents": {"used": 2, "limit": 7},
            "concurrentAgents": {"used": 2, "limit": 3}, "storageMb": {"used": 1.5, "limit": 1000.0},
            "apiCallsToday": {"used": 0, "limit": 1000}, "apiCallsThisMonth": {"used": 0, "limit": 30000},
            "leadsThisMonth": {"used": 0, "limit": 1000}, "costThisMonthUsd": {"used": 0.0, "limit": 100.0}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    Api::<Customer>::all(t.client.clone())
        .patch_status(&customer_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let tiers = table(&t.client, "/apis/prospector.dev/v1alpha1/tiers").await;
    assert_eq!(
        column_names(&tiers),
        ["Name", "Calls/day", "Agents", "Concurrent", "Storage MB", "Documents", "Cost cap", "Customers", "Age"]
    );
    let tier_row = row(&tiers, &tier_name);
    assert_eq!(tier_row["Calls/day"], 1000);
    assert_eq!(tier_row["Concurrent"], 3);

    let customers = table(&t.client, "/apis/prospector.dev/v1alpha1/customers").await;
    assert_eq!(
        column_names(&customers),
        ["Name", "ID", "Tier", "Namespace", "Agents", "Replicas", "Documents", "Ready", "Age"]
    );
    let customer_row = row(&customers, &customer_name);
    assert_eq!(customer_row["ID"], 17);
    assert_eq!(customer_row["Tier"], "starter");
    assert_eq!(customer_row["Agents"], "2/7");
    assert_eq!(customer_row["Replicas"], "2/3");
    assert_eq!(customer_row["Documents"], "3/100", "full stays visible as used/limit");
    assert_eq!(customer_row["Ready"], "True");

    let agents =
        table(&t.client, &format!("/apis/prospector.dev/v1alpha1/namespaces/{}/agentdeployments", t.namespace)).await;
    assert_eq!(column_names(&agents), ["Name", "Type", "Model", "Replicas", "Ready", "Phase", "Deployment ID", "Age"]);
    assert_eq!(row(&agents, "qualifier")["Type"], "lead_qualifier");

    let documents =
        table(&t.client, &format!("/apis/prospector.dev/v1alpha1/namespaces/{}/knowledgedocuments", t.namespace)).await;
    assert_eq!(column_names(&documents), ["Name", "Filename", "Phase", "Chunks", "Document ID", "Age"]);
    assert_eq!(row(&documents, "inline")["Filename"], "icp.txt");

    // Short names and the category are served by discovery, as kubectl uses them.
    let discovery: Value = serde_json::from_str(
        &t.client
            .request_text(http::Request::get("/apis/prospector.dev/v1alpha1").body(Vec::new()).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    for (plural, short) in
        [("tiers", "tier"), ("customers", "cust"), ("agentdeployments", "agd"), ("knowledgedocuments", "kdoc")]
    {
        let resource = discovery["resources"].as_array().unwrap().iter().find(|r| r["name"] == plural).unwrap();
        assert_eq!(resource["shortNames"], json!([short]), "{plural}");
        assert_eq!(resource["categories"], json!(["prospector"]), "{plural}");
    }
}

#[tokio::test]
async fn deployments_become_available_through_kwok_and_are_garbage_collected_with_their_owner() {
    let t = ClusterTest::new("kwok").await;
    let agents_api: Api<AgentDeployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let owner: AgentDeployment = serde_json::from_value(agent_json("owner")).unwrap();
    let owner = agents_api.create(&PostParams::default(), &owner).await.unwrap();
    let owner_ref = owner.controller_owner_ref(&()).expect("a created object has a uid");

    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agent", "ownerReferences": [owner_ref]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "agent",
                        "image": "registry.example/prospector/agent:test",
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    deployments.create(&PostParams::default(), &deployment).await.unwrap();

    prospector_tests::eventually("availableReplicas == 1", Duration::from_secs(90), || async {
        let d = deployments.get("agent").await.ok()?;
        (d.status?.available_replicas? == 1).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let pod_list = pods.list(&ListParams::default().labels("app=agent")).await.unwrap();
    assert_eq!(pod_list.items.len(), 1);
    let pod = &pod_list.items[0];
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(prospector_tests::controlplane::FAKE_NODE));
    assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Running"));

    agents_api.delete("owner", &DeleteParams::default()).await.unwrap();
    prospector_tests::eventually("the garbage collector to delete the Deployment", Duration::from_secs(90), || async {
        match deployments.get_opt("agent").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    prospector_tests::eventually("the garbage collector to delete the pods", Duration::from_secs(90), || async {
        let left = pods.list(&ListParams::default().labels("app=agent")).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
}

/// Every object under `examples/` is valid for the apiserver (server-side dry run, so schema and
/// CEL rules run but nothing is stored). Namespaced objects go to the test's namespace.
#[tokio::test]
async fn the_examples_are_valid_resources() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde::Deserialize;

    let t = ClusterTest::new("examples").await;
    let dir = prospector_tests::hack::repo_root().join("examples");
    let mut checked = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let mut object = DynamicObject::deserialize(document).unwrap();
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            if kind == "Kustomization" {
                // kustomize's own file, not an object: the files it lists are the ones checked here.
                for listed in object.data["resources"].as_array().expect("a resources list") {
                    let listed = dir.join(listed.as_str().unwrap());
                    assert!(listed.exists(), "{}: lists {}, which does not exist", path.display(), listed.display());
                }
                checked.push(kind);
                continue;
            }
            let (resource, namespaced) = match kind.as_str() {
                "Tier" => (Tier::api_resource(), false),
                "Customer" => (Customer::api_resource(), false),
                "AgentDeployment" => (AgentDeployment::api_resource(), true),
                "KnowledgeDocument" => (KnowledgeDocument::api_resource(), true),
                "ConfigMap" => (ApiResource::erase::<ConfigMap>(&()), true),
                "Namespace" => (ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()), false),
                other => panic!("{}: no check for kind {other}", path.display()),
            };
            let api = if namespaced {
                object.metadata.namespace = Some(t.namespace.clone());
                dynamic_api(&t.client, resource, Some(&t.namespace))
            } else {
                dynamic_api(&t.client, resource, None)
            };
            let params = PostParams { dry_run: true, ..Default::default() };
            api.create(&params, &object)
                .await
                .unwrap_or_else(|e| panic!("{}: {kind} {:?} is invalid: {e}", path.display(), object.metadata.name));
            checked.push(kind);
        }
    }
    for kind in ["Tier", "Customer", "AgentDeployment", "KnowledgeDocument", "Kustomization"] {
        assert!(checked.iter().any(|k| k == kind), "examples/ has no {kind}");
    }
    assert_eq!(checked.iter().filter(|k| *k == "Tier").count(), 4, "examples/tiers.yaml holds the four tiers");
}
