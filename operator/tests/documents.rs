//! KnowledgeDocuments against the real apiserver, Postgres and model, with the operator (and its
//! inline embedding worker) running in-process: every source kind reaches Ready with its stage
//! conditions, chunks and ICP and is found by search; unreadable documents fail with their
//! cause; quota is exact; an edited ConfigMap is processed again; deletion leaves nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{client, eventually, shared_operator, unique};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{Customer, DocumentPhase, HasConditions, KnowledgeDocument};
use prospector_embedder::embed::Embedder;
use prospector_embedder::paths;
use prospector_operator::context::DocumentSettings;
use prospector_store::documents::insert_blob;
use prospector_store::search::{SearchPath, SearchRequest, explain, search, search_path};
use prospector_store::tenant_index::{index_name, tenant_indexes};
use prospector_tests::fixtures::ready_customer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(180);

const PITCH: &str = "We sell radiology scheduling software to hospitals in Germany and France. Our customers \
    are health systems with more than 1,000 employees, and the CIO signs the contract.";

fn fixture(path: &str) -> Vec<u8> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../embedder/tests/fixtures/pdf/py-pdf-sample-files/");
    std::fs::read(format!("{root}{path}")).unwrap()
}

fn document(name: &str, filename: &str, source: Value) -> KnowledgeDocument {
    serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1",
        "kind": "KnowledgeDocument",
        "metadata": {"name": name},
        "spec": {"filename": filename, "tags": ["test"], "source": source}
    }))
    .unwrap()
}

fn config_map(name: &str, text: Option<&str>, binary: Option<Vec<u8>>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: text.map(|t| BTreeMap::from([("doc".to_owned(), t.to_owned())])),
        binary_data: binary.map(|b| BTreeMap::from([("doc".to_owned(), ByteString(b))])),
        ..Default::default()
    }
}

/// Waits until the document reaches `phase`, and returns it.
async fn wait_phase(api: &Api<KnowledgeDocument>, name: &str, phase: DocumentPhase) -> KnowledgeDocument {
    eventually(&format!("document {name} {phase:?}"), WAIT, || async {
        let d = api.get(name).await.ok()?;
        (d.status.as_ref()?.phase == Some(phase)).then_some(d)
    })
    .await
}

/// The model, loaded once for every test of this binary.
fn embedder() -> &'static Embedder {
    static EMBEDDER: std::sync::OnceLock<Embedder> = std::sync::OnceLock::new();
    EMBEDDER.get_or_init(|| Embedder::load(&paths::installed_config().unwrap()).unwrap())
}

async fn search_filenames(pool: &PgPool, customer_id: i64, query: &str) -> Vec<String> {
    let vector = embedder().embed(&[query]).unwrap().remove(0);
    let request = SearchRequest { top_k: 3, ..SearchRequest::new(customer_id, &vector, query) };
    search(pool, &request).await.unwrap().into_iter().map(|h| h.filename).collect()
}

async fn counters(pool: &PgPool, customer_id: i64) -> (i32, i64) {
    sqlx::query_as("SELECT documents_count, storage_used_bytes FROM customer_quotas WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_from_every_source_become_searchable_and_deletion_leaves_nothing() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let customer_name = unique("library");
    let (namespace, customer_id) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let pp = PostParams::default();

    config_maps
        .create(
            &pp,
            &config_map("playbook", Some("# Playbook\nBanking CISOs in the UK want SOC 2 evidence first."), None),
        )
        .await
        .unwrap();
    config_maps
        .create(&pp, &config_map("paper", None, Some(fixture("026-latex-multicolumn/multicolumn.pdf"))))
        .await
        .unwrap();
    let locked = fixture("005-libreoffice-writer-password/libreoffice-writer-password.pdf");
    config_maps.create(&pp, &config_map("locked", None, Some(locked))).await.unwrap();
    // An upload, as the REST server will store it.
    let uploaded = b"Our onboarding guide for logistics companies in Brazil and Mexico.".to_vec();
    let sha = Sha256::digest(&uploaded);
    insert_blob(&pool, customer_id, &sha, &uploaded, Some("text/plain")).await.unwrap();

    // A url, served from this machine (the shared operator allows private addresses).
    let guide = b"Field guide: selling cold-chain monitoring to pharmaceutical distributors in Japan.".to_vec();
    let server = prospector_tests::http::TestHttpServer::start(std::collections::HashMap::from([(
        "/guide.txt".to_owned(),
        prospector_tests::http::Answer::Body(guide),
    )]))
    .await
    .unwrap();

    let sources = [
        ("pitch", "pitch.txt", json!({"text": PITCH})),
        ("guide", "guide.txt", json!({"url": server.url("/guide.txt")})),
        ("playbook", "playbook.md", json!({"configMapKeyRef": {"name": "playbook", "key": "doc"}})),
        ("paper", "paper.pdf", json!({"configMapKeyRef": {"name": "paper", "key": "doc"}})),
        ("upload", "onboarding.txt", json!({"blob": {"sha256": hex::encode(sha), "size": uploaded.len()}})),
        ("locked", "locked.pdf", json!({"configMapKeyRef": {"name": "locked", "key": "doc"}})),
    ];
    for (name, filename, source) in &sources {
        documents.create(&pp, &document(name, filename, source.clone())).await.unwrap();
    }
    for (name, _, _) in &sources[..5] {
        let ready = wait_phase(&documents, name, DocumentPhase::Ready).await;
        let status = ready.status.unwrap();
        for stage in
            [types::STORED, types::EXTRACTED, types::EMBEDDED, types::INDEXED, types::ICP_EXTRACTED, types::READY]
        {
            let condition = status.condition(stage).unwrap_or_else(|| panic!("{name}: no {stage}"));
            assert!(condition.is_true() && condition.reason == reasons::SUCCEEDED, "{name}: {condition:?}");
        }
        assert!(status.chunk_count.unwrap() >= 1 && status.text_length.unwrap() > 20, "{name}: {status:?}");
        assert!(status.document_id.as_deref().unwrap().starts_with("doc_"));
        assert_eq!(status.embedding_model.as_deref(), Some("all-MiniLM-L6-v2"));
    }
    let pitch = documents.get("pitch").await.unwrap().status.unwrap().icp.unwrap();
    assert!(pitch.target_industries.contains(&"healthcare".to_owned()), "{pitch:?}");
    assert!(pitch.decision_makers.contains(&"CIO".to_owned()) && pitch.target_regions.contains(&"Europe".to_owned()));

    // The encrypted PDF fails at once with its cause, and gives its quota back.
    let failed = wait_phase(&documents, "locked", DocumentPhase::Failed).await.status.unwrap();
    let error = failed.error.clone().unwrap();
    assert!(error.contains("(encrypted)") && error.contains("upload a decrypted copy"), "{error}");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.condition(types::READY).unwrap().reason, reasons::ENCRYPTED, "its own reason");
    // ... and its bytes: a failed document holds nothing.
    let locked_sha =
        Sha256::digest(fixture("005-libreoffice-writer-password/libreoffice-writer-password.pdf")).to_vec();
    eventually("the failed document's bytes released", WAIT, || async {
        let kept: i64 =
            sqlx::query_scalar("SELECT count(*) FROM document_blobs WHERE customer_id = $1 AND sha256 = $2")
                .bind(customer_id)
                .bind(&locked_sha)
                .fetch_one(&pool)
                .await
                .ok()?;
        (kept == 0).then_some(())
    })
    .await;
    let again = documents.get("locked").await.unwrap().status.unwrap();
    assert_eq!((again.phase, again.attempts), (Some(DocumentPhase::Failed), 1), "the same bytes are not retried");
    let customers: Api<Customer> = Api::all(client.clone());
    eventually("the customer to count 5 documents", WAIT, || async {
        (customers.get(&customer_name).await.ok()?.status?.documents.as_deref() == Some("5/100")).then_some(())
    })
    .await;

    // Five Ready documents of a chunk or more: the customer gets a vector index of its own, and
    // its searches go through it.
    eventually("the customer's vector index", WAIT, || async {
        (search_path(&pool, customer_id).await.ok()? == SearchPath::Indexed).then_some(())
    })
    .await;
    let embedding = embedder().embed(&["hospitals"]).unwrap().remove(0);
    let probe = SearchRequest::new(customer_id, &embedding, "hospitals");
    let (_, plan) = explain(&pool, &probe).await.unwrap();
    assert!(plan.contains(&index_name(customer_id)), "the search uses the customer's index:\n{plan}");

    // Search finds each by meaning, within this customer.
    assert_eq!(search_filenames(&pool, customer_id, "which hospitals buy radiology scheduling").await[0], "pitch.txt");
    assert_eq!(search_filenames(&pool, customer_id, "SOC 2 evidence for bank security chiefs").await[0], "playbook.md");
    assert_eq!(
        search_filenames(&pool, customer_id, "onboarding logistics firms in Latin America").await[0],
        "onboarding.txt"
    );
    assert_eq!(search_filenames(&pool, customer_id, "cold chain pharma distributors in Japan").await[0], "guide.txt");
    // Once fetched, the url's bytes count against the customer's storage.
    eventually("the fetched bytes counted as storage", WAIT, || async {
        let stored: i64 = sqlx::query_scalar(
            "SELECT storage_reserved_bytes FROM knowledge_documents WHERE customer_id = $1 AND filename = 'guide.txt'",
        )
        .bind(customer_id)
        .fetch_one(&pool)
        .await
        .ok()?;
        (stored > 0).then_some(())
    })
    .await;

    // `kubectl wait` sees the Ready condition where it looks for it.
    let kubectl = prospector_tests::hack::hack_path("kubectl.sh").unwrap();
    let kubeconfig = prospector_tests::shared_cluster().kubeconfig().display().to_string();
    let waited = std::process::Command::new(kubectl)
        .args(["wait", "--for=condition=Ready", "knowledgedocument/pitch", "-n", &namespace, "--timeout=30s"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));

    // An edited ConfigMap is processed again.
    let edit = json!({"data": {"doc": "# Playbook\nInsurance CFOs in Canada ask about claims automation."}});
    config_maps.patch("playbook", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    eventually("the edited playbook searchable", WAIT, || async {
        let hits = search_filenames(&pool, customer_id, "claims automation for insurance finance chiefs").await;
        (hits.first().map(String::as_str) == Some("playbook.md")).then_some(())
    })
    .await;

    // Many resyncs later the failed document is still failed once: its bytes were not retried.
    let later = documents.get("locked").await.unwrap().status.unwrap();
    assert_eq!((later.phase, later.attempts), (Some(DocumentPhase::Failed), 1));

    // Deleting every document leaves no chunk, task, blob or counter behind.
    for (name, _, _) in &sources {
        documents.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("the documents gone", WAIT, || async {
        documents.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    let left = prospector_tests::fixtures::document_rows(&pool, customer_id).await;
    assert_eq!(left, (0, 0, 0, 0), "chunks, tasks, blobs, live documents");
    assert_eq!(counters(&pool, customer_id).await, (0, 0));
    eventually("the customer's vector index dropped", WAIT, || async {
        let indexes = tenant_indexes(&pool).await.ok()?;
        (!indexes.iter().any(|i| i.customer_id == customer_id)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_past_the_limit_wait_and_proceed_when_room_is_made() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) =
        ready_customer(&client, &unique("shelf"), "starter", json!({"maxDocuments": 2})).await;
    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    for i in 0..3 {
        let text = format!("Document number {i} about warehouse robotics for retailers.");
        documents
            .create(&PostParams::default(), &document(&format!("d{i}"), "d.txt", json!({"text": text})))
            .await
            .unwrap();
    }
    let refused = eventually("one document refused for the document limit", WAIT, || async {
        let list = documents.list(&Default::default()).await.ok()?;
        let ready =
            list.items.iter().filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DocumentPhase::Ready)).count();
        let refused: Vec<String> = list
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.condition(types::READY))
                    .is_some_and(|c| c.reason == reasons::DOCUMENT_LIMIT_REACHED)
            })
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        (ready == 2 && refused.len() == 1).then(|| refused[0].clone())
    })
    .await;
    let waiting = documents.get(&refused).await.unwrap().status.unwrap();
    assert!(waiting.condition(types::READY).unwrap().message.contains("2 of 2 documents"));
    assert_eq!(counters(&pool, customer_id).await.0, 2);

    let done = ["d0", "d1", "d2"].into_iter().find(|n| *n != refused).unwrap();
    documents.delete(done, &DeleteParams::default()).await.unwrap();
    wait_phase(&documents, &refused, DocumentPhase::Ready).await;
    assert_eq!(counters(&pool, customer_id).await.0, 2);
}

/// The labels of one field of the customer's `customer-icp` ConfigMap.
async fn icp_file_field(client: &kube::Client, namespace: &str, field: &str) -> Option<Vec<String>> {
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt("customer-icp").await.ok()??;
    let file: Value = serde_json::from_str(config_map.data?.get("icp.json")?).ok()?;
    serde_json::from_value(file.get(field)?.clone()).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_icp_follows_its_documents_and_reaches_its_agents() {
    let _operator = shared_operator();
    let client = client().await;
    let customer_name = unique("profile");
    let (namespace, _) = ready_customer(&client, &customer_name, "starter", json!({})).await;
    let agents: Api<prospector_crds::AgentDeployment> = Api::namespaced(client.clone(), &namespace);
    prospector_tests::fixtures::run_agents(&agents, &["seller"]).await;
    let deployment = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &namespace)
        .get("agent-seller")
        .await
        .unwrap();
    let volumes = deployment.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    let projected = volumes.iter().find_map(|v| v.projected.clone()).expect("the agent's config directory");
    assert!(projected.sources.unwrap().iter().any(|s| s.config_map.as_ref().is_some_and(|c| c.name == "customer-icp")));
    assert_eq!(icp_file_field(&client, &namespace, "target_industries").await, Some(vec![]), "empty before documents");

    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    let pp = PostParams::default();
    documents.create(&pp, &document("pitch", "pitch.txt", json!({"text": PITCH}))).await.unwrap();
    let fintech = "We sell expense automation to fintech companies in Canada; the CFO signs.";
    documents.create(&pp, &document("fintech", "fintech.txt", json!({"text": fintech}))).await.unwrap();
    let customers: Api<Customer> = Api::all(client.clone());
    let industries =
        || async { customers.get(&customer_name).await.ok()?.status?.icp.map(|icp| icp.target_industries) };
    eventually("both documents in the customer's ICP and its agents' file", WAIT, || async {
        let status = industries().await?;
        let file = icp_file_field(&client, &namespace, "target_industries").await?;
        let both = |labels: &[String]| ["healthcare", "fintech"].iter().all(|l| labels.iter().any(|x| x == l));
        (both(&status) && both(&file)).then_some(())
    })
    .await;
    let regions = customers.get(&customer_name).await.unwrap().status.unwrap().icp.unwrap().target_regions;
    assert!(regions.contains(&"Europe".to_owned()) && regions.contains(&"North America".to_owned()), "{regions:?}");

    documents.delete("pitch", &DeleteParams::default()).await.unwrap();
    eventually("healthcare gone with its document", WAIT, || async {
        let status = industries().await?;
        let file = icp_file_field(&client, &namespace, "target_industries").await?;
        let only_fintech =
            |labels: &[String]| labels.iter().any(|l| l == "fintech") && !labels.iter().any(|l| l == "healthcare");
        (only_fintech(&status) && only_fintech(&file)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_documents_fail_each_with_its_own_reason_at_once_or_after_the_retries() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let (namespace, customer_id) = ready_customer(&client, &unique("unreadable"), "starter", json!({})).await;
    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let max_bytes = usize::try_from(DocumentSettings::default().max_document_bytes).unwrap();
    let server = prospector_tests::http::TestHttpServer::start(std::collections::HashMap::from([
        ("/gone.pdf".to_owned(), prospector_tests::http::Answer::Status(404)),
        // Never finishes within the shared operator's url timeout.
        ("/slow.pdf".to_owned(), prospector_tests::http::Answer::Stall),
        // One byte over the cap, without a Content-Length to refuse it early.
        ("/huge.pdf".to_owned(), prospector_tests::http::Answer::Unsized(max_bytes + 1)),
    ]))
    .await
    .unwrap();
    let pp = PostParams::default();
    // An image-only PDF, and the first third of a real one (no cross-reference table: corrupt).
    let scan = fixture("007-imagemagick-images/imagemagick-lzw.pdf");
    let whole = fixture("026-latex-multicolumn/multicolumn.pdf");
    let truncated = whole[..whole.len() / 3].to_vec();
    config_maps.create(&pp, &config_map("scan", None, Some(scan))).await.unwrap();
    config_maps.create(&pp, &config_map("broken", None, Some(truncated))).await.unwrap();
    let attempts = DocumentSettings::default().max_attempts;
    // (name, source, reason, attempts, what the message says)
    let cases = [
        ("scan", json!({"configMapKeyRef": {"name": "scan", "key": "doc"}}), reasons::NO_TEXT_LAYER, 1, "OCR"),
        ("broken", json!({"configMapKeyRef": {"name": "broken", "key": "doc"}}), reasons::CORRUPT, 1, "re-export"),
        ("gone", json!({"url": server.url("/gone.pdf")}), reasons::URL_REFUSED, 1, "404"),
        ("huge", json!({"url": server.url("/huge.pdf")}), reasons::URL_TOO_LARGE, 1, "larger than the limit"),
        // A timeout may pass: retried with backoff, then failed for good.
        ("slow", json!({"url": server.url("/slow.pdf")}), reasons::URL_TIMED_OUT, attempts, "took longer than"),
    ];
    for (name, source, _, _, _) in &cases {
        documents.create(&pp, &document(name, &format!("{name}.pdf"), source.clone())).await.unwrap();
    }
    for (name, _, reason, attempts, says) in cases {
        let status = wait_phase(&documents, name, DocumentPhase::Failed).await.status.unwrap();
        let ready = status.condition(types::READY).unwrap();
        assert_eq!((ready.reason.as_str(), status.attempts), (reason, attempts), "{name}: {ready:?}");
        assert!(status.error.as_deref().unwrap().contains(says), "{name}: {:?}", status.error);
    }
    // Nothing was kept: no bytes of the refused download, and the quota is free again.
    eventually("documents and storage released", WAIT, || async {
        (counters(&pool, customer_id).await == (0, 0)).then_some(())
    })
    .await;
}
