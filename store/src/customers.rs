//! The customer side of Postgres: the `customers` row of a Customer object (keyed by UID), its
//! quota snapshot in `customer_quotas`, its API keys, its usage, and the purge on deletion.

use chrono::NaiveDate;
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// The fields of a Customer that Postgres mirrors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerRecord {
    pub k8s_uid: Uuid,
    pub name: String,
    pub company_name: String,
    pub email: String,
    pub subscription_tier: String,
    pub contact_name: Option<String>,
    pub contact_title: Option<String>,
    pub company_website: Option<String>,
    pub company_size: Option<String>,
    pub industry: Option<String>,
    pub suspended: bool,
}

/// Inserts or updates the customer row of a Customer object and returns its id
/// (`status.customerId`). Replaying it after a crash returns the same id. Fails with
/// [`StoreError::EmailInUse`] when another live customer has the same e-mail address.
pub async fn upsert_customer(pool: &PgPool, customer: &CustomerRecord) -> Result<i64, StoreError> {
    // Every usage refresh reconciles the customer; an unchanged row is not written (no row
    // version, no WAL flush). The status is worked out from the row `changed` locks (a
    // soft-delete committed meanwhile keeps 'deleted'), not from the statement's snapshot.
    let statement = "WITH existing AS (
            SELECT id FROM customers WHERE k8s_uid = $1),
         changed AS (
            UPDATE customers c
               SET company_name = $3, subscription_tier = $5,
                   status = CASE WHEN c.deleted_at IS NOT NULL THEN c.status WHEN $6 THEN 'suspended' ELSE 'active' END,
                   contact_name = $7, contact_title = $8, company_website = $9, company_size = $10, industry = $11
             WHERE c.k8s_uid = $1
               AND (c.company_name, c.subscription_tier, c.status, c.contact_name, c.contact_title,
                    c.company_website, c.company_size, c.industry)
                   IS DISTINCT FROM
                   ($3::text, $5::text,
                    CASE WHEN c.deleted_at IS NOT NULL THEN c.status WHEN $6 THEN 'suspended' ELSE 'active' END,
                    $7::text, $8::text, $9::text, $10::text, $11::text)
            RETURNING c.id),
         inserted AS (
            INSERT INTO customers (k8s_uid, name, company_name, email, subscription_tier, status,
                                   contact_name, contact_title, company_website, company_size, industry)
            SELECT $1, $2, $3, $4, $5, CASE WHEN $6 THEN 'suspended' ELSE 'active' END, $7, $8, $9, $10, $11
             WHERE NOT EXISTS (SELECT 1 FROM existing)
            ON CONFLICT (k8s_uid) DO NOTHING
            RETURNING id)
         SELECT id FROM existing UNION ALL SELECT id FROM inserted";
    let result = crate::one_row(move || {
        sqlx::query_scalar::<_, i64>(statement)
            .bind(customer.k8s_uid)
            .bind(&customer.name)
            .bind(&customer.company_name)
            .bind(&customer.email)
            .bind(&customer.subscription_tier)
            .bind(customer.suspended)
            .bind(&customer.contact_name)
            .bind(&customer.contact_title)
            .bind(&customer.company_website)
            .bind(&customer.company_size)
            .bind(&customer.industry)
            .fetch_all(pool)
    })
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(StoreError::Database(sqlx::Error::Database(e))) if e.constraint() == Some("customers_email_live_key") => {
            Err(StoreError::EmailInUse)
        }
        Err(e) => Err(e),
    }
}

/// The id of the live customer whose Customer object is named `name`.
pub async fn find_customer_id(pool: &PgPool, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM customers WHERE name = $1 AND deleted_at IS NULL")
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

/// A live customer as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: i64,
    /// The Customer object's name.
    pub name: String,
    pub company_name: String,
    pub email: String,
    pub subscription_tier: String,
    /// `active` or `suspended`.
    pub status: String,
    pub contact_name: Option<String>,
    pub contact_title: Option<String>,
    pub company_website: Option<String>,
    pub company_size: Option<String>,
    pub industry: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const CUSTOMER_COLUMNS: &str = "id, name, company_name, email, subscription_tier, status, contact_name, contact_title,
     company_website, company_size, industry, created_at";

/// The live customer with this id.
pub async fn customer_by_id(pool: &PgPool, id: i64) -> Result<Option<CustomerRow>, StoreError> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// The live customer whose Customer object is named `name`.
pub async fn customer_by_name(pool: &PgPool, name: &str) -> Result<Option<CustomerRow>, StoreError> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE name = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?)
}

/// Whether a live customer already uses this e-mail address (case-insensitive, as the unique
/// index compares).
pub async fn email_in_use(pool: &PgPool, email: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE lower(email) = lower($1) AND deleted_at IS NULL)",
    )
    .bind(email)
    .fetch_one(pool)
    .await?)
}

/// A customer's effective limits (its tier with the overrides applied).
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct QuotaLimits {
    pub max_api_calls_per_day: i64,
    pub max_api_calls_per_month: i64,
    pub rate_limit_per_second: i32,
    pub rate_limit_per_minute: i32,
    pub max_agents: i32,
    pub max_concurrent_agents: i32,
    pub max_storage_bytes: i64,
    pub max_documents: i32,
    pub max_leads_per_month: i64,
    pub max_cost_per_month_usd: f64,
}

/// Writes the limits snapshot the quota decisions compare against, and says whether it changed.
/// Counters are untouched: a lower limit than current usage (a downgrade) is recorded, and only
/// blocks new reservations.
pub async fn set_quota_limits(pool: &PgPool, customer_id: i64, limits: &QuotaLimits) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO customer_quotas (customer_id, max_api_calls_per_day, max_api_calls_per_month,
                rate_limit_per_second, rate_limit_per_minute, max_agents, max_concurrent_agents,
                max_storage_bytes, max_documents, max_leads_per_month, max_cost_per_month_usd)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::float8::numeric)
         ON CONFLICT (customer_id) DO UPDATE
            SET max_api_calls_per_day = EXCLUDED.max_api_calls_per_day,
                max_api_calls_per_month = EXCLUDED.max_api_calls_per_month,
                rate_limit_per_second = EXCLUDED.rate_limit_per_second,
                rate_limit_per_minute = EXCLUDED.rate_limit_per_minute,
                max_agents = EXCLUDED.max_agents,
                max_concurrent_agents = EXCLUDED.max_concurrent_agents,
                max_storage_bytes = EXCLUDED.max_storage_bytes,
                max_documents = EXCLUDED.max_documents,
                max_leads_per_month = EXCLUDED.max_leads_per_month,
                max_cost_per_month_usd = EXCLUDED.max_cost_per_month_usd
          WHERE (customer_quotas.max_api_calls_per_day, customer_quotas.max_api_calls_per_month,
                 customer_quotas.rate_limit_per_second, customer_quotas.rate_limit_per_minute,
                 customer_quotas.max_agents, customer_quotas.max_concurrent_agents,
                 customer_quotas.max_storage_bytes, customer_quotas.max_documents,
                 customer_quotas.max_leads_per_month, customer_quotas.max_cost_per_month_usd)
                IS DISTINCT FROM
                (EXCLUDED.max_api_calls_per_day, EXCLUDED.max_api_calls_per_month,
                 EXCLUDED.rate_limit_per_second, EXCLUDED.rate_limit_per_minute,
                 EXCLUDED.max_agents, EXCLUDED.max_concurrent_agents,
                 EXCLUDED.max_storage_bytes, EXCLUDED.max_documents,
                 EXCLUDED.max_leads_per_month, EXCLUDED.max_cost_per_month_usd)",
    )
    .bind(customer_id)
    .bind(limits.max_api_calls_per_day)
    .bind(limits.max_api_calls_per_month)
    .bind(limits.rate_limit_per_second)
    .bind(limits.rate_limit_per_minute)
    .bind(limits.max_agents)
    .bind(limits.max_concurrent_agents)
    .bind(limits.max_storage_bytes)
    .bind(limits.max_documents)
    .bind(limits.max_leads_per_month)
    .bind(limits.max_cost_per_month_usd)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Limits, live counters and this day's / month's usage of one customer.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct UsageSnapshot {
    pub subscription_tier: String,
    #[sqlx(flatten)]
    pub limits: QuotaLimits,
    pub active_agents: i64,
    pub active_replicas: i64,
    pub documents: i64,
    pub storage_bytes: i64,
    pub api_calls_today: i64,
    pub api_calls_this_month: i64,
    pub leads_this_month: i64,
    pub cost_this_month_usd: f64,
}

/// Reads a live customer's usage (and its tier). `today` and `month_start` come from the
/// caller's clock.
pub async fn usage_snapshot(
    pool: &PgPool,
    customer_id: i64,
    today: NaiveDate,
    month_start: NaiveDate,
) -> Result<Option<UsageSnapshot>, StoreError> {
    let snapshot = sqlx::query_as(
        "SELECT c.subscription_tier, q.max_api_calls_per_day, q.max_api_calls_per_month, q.rate_limit_per_second,
                q.rate_limit_per_minute, q.max_agents, q.max_concurrent_agents, q.max_storage_bytes,
                q.max_documents, q.max_leads_per_month, q.max_cost_per_month_usd::float8 AS max_cost_per_month_usd,
                q.active_agents_count::int8 AS active_agents, q.active_replicas::int8 AS active_replicas,
                q.documents_count::int8 AS documents, q.storage_used_bytes AS storage_bytes,
                coalesce((SELECT api_calls FROM usage_daily WHERE customer_id = $1 AND day = $2), 0)::int8
                    AS api_calls_today,
                coalesce(m.api_calls, 0)::int8 AS api_calls_this_month, coalesce(m.leads, 0)::int8 AS leads_this_month,
                coalesce(m.cost_usd, 0)::float8 AS cost_this_month_usd
           FROM customer_quotas q
           JOIN customers c ON c.id = q.customer_id AND c.deleted_at IS NULL
           LEFT JOIN LATERAL (
                SELECT sum(api_calls) AS api_calls, sum(leads) AS leads, sum(cost_usd) AS cost_usd
                  FROM usage_daily WHERE customer_id = $1 AND day >= $3) m ON true
          WHERE q.customer_id = $1",
    )
    .bind(customer_id)
    .bind(today)
    .bind(month_start)
    .fetch_optional(pool)
    .await?;
    Ok(snapshot)
}

/// The quotas [`customers_near_limits`] reports on, in its order.
pub const NEAR_LIMIT_QUOTAS: [&str; 6] =
    ["agents", "concurrent_agents", "documents", "storage", "api_calls_today", "cost_this_month"];

/// How many live customers use at least `ratio` of each quota (limits of 0 are left out): the
/// operator's alerting gauge, counted in the database so that no per-customer series exists.
pub async fn customers_near_limits(
    pool: &PgPool,
    ratio: f64,
    today: NaiveDate,
    month_start: NaiveDate,
) -> Result<Vec<(String, i64)>, StoreError> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT u.quota, count(*) FILTER (WHERE u.used >= $1 * u.quota_limit AND u.quota_limit > 0)
           FROM customer_quotas q
           JOIN customers c ON c.id = q.customer_id AND c.deleted_at IS NULL
           LEFT JOIN usage_daily d ON d.customer_id = q.customer_id AND d.day = $2
           LEFT JOIN LATERAL (
                SELECT sum(cost_usd) AS cost_usd FROM usage_daily WHERE customer_id = q.customer_id AND day >= $3) m
             ON true
           CROSS JOIN LATERAL (VALUES
                ('agents', q.active_agents_count::float8, q.max_agents::float8),
                ('concurrent_agents', q.active_replicas::float8, q.max_concurrent_agents::float8),
                ('documents', q.documents_count::float8, q.max_documents::float8),
                ('storage', q.storage_used_bytes::float8, q.max_storage_bytes::float8),
                ('api_calls_today', coalesce(d.api_calls, 0)::float8, q.max_api_calls_per_day::float8),
                ('cost_this_month', coalesce(m.cost_usd, 0)::float8, q.max_cost_per_month_usd::float8)
           ) AS u(quota, used, quota_limit)
          GROUP BY u.quota",
    )
    .bind(ratio)
    .bind(today)
    .bind(month_start)
    .fetch_all(pool)
    .await?;
    Ok(NEAR_LIMIT_QUOTAS
        .iter()
        .map(|quota| {
            let count = counts.iter().find(|(q, _)| q == quota).map_or(0, |(_, n)| *n);
            ((*quota).to_owned(), count)
        })
        .collect())
}

/// Adds `calls` API calls to the customer's row for `day` (the REST server's flush).
pub async fn add_api_calls(pool: &PgPool, customer_id: i64, day: NaiveDate, calls: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO usage_daily (customer_id, day, api_calls) VALUES ($1, $2, $3)
         ON CONFLICT (customer_id, day) DO UPDATE SET api_calls = usage_daily.api_calls + EXCLUDED.api_calls",
    )
    .bind(customer_id)
    .bind(day)
    .bind(calls)
    .execute(pool)
    .await?;
    Ok(())
}

/// What deleting a customer removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerPurge {
    pub customer_id: Option<i64>,
    pub documents: u64,
    pub blobs: u64,
    pub keys_revoked: u64,
}

/// Deletes a customer's data for good and keeps its billing rows: its documents are
/// soft-deleted (their chunks, vectors and queue entries go with them), its blobs are
/// hard-deleted, its keys revoked, its agents terminated, and the customer row soft-deleted.
/// One transaction; replaying it after a crash finds nothing left to do.
pub async fn purge_customer(pool: &PgPool, k8s_uid: Uuid) -> Result<CustomerPurge, StoreError> {
    let mut tx = pool.begin().await?;
    let customer_id: Option<i64> = sqlx::query_scalar("SELECT id FROM customers WHERE k8s_uid = $1 FOR UPDATE")
        .bind(k8s_uid)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(customer_id) = customer_id else {
        return Ok(CustomerPurge::default());
    };
    let documents = sqlx::query(
        "UPDATE knowledge_documents
            SET deleted_at = now(), blob_sha256 = NULL, extracted_text = NULL,
                quota_reserved = false, storage_reserved_bytes = 0
          WHERE customer_id = $1 AND deleted_at IS NULL",
    )
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Soft-deleted documents may still have chunks if the purge trigger is not there yet.
    sqlx::query("DELETE FROM document_chunks WHERE customer_id = $1").bind(customer_id).execute(&mut *tx).await?;
    let blobs = sqlx::query("DELETE FROM document_blobs WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "UPDATE customer_agents SET admitted = false, quota_reserved_replicas = 0,
                quota_refused = false, status = 'terminated', terminated_at = now()
          WHERE customer_id = $1 AND terminated_at IS NULL",
    )
    .bind(customer_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE customer_quotas SET active_agents_count = 0, active_replicas = 0, documents_count = 0,
                storage_used_bytes = 0
          WHERE customer_id = $1",
    )
    .bind(customer_id)
    .execute(&mut *tx)
    .await?;
    let keys_revoked =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE customer_id = $1 AND revoked_at IS NULL")
            .bind(customer_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    sqlx::query("UPDATE customers SET status = 'deleted', deleted_at = coalesce(deleted_at, now()) WHERE id = $1")
        .bind(customer_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CustomerPurge { customer_id: Some(customer_id), documents, blobs, keys_revoked })
}
