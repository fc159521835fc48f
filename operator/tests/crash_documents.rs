//! Crash safety of the document bookkeeping: the operator process is SIGKILLed 6 times while 50
//! document creates and deletes land. Afterwards Kubernetes and Postgres agree, each live
//! document holds its quota, its bytes and one queued task, the counters equal what the rows
//! hold, and nothing is left of deleted documents. (Its own test binary: two tests that each run
//! operators against one cluster would reconcile each other's objects.)

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, unique};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use process::start_operator;
use prospector_crds::customer::customer_namespace;
use prospector_tests::fixtures::create_customer;
use prospector_tests::{shared_cluster, shared_postgres};
use rand::Rng;

/// A text document; `topic` picks its bytes, so two documents may share them.
fn text_document(name: &str, topic: usize) -> prospector_crds::KnowledgeDocument {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": name},
        "spec": {"filename": format!("{name}.txt"), "source": {"text": format!("Notes on topic {topic} for the sales team.")}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_bookkeeping_is_exact_after_sigkills_during_a_burst() {
    use prospector_crds::{DocumentPhase, KnowledgeDocument};

    let client = shared_cluster().client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    common::install_platform(&client).await;
    // No worker runs (the operators start none): documents settle in Queued, and the test looks
    // at what the operator alone keeps.
    let mut operator = start_operator(&db.url, false, "docs-0");
    let customer = unique("docburst");
    create_customer(&client, &customer, "starter", serde_json::json!({})).await;
    let namespace = customer_namespace(&customer);
    eventually("the customer's namespace", Duration::from_secs(60), || async {
        Api::<Namespace>::all(client.clone()).get_opt(&namespace).await.ok()?.map(|_| ())
    })
    .await;
    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);

    let burst = {
        let documents = documents.clone();
        tokio::spawn(async move {
            let (mut created, mut deletes, mut creates) = (Vec::new(), 0, 0);
            while creates + deletes < 50 {
                let (delete, pause, pick, topic) = {
                    let mut rng = rand::rng();
                    let delete = deletes < 10 && !created.is_empty() && rng.random_bool(0.25);
                    (delete, rng.random_range(20..200), rng.random_range(0..1000usize), rng.random_range(0..12))
                };
                if delete {
                    let name: String = created.remove(pick % created.len());
                    documents.delete(&name, &DeleteParams::default()).await.unwrap();
                    deletes += 1;
                } else {
                    let name = format!("doc-{creates:02}");
                    documents.create(&PostParams::default(), &text_document(&name, topic)).await.unwrap();
                    created.push(name);
                    creates += 1;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            (creates, deletes)
        })
    };
    for kill in 1..=6 {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(200..1000))).await;
        operator.process.kill();
        operator = start_operator(&db.url, false, &format!("docs-{kill}"));
    }
    let (creates, deletes) = burst.await.unwrap();

    let settled = eventually("every document Queued for its generation", Duration::from_secs(180), || async {
        let list = documents.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|d| {
                d.metadata.deletion_timestamp.is_none()
                    && d.status.as_ref().is_some_and(|s| {
                        s.phase == Some(DocumentPhase::Queued) && s.observed_generation == d.metadata.generation
                    })
            })
            .then_some(list.items)
    })
    .await;
    assert_eq!(settled.len(), creates - deletes, "{creates} created, {deletes} deleted");

    // Kubernetes and Postgres agree, once each; counters equal what the rows hold; every live
    // document has exactly one live task and its bytes; nothing is left of deleted ones.
    let uids: BTreeSet<String> = settled.iter().map(|d| d.uid().unwrap()).collect();
    let customer_id: i64 = sqlx::query_scalar("SELECT id FROM customers WHERE name = $1")
        .bind(&customer)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let rows: Vec<(uuid::Uuid, bool, i64, bool)> = sqlx::query_as(
        "SELECT d.k8s_uid, d.quota_reserved, d.storage_reserved_bytes,
                (SELECT count(*) FROM embedding_tasks t WHERE t.document_id = d.id AND t.status = 'queued') = 1
           FROM knowledge_documents d WHERE d.customer_id = $1 AND d.deleted_at IS NULL",
    )
    .bind(customer_id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let row_uids: BTreeSet<String> = rows.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(row_uids, uids, "live rows are the existing documents");
    assert_eq!(rows.len(), uids.len(), "no duplicate rows");
    assert!(rows.iter().all(|r| r.1 && r.2 > 0 && r.3), "each holds its quota, its bytes and one queued task");
    let (documents_count, storage): (i32, i64) =
        sqlx::query_as("SELECT documents_count, storage_used_bytes FROM customer_quotas WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(documents_count as usize, rows.len(), "documents_count");
    assert_eq!(storage, rows.iter().map(|r| r.2).sum::<i64>(), "storage_used_bytes");
    let orphans: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM document_blobs b WHERE b.customer_id = $1 AND NOT EXISTS
                    (SELECT 1 FROM knowledge_documents d WHERE d.customer_id = $1 AND d.blob_sha256 = b.sha256)),
                (SELECT count(*) FROM embedding_tasks t JOIN knowledge_documents d ON d.id = t.document_id
                  WHERE d.customer_id = $1 AND d.deleted_at IS NOT NULL)",
    )
    .bind(customer_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, (0, 0), "no orphan blob, no task of a deleted document");
    drop(operator);
}
