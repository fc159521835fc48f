//! Quota arithmetic: effective limits from a tier and its overrides, the usage view shown in a
//! Customer's status, agent ids, and what an agent should run. Pure functions; the decisions
//! that can race are made by single statements in Postgres (see `prospector_store::agents`).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use prospector_crds::conditions::reasons;
use prospector_crds::customer::{CustomerUsage, UsageAmount, UsageCount};
use prospector_crds::{QuotaOverrides, TierSpec};
use prospector_store::agents::Refusal;
use prospector_store::customers::{QuotaLimits, UsageSnapshot};
use sha2::{Digest, Sha256};

/// Bytes in the MB of `maxStorageMb` (decimal, as storage is sold).
pub const BYTES_PER_MB: i64 = 1_000_000;

/// The limits a customer gets: its tier with its overrides applied.
pub fn effective_limits(tier: &TierSpec, overrides: Option<&QuotaOverrides>) -> QuotaLimits {
    let t = tier.with_overrides(overrides);
    QuotaLimits {
        max_api_calls_per_day: t.max_api_calls_per_day,
        max_api_calls_per_month: t.max_api_calls_per_month,
        rate_limit_per_second: t.rate_limit_per_second,
        rate_limit_per_minute: t.rate_limit_per_minute,
        max_agents: t.max_agents,
        max_concurrent_agents: t.max_concurrent_agents,
        max_storage_bytes: t.max_storage_mb.saturating_mul(BYTES_PER_MB),
        max_documents: t.max_documents,
        max_leads_per_month: t.max_leads_per_month,
        max_cost_per_month_usd: t.max_cost_per_month_usd,
    }
}

/// The first day of `now`'s UTC month.
pub fn month_start(now: DateTime<Utc>) -> NaiveDate {
    let day = now.date_naive();
    NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
}

/// The usage block of a Customer's status.
pub fn usage_view(snapshot: &UsageSnapshot) -> CustomerUsage {
    let l = &snapshot.limits;
    let count = |used: i64, limit: i64| UsageCount { used, limit };
    CustomerUsage {
        agents: count(snapshot.active_agents, l.max_agents.into()),
        concurrent_agents: count(snapshot.active_replicas, l.max_concurrent_agents.into()),
        documents: count(snapshot.documents, l.max_documents.into()),
        storage_mb: UsageAmount {
            used: snapshot.storage_bytes as f64 / BYTES_PER_MB as f64,
            limit: l.max_storage_bytes as f64 / BYTES_PER_MB as f64,
        },
        api_calls_today: count(snapshot.api_calls_today, l.max_api_calls_per_day),
        api_calls_this_month: count(snapshot.api_calls_this_month, l.max_api_calls_per_month),
        leads_this_month: count(snapshot.leads_this_month, l.max_leads_per_month),
        cost_this_month_usd: UsageAmount { used: snapshot.cost_this_month_usd, limit: l.max_cost_per_month_usd },
    }
}

/// The quotas a customer is at or over, as `(name, used, limit)`.
pub fn exhausted_quotas(usage: &CustomerUsage) -> Vec<String> {
    let mut exhausted = Vec::new();
    let mut check = |name: &str, used: f64, limit: f64| {
        if used >= limit {
            exhausted.push(format!("{name} {used}/{limit}"));
        }
    };
    check("agents", usage.agents.used as f64, usage.agents.limit as f64);
    check("concurrent agents", usage.concurrent_agents.used as f64, usage.concurrent_agents.limit as f64);
    check("documents", usage.documents.used as f64, usage.documents.limit as f64);
    check("storage MB", usage.storage_mb.used, usage.storage_mb.limit);
    check("API calls today", usage.api_calls_today.used as f64, usage.api_calls_today.limit as f64);
    check("API calls this month", usage.api_calls_this_month.used as f64, usage.api_calls_this_month.limit as f64);
    check("cost this month (USD)", usage.cost_this_month_usd.used, usage.cost_this_month_usd.limit);
    exhausted
}

/// The seed's deployment id, `agent_<customerId>_<8 hex>`. The hex comes from the object's UID,
/// so a replayed reconcile derives the same id.
pub fn deployment_id(customer_id: i64, uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    format!("agent_{customer_id}_{}", hex::encode(&digest[..4]))
}

/// Why an agent runs fewer replicas than its spec asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// `spec.suspend` on the agent.
    AgentSuspended,
    /// `spec.suspended` on the customer.
    CustomerSuspended,
    /// The customer's cost this month reached its cap.
    CostCap,
}

/// How many replicas an agent should reserve and run, and why it is held at zero.
pub fn desired_replicas(
    spec_replicas: i32,
    agent_suspended: bool,
    customer_suspended: bool,
    cost_capped: bool,
) -> (i32, Option<Hold>) {
    if customer_suspended {
        (0, Some(Hold::CustomerSuspended))
    } else if agent_suspended {
        (0, Some(Hold::AgentSuspended))
    } else if cost_capped {
        (0, Some(Hold::CostCap))
    } else {
        (spec_replicas, None)
    }
}

/// The condition reason and a message naming the limit, for a refused admission.
pub fn refusal_message(refusal: &Refusal) -> (&'static str, String) {
    match refusal {
        Refusal::AgentLimit { used, max } => (
            reasons::AGENT_LIMIT_REACHED,
            format!("the customer has {used} of {max} agents allowed by its tier (maxAgents)"),
        ),
        Refusal::ConcurrencyLimit { used, wanted, max } => (
            reasons::CONCURRENCY_LIMIT_REACHED,
            format!(
                "{wanted} replicas would exceed the concurrent-agent limit: {used} of {max} in use (maxConcurrentAgents)"
            ),
        ),
        Refusal::CostCap { cost, cap } => (
            reasons::COST_CAP_REACHED,
            format!("the customer's cost this month, ${cost:.2}, reached its cap of ${cap:.2} (maxCostPerMonthUsd)"),
        ),
        Refusal::QueuedBehindOlder { waiting } => (
            reasons::AGENT_LIMIT_REACHED,
            format!("waiting for quota behind {waiting} older agent(s) of this customer"),
        ),
        Refusal::NotFound => (reasons::IN_PROGRESS, "the customer's quota is not set up yet".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// The starter tier as shipped in `examples/tiers.yaml`.
    fn starter() -> TierSpec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tiers.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| <prospector_crds::Tier as serde::Deserialize>::deserialize(d).unwrap())
            .find(|t| t.metadata.name.as_deref() == Some("starter"))
            .unwrap()
            .spec
    }

    #[test]
    fn effective_limits_apply_overrides_and_convert_storage_to_bytes() {
        let overrides = QuotaOverrides { max_agents: Some(7), max_storage_mb: Some(2_500), ..Default::default() };
        let limits = effective_limits(&starter(), Some(&overrides));
        assert_eq!(limits.max_agents, 7);
        assert_eq!(limits.max_concurrent_agents, 3);
        assert_eq!(limits.max_storage_bytes, 2_500_000_000);
        assert_eq!(effective_limits(&starter(), None).max_storage_bytes, 1_000_000_000);
    }

    #[test]
    fn month_start_is_the_first_utc_day() {
        let now = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap();
        assert_eq!(month_start(now), NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
    }

    #[test]
    fn usage_view_shows_used_against_limit() {
        let snapshot = UsageSnapshot {
            subscription_tier: "starter".into(),
            limits: effective_limits(&starter(), None),
            active_agents: 2,
            active_replicas: 3,
            documents: 4,
            storage_bytes: 1_500_000,
            api_calls_today: 10,
            api_calls_this_month: 100,
            leads_this_month: 1,
            cost_this_month_usd: 12.5,
        };
        let usage = usage_view(&snapshot);
        assert_eq!((usage.agents.used, usage.agents.limit), (2, 5));
        assert_eq!((usage.concurrent_agents.used, usage.concurrent_agents.limit), (3, 3));
        assert_eq!(usage.storage_mb.used, 1.5);
        assert_eq!(usage.cost_this_month_usd.limit, 100.0);
        assert_eq!(exhausted_quotas(&usage), ["concurrent agents 3/3"]);
    }

    #[test]
    fn deployment_ids_have_the_seed_form_and_are_stable() {
        let id = deployment_id(12, "2f1e8a3c-0000-4000-8000-000000000001");
        assert!(id.starts_with("agent_12_"));
        let hex = id.trim_start_matches("agent_12_");
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(id, deployment_id(12, "2f1e8a3c-0000-4000-8000-000000000001"));
        assert_ne!(id, deployment_id(12, "2f1e8a3c-0000-4000-8000-000000000002"));
    }

    #[test]
    fn holds_take_precedence_in_order() {
        assert_eq!(desired_replicas(3, false, false, false), (3, None));
        assert_eq!(desired_replicas(3, true, false, false), (0, Some(Hold::AgentSuspended)));
        assert_eq!(desired_replicas(3, true, true, true), (0, Some(Hold::CustomerSuspended)));
        assert_eq!(desired_replicas(3, false, false, true), (0, Some(Hold::CostCap)));
    }

    #[test]
    fn refusals_name_the_limit() {
        let (reason, message) = refusal_message(&Refusal::AgentLimit { used: 5, max: 5 });
        assert_eq!(reason, "AgentLimitReached");
        assert!(message.contains("5 of 5") && message.contains("maxAgents"));
        let (reason, message) = refusal_message(&Refusal::ConcurrencyLimit { used: 2, wanted: 2, max: 3 });
        assert_eq!(reason, "ConcurrencyLimitReached");
        assert!(message.contains("maxConcurrentAgents"));
        let (reason, message) = refusal_message(&Refusal::CostCap { cost: 100.0, cap: 100.0 });
        assert_eq!(reason, "CostCapReached");
        assert!(message.contains("$100.00"));
    }
}
