//! Postgres tests against the real Postgres 18 + pgvector the harness starts: the migrations,
//! their concurrency safety, and the quota guard. The document tables are `documents.rs`'s.

use prospector_store::customers::{CustomerRecord, QuotaLimits, set_quota_limits, upsert_customer};
use prospector_tests::shared_postgres;
use sqlx::PgPool;
use uuid::Uuid;

fn embedded_versions() -> Vec<i64> {
    prospector_store::MIGRATOR.iter().map(|m| m.version).collect()
}

#[tokio::test]
async fn migrations_apply_to_postgres_18_with_pgvector() {
    let db = shared_postgres().empty_database().await.unwrap();
    prospector_store::migrate(&db.pool).await.expect("migrations apply");
    assert_eq!(prospector_store::applied_migrations(&db.pool).await.unwrap(), embedded_versions());

    let server_version: i32 =
        sqlx::query_scalar("SELECT current_setting('server_version_num')::int").fetch_one(&db.pool).await.unwrap();
    assert!(server_version >= 180_000, "Postgres 18 expected, got {server_version}");
    let vector_version: String = sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(vector_version.starts_with("0.8."), "pgvector 0.8 expected, got {vector_version}");

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for table in [
        "api_keys",
        "customer_agents",
        "customer_quotas",
        "customers",
        "document_blobs",
        "document_chunks",
        "embedding_tasks",
        "knowledge_documents",
        "usage_daily",
    ] {
        assert!(tables.iter().any(|t| t == table), "table {table} is missing from {tables:?}");
        let comment: Option<String> = sqlx::query_scalar("SELECT obj_description(($1)::regclass, 'pg_class')")
            .bind(table)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(comment.is_some_and(|c| c.len() > 20), "table {table} has no explanatory comment");
    }

    let indexes: Vec<String> = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let has = |needle: &str| indexes.iter().any(|d| d.contains(needle));
    // No vector index over all customers (migration 0008): the operator builds one per large
    // customer (tests/tests/documents.rs, a_customers_own_index_...).
    assert!(!has("USING hnsw"), "a global HNSW index is back: {indexes:#?}");
    assert!(has("USING gin (content_tsv)"), "GIN tsvector index missing");
    assert!(has("document_chunks USING btree (customer_id)"), "customer_id btree on chunks missing");
}

#[tokio::test]
async fn create_extension_vector_works_on_an_empty_database() {
    let db = shared_postgres().empty_database().await.unwrap();
    sqlx::query("CREATE EXTENSION vector").execute(&db.pool).await.expect("CREATE EXTENSION vector");
    let distance: f64 =
        sqlx::query_scalar("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector").fetch_one(&db.pool).await.unwrap();
    assert!((distance - 1.0).abs() < 1e-9, "orthogonal vectors have cosine distance 1, got {distance}");
}

#[tokio::test]
async fn concurrent_migrations_apply_each_version_once() {
    let db = shared_postgres().empty_database().await.unwrap();
    let mut runs = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        runs.push(tokio::spawn(async move {
            let pool = prospector_store::connect(&url, 2).await?;
            prospector_store::migrate(&pool).await
        }));
    }
    for run in runs {
        run.await.unwrap().expect("every concurrent run succeeds");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&db.pool).await.unwrap();
    assert_eq!(rows as usize, embedded_versions().len());
    // And running again is a no-op.
    prospector_store::migrate(&db.pool).await.unwrap();
    assert_eq!(prospector_store::applied_migrations(&db.pool).await.unwrap(), embedded_versions());
}

async fn customer(pool: &PgPool, name: &str) -> i64 {
    upsert_customer(
        pool,
        &CustomerRecord {
            k8s_uid: Uuid::new_v4(),
            name: name.into(),
            company_name: format!("{name} Corp"),
            email: format!("{name}@example.com"),
            subscription_tier: "starter".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Limits small enough for a test to reach: 2 agents, 3 replicas, 1,000 bytes, 100 documents,
/// 1,000 API calls a day, $100 a month.
fn small_limits() -> QuotaLimits {
    QuotaLimits {
        max_api_calls_per_day: 1000,
        max_api_calls_per_month: 30000,
        rate_limit_per_second: 10,
        rate_limit_per_minute: 100,
        max_agents: 2,
        max_concurrent_agents: 3,
        max_storage_bytes: 1000,
        max_documents: 100,
        max_leads_per_month: 1000,
        max_cost_per_month_usd: 100.0,
    }
}

#[tokio::test]
async fn the_quota_guard_refuses_growth_past_a_limit_but_allows_downgrades() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let id = customer(&db.pool, "guard").await;
    sqlx::query(
        "INSERT INTO customer_quotas (customer_id, max_api_calls_per_day, max_api_calls_per_month,
            rate_limit_per_second, rate_limit_per_minute, max_agents, max_concurrent_agents,
            max_storage_bytes, max_documents, max_leads_per_month, max_cost_per_month_usd)
         VALUES ($1, 1000, 30000, 10, 100, 2, 3, 1000000, 100, 1000, 100)",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
    let grow = "UPDATE customer_quotas SET active_agents_count = active_agents_count + 1 WHERE customer_id = $1";
    sqlx::query(grow).bind(id).execute(&db.pool).await.unwrap();
    sqlx::query(grow).bind(id).execute(&db.pool).await.unwrap();
    let err = sqlx::query(grow).bind(id).execute(&db.pool).await.expect_err("a third agent exceeds max_agents = 2");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "check_violation expected: {err}");

    // A tier downgrade may lower the limit below usage; counters may then only shrink.
    sqlx::query("UPDATE customer_quotas SET max_agents = 1 WHERE customer_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE customer_quotas SET active_agents_count = active_agents_count - 1 WHERE customer_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let err = sqlx::query("UPDATE customer_quotas SET active_agents_count = -1 WHERE customer_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .expect_err("counters are never negative");
    assert!(err.to_string().contains("customer_quotas_counters_nonneg"), "{err}");
}

#[tokio::test]
async fn a_customer_has_one_active_key_and_a_rotated_key_never_comes_back() {
    use prospector_store::api_keys::{self, KeyActivation, activate_key, key_owner, rotate_key};
    let db = shared_postgres().migrated_database().await.unwrap();
    let id = customer(&db.pool, "keys").await;
    let owner = |key: String| {
        let pool = db.pool.clone();
        async move { key_owner(&pool, &api_keys::sha256(&key)).await.unwrap().map(|o| o.customer_id) }
    };

    let first = api_keys::generate();
    assert_eq!(activate_key(&db.pool, id, &first).await.unwrap(), KeyActivation::Active);
    assert_eq!(activate_key(&db.pool, id, &first).await.unwrap(), KeyActivation::Active, "replays are no-ops");
    assert_eq!(owner(first.clone()).await, Some(id));

    // The Secret deleted and made anew: its new key revokes the old one.
    let second = api_keys::generate();
    activate_key(&db.pool, id, &second).await.unwrap();
    assert_eq!(owner(first.clone()).await, None);
    assert_eq!(owner(second.clone()).await, Some(id));

    // A rotation revokes the old key even if no reconcile had registered it.
    let unregistered = api_keys::generate();
    let third = api_keys::generate();
    assert_eq!(rotate_key(&db.pool, id, Some(&unregistered), &third).await.unwrap(), KeyActivation::Active);
    assert_eq!(owner(second.clone()).await, None);
    assert_eq!(owner(third.clone()).await, Some(id));
    assert_eq!(api_keys::active_key_hashes(&db.pool, id).await.unwrap(), vec![api_keys::sha256(&third).to_vec()]);

    // A reconcile that read the Secret before the rotation cannot bring either old key back.
    assert_eq!(activate_key(&db.pool, id, &unregistered).await.unwrap(), KeyActivation::Stale);
    assert_eq!(activate_key(&db.pool, id, &second).await.unwrap(), KeyActivation::Stale);
    assert_eq!(owner(third.clone()).await, Some(id));

    // Two rotations racing: both keys are recorded first; the one that completes revokes what
    // came before it, and the other then finds its key revoked (Stale) and changes nothing.
    let (racing_a, racing_b) = (api_keys::generate(), api_keys::generate());
    api_keys::add_key(&db.pool, id, &racing_a).await.unwrap();
    api_keys::add_key(&db.pool, id, &racing_b).await.unwrap();
    // A reconcile that read the Secret before (holding `third`) revokes nothing newer.
    assert_eq!(activate_key(&db.pool, id, &third).await.unwrap(), KeyActivation::Active);
    assert_eq!(owner(racing_a.clone()).await, Some(id));
    assert_eq!(rotate_key(&db.pool, id, Some(&third), &racing_b).await.unwrap(), KeyActivation::Active);
    assert_eq!(rotate_key(&db.pool, id, Some(&third), &racing_a).await.unwrap(), KeyActivation::Stale);
    assert_eq!(api_keys::active_key_hashes(&db.pool, id).await.unwrap(), vec![api_keys::sha256(&racing_b).to_vec()]);
    let third = racing_b;

    // Suspension travels with the owner; a deleted customer's key finds nobody.
    sqlx::query("UPDATE customers SET status = 'suspended' WHERE id = $1").bind(id).execute(&db.pool).await.unwrap();
    assert!(key_owner(&db.pool, &api_keys::sha256(&third)).await.unwrap().unwrap().suspended);
    sqlx::query("UPDATE customers SET status = 'deleted', deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(owner(third.clone()).await, None);
    assert!(matches!(activate_key(&db.pool, id, &third).await, Err(prospector_store::StoreError::Gone)));
}

#[tokio::test]
async fn uploads_racing_the_storage_limit_end_exactly_at_it_and_leave_nothing_when_refused() {
    use prospector_store::documents::{Upload, UploadReservation, cancel_upload, reserve_upload};
    use sha2::{Digest, Sha256};
    let db = shared_postgres().migrated_database().await.unwrap();
    let id = customer(&db.pool, "uploads").await;
    let limits = small_limits();
    set_quota_limits(&db.pool, id, &limits).await.unwrap();
    // 20 uploads of 100 distinct bytes at once against 1,000 bytes of storage.
    let uploads = (0..20).map(|i| {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let content = format!("{i:0>100}").into_bytes();
            let sha256: [u8; 32] = Sha256::digest(&content).into();
            let placeholder = Uuid::new_v4();
            let document_id = format!("doc_{:016x}", i + 1);
            let name = format!("upload-{i}");
            let upload = Upload {
                customer_id: id,
                placeholder_uid: placeholder,
                document_id: &document_id,
                namespace: "cust-uploads",
                name: &name,
                filename: "x.txt",
                content_type: "text/plain",
                sha256: &sha256,
                content: &content,
                tags: &[],
            };
            (reserve_upload(&pool, &upload).await.unwrap(), placeholder)
        })
    });
    let mut reserved = Vec::new();
    for upload in uploads {
        let (outcome, placeholder) = upload.await.unwrap();
        match outcome {
            UploadReservation::Reserved => reserved.push(placeholder),
            UploadReservation::Refused(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reserved.len(), 10, "exactly what fits");
    let usage = || async {
        let row: (i64, i32, i64, i64) = sqlx::query_as(
            "SELECT q.storage_used_bytes, q.documents_count,
                    (SELECT count(*) FROM knowledge_documents WHERE customer_id = $1),
                    (SELECT count(*) FROM document_blobs WHERE customer_id = $1)
               FROM customer_quotas q WHERE q.customer_id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        row
    };
    assert_eq!(usage().await, (1000, 10, 10, 10), "refused uploads store no row and no bytes");
    // An upload whose object never came is given back exactly once.
    assert!(cancel_upload(&db.pool, reserved[0]).await.unwrap());
    assert!(!cancel_upload(&db.pool, reserved[0]).await.unwrap());
    assert_eq!(usage().await, (900, 9, 9, 9));
}

#[tokio::test]
async fn customers_near_limits_are_counted_per_quota_by_the_database() {
    use chrono::NaiveDate;
    use prospector_store::customers::{NEAR_LIMIT_QUOTAS, add_api_calls, customers_near_limits};
    let db = shared_postgres().migrated_database().await.unwrap();
    let limits = QuotaLimits { max_concurrent_agents: 4, max_documents: 0, ..small_limits() };
    let (today, month_start) =
        (NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    let last_month = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
    let mut ids = Vec::new();
    for name in ["full", "busy", "spender", "gone"] {
        let id = customer(&db.pool, name).await;
        set_quota_limits(&db.pool, id, &limits).await.unwrap();
        ids.push(id);
    }
    let set = |sql: &'static str, id: i64| {
        let pool = db.pool.clone();
        async move { sqlx::query(sql).bind(id).execute(&pool).await.unwrap() }
    };
    // full: 2 of 2 agents, 3 of 4 replicas (75%).
    set("UPDATE customer_quotas SET active_agents_count = 2, active_replicas = 3 WHERE customer_id = $1", ids[0]).await;
    // busy: 950 of 1,000 API calls today, 1 of 2 agents; yesterday's calls do not count.
    add_api_calls(&db.pool, ids[1], today, 950).await.unwrap();
    add_api_calls(&db.pool, ids[1], today.pred_opt().unwrap(), 1000).await.unwrap();
    set("UPDATE customer_quotas SET active_agents_count = 1 WHERE customer_id = $1", ids[1]).await;
    // spender: $95 this month of $100; last month's $80 does not count.
    for (day, cost) in [(month_start, 45.0), (today, 50.0), (last_month, 80.0)] {
        sqlx::query("INSERT INTO usage_daily (customer_id, day, cost_usd) VALUES ($1, $2, $3)")
            .bind(ids[2])
            .bind(day)
            .bind(cost)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    // gone: at every limit, but deleted.
    set("UPDATE customer_quotas SET active_agents_count = 2, storage_used_bytes = 1000 WHERE customer_id = $1", ids[3])
        .await;
    set("UPDATE customers SET status = 'deleted', deleted_at = now() WHERE id = $1", ids[3]).await;

    let counts: std::collections::BTreeMap<String, i64> =
        customers_near_limits(&db.pool, 0.9, today, month_start).await.unwrap().into_iter().collect();
    assert_eq!(counts.len(), NEAR_LIMIT_QUOTAS.len(), "every quota is reported, zero or not");
    let expected = [
        ("agents", 1),
        ("concurrent_agents", 0),
        ("documents", 0), // a limit of 0 counts nobody
        ("storage", 0),
        ("api_calls_today", 1),
        ("cost_this_month", 1),
    ];
    assert_eq!(counts, expected.into_iter().map(|(q, n)| (q.to_owned(), n)).collect());
    // At 50%, the busy customer's one agent of two counts too, and the 3 of 4 replicas.
    let half: std::collections::BTreeMap<String, i64> =
        customers_near_limits(&db.pool, 0.5, today, month_start).await.unwrap().into_iter().collect();
    assert_eq!((half["agents"], half["concurrent_agents"]), (2, 1));
}

/// Partition-ready: a table partitioned by customer can only hold unique keys that include the
/// customer, and every key of `document_chunks` but the surrogate id leads with it.
#[tokio::test]
async fn the_chunks_unique_keys_lead_with_the_customer() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = 'document_chunks'::regclass AND contype = 'u'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!keys.is_empty(), "the re-indexing key exists");
    for (name, definition) in keys {
        assert!(definition.starts_with("UNIQUE (customer_id, "), "{name}: {definition}");
    }
}

/// The partition count is chosen on an empty table, kept when asked again, and never changed
/// under rows or after the fact: each refusal says why.
#[tokio::test]
async fn chunk_partitions_are_chosen_on_an_empty_table_and_then_kept() {
    use prospector_store::chunks::NewChunk;
    use prospector_store::partitions::{ChunkLayout, chunk_layout, set_chunk_partitions};
    let refused = |e: prospector_store::StoreError| e.to_string();

    let db = shared_postgres().migrated_database().await.unwrap();
    assert_eq!(chunk_layout(&db.pool).await.unwrap(), ChunkLayout::Plain);
    assert_eq!(set_chunk_partitions(&db.pool, 1).await.unwrap(), ChunkLayout::Plain);
    assert!(refused(set_chunk_partitions(&db.pool, 0).await.unwrap_err()).contains("1 to 1024"));
    assert_eq!(set_chunk_partitions(&db.pool, 8).await.unwrap(), ChunkLayout::Partitioned(8));
    assert_eq!(set_chunk_partitions(&db.pool, 8).await.unwrap(), ChunkLayout::Partitioned(8), "idempotent");
    assert!(refused(set_chunk_partitions(&db.pool, 4).await.unwrap_err()).contains("has 8 partitions, not 4"));
    assert!(refused(set_chunk_partitions(&db.pool, 1).await.unwrap_err()).contains("has 8 partitions, not 1"));
    // The partitioned table is the migrations' table: comment, checks, vector storage, identity.
    let (comment, checks, storage, identity): (Option<String>, i64, String, String) = sqlx::query_as(
        "SELECT obj_description('document_chunks'::regclass, 'pg_class'),
                (SELECT count(*) FROM pg_constraint WHERE conrelid = 'document_chunks'::regclass AND contype = 'c'),
                (SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding'),
                (SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'document_chunks'::regclass AND attname = 'id')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(comment.is_some_and(|c| !c.is_empty()), "the table's comment is kept");
    assert!(checks >= 3, "the CHECK constraints are kept: {checks}");
    assert_eq!((storage.as_str(), identity.as_str()), ("p", "a"), "vectors inline, ids generated always");

    // Customers' chunks land in the partitions, each customer's in one.
    let chunk = |i: i32| NewChunk {
        chunk_index: i,
        content: format!("chunk {i}"),
        token_count: 3,
        embedding: (0..384).map(|d| if d == i as usize { 1.0 } else { 0.0 }).collect(),
    };
    for name in ["p1", "p2", "p3", "p4", "p5", "p6"] {
        let id = customer(&db.pool, name).await;
        set_quota_limits(&db.pool, id, &small_limits()).await.unwrap();
        prospector_tests::synthetic::commit_document(&db.pool, id, "cust-x", name, vec![chunk(0), chunk(1)]).await;
    }
    let (partitions_used, most_per_customer): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT tableoid) FROM document_chunks),
                (SELECT max(n) FROM (SELECT count(DISTINCT tableoid) n FROM document_chunks GROUP BY customer_id) x)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(partitions_used > 1, "six customers in one partition of eight");
    assert_eq!(most_per_customer, 1, "a customer's chunks share one partition");

    // A one-table database with chunks keeps its layout.
    let used = shared_postgres().migrated_database().await.unwrap();
    let id = customer(&used.pool, "used").await;
    set_quota_limits(&used.pool, id, &small_limits()).await.unwrap();
    prospector_tests::synthetic::commit_document(&used.pool, id, "cust-used", "d", vec![chunk(0)]).await;
    assert!(refused(set_chunk_partitions(&used.pool, 4).await.unwrap_err()).contains("holds rows"));
    assert_eq!(chunk_layout(&used.pool).await.unwrap(), ChunkLayout::Plain);
}

/// An agent of `customer_id` created at `created_at` (admission order), with one replica.
async fn agent_row(pool: &PgPool, customer_id: i64, name: &str, created_at: chrono::DateTime<chrono::Utc>) -> i64 {
    use prospector_store::agents::{AgentRecord, upsert_agent};
    let record = AgentRecord {
        k8s_uid: Uuid::new_v4(),
        customer_id,
        namespace: "cust-order".into(),
        name: name.into(),
        agent_name: name.into(),
        agent_type: prospector_crds::AgentType::LeadQualifier,
        model: "llama3.1-8b".into(),
        config: serde_json::json!({}),
        replicas: 1,
        deployment_id: format!("agent_{customer_id}_{}", &Uuid::new_v4().simple().to_string()[..8]),
        created_at,
    };
    let month_start = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    upsert_agent(pool, &record, month_start).await.unwrap().row.id
}

#[tokio::test]
async fn an_undecided_older_agent_does_not_refuse_a_younger_one_but_a_waiting_one_does() {
    use prospector_store::agents::{Admission, reserve_agent_quota};
    let db = shared_postgres().migrated_database().await.unwrap();
    let pool = &db.pool;
    let id = customer(pool, "order").await;
    set_quota_limits(pool, id, &small_limits()).await.unwrap();
    let month = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let t0 = chrono::Utc::now();
    let at = |seconds: i64| t0 + chrono::Duration::seconds(seconds);
    let admitted = |a: &Admission| matches!(a, Admission::Admitted { .. });

    // A burst: the older agent's row exists but its reservation has not run yet. The younger
    // one's reservation runs first and is admitted: nobody is waiting.
    let older = agent_row(pool, id, "older", at(0)).await;
    let younger = agent_row(pool, id, "younger", at(1)).await;
    assert!(admitted(&reserve_agent_quota(pool, id, younger, 1, month).await.unwrap().admission));
    assert!(admitted(&reserve_agent_quota(pool, id, older, 1, month).await.unwrap().admission));

    // Full (2 agents): a third is refused and waits. When a slot frees, a fourth created later
    // cannot take it ahead of the waiting third.
    let third = agent_row(pool, id, "third", at(2)).await;
    assert!(!admitted(&reserve_agent_quota(pool, id, third, 1, month).await.unwrap().admission));
    prospector_store::agents::release_agent(pool, agent_uid(pool, older).await).await.unwrap();
    let fourth = agent_row(pool, id, "fourth", at(3)).await;
    assert!(!admitted(&reserve_agent_quota(pool, id, fourth, 1, month).await.unwrap().admission));
    assert!(admitted(&reserve_agent_quota(pool, id, third, 1, month).await.unwrap().admission));
}

async fn agent_uid(pool: &PgPool, agent_id: i64) -> Uuid {
    sqlx::query_scalar("SELECT k8s_uid FROM customer_agents WHERE id = $1")
        .bind(agent_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The agent upsert writes nothing when nothing changed (a reconcile of a running agent must not
/// cost a row version and a WAL flush), reads back what the shortcuts in the operator rely on
/// (`holds`, `records`), and the month's spending against the cap.
#[tokio::test]
async fn an_unchanged_agent_upsert_writes_nothing_and_reads_back_what_admission_needs() {
    use prospector_crds::AgentPhase;
    use prospector_store::agents::{
        AgentRecord, UsageReport, record_usage, reserve_agent_quota, set_agent_status, upsert_agent,
    };
    let db = shared_postgres().migrated_database().await.unwrap();
    let pool = &db.pool;
    let id = customer(pool, "upsert").await;
    set_quota_limits(pool, id, &small_limits()).await.unwrap();
    let month = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let mut record = AgentRecord {
        k8s_uid: Uuid::new_v4(),
        customer_id: id,
        namespace: "cust-upsert".into(),
        name: "closer".into(),
        agent_name: "closer".into(),
        agent_type: prospector_crds::AgentType::LeadQualifier,
        model: "llama3.1-8b".into(),
        config: serde_json::json!({"tone": "warm"}),
        replicas: 1,
        deployment_id: format!("agent_{id}_0a0b0c0d"),
        created_at: chrono::Utc::now(),
    };
    let row_version = |agent_id: i64| async move {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM customer_agents WHERE id = $1")
            .bind(agent_id)
            .fetch_one(pool)
            .await
            .unwrap()
    };

    let first = upsert_agent(pool, &record, month).await.unwrap();
    let agent_id = first.row.id;
    assert_eq!(first.row.status, "pending");
    assert!(!first.row.admitted && !first.row.holds(1), "{first:?}");
    assert_eq!((first.cost_this_month_usd, first.max_cost_per_month_usd), (0.0, Some(100.0)));
    let version = row_version(agent_id).await;

    // The same record again: the same row, not written.
    let again = upsert_agent(pool, &record, month).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(row_version(agent_id).await, version, "an unchanged upsert wrote a new row version");

    // A changed spec is written, and the row read back is the updated one.
    record.replicas = 2;
    record.config = serde_json::json!({"tone": "formal"});
    let changed = upsert_agent(pool, &record, month).await.unwrap();
    assert_eq!(changed.row.id, agent_id);
    assert_ne!(row_version(agent_id).await, version, "a changed spec was not written");
    let (replicas, config): (i32, serde_json::Value) =
        sqlx::query_as("SELECT replicas, config FROM customer_agents WHERE id = $1")
            .bind(agent_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((replicas, config), (2, serde_json::json!({"tone": "formal"})));

    // Admitted with 2 replicas: it holds 2, not 1 or 3.
    reserve_agent_quota(pool, id, agent_id, 2, month).await.unwrap();
    let admitted = upsert_agent(pool, &record, month).await.unwrap().row;
    assert!(admitted.holds(2) && !admitted.holds(1) && !admitted.holds(3), "{admitted:?}");
    // A refused scale-up: it still holds 2, but its refusal must be cleared by a reservation.
    reserve_agent_quota(pool, id, agent_id, 5, month).await.unwrap();
    assert!(!upsert_agent(pool, &record, month).await.unwrap().row.holds(2));

    // Every phase reads back as recorded (the column's spelling is the sqlx mapping's).
    for phase in [
        AgentPhase::Deployed,
        AgentPhase::Running,
        AgentPhase::Suspended,
        AgentPhase::QuotaExceeded,
        AgentPhase::Failed,
        AgentPhase::Terminating,
        AgentPhase::Pending,
    ] {
        set_agent_status(pool, agent_id, phase, true, chrono::Utc::now()).await.unwrap();
        let row = upsert_agent(pool, &record, month).await.unwrap().row;
        assert!(row.records(phase, true), "{phase:?} read back as {:?}", row.status);
        assert!(!row.records(AgentPhase::Deployed, true) || phase == AgentPhase::Deployed, "{phase:?}");
    }

    // Spending this month (and not before it) and what the agent reported.
    let report = UsageReport { tasks: 3, completed_tasks: 2, cost_usd: 40.0, ..Default::default() };
    let deployment_id = record.deployment_id.clone();
    record_usage(pool, &deployment_id, &report, month).await.unwrap();
    record_usage(pool, &deployment_id, &report, month + chrono::Duration::days(3)).await.unwrap();
    record_usage(pool, &deployment_id, &report, month - chrono::Duration::days(1)).await.unwrap();
    let read = upsert_agent(pool, &record, month).await.unwrap();
    assert_eq!((read.cost_this_month_usd, read.max_cost_per_month_usd), (80.0, Some(100.0)));
    assert_eq!((read.performance.total_tasks, read.performance.completed_tasks), (9, 6));
    assert!((read.performance.total_cost_usd - 120.0).abs() < 1e-9, "{:?}", read.performance);

    // A released agent's row reads back terminated: it holds nothing and records everything
    // (the statements the shortcuts skip would change nothing), and an upsert does not revive it.
    prospector_store::agents::release_agent(pool, record.k8s_uid).await.unwrap();
    let released = upsert_agent(pool, &record, month).await.unwrap().row;
    assert!(released.terminated_at.is_some() && !released.admitted, "{released:?}");
    assert!(!released.holds(0) && !released.holds(2), "{released:?}");
    assert!(released.records(AgentPhase::Running, true), "{released:?}");
    assert_eq!(released.id, agent_id);
}

/// A customer's upsert runs on every usage refresh: an unchanged row is not written, a change
/// is, and the id stays the same either way.
#[tokio::test]
async fn an_unchanged_customer_upsert_writes_nothing() {
    let db = shared_postgres().migrated_database().await.unwrap();
    let pool = &db.pool;
    let mut record = CustomerRecord {
        k8s_uid: Uuid::new_v4(),
        name: "steady".into(),
        company_name: "Steady Corp".into(),
        email: "steady@example.com".into(),
        subscription_tier: "starter".into(),
        industry: Some("logistics".into()),
        ..Default::default()
    };
    let uid = record.k8s_uid;
    let row_version = move || async move {
        sqlx::query_as::<_, (String, String)>("SELECT xmin::text, status FROM customers WHERE k8s_uid = $1")
            .bind(uid)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let id = upsert_customer(pool, &record).await.unwrap();
    let (version, status) = row_version().await;
    assert_eq!(status, "active");
    assert_eq!(upsert_customer(pool, &record).await.unwrap(), id);
    assert_eq!(row_version().await, (version.clone(), status), "an unchanged upsert wrote a new row version");

    let mut suspended = record.clone();
    suspended.suspended = true;
    suspended.industry = None;
    assert_eq!(upsert_customer(pool, &suspended).await.unwrap(), id);
    let (changed, status) = row_version().await;
    assert_ne!(changed, version, "a change was not written");
    assert_eq!(status, "suspended");
    let industry: Option<String> =
        sqlx::query_scalar("SELECT industry FROM customers WHERE id = $1").bind(id).fetch_one(pool).await.unwrap();
    assert_eq!(industry, None);
    record.company_name = "Steady Holdings".into();
    assert_eq!(upsert_customer(pool, &record).await.unwrap(), id);
    assert_eq!(row_version().await.1, "active");

    // A late reconcile of a deleted customer keeps it deleted.
    prospector_store::customers::purge_customer(pool, uid).await.unwrap();
    let deleted = row_version().await;
    assert_eq!(deleted.1, "deleted");
    assert_eq!(upsert_customer(pool, &record).await.unwrap(), id);
    assert_eq!(row_version().await, deleted);
    record.suspended = true;
    assert_eq!(upsert_customer(pool, &record).await.unwrap(), id);
    assert_eq!(row_version().await.1, "deleted");
}
