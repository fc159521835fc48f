//! The Customer lifecycle against the real apiserver, controller-manager and Postgres, with the
//! operator running in-process: namespace, quota objects, NetworkPolicy, API key Secret and its
//! hash in Postgres; Ready with the printer columns; tier changes; TierNotFound; and a deletion
//! that leaves nothing of the tenant behind.

mod common;

use std::time::Duration;

use common::{PLATFORM_NAMESPACE, client, eventually, shared_operator, unique};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{Customer, HasConditions, Tier};
use prospector_store::chunks::{NewChunk, upsert_chunks};
use prospector_store::documents::{DocumentRecord, SourceKind, insert_blob, upsert_document};
use prospector_tests::fixtures::{self, wait_customer_ready};
use serde_json::json;
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);

fn customer(name: &str, tier: &str) -> Customer {
    fixtures::customer(name, tier, json!({}))
}

fn hard(quota: &ResourceQuota, key: &str) -> String {
    quota.spec.as_ref().unwrap().hard.as_ref().unwrap()[key].0.clone()
}

#[tokio::test]
async fn customer_lifecycle_builds_the_tenant_and_deletion_leaves_nothing() {
    let operator = shared_operator();
    let client = client().await;
    let pool = operator.pool().await;
    let customers: Api<Customer> = Api::all(client.clone());
    let name = unique("acme");
    customers.create(&PostParams::default(), &customer(&name, "starter")).await.unwrap();
    let ready = wait_customer_ready(&client, &name).await;

    // Status and printer-column fields.
    let status = ready.status.clone().unwrap();
    let customer_id = status.customer_id.expect("customerId is allocated");
    let namespace = prospector_crds::customer::customer_namespace(&name);
    assert_eq!(status.namespace.as_deref(), Some(namespace.as_str()));
    assert_eq!(status.agents.as_deref(), Some("0/5"));
    assert_eq!(status.api_key_secret.as_deref(), Some("prospector-api-key"));
    let usage = status.usage.clone().unwrap();
    assert_eq!(usage.documents.limit, 100);
    assert_eq!(usage.concurrent_agents.limit, 3);
    let quota_exceeded = status.condition(types::QUOTA_EXCEEDED).unwrap();
    assert_eq!(quota_exceeded.status, "False");

    // The namespace and its children.
    let ns = Api::<Namespace>::all(client.clone()).get(&namespace).await.unwrap();
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["prospector.dev/customer"], name);
    assert_eq!(labels["prospector.dev/customer-id"], customer_id.to_string());
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), &namespace).get("prospector-quota").await.unwrap();
    assert_eq!(hard(&quota, "requests.cpu"), "6");
    assert_eq!(hard(&quota, "pods"), "10");
    Api::<LimitRange>::namespaced(client.clone(), &namespace).get("prospector-defaults").await.unwrap();
    let policy =
        Api::<NetworkPolicy>::namespaced(client.clone(), &namespace).get("default-deny-ingress").await.unwrap();
    let from = &policy.spec.unwrap().ingress.unwrap()[0].from.clone().unwrap()[0];
    assert_eq!(
        from.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        PLATFORM_NAMESPACE
    );

    // The API key: in the Secret only; Postgres has its prefix and SHA-256.
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace).get("prospector-api-key").await.unwrap();
    let key = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
    assert!(key.starts_with("sa_") && key.len() > 40, "a generated key: {}", &key[..3]);
    let (prefix, hash): (String, Vec<u8>) =
        sqlx::query_as("SELECT key_prefix, key_sha256 FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL")
            .bind(customer_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(hash, Sha256::digest(key.as_bytes()).to_vec());
    assert!(key.starts_with(&prefix) && prefix.len() < 16);
    let stored_anywhere: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys a JOIN customers c ON c.id = a.customer_id
          WHERE position($1 in a.key_prefix || c.company_name || c.email || c.settings::text) > 0",
    )
    .bind(&key)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored_anywhere, 0, "the key itself is never stored");

    // A deleted key Secret gets a new key, and the old key stops working.
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    secrets.delete("prospector-api-key", &DeleteParams::default()).await.unwrap();
    let new_key = eventually("a new API key Secret", WAIT, || async {
        let secret = secrets.get_opt("prospector-api-key").await.unwrap()?;
        let new_key = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
        (new_key != key).then_some(new_key)
    })
    .await;
    let active = eventually("only the new key to be active", WAIT, || async {
        let active = prospector_store::api_keys::active_key_hashes(&pool, customer_id).await.unwrap();
        (active == vec![Sha256::digest(new_key.as_bytes()).to_vec()]).then_some(active)
    })
    .await;
    assert_eq!(active.len(), 1);

    // A tier change updates the quota objects and the limits.
    let patch = json!({"spec": {"tier": "pro"}});
    customers.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("the ResourceQuota to follow the tier", WAIT, || async {
        let q = Api::<ResourceQuota>::namespaced(client.clone(), &namespace).get("prospector-quota").await.ok()?;
        (hard(&q, "requests.cpu") == "20" && hard(&q, "requests.nvidia.com/gpu") == "1").then_some(())
    })
    .await;
    eventually("usage limits to follow the tier", WAIT, || async {
        let c = customers.get(&name).await.ok()?;
        (c.status?.usage?.agents.limit == 20).then_some(())
    })
    .await;
    let secret_again = Api::<Secret>::namespaced(client.clone(), &namespace).get("prospector-api-key").await.unwrap();
    assert_eq!(secret_again.data.unwrap()["api-key"].0, new_key.as_bytes(), "a tier change keeps the key");

    // Tenant data to purge: an uploaded blob, the document that references it, and its chunks.
    // The document has no object, so the operator's orphan sweep (every resync, 3 s here) may
    // release it before the count: then it is written again.
    let content = b"secret sauce: we sell to hospitals";
    let sha = Sha256::digest(content).to_vec();
    let tenant_rows = "SELECT (SELECT count(*) FROM document_chunks WHERE customer_id = $1),
                (SELECT count(*) FROM document_blobs WHERE customer_id = $1),
                (SELECT count(*) FROM knowledge_documents WHERE customer_id = $1 AND deleted_at IS NULL),
                (SELECT count(*) FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL)";
    eventually("a chunk, a blob, a document and a key to purge", WAIT, || async {
        insert_blob(&pool, customer_id, &sha, content, Some("text/plain")).await.unwrap();
        let uid = uuid::Uuid::new_v4();
        let document = upsert_document(
            &pool,
            &DocumentRecord {
                k8s_uid: uid,
                customer_id,
                document_id: format!("doc_{}", uid.simple()),
                namespace: namespace.clone(),
                name: format!("doc-{}", &uid.simple().to_string()[..8]),
                filename: "doc.txt".into(),
                source_kind: SourceKind::Blob,
                blob_sha256: Some(sha.clone()),
                tags: vec![],
                generation: 1,
                source_url: None,
            },
        )
        .await
        .unwrap()
        .id;
        let chunk =
            NewChunk { chunk_index: 0, content: "secret sauce".into(), token_count: 3, embedding: vec![0.5; 384] };
        upsert_chunks(&pool, customer_id, document, &[chunk]).await.unwrap();
        let (chunks, blobs, documents, keys): (i64, i64, i64, i64) =
            sqlx::query_as(tenant_rows).bind(customer_id).fetch_one(&pool).await.unwrap();
        (chunks >= 1 && (blobs, documents, keys) == (1, 1, 1)).then_some(())
    })
    .await;

    // Deletion leaves nothing behind.
    customers.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the Customer to be gone", WAIT, || async {
        customers.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("the namespace to be gone", Duration::from_secs(120), || async {
        Api::<Namespace>::all(client.clone()).get_opt(&namespace).await.ok()?.is_none().then_some(())
    })
    .await;
    let (status, deleted): (String, bool) =
        sqlx::query_as("SELECT status, deleted_at IS NOT NULL FROM customers WHERE id = $1")
            .bind(customer_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), deleted), ("deleted", true), "the customer row is kept for billing");
    let left: (i64, i64, i64, i64) = sqlx::query_as(tenant_rows).bind(customer_id).fetch_one(&pool).await.unwrap();
    assert_eq!(left, (0, 0, 0, 0), "chunks, blobs, live documents and keys of the tenant are gone");
}

#[tokio::test]
async fn a_missing_tier_is_a_condition_not_a_crash_loop() {
    let _operator = shared_operator();
    let client = client().await;
    let customers: Api<Customer> = Api::all(client.clone());
    let name = unique("lost");
    let tier_name = unique("tier");
    customers.create(&PostParams::default(), &customer(&name, &tier_name)).await.unwrap();
    let message = eventually("TierNotFound", WAIT, || async {
        let c = customers.get(&name).await.ok()?;
        let ready = c.status.as_ref().and_then(|s| s.condition(types::READY))?;
        (ready.reason == reasons::TIER_NOT_FOUND && ready.status == "False").then(|| ready.message.clone())
    })
    .await;
    assert!(message.contains(&tier_name), "{message}");

    // Creating the tier heals the customer without any other change.
    let mut tier = fixtures::example_tiers().remove(0);
    tier.metadata.name = Some(tier_name.clone());
    fixtures::apply_tiers(&client, &[tier]).await;
    wait_customer_ready(&client, &name).await;

    // The transitions were published as Events (cluster-scoped objects report in "default").
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let seen = eventually("Events for the customer", WAIT, || async {
        let list = events.list(&ListParams::default().fields(&format!("regarding.name={name}"))).await.ok()?;
        let by_reason: std::collections::BTreeMap<String, String> = list
            .items
            .iter()
            .map(|e| (e.reason.clone().unwrap_or_default(), e.type_.clone().unwrap_or_default()))
            .collect();
        (by_reason.contains_key(reasons::TIER_NOT_FOUND) && by_reason.contains_key(reasons::RECONCILED))
            .then_some(by_reason)
    })
    .await;
    // A missing tier is a fault a person should look at; becoming Ready is news, not a fault.
    assert_eq!(seen[reasons::TIER_NOT_FOUND], "Warning");
    assert_eq!(seen[reasons::RECONCILED], "Normal");

    // The tier counts its customers, and a tier change reaches every customer on it.
    let tiers: Api<Tier> = Api::all(client.clone());
    let second = unique("lost");
    customers.create(&PostParams::default(), &customer(&second, &tier_name)).await.unwrap();
    wait_customer_ready(&client, &second).await;
    eventually("the tier to count two customers", WAIT, || async {
        (tiers.get(&tier_name).await.ok()?.status?.customers == 2).then_some(())
    })
    .await;
    let patch = json!({"spec": {"maxAgents": 9}});
    tiers.patch(&tier_name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    for customer_name in [&name, &second] {
        eventually("the new agent limit on the customer", WAIT, || async {
            (customers.get(customer_name).await.ok()?.status?.usage?.agents.limit == 9).then_some(())
        })
        .await;
    }
    customers.delete(&second, &DeleteParams::default()).await.unwrap();
    eventually("the tier to count one customer", WAIT, || async {
        (tiers.get(&tier_name).await.ok()?.status?.customers == 1).then_some(())
    })
    .await;
    customers.delete(&name, &DeleteParams::default()).await.unwrap();
}
