//! A Customer's status, derived by a pure function from what the reconcile observed: whether
//! its tier exists, its usage against its limits, and whether anything was refused.
//!
//! `QuotaExceeded` turns True only when something was actually refused (an agent waits for
//! capacity). A counter sitting at its limit (2 of 2 agents) is full, not exceeded: the
//! used/limit printer columns and the condition's message show it.

use chrono::{DateTime, Utc};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::customer::CustomerUsage;
use prospector_crds::{Condition, CustomerStatus, IcpCriteria};

use super::condition;
use crate::quota::exhausted_quotas;

/// What the reconcile observed about a customer whose children are in place.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerFacts {
    pub customer_id: i64,
    pub namespace: String,
    pub api_key_secret: String,
    pub tier: String,
    pub usage: CustomerUsage,
    /// Live agents refused admission, waiting for quota.
    pub refused_agents: i64,
    pub suspended: bool,
    pub children_hash: String,
    pub children_applied_at: String,
    /// The aggregate ICP of the customer's Ready documents.
    pub icp: Option<IcpCriteria>,
}

/// Where the pipeline left a customer.
#[derive(Clone, Debug, PartialEq)]
pub enum CustomerState {
    /// Load/validate stopped the pipeline (the tier does not exist, the e-mail is taken).
    Invalid {
        reason: &'static str,
        message: String,
    },
    Reconciled(Box<CustomerFacts>),
}

/// The `used/limit` form of the printer columns.
fn used_of_limit(used: i64, limit: i64) -> String {
    format!("{used}/{limit}")
}

/// The status a customer should carry. `current` is the status it carries now.
pub fn derive_status(
    current: Option<&CustomerStatus>,
    generation: Option<i64>,
    now: DateTime<Utc>,
    state: &CustomerState,
) -> CustomerStatus {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let facts = match state {
        CustomerState::Invalid { reason, message } => {
            // A customer set up before (its tier deleted since, say) keeps the identity it has
            // in Postgres and its namespace: its id still names its rows, its agents keep the
            // limits last snapshotted, and the status must not claim it has none.
            let ready = condition(previous, types::READY, false, reason, message.clone(), generation, now);
            return CustomerStatus {
                customer_id: current.and_then(|s| s.customer_id),
                namespace: current.and_then(|s| s.namespace.clone()),
                api_key_secret: current.and_then(|s| s.api_key_secret.clone()),
                observed_generation: generation,
                conditions: vec![ready],
                ..Default::default()
            };
        }
        CustomerState::Reconciled(facts) => facts,
    };
    let ready_message = "namespace, quotas and API key are in place";
    let conditions = vec![
        condition(previous, types::READY, true, reasons::RECONCILED, ready_message, generation, now),
        quota_condition(previous, facts, generation, now),
        if facts.suspended {
            let message = "agents are scaled to zero";
            condition(previous, types::SUSPENDED, true, reasons::SUSPENDED_BY_SPEC, message, generation, now)
        } else {
            condition(previous, types::SUSPENDED, false, reasons::ACTIVE, "", generation, now)
        },
    ];
    let usage = &facts.usage;
    CustomerStatus {
        customer_id: Some(facts.customer_id),
        namespace: Some(facts.namespace.clone()),
        api_key_secret: Some(facts.api_key_secret.clone()),
        tier: Some(facts.tier.clone()),
        agents: Some(used_of_limit(usage.agents.used, usage.agents.limit)),
        replicas: Some(used_of_limit(usage.concurrent_agents.used, usage.concurrent_agents.limit)),
        documents: Some(used_of_limit(usage.documents.used, usage.documents.limit)),
        usage: Some(usage.clone()),
        icp: facts.icp.clone(),
        observed_generation: generation,
        children_hash: Some(facts.children_hash.clone()),
        children_applied_at: Some(facts.children_applied_at.clone()),
        conditions,
    }
}

fn quota_condition(
    previous: &[Condition],
    facts: &CustomerFacts,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let full = exhausted_quotas(&facts.usage);
    let full_note = if full.is_empty() { String::new() } else { format!("at the limit: {}", full.join(", ")) };
    if facts.refused_agents > 0 {
        let mut message = format!("{} agent(s) refused, waiting for quota", facts.refused_agents);
        if !full_note.is_empty() {
            message = format!("{message}; {full_note}");
        }
        condition(previous, types::QUOTA_EXCEEDED, true, reasons::AGENTS_WAITING, message, generation, now)
    } else {
        condition(previous, types::QUOTA_EXCEEDED, false, reasons::WITHIN_LIMITS, full_note, generation, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use prospector_crds::customer::{UsageAmount, UsageCount};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn facts(agents_used: i64, refused: i64, suspended: bool) -> CustomerFacts {
        let count = |used, limit| UsageCount { used, limit };
        CustomerFacts {
            customer_id: 3,
            namespace: "cust-acme".into(),
            api_key_secret: "prospector-api-key".into(),
            tier: "free".into(),
            usage: CustomerUsage {
                agents: count(agents_used, 2),
                concurrent_agents: count(agents_used.min(1), 1),
                documents: count(4, 20),
                storage_mb: UsageAmount { used: 1.0, limit: 100.0 },
                api_calls_today: count(0, 100),
                api_calls_this_month: count(0, 3000),
                leads_this_month: count(0, 100),
                cost_this_month_usd: UsageAmount { used: 0.0, limit: 10.0 },
            },
            refused_agents: refused,
            suspended,
            children_hash: "abc".into(),
            children_applied_at: "2026-11-29T11:00:00Z".into(),
            icp: None,
        }
    }

    fn condition_of<'a>(status: &'a CustomerStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn full_is_not_exceeded_and_a_refusal_is() {
        let table = [
            // (agents used of 2, refused agents) -> QuotaExceeded, reason
            (1, 0, false, reasons::WITHIN_LIMITS),
            (2, 0, false, reasons::WITHIN_LIMITS),
            (2, 1, true, reasons::AGENTS_WAITING),
        ];
        for (used, refused, exceeded, reason) in table {
            let status =
                derive_status(None, Some(1), now(), &CustomerState::Reconciled(Box::new(facts(used, refused, false))));
            let quota = condition_of(&status, types::QUOTA_EXCEEDED);
            assert_eq!((quota.is_true(), quota.reason.as_str()), (exceeded, reason), "{used} used, {refused} refused");
            assert_eq!(status.agents.as_deref(), Some(format!("{used}/2").as_str()));
            if used == 2 {
                assert!(quota.message.contains("agents 2/2"), "full stays visible: {}", quota.message);
            }
            if refused > 0 {
                assert!(quota.message.starts_with("1 agent(s) refused"), "{}", quota.message);
            }
        }
    }

    #[test]
    fn printer_columns_show_used_of_limit() {
        let status = derive_status(None, Some(1), now(), &CustomerState::Reconciled(Box::new(facts(2, 0, false))));
        assert_eq!(status.agents.as_deref(), Some("2/2"));
        assert_eq!(status.replicas.as_deref(), Some("1/1"));
        assert_eq!(status.documents.as_deref(), Some("4/20"));
        assert_eq!(status.customer_id, Some(3));
        assert!(condition_of(&status, types::READY).is_true());
    }

    #[test]
    fn suspension_and_invalid_specs() {
        let suspended = derive_status(None, Some(1), now(), &CustomerState::Reconciled(Box::new(facts(0, 0, true))));
        assert!(condition_of(&suspended, types::SUSPENDED).is_true());
        let invalid = CustomerState::Invalid { reason: reasons::TIER_NOT_FOUND, message: "tier \"gold\"".into() };
        let status = derive_status(Some(&suspended), Some(2), now(), &invalid);
        let ready = condition_of(&status, types::READY);
        assert_eq!((ready.is_true(), ready.reason.as_str()), (false, reasons::TIER_NOT_FOUND));
        assert_eq!(status.conditions.len(), 1);
        // Set up before: it keeps its id and namespace; never set up: it has none.
        assert_eq!((status.customer_id, status.namespace.as_deref()), (Some(3), Some("cust-acme")));
        let fresh = derive_status(None, Some(1), now(), &invalid);
        assert_eq!((fresh.customer_id, fresh.namespace), (None, None));
    }

    #[test]
    fn a_steady_state_compares_equal_and_shows_the_icp() {
        let mut with_icp = facts(1, 0, false);
        with_icp.icp = Some(IcpCriteria { target_industries: vec!["fintech".into()], ..Default::default() });
        let first = derive_status(None, Some(1), now(), &CustomerState::Reconciled(Box::new(with_icp.clone())));
        assert_eq!(first.icp.as_ref().unwrap().target_industries, ["fintech"]);
        let later = now() + chrono::Duration::minutes(10);
        let again = derive_status(Some(&first), Some(1), later, &CustomerState::Reconciled(Box::new(with_icp)));
        assert_eq!(again, first, "no change, no write");
    }
}
