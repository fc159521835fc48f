//! The `customer_agents` table and agent admission: the atomic quota reservation that decides
//! whether an AgentDeployment may run, its exact release, and agents' usage reports.

use chrono::{DateTime, NaiveDate, Utc};
use prospector_crds::{AgentPhase, AgentType};
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// The fields of an AgentDeployment that Postgres mirrors.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRecord {
    pub k8s_uid: Uuid,
    pub customer_id: i64,
    pub namespace: String,
    pub name: String,
    pub agent_name: String,
    pub agent_type: AgentType,
    pub model: String,
    pub config: serde_json::Value,
    pub replicas: i32,
    /// `agent_<customerId>_<8 hex>`; kept from the first insert.
    pub deployment_id: String,
    /// The object's creationTimestamp: admission order.
    pub created_at: DateTime<Utc>,
}

/// The columns of an agent's row that the operator reads back.
const AGENT_ROW_COLUMNS: &str =
    "id, deployment_id, admitted, quota_reserved_replicas, quota_refused, status, deployed_at, terminated_at";

/// An agent's row as the operator needs it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AgentRow {
    pub id: i64,
    pub deployment_id: String,
    pub admitted: bool,
    pub quota_reserved_replicas: i32,
    /// Whether the last reservation was refused (see [`reserve_agent_quota`]).
    pub quota_refused: bool,
    /// The phase last recorded ([`set_agent_status`]), snake_case, or `terminated`.
    pub status: String,
    pub deployed_at: Option<DateTime<Utc>>,
    pub terminated_at: Option<DateTime<Utc>>,
}

impl AgentRow {
    /// Whether a reservation of `wanted_replicas` would change nothing: the agent was admitted,
    /// holds exactly that and was not refused since. [`reserve_agent_quota`] would be a no-op,
    /// so the caller can skip the round trip.
    pub fn holds(&self, wanted_replicas: i32) -> bool {
        self.admitted
            && !self.quota_refused
            && self.terminated_at.is_none()
            && self.quota_reserved_replicas == wanted_replicas
    }

    /// Whether [`set_agent_status`] with these arguments would change nothing.
    pub fn records(&self, phase: AgentPhase, deployed: bool) -> bool {
        self.terminated_at.is_some() || (self.status == phase.snake_case() && (!deployed || self.deployed_at.is_some()))
    }
}

/// What an agent's reconcile reads with its upsert, in the same statement: the row, what the
/// agent reported, and its customer's spending this month against the cap.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct UpsertedAgent {
    #[sqlx(flatten)]
    pub row: AgentRow,
    #[sqlx(flatten)]
    pub performance: AgentPerformanceRow,
    /// The customer's cost since the month's first day.
    pub cost_this_month_usd: f64,
    /// The customer's monthly cap; `None` while it has no quota row.
    pub max_cost_per_month_usd: Option<f64>,
}

/// What the agent reported so far.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct AgentPerformanceRow {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub average_latency_ms: Option<f64>,
    pub total_api_calls: i64,
    pub total_cost_usd: f64,
    pub last_active_at: Option<DateTime<Utc>>,
}

/// Why an agent was not admitted. Checked in this order.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The customer already has `max` agents.
    AgentLimit { used: i64, max: i64 },
    /// The agent's replicas would take the customer past `max` concurrent replicas.
    ConcurrencyLimit { used: i64, wanted: i64, max: i64 },
    /// The customer's cost this month reached the cap.
    CostCap { cost: f64, cap: f64 },
    /// Older agents of the customer wait for the same capacity; they are admitted first.
    QueuedBehindOlder { waiting: i64 },
    /// The agent's row is gone (terminated) or the customer has no quota row yet.
    NotFound,
}

/// A reservation's decision, and whether it flipped the agent's `quota_refused` flag (which
/// its customer's QuotaExceeded condition counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Reservation {
    pub admission: Admission,
    pub refused_changed: bool,
}

/// The outcome of a reservation.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// The agent holds one agent slot and `replicas` concurrent replicas.
    Admitted {
        replicas: i32,
    },
    Refused(Refusal),
}

/// [`upsert_agent`]'s statement, built once: it runs on every agent reconcile.
static UPSERT_AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // `existing` sees the row as it was before `changed`'s update (one snapshot for the whole
    // statement), so the row is read from `changed` when that updated it.
    let columns = format!(
        "{AGENT_ROW_COLUMNS}, total_tasks, completed_tasks, failed_tasks, average_latency_ms, total_api_calls, \
         total_cost_usd, last_active_at"
    );
    format!(
        "WITH existing AS (
            SELECT {columns} FROM customer_agents WHERE k8s_uid = $1),
         changed AS (
            UPDATE customer_agents
               SET agent_name = $5, agent_type = $6, model = $7, config = $8, replicas = $9
             WHERE k8s_uid = $1
               AND (agent_name, agent_type, model, config, replicas)
                   IS DISTINCT FROM ($5::text, $6::text, $7::text, $8::jsonb, $9::int4)
            RETURNING {columns}),
         inserted AS (
            INSERT INTO customer_agents
                (k8s_uid, customer_id, namespace, name, agent_name, agent_type, model, config, replicas, deployment_id,
                 created_at)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
             WHERE NOT EXISTS (SELECT 1 FROM existing)
            ON CONFLICT (k8s_uid) DO NOTHING
            RETURNING {columns}),
         agent AS (
            SELECT * FROM changed
            UNION ALL SELECT * FROM inserted
            UNION ALL SELECT * FROM existing WHERE NOT EXISTS (SELECT 1 FROM changed))
         SELECT {AGENT_ROW_COLUMNS}, total_tasks, completed_tasks, failed_tasks, average_latency_ms, total_api_calls,
                total_cost_usd::float8 AS total_cost_usd, last_active_at,
                (SELECT coalesce(sum(u.cost_usd), 0)::float8 FROM usage_daily u
                  WHERE u.customer_id = $2 AND u.day >= $12) AS cost_this_month_usd,
                (SELECT q.max_cost_per_month_usd::float8 FROM customer_quotas q WHERE q.customer_id = $2)
                    AS max_cost_per_month_usd
           FROM agent"
    )
});

/// Inserts the row of an AgentDeployment, or updates its spec fields (a changed `agentType`
/// included); the id, deployment id and admission order of an existing row are kept, so a
/// replayed reconcile changes nothing. An unchanged row is not written at all: most reconciles
/// of a running agent change nothing, and a write (a new row version, a WAL flush) per
/// reconcile is what loaded Postgres at scale. The same statement reads what the agent reported
/// and its customer's spending this month (`month_start` on).
pub async fn upsert_agent(
    pool: &PgPool,
    agent: &AgentRecord,
    month_start: NaiveDate,
) -> Result<UpsertedAgent, StoreError> {
    let statement = UPSERT_AGENT.as_str();
    crate::one_row(move || {
        sqlx::query_as(statement)
            .bind(agent.k8s_uid)
            .bind(agent.customer_id)
            .bind(&agent.namespace)
            .bind(&agent.name)
            .bind(&agent.agent_name)
            .bind(agent.agent_type)
            .bind(&agent.model)
            .bind(&agent.config)
            .bind(agent.replicas)
            .bind(&agent.deployment_id)
            .bind(agent.created_at)
            .bind(month_start)
            .fetch_all(pool)
    })
    .await
}

/// Finds an agent's row by its object's UID.
pub async fn find_agent(pool: &PgPool, k8s_uid: Uuid) -> Result<Option<AgentRow>, StoreError> {
    let statement = format!("SELECT {AGENT_ROW_COLUMNS} FROM customer_agents WHERE k8s_uid = $1");
    let row = sqlx::query_as(&statement).bind(k8s_uid).fetch_optional(pool).await?;
    Ok(row)
}

/// Reserves (or resizes) an agent's quota to `wanted_replicas`, in one statement.
///
/// The UPDATE of `customer_quotas` is the decision: it only matches when the agent slot, the
/// concurrent replicas and the month's cost all fit, and Postgres re-checks that condition
/// against the latest row after waiting for any concurrent reservation of the same customer. A
/// first admission also waits for older agents of the customer that were refused and could fit
/// the limits, so freed capacity goes to waiting agents in creation order. An older agent not yet
/// decided on is not waiting: counting it would refuse a burst's agents for a moment each,
/// whenever a younger one's reservation ran before an older one's. Reserving what the agent already
/// holds is a no-op; shrinking always succeeds. The agent's `quota_refused` flag records the
/// decision.
pub async fn reserve_agent_quota(
    pool: &PgPool,
    customer_id: i64,
    agent_id: i64,
    wanted_replicas: i32,
    month_start: NaiveDate,
) -> Result<Reservation, StoreError> {
    let admitted: Option<bool> = sqlx::query_scalar(
        "WITH me AS (
            SELECT id, admitted, quota_reserved_replicas AS held, created_at, quota_refused AS was_refused
              FROM customer_agents
             WHERE id = $2 AND customer_id = $1 AND terminated_at IS NULL
             FOR UPDATE),
         delta AS (
            SELECT CASE WHEN me.admitted THEN 0 ELSE 1 END AS agents, $3 - me.held AS replicas, me.created_at, me.id
              FROM me),
         q AS (
            UPDATE customer_quotas q
               SET active_agents_count = q.active_agents_count + delta.agents,
                   active_replicas = q.active_replicas + delta.replicas
              FROM delta
             WHERE q.customer_id = $1
               AND (delta.agents <= 0 OR q.active_agents_count + delta.agents <= q.max_agents)
               AND (delta.replicas <= 0 OR q.active_replicas + delta.replicas <= q.max_concurrent_agents)
               AND (delta.replicas <= 0 OR
                    (SELECT coalesce(sum(u.cost_usd), 0) FROM usage_daily u
                      WHERE u.customer_id = $1 AND u.day >= $4) < q.max_cost_per_month_usd)
               AND (delta.agents <= 0 OR NOT EXISTS (
                    SELECT 1 FROM customer_agents w
                     WHERE w.customer_id = $1 AND NOT w.admitted AND w.terminated_at IS NULL
                       AND w.quota_refused
                       AND (w.created_at, w.id) < (delta.created_at, delta.id)
                       AND w.replicas <= q.max_concurrent_agents))
            RETURNING q.active_agents_count, q.active_replicas)
         UPDATE customer_agents a
            SET admitted = true, quota_reserved_replicas = $3, quota_refused = false
           FROM q, me
          WHERE a.id = $2 AND a.customer_id = $1
         RETURNING me.was_refused",
    )
    .bind(customer_id)
    .bind(agent_id)
    .bind(wanted_replicas)
    .bind(month_start)
    .fetch_optional(pool)
    .await?;
    if let Some(was_refused) = admitted {
        let admission = Admission::Admitted { replicas: wanted_replicas };
        return Ok(Reservation { admission, refused_changed: was_refused });
    }
    let newly_refused = sqlx::query(
        "UPDATE customer_agents SET quota_refused = true
          WHERE id = $2 AND customer_id = $1 AND terminated_at IS NULL AND NOT quota_refused",
    )
    .bind(customer_id)
    .bind(agent_id)
    .execute(pool)
    .await?
    .rows_affected();
    let refusal = explain_refusal(pool, customer_id, agent_id, wanted_replicas, month_start).await?;
    Ok(Reservation { admission: Admission::Refused(refusal), refused_changed: newly_refused > 0 })
}

/// What [`explain_refusal`] reads: the agent's hold, the customer's counters and limits.
#[derive(sqlx::FromRow)]
struct RefusalFacts {
    admitted: bool,
    quota_reserved_replicas: i32,
    active_agents_count: i32,
    max_agents: i32,
    active_replicas: i32,
    max_concurrent_agents: i32,
    cap: f64,
    cost: f64,
    older_waiting: i64,
}

/// Reads why a reservation was refused, for the condition message. Only informative: the
/// decision itself was the conditional UPDATE.
async fn explain_refusal(
    pool: &PgPool,
    customer_id: i64,
    agent_id: i64,
    wanted_replicas: i32,
    month_start: NaiveDate,
) -> Result<Refusal, StoreError> {
    let facts: Option<RefusalFacts> = sqlx::query_as(
        "SELECT a.admitted, a.quota_reserved_replicas,
                q.active_agents_count, q.max_agents, q.active_replicas, q.max_concurrent_agents,
                q.max_cost_per_month_usd::float8 AS cap,
                (SELECT coalesce(sum(u.cost_usd), 0)::float8 FROM usage_daily u
                  WHERE u.customer_id = $1 AND u.day >= $3) AS cost,
                (SELECT count(*) FROM customer_agents w
                  WHERE w.customer_id = $1 AND NOT w.admitted AND w.terminated_at IS NULL AND w.quota_refused
                    AND (w.created_at, w.id) < (a.created_at, a.id)
                    AND w.replicas <= q.max_concurrent_agents) AS older_waiting
           FROM customer_agents a JOIN customer_quotas q ON q.customer_id = a.customer_id
          WHERE a.id = $2 AND a.customer_id = $1 AND a.terminated_at IS NULL",
    )
    .bind(customer_id)
    .bind(agent_id)
    .bind(month_start)
    .fetch_optional(pool)
    .await?;
    let Some(RefusalFacts {
        admitted,
        quota_reserved_replicas: held,
        active_agents_count: agents,
        max_agents,
        active_replicas: replicas,
        max_concurrent_agents: max_replicas,
        cap,
        cost,
        older_waiting,
    }) = facts
    else {
        return Ok(Refusal::NotFound);
    };
    let extra = i64::from(wanted_replicas - held);
    if !admitted && agents >= max_agents {
        return Ok(Refusal::AgentLimit { used: agents.into(), max: max_agents.into() });
    }
    if extra > 0 && i64::from(replicas) + extra > i64::from(max_replicas) {
        return Ok(Refusal::ConcurrencyLimit {
            used: replicas.into(),
            wanted: wanted_replicas.into(),
            max: max_replicas.into(),
        });
    }
    if extra > 0 && cost >= cap {
        return Ok(Refusal::CostCap { cost, cap });
    }
    if !admitted && older_waiting > 0 {
        return Ok(Refusal::QueuedBehindOlder { waiting: older_waiting });
    }
    // The capacity changed between the UPDATE and this read; the next reconcile retries.
    Ok(Refusal::QueuedBehindOlder { waiting: 0 })
}

/// Releases everything an agent holds and marks it terminated. Idempotent: a second call
/// subtracts nothing. Returns whether this call released anything.
pub async fn release_agent(pool: &PgPool, k8s_uid: Uuid) -> Result<bool, StoreError> {
    let released = sqlx::query_scalar::<_, bool>(
        "WITH me AS (
            SELECT id, customer_id, admitted, quota_reserved_replicas AS held
              FROM customer_agents WHERE k8s_uid = $1 AND terminated_at IS NULL FOR UPDATE),
         q AS (
            UPDATE customer_quotas q
               SET active_agents_count = q.active_agents_count - CASE WHEN me.admitted THEN 1 ELSE 0 END,
                   active_replicas = q.active_replicas - me.held
              FROM me WHERE q.customer_id = me.customer_id
            RETURNING q.customer_id)
         UPDATE customer_agents a
            SET admitted = false, quota_reserved_replicas = 0, quota_refused = false,
                status = 'terminated', terminated_at = now()
           FROM me
          WHERE a.id = me.id
         RETURNING true",
    )
    .bind(k8s_uid)
    .fetch_optional(pool)
    .await?;
    Ok(released.unwrap_or(false))
}

/// A live row's object: what the orphan sweep looks up in Kubernetes.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RowObject {
    pub k8s_uid: Uuid,
    pub customer_id: i64,
    pub namespace: String,
    pub name: String,
}

/// Every live agent row's object.
pub async fn live_agent_objects(pool: &PgPool) -> Result<Vec<RowObject>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT k8s_uid, customer_id, namespace, name FROM customer_agents WHERE terminated_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Records the phase the operator observed (`status` column, snake_case) and the first
/// deployment time.
pub async fn set_agent_status(
    pool: &PgPool,
    agent_id: i64,
    phase: AgentPhase,
    deployed: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE customer_agents
            SET status = $2,
                deployed_at = CASE WHEN $3 THEN coalesce(deployed_at, $4) ELSE deployed_at END
          WHERE id = $1 AND terminated_at IS NULL AND (status IS DISTINCT FROM $2 OR ($3 AND deployed_at IS NULL))",
    )
    .bind(agent_id)
    .bind(phase)
    .bind(deployed)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many live agents of a customer were refused what they asked for at their last
/// reservation: never admitted, or refused a scale-up.
pub async fn refused_agents(pool: &PgPool, customer_id: i64) -> Result<i64, StoreError> {
    let count = sqlx::query_scalar(
        "SELECT count(*) FROM customer_agents WHERE customer_id = $1 AND terminated_at IS NULL AND quota_refused",
    )
    .bind(customer_id)
    .fetch_one(pool)
    .await?;
    Ok(count)
}

/// The live agents of a customer waiting for quota, oldest first, as (namespace, name).
pub async fn waiting_agents(pool: &PgPool, customer_id: i64) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query_as(
        "SELECT namespace, name FROM customer_agents
          WHERE customer_id = $1 AND terminated_at IS NULL AND NOT admitted
          ORDER BY created_at, id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The live agents of a customer, as (namespace, name).
pub async fn live_agents(pool: &PgPool, customer_id: i64) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query_as(
        "SELECT namespace, name FROM customer_agents
          WHERE customer_id = $1 AND terminated_at IS NULL ORDER BY created_at, id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// A usage report from a running agent (`POST /api/agents/{deployment_id}/usage`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageReport {
    pub tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    /// Sum of the reported tasks' latencies, in ms (the mean is kept exactly from sums).
    pub total_latency_ms: f64,
    pub api_calls: i64,
    pub leads: i64,
    pub cost_usd: f64,
    pub tokens: i64,
}

/// Adds a usage report to the agent's totals and to its customer's row for `day`, in one
/// transaction. Returns the customer id, or `None` when no live agent has that deployment id.
pub async fn record_usage(
    pool: &PgPool,
    deployment_id: &str,
    report: &UsageReport,
    day: NaiveDate,
) -> Result<Option<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    let customer_id: Option<i64> = sqlx::query_scalar(
        "UPDATE customer_agents
            SET average_latency_ms = CASE
                    WHEN $2 > 0 THEN (coalesce(average_latency_ms, 0) * total_tasks + $5) / (total_tasks + $2)
                    ELSE average_latency_ms END,
                total_tasks = total_tasks + $2,
                completed_tasks = completed_tasks + $3,
                failed_tasks = failed_tasks + $4,
                total_api_calls = total_api_calls + $6,
                total_cost_usd = total_cost_usd + $7,
                last_active_at = now()
          WHERE deployment_id = $1 AND terminated_at IS NULL
         RETURNING customer_id",
    )
    .bind(deployment_id)
    .bind(report.tasks)
    .bind(report.completed_tasks)
    .bind(report.failed_tasks)
    .bind(report.total_latency_ms)
    .bind(report.api_calls)
    .bind(report.cost_usd)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(customer_id) = customer_id else { return Ok(None) };
    sqlx::query(
        "INSERT INTO usage_daily (customer_id, day, api_calls, leads, cost_usd, tokens)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (customer_id, day) DO UPDATE
            SET api_calls = usage_daily.api_calls + EXCLUDED.api_calls,
                leads = usage_daily.leads + EXCLUDED.leads,
                cost_usd = usage_daily.cost_usd + EXCLUDED.cost_usd,
                tokens = usage_daily.tokens + EXCLUDED.tokens",
    )
    .bind(customer_id)
    .bind(day)
    .bind(report.api_calls)
    .bind(report.leads)
    .bind(report.cost_usd)
    .bind(report.tokens)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(customer_id))
}

/// The customer of the live agent with this deployment id (`agent_<customerId>_<hex>`).
pub async fn deployment_customer(pool: &PgPool, deployment_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT customer_id FROM customer_agents WHERE deployment_id = $1 AND terminated_at IS NULL")
        .bind(deployment_id)
        .fetch_optional(pool)
        .await?)
}

/// The customer an agent's row belongs to.
pub async fn find_agent_customer(pool: &PgPool, k8s_uid: Uuid) -> Result<Option<i64>, StoreError> {
    let id = sqlx::query_scalar("SELECT customer_id FROM customer_agents WHERE k8s_uid = $1")
        .bind(k8s_uid)
        .fetch_optional(pool)
        .await?;
    Ok(id)
}
