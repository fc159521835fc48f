//! An AgentDeployment's status, derived by pure functions from what the reconcile observed:
//! admission, holds, the Deployment and its pods. Which phase an agent shows is decided here
//! and nowhere else, so every phase is unit-tested without a cluster.
//!
//! | facts                                              | phase         | Ready                       |
//! |----------------------------------------------------|---------------|-----------------------------|
//! | the object is being deleted                        | Terminating   | False `Terminating`         |
//! | not in a customer namespace, customer not set up   | Pending       | False `InvalidSpec`/`InProgress` |
//! | never admitted, refused                            | QuotaExceeded | False (the refusal's reason) |
//! | held: customer or agent suspended, cost cap        | Suspended     | False `SuspendedBySpec`/`CostCapReached` |
//! | pods cannot run (pull errors, crash loop, ...)     | Failed        | False (the cause)           |
//! | admitted with `replicas: 0`                        | Deployed      | False `ScaledToZero`        |
//! | all wanted replicas available                      | Running       | True `ReplicasAvailable`    |
//! | otherwise                                          | Deployed      | False `ReplicasUnavailable` |

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{AgentDeploymentStatus, AgentPerformance, AgentPhase, Condition};
use prospector_store::agents::Admission;

use super::{condition, from_kube_time};
use crate::quota::{Hold, refusal_message};

/// Why an agent's pods cannot run, read from its Deployment and pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFailure {
    /// One of the failure reasons of `prospector_crds::conditions::reasons`.
    pub reason: &'static str,
    /// What Kubernetes said, for a person.
    pub message: String,
}

/// What the Deployment of an admitted agent shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentHealth {
    pub available: i32,
    pub ready: i32,
    pub failure: Option<PodFailure>,
}

/// The identity and history of an agent that has a Postgres row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentRecordView {
    pub agent_id: i64,
    pub deployment_id: String,
    /// RFC 3339, once the agent was first deployed.
    pub deployed_at: Option<String>,
    pub performance: AgentPerformance,
}

/// The customer's spend against its cap, when the cap holds the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct CostCap {
    pub spent_usd: f64,
    pub cap_usd: f64,
}

/// What the reconcile observed about an admitted or refused agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentFacts {
    pub record: AgentRecordView,
    /// The outcome of this reconcile's reservation.
    pub admission: Admission,
    /// Whether the agent held quota before this reconcile (a refused scale-up keeps it running).
    pub admitted_before: bool,
    /// Why it runs fewer replicas than its spec asks for.
    pub hold: Option<Hold>,
    /// Set when the cost cap is what holds the agent.
    pub cost_cap: Option<CostCap>,
    /// The replicas the agent's quota reservation lets it run.
    pub running_replicas: i32,
    /// `None` while nothing was deployed (never admitted).
    pub deployment: Option<DeploymentHealth>,
}

/// Where the pipeline left an agent.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentState {
    /// Load/validate stopped the pipeline: not in a customer namespace, customer not set up yet,
    /// or the customer is being deleted.
    Pending { reason: &'static str, message: String },
    /// The agent is being deleted and its cleanup has not finished.
    Terminating,
    /// Admission ran.
    Evaluated(Box<AgentFacts>),
}

/// The phase, and the Ready condition's status, reason and message.
pub fn agent_phase(state: &AgentState) -> (AgentPhase, bool, &'static str, String) {
    let facts = match state {
        AgentState::Terminating => {
            let message = "the agent is stopping; its quota is released when its children are gone".to_owned();
            return (AgentPhase::Terminating, false, reasons::TERMINATING, message);
        }
        AgentState::Pending { reason, message } => return (AgentPhase::Pending, false, reason, message.clone()),
        AgentState::Evaluated(facts) => facts,
    };
    if let (Admission::Refused(refusal), false) = (&facts.admission, facts.admitted_before) {
        let (reason, message) = refusal_message(refusal);
        return (AgentPhase::QuotaExceeded, false, reason, message);
    }
    match facts.hold {
        Some(Hold::CustomerSuspended) => {
            return (AgentPhase::Suspended, false, reasons::SUSPENDED_BY_SPEC, "the customer is suspended".into());
        }
        Some(Hold::AgentSuspended) => {
            return (AgentPhase::Suspended, false, reasons::SUSPENDED_BY_SPEC, "spec.suspend is set".into());
        }
        Some(Hold::CostCap) => {
            let message = "the customer reached its monthly cost cap".to_owned();
            return (AgentPhase::Suspended, false, reasons::COST_CAP_REACHED, message);
        }
        None => {}
    }
    let health = facts.deployment.clone().unwrap_or_default();
    if let Some(failure) = health.failure {
        return (AgentPhase::Failed, false, failure.reason, failure.message);
    }
    let wanted = facts.running_replicas;
    if wanted == 0 {
        let message = "spec.replicas is 0: the agent keeps its agent slot and runs no pods".to_owned();
        return (AgentPhase::Deployed, false, reasons::SCALED_TO_ZERO, message);
    }
    let message = format!("{}/{wanted} replicas available", health.available);
    if health.available >= wanted {
        (AgentPhase::Running, true, reasons::REPLICAS_AVAILABLE, message)
    } else {
        (AgentPhase::Deployed, false, reasons::REPLICAS_UNAVAILABLE, message)
    }
}

/// The status an agent should carry. `current` is the status it carries now: a Terminating
/// agent keeps the ids and history it had; a Pending one has none yet.
pub fn derive_status(
    current: Option<&AgentDeploymentStatus>,
    generation: Option<i64>,
    now: DateTime<Utc>,
    state: &AgentState,
) -> AgentDeploymentStatus {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (phase, ready, ready_reason, ready_message) = agent_phase(state);
    let ready = condition(previous, types::READY, ready, ready_reason, ready_message, generation, now);
    match state {
        AgentState::Pending { .. } => AgentDeploymentStatus {
            phase: Some(phase),
            observed_generation: generation,
            conditions: vec![ready],
            ..Default::default()
        },
        AgentState::Terminating => {
            let mut status = current.cloned().unwrap_or_default();
            status.phase = Some(phase);
            status.observed_generation = generation;
            status.conditions.retain(|c| c.type_ != types::READY);
            status.conditions.insert(0, ready);
            status
        }
        AgentState::Evaluated(facts) => {
            let quota_exceeded = match &facts.admission {
                Admission::Refused(refusal) => {
                    let (reason, message) = refusal_message(refusal);
                    condition(previous, types::QUOTA_EXCEEDED, true, reason, message, generation, now)
                }
                Admission::Admitted { .. } => {
                    condition(previous, types::QUOTA_EXCEEDED, false, reasons::WITHIN_LIMITS, "", generation, now)
                }
            };
            let mut conditions = vec![ready, quota_exceeded];
            if facts.admitted_before || matches!(facts.admission, Admission::Admitted { .. }) {
                conditions.push(cost_cap_condition(previous, facts, generation, now));
            }
            let deployed = facts.deployment.is_some();
            AgentDeploymentStatus {
                agent_id: Some(facts.record.agent_id),
                deployment_id: Some(facts.record.deployment_id.clone()),
                phase: Some(phase),
                ready_replicas: Some(facts.deployment.as_ref().map_or(0, |d| d.ready)),
                deployed_at: if deployed { facts.record.deployed_at.clone() } else { None },
                performance: Some(facts.record.performance.clone()),
                observed_generation: generation,
                conditions,
            }
        }
    }
}

fn cost_cap_condition(
    previous: &[Condition],
    facts: &AgentFacts,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    match (&facts.hold, &facts.cost_cap) {
        (Some(Hold::CostCap), Some(cap)) => {
            let message = format!(
                "${:.2} spent of a ${:.2} monthly cap; agents resume when the cap is raised or the month turns",
                cap.spent_usd, cap.cap_usd
            );
            condition(previous, types::COST_CAP_EXCEEDED, true, reasons::COST_CAP_REACHED, message, generation, now)
        }
        _ => condition(previous, types::COST_CAP_EXCEEDED, false, reasons::WITHIN_LIMITS, "", generation, now),
    }
}

/// Container waiting reasons that mean the pod will not run without a change, and the
/// condition reason each maps to.
const FAILING_CONTAINER_STATES: [(&str, &str); 7] = [
    ("ErrImagePull", reasons::IMAGE_PULL_FAILED),
    ("ImagePullBackOff", reasons::IMAGE_PULL_FAILED),
    ("InvalidImageName", reasons::IMAGE_PULL_FAILED),
    ("CrashLoopBackOff", reasons::CRASH_LOOPING),
    ("RunContainerError", reasons::CRASH_LOOPING),
    ("CreateContainerConfigError", reasons::CONTAINER_CONFIG_INVALID),
    ("CreateContainerError", reasons::CONTAINER_CONFIG_INVALID),
];

/// The Deployment conditions (type, status) that [`pod_failure`] reads: the Deployment cache
/// keeps only these (`crate::cached`).
pub const DEPLOYMENT_FAILURE_CONDITIONS: [(&str, &str); 2] = [("ReplicaFailure", "True"), ("Progressing", "False")];

/// Why an agent's pods cannot run, from its Deployment's conditions and its pods' states, or
/// `None` while they can (or may yet). A pod that found no node counts only after
/// `unschedulable_after`: the scheduler retries, and a node may join.
pub fn pod_failure(
    deployment: &Deployment,
    pods: &[Pod],
    now: DateTime<Utc>,
    unschedulable_after: Duration,
) -> Option<PodFailure> {
    let conditions = deployment.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let deployment_says =
        |type_: &str, status: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == status);
    let [replica_failure, no_progress] = DEPLOYMENT_FAILURE_CONDITIONS;
    if let Some(c) = deployment_says(replica_failure.0, replica_failure.1) {
        let message = format!("pods cannot be created: {}", c.message.as_deref().unwrap_or("ReplicaFailure"));
        return Some(PodFailure { reason: reasons::POD_CREATION_FAILED, message });
    }
    let live = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    for pod in live.clone() {
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        for container in statuses {
            let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
            let Some(kube_reason) = waiting.reason.as_deref() else { continue };
            if let Some((_, reason)) = FAILING_CONTAINER_STATES.iter().find(|(r, _)| *r == kube_reason) {
                let detail = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                let message = format!("pod {name}, container {}: {kube_reason}{detail}", container.name);
                return Some(PodFailure { reason, message });
            }
        }
    }
    for pod in live {
        let pod_conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let unschedulable = pod_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
        if let Some(c) = unschedulable {
            let since = c.last_transition_time.as_ref().map(|t| from_kube_time(&t.0)).unwrap_or(now);
            if (now - since).to_std().unwrap_or_default() >= unschedulable_after {
                let name = pod.metadata.name.as_deref().unwrap_or("");
                let detail = c.message.as_deref().unwrap_or("no node fits");
                let message = format!("pod {name} found no node for {}s: {detail}", unschedulable_after.as_secs());
                return Some(PodFailure { reason: reasons::UNSCHEDULABLE, message });
            }
        }
    }
    if let Some(c) = deployment_says(no_progress.0, no_progress.1)
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        let message = c.message.clone().unwrap_or_else(|| "the rollout made no progress".into());
        return Some(PodFailure { reason: reasons::PROGRESS_DEADLINE_EXCEEDED, message });
    }
    None
}

/// Whether an agent in `phase`, running `running_replicas`, should be looked at again soon on
/// its own: its pods may start, fail or recover without any change to the objects the operator
/// watches. A scaled-to-zero agent has no pods to wait for.
pub fn needs_progress_check(phase: AgentPhase, running_replicas: i32) -> bool {
    running_replicas > 0 && matches!(phase, AgentPhase::Deployed | AgentPhase::Failed)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use prospector_store::agents::Refusal;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn facts(admission: Admission, admitted_before: bool, hold: Option<Hold>, running: i32) -> AgentFacts {
        AgentFacts {
            record: AgentRecordView {
                agent_id: 7,
                deployment_id: "agent_3_0123abcd".into(),
                deployed_at: Some("2026-11-29T11:00:00Z".into()),
                performance: AgentPerformance::default(),
            },
            admission,
            admitted_before,
            hold,
            cost_cap: None,
            running_replicas: running,
            deployment: Some(DeploymentHealth { available: running, ready: running, failure: None }),
        }
    }

    fn admitted(replicas: i32) -> Admission {
        Admission::Admitted { replicas }
    }

    fn refused() -> Admission {
        Admission::Refused(Refusal::AgentLimit { used: 2, max: 2 })
    }

    fn condition_of<'a>(status: &'a AgentDeploymentStatus, type_: &str) -> Option<&'a Condition> {
        status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// One row of the phase table: the state, and the phase, Ready status and Ready reason it
    /// must give.
    struct Case {
        name: &'static str,
        state: AgentState,
        phase: AgentPhase,
        ready: bool,
        reason: &'static str,
        quota_exceeded: Option<bool>,
    }

    fn cases() -> Vec<Case> {
        let failing = {
            let mut f = facts(admitted(2), true, None, 2);
            f.deployment = Some(DeploymentHealth {
                available: 0,
                ready: 0,
                failure: Some(PodFailure { reason: reasons::IMAGE_PULL_FAILED, message: "ErrImagePull".into() }),
            });
            f
        };
        let starting = {
            let mut f = facts(admitted(3), true, None, 3);
            f.deployment = Some(DeploymentHealth { available: 1, ready: 1, failure: None });
            f
        };
        let capped = {
            let mut f = facts(admitted(0), true, Some(Hold::CostCap), 0);
            f.cost_cap = Some(CostCap { spent_usd: 120.0, cap_usd: 100.0 });
            f
        };
        let refused_scale_up = {
            let mut f =
                facts(Admission::Refused(Refusal::ConcurrencyLimit { used: 3, wanted: 5, max: 3 }), true, None, 2);
            f.deployment = Some(DeploymentHealth { available: 2, ready: 2, failure: None });
            f
        };
        let never_admitted = {
            let mut f = facts(refused(), false, None, 0);
            f.deployment = None;
            f
        };
        vec![
            Case {
                name: "deleting",
                state: AgentState::Terminating,
                phase: AgentPhase::Terminating,
                ready: false,
                reason: reasons::TERMINATING,
                quota_exceeded: None,
            },
            Case {
                name: "not a customer namespace",
                state: AgentState::Pending {
                    reason: reasons::INVALID_SPEC,
                    message: "not a customer namespace".into(),
                },
                phase: AgentPhase::Pending,
                ready: false,
                reason: reasons::INVALID_SPEC,
                quota_exceeded: None,
            },
            Case {
                name: "never admitted",
                state: AgentState::Evaluated(Box::new(never_admitted)),
                phase: AgentPhase::QuotaExceeded,
                ready: false,
                reason: reasons::AGENT_LIMIT_REACHED,
                quota_exceeded: Some(true),
            },
            Case {
                name: "all replicas ready",
                state: AgentState::Evaluated(Box::new(facts(admitted(2), true, None, 2))),
                phase: AgentPhase::Running,
                ready: true,
                reason: reasons::REPLICAS_AVAILABLE,
                quota_exceeded: Some(false),
            },
            Case {
                name: "some replicas ready",
                state: AgentState::Evaluated(Box::new(starting)),
                phase: AgentPhase::Deployed,
                ready: false,
                reason: reasons::REPLICAS_UNAVAILABLE,
                quota_exceeded: Some(false),
            },
            Case {
                name: "replicas 0",
                state: AgentState::Evaluated(Box::new(facts(admitted(0), false, None, 0))),
                phase: AgentPhase::Deployed,
                ready: false,
                reason: reasons::SCALED_TO_ZERO,
                quota_exceeded: Some(false),
            },
            Case {
                name: "customer suspended",
                state: AgentState::Evaluated(Box::new(facts(admitted(0), true, Some(Hold::CustomerSuspended), 0))),
                phase: AgentPhase::Suspended,
                ready: false,
                reason: reasons::SUSPENDED_BY_SPEC,
                quota_exceeded: Some(false),
            },
            Case {
                name: "agent suspended",
                state: AgentState::Evaluated(Box::new(facts(admitted(0), true, Some(Hold::AgentSuspended), 0))),
                phase: AgentPhase::Suspended,
                ready: false,
                reason: reasons::SUSPENDED_BY_SPEC,
                quota_exceeded: Some(false),
            },
            Case {
                name: "cost cap",
                state: AgentState::Evaluated(Box::new(capped)),
                phase: AgentPhase::Suspended,
                ready: false,
                reason: reasons::COST_CAP_REACHED,
                quota_exceeded: Some(false),
            },
            Case {
                name: "pods failing",
                state: AgentState::Evaluated(Box::new(failing)),
                phase: AgentPhase::Failed,
                ready: false,
                reason: reasons::IMAGE_PULL_FAILED,
                quota_exceeded: Some(false),
            },
            Case {
                name: "scale-up refused, running what it holds",
                state: AgentState::Evaluated(Box::new(refused_scale_up)),
                phase: AgentPhase::Running,
                ready: true,
                reason: reasons::REPLICAS_AVAILABLE,
                quota_exceeded: Some(true),
            },
        ]
    }

    #[test]
    fn each_state_gives_its_phase_and_conditions() {
        for case in cases() {
            let status = derive_status(None, Some(4), now(), &case.state);
            assert_eq!(status.phase, Some(case.phase), "{}", case.name);
            assert_eq!(status.observed_generation, Some(4), "{}", case.name);
            let ready = condition_of(&status, types::READY).unwrap();
            assert_eq!(ready.is_true(), case.ready, "{}: Ready", case.name);
            assert_eq!(ready.reason, case.reason, "{}: Ready reason", case.name);
            assert_eq!(
                condition_of(&status, types::QUOTA_EXCEEDED).map(Condition::is_true),
                case.quota_exceeded,
                "{}: QuotaExceeded",
                case.name
            );
        }
        let phases: std::collections::BTreeSet<String> = cases().iter().map(|c| format!("{:?}", c.phase)).collect();
        assert_eq!(phases.len(), 7, "the table covers every phase: {phases:?}");
    }

    #[test]
    fn only_agents_with_pods_to_wait_for_are_polled() {
        assert!(needs_progress_check(AgentPhase::Deployed, 2));
        assert!(needs_progress_check(AgentPhase::Failed, 1));
        assert!(!needs_progress_check(AgentPhase::Deployed, 0), "scaled to zero: nothing to wait for");
        assert!(!needs_progress_check(AgentPhase::Running, 2));
    }

    #[test]
    fn cost_cap_condition_names_the_spend_and_clears_when_lifted() {
        let mut capped = facts(admitted(0), true, Some(Hold::CostCap), 0);
        capped.cost_cap = Some(CostCap { spent_usd: 120.0, cap_usd: 100.0 });
        let status = derive_status(None, Some(1), now(), &AgentState::Evaluated(Box::new(capped)));
        let cap = condition_of(&status, types::COST_CAP_EXCEEDED).unwrap();
        assert!(cap.is_true());
        assert!(cap.message.contains("$120.00 spent of a $100.00"), "{}", cap.message);
        let lifted = derive_status(
            Some(&status),
            Some(1),
            now(),
            &AgentState::Evaluated(Box::new(facts(admitted(1), true, None, 1))),
        );
        assert!(!condition_of(&lifted, types::COST_CAP_EXCEEDED).unwrap().is_true());
    }

    #[test]
    fn a_never_admitted_agent_shows_no_deployment_time_or_cost_cap() {
        let mut waiting = facts(refused(), false, None, 0);
        waiting.deployment = None;
        let status = derive_status(None, Some(1), now(), &AgentState::Evaluated(Box::new(waiting)));
        assert_eq!(status.deployed_at, None);
        assert_eq!(status.ready_replicas, Some(0));
        assert_eq!(status.deployment_id.as_deref(), Some("agent_3_0123abcd"));
        assert!(condition_of(&status, types::COST_CAP_EXCEEDED).is_none());
    }

    #[test]
    fn terminating_keeps_the_ids_and_a_steady_state_compares_equal() {
        let running =
            derive_status(None, Some(2), now(), &AgentState::Evaluated(Box::new(facts(admitted(1), true, None, 1))));
        let later = now() + chrono::Duration::minutes(5);
        let again = derive_status(
            Some(&running),
            Some(2),
            later,
            &AgentState::Evaluated(Box::new(facts(admitted(1), true, None, 1))),
        );
        assert_eq!(again, running, "no change, no write");
        let terminating = derive_status(Some(&running), Some(2), later, &AgentState::Terminating);
        assert_eq!(terminating.agent_id, Some(7));
        assert_eq!(terminating.deployment_id.as_deref(), Some("agent_3_0123abcd"));
        let ready = condition_of(&terminating, types::READY).unwrap();
        assert_eq!((ready.is_true(), ready.reason.as_str()), (false, reasons::TERMINATING));
        assert_eq!(terminating.conditions.iter().filter(|c| c.type_ == types::READY).count(), 1);
    }

    fn deployment(conditions: Vec<(&str, &str, &str)>) -> Deployment {
        Deployment {
            status: Some(DeploymentStatus {
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(type_, status, reason)| DeploymentCondition {
                            type_: type_.into(),
                            status: status.into(),
                            reason: Some(reason.into()),
                            message: Some(format!("{type_} {reason}")),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(waiting: Option<&str>, unschedulable_since: Option<DateTime<Utc>>) -> Pod {
        let container_statuses = waiting.map(|reason| {
            vec![ContainerStatus {
                name: "agent".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.into()),
                        message: Some("details".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
        let conditions = unschedulable_since.map(|since| {
            vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/1 nodes are available: 1 Insufficient memory.".into()),
                last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(since.timestamp()).unwrap())),
                ..Default::default()
            }]
        });
        Pod {
            metadata: ObjectMeta { name: Some("agent-x-1".into()), ..Default::default() },
            status: Some(PodStatus { container_statuses, conditions, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_failures_come_from_container_states_and_deployment_conditions() {
        let healthy = deployment(vec![("Progressing", "True", "NewReplicaSetAvailable")]);
        let bound = Duration::from_secs(60);
        assert_eq!(pod_failure(&healthy, &[pod(None, None)], now(), bound), None);
        assert_eq!(pod_failure(&healthy, &[pod(Some("ContainerCreating"), None)], now(), bound), None);
        for (state, reason) in [
            ("ImagePullBackOff", reasons::IMAGE_PULL_FAILED),
            ("ErrImagePull", reasons::IMAGE_PULL_FAILED),
            ("CrashLoopBackOff", reasons::CRASH_LOOPING),
            ("CreateContainerConfigError", reasons::CONTAINER_CONFIG_INVALID),
        ] {
            let failure = pod_failure(&healthy, &[pod(None, None), pod(Some(state), None)], now(), bound).unwrap();
            assert_eq!(failure.reason, reason, "{state}");
            assert!(failure.message.contains(state) && failure.message.contains("details"), "{}", failure.message);
        }
        let quota = deployment(vec![("ReplicaFailure", "True", "FailedCreate")]);
        assert_eq!(pod_failure(&quota, &[], now(), bound).unwrap().reason, reasons::POD_CREATION_FAILED);
        let stuck = deployment(vec![("Progressing", "False", "ProgressDeadlineExceeded")]);
        assert_eq!(pod_failure(&stuck, &[], now(), bound).unwrap().reason, reasons::PROGRESS_DEADLINE_EXCEEDED);
    }

    #[test]
    fn unschedulable_pods_fail_the_agent_only_past_the_bound() {
        let healthy = deployment(vec![]);
        let bound = Duration::from_secs(60);
        let recent = pod(None, Some(now() - chrono::Duration::seconds(30)));
        assert_eq!(pod_failure(&healthy, &[recent], now(), bound), None);
        let old = pod(None, Some(now() - chrono::Duration::seconds(90)));
        let failure = pod_failure(&healthy, &[old], now(), bound).unwrap();
        assert_eq!(failure.reason, reasons::UNSCHEDULABLE);
        assert!(failure.message.contains("Insufficient memory"), "{}", failure.message);
    }
}
