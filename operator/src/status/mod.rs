//! The statuses the controllers write, derived by pure functions (`agent`, `customer`), and
//! the condition bookkeeping they share: transition times that only move when a status
//! changes, and the list of transitions worth an Event.

pub mod agent;
pub mod customer;
pub mod document;

use chrono::{DateTime, SecondsFormat, Utc};
use prospector_crds::Condition;
use prospector_crds::conditions::status;

/// RFC 3339 with seconds, as Kubernetes writes times.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Converts a Kubernetes timestamp.
pub fn from_kube_time(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

/// A condition; its transition time is kept from `previous` when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    is_true: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if is_true { status::TRUE } else { status::FALSE };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| timestamp(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Whether the condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == status::TRUE)
}

/// The conditions of `next` whose status or reason differs from `previous`.
pub fn transitions<'a>(previous: &[Condition], next: &'a [Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|c| !previous.iter().any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let first = condition(&[], "Ready", false, "InProgress", "", Some(1), t0);
        let same = condition(std::slice::from_ref(&first), "Ready", false, "Other", "", Some(2), t1);
        assert_eq!(same.last_transition_time, "2026-01-01T00:00:00Z");
        let flipped = condition(std::slice::from_ref(&first), "Ready", true, "Reconciled", "", Some(2), t1);
        assert_eq!(flipped.last_transition_time, "2026-01-02T00:00:00Z");
        assert_eq!(transitions(std::slice::from_ref(&first), std::slice::from_ref(&flipped)).len(), 1);
        assert!(transitions(std::slice::from_ref(&flipped), std::slice::from_ref(&flipped)).is_empty());
    }
}
