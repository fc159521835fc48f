//! The AgentDeployment controller: reserves quota atomically in Postgres, runs the agent as a
//! Deployment with its ServiceAccount and ConfigMap, reports its phase and performance, holds
//! agents at zero while the customer is suspended or over its cost cap, and on deletion
//! releases the quota and wakes the agents waiting for it.
//!
//! `apply_agent` is the pipeline: `load_customer` → [`admit`] → [`apply_children`] → [`observe`] →
//! `status::agent::derive_status` → [`record_phase`] → `report`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, GetParams, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use prospector_crds::customer::customer_of_namespace;
use prospector_crds::{AgentDeployment, AgentPerformance, AgentPhase, labels};
use prospector_store::agents::{self as store, Admission, AgentRecord, AgentRow};

use super::{
    CustomerView, FinalizerEvent, Loaded, apply, delete_if_exists, load_customer, object_uid, report, with_finalizer,
};
use crate::context::{Context, object_key};
use crate::desired::agent::{AgentChildren, child_name, deployment_matches};
use crate::error::{OperatorError, Result};
use crate::quota::{Hold, deployment_id, desired_replicas, month_start};
use crate::status::agent::{
    AgentFacts, AgentRecordView, AgentState, CostCap, DeploymentHealth, derive_status, needs_progress_check,
    pod_failure,
};
use crate::status::{from_kube_time, timestamp};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "agent";

/// Reconciles one AgentDeployment.
pub async fn reconcile(agent: Arc<AgentDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = agent.namespace().ok_or(OperatorError::MissingField("metadata.namespace"))?;
    let api: Api<AgentDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = with_finalizer(&api, agent.clone(), &ctx, |event| async {
        match event {
            FinalizerEvent::Apply(agent) => apply_agent(&agent, &api, &ctx).await,
            FinalizerEvent::Cleanup(agent) => cleanup_agent(&agent, &api, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&object_key(agent.as_ref()));
    Ok(action)
}

/// What admission decided, and what it read on the way.
struct Admitted {
    /// The agent's row as it was before this reservation.
    row: AgentRow,
    admission: Admission,
    hold: Option<Hold>,
    cost_cap: Option<CostCap>,
    performance: AgentPerformance,
}

impl Admitted {
    /// The replicas the agent may run, or `None` when it was never admitted.
    fn running_replicas(&self) -> Option<i32> {
        match &self.admission {
            Admission::Admitted { replicas, .. } => Some(*replicas),
            // Already admitted but a scale-up was refused: keep what it holds.
            Admission::Refused(_) if self.row.admitted => Some(self.row.quota_reserved_replicas),
            Admission::Refused(_) => None,
        }
    }
}

async fn apply_agent(agent: &AgentDeployment, api: &Api<AgentDeployment>, ctx: &Context) -> Result<Action> {
    let namespace = agent.namespace().unwrap_or_default();
    let now = ctx.clock.now();
    let generation = agent.metadata.generation;
    let customer = match load_customer(&namespace, "agents", ctx).await? {
        Loaded::Customer(customer) => customer,
        Loaded::Stopped { reason, message, action } => {
            let state = AgentState::Pending { reason, message };
            report(api, agent, ctx, derive_status(agent.status.as_ref(), generation, now, &state)).await?;
            return Ok(action);
        }
    };
    let admitted = admit(agent, &namespace, &customer, ctx).await?;
    let running_replicas = admitted.running_replicas();
    let deployment = match running_replicas {
        Some(replicas) => {
            let deployment = apply_children(agent, &namespace, &customer, &admitted.row, replicas, ctx).await?;
            Some(observe(agent, &namespace, &deployment, replicas, ctx).await?)
        }
        // Never admitted: nothing is created until quota frees up.
        None => None,
    };
    let facts = AgentFacts {
        record: AgentRecordView {
            agent_id: admitted.row.id,
            deployment_id: admitted.row.deployment_id.clone(),
            deployed_at: Some(timestamp(admitted.row.deployed_at.unwrap_or(now))),
            performance: admitted.performance,
        },
        admission: admitted.admission,
        admitted_before: admitted.row.admitted,
        hold: admitted.hold,
        cost_cap: admitted.cost_cap,
        running_replicas: running_replicas.unwrap_or(0),
        deployment,
    };
    let status = derive_status(agent.status.as_ref(), generation, now, &AgentState::Evaluated(Box::new(facts)));
    let phase = status.phase.unwrap_or(AgentPhase::Pending);
    // `deployed_at` is the time the status shows (this reconcile's clock), not the database's
    // own: the next reconcile then derives the same status and writes nothing.
    if !admitted.row.records(phase, running_replicas.is_some()) {
        store::set_agent_status(&ctx.pool, admitted.row.id, phase, running_replicas.is_some(), now).await?;
    }
    report(api, agent, ctx, status).await?;
    // Deployment changes wake this agent through the owned-object watch; pods do not, so an
    // agent whose pods are starting or failing is looked at again soon. The periodic resync
    // picks up reported usage, a cost cap and the turn of the month.
    let retry_soon = running_replicas.is_none()
        || admitted.hold == Some(Hold::CostCap)
        || needs_progress_check(phase, running_replicas.unwrap_or(0));
    Ok(Action::requeue(if retry_soon { ctx.settings.waiting_retry } else { ctx.settings.resync }))
}

/// Admit: mirror the agent in Postgres and reserve its quota in one conditional statement,
/// then wake whoever the decision concerns.
async fn admit(agent: &AgentDeployment, namespace: &str, customer: &CustomerView, ctx: &Context) -> Result<Admitted> {
    let now = ctx.clock.now();
    let uid = object_uid(agent)?;
    let record = AgentRecord {
        k8s_uid: uid,
        customer_id: customer.id,
        namespace: namespace.to_owned(),
        name: agent.name_any(),
        agent_name: agent.spec.agent_name.clone(),
        agent_type: agent.spec.agent_type,
        model: agent.spec.model.clone(),
        config: agent.spec.config.clone().unwrap_or_else(|| serde_json::json!({})),
        replicas: agent.spec.replicas,
        deployment_id: deployment_id(customer.id, &uid.to_string()),
        created_at: agent.creation_timestamp().map(|t| from_kube_time(&t.0)).unwrap_or(now),
    };
    // One statement reads the row, what the agent reported and the month's spending.
    let store::UpsertedAgent { row, performance: reported, cost_this_month_usd, max_cost_per_month_usd } =
        store::upsert_agent(&ctx.pool, &record, month_start(now)).await?;
    let cost_cap = max_cost_per_month_usd
        .filter(|cap| cost_this_month_usd >= *cap)
        .map(|cap_usd| CostCap { spent_usd: cost_this_month_usd, cap_usd });
    let (wanted, hold) =
        desired_replicas(agent.spec.replicas, agent.spec.suspend, customer.suspended, cost_cap.is_some());
    // Most reconciles of a running agent come from its Deployment's status and ask for what it
    // already holds: that reservation would change nothing, so it is not sent.
    let store::Reservation { admission, refused_changed } = if row.holds(wanted) {
        store::Reservation { admission: Admission::Admitted { replicas: wanted }, refused_changed: false }
    } else {
        store::reserve_agent_quota(&ctx.pool, customer.id, row.id, wanted, month_start(now)).await?
    };
    let first_admission = !row.admitted && matches!(admission, Admission::Admitted { .. });
    if wanted < row.quota_reserved_replicas || first_admission {
        // Capacity was freed (scale-down, hold), or the head of the line moved: waiting agents
        // retry now rather than at their next periodic attempt.
        ctx.wake(store::waiting_agents(&ctx.pool, customer.id).await?);
    }
    let resized = row.admitted
        && matches!(admission, Admission::Admitted { replicas, .. } if replicas != row.quota_reserved_replicas);
    if refused_changed {
        // The customer's count of refused agents (its QuotaExceeded) changed: news.
        ctx.wake_customer_soon(&customer.name);
    } else if first_admission || resized {
        // The customer's usage changed.
        ctx.wake_customer(&customer.name);
    }
    Ok(Admitted {
        row,
        admission,
        hold,
        cost_cap: cost_cap.filter(|_| hold == Some(Hold::CostCap)),
        performance: AgentPerformance {
            total_tasks: reported.total_tasks,
            completed_tasks: reported.completed_tasks,
            failed_tasks: reported.failed_tasks,
            average_latency_ms: reported.average_latency_ms,
            total_api_calls: reported.total_api_calls,
            total_cost_usd: reported.total_cost_usd,
            last_active_at: reported.last_active_at.map(timestamp),
        },
    })
}

/// Build the children (pure, `crate::desired::agent`) and apply them; returns the Deployment
/// as the apiserver has it.
async fn apply_children(
    agent: &AgentDeployment,
    namespace: &str,
    customer: &CustomerView,
    row: &AgentRow,
    replicas: i32,
    ctx: &Context,
) -> Result<Deployment> {
    let owner = agent.controller_owner_ref(&()).ok_or(OperatorError::MissingField("metadata.uid"))?;
    let image = ctx.settings.catalog.image_for(agent.spec.agent_type, agent.spec.image.as_deref()).to_owned();
    let children = AgentChildren {
        name: &agent.name_any(),
        namespace,
        customer_name: &customer.name,
        spec: &agent.spec,
        owner,
        image: &image,
        api_url: &ctx.settings.api_url,
        agent_id: row.id,
        deployment_id: &row.deployment_id,
    };
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    let desired = children.deployment(replicas);
    // Most reconciles of a running agent come from its Deployment's status; re-applying
    // unchanged children would only load the apiserver. The Deployment cache decides; one it
    // does not hold yet (created a moment ago) is read from the apiserver's watch cache.
    let name = child_name(&agent.name_any());
    // A generation not yet observed (a new agent, a spec change) is applied whatever exists.
    let observed = agent.status.as_ref().and_then(|s| s.observed_generation) == agent.metadata.generation;
    let current = match ctx.cached_deployment(namespace, &name) {
        Some(cached) => Some(cached),
        None if !observed => None,
        None => match deployments.get_with(&name, &GetParams::any()).await {
            Ok(deployment) => Some(deployment),
            Err(kube::Error::Api(e)) if e.code == 404 => None,
            Err(e) => return Err(e.into()),
        },
    };
    match current {
        Some(current) if observed && deployment_matches(&current, &desired) => Ok(current),
        _ => {
            // The pods need the ServiceAccount and ConfigMap, so these two go first, together.
            let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace);
            let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace);
            let (account, config_map) = (children.service_account(), children.config_map());
            tokio::try_join!(apply(&accounts, &account), apply(&config_maps, &config_map))?;
            apply(&deployments, &desired).await
        }
    }
}

/// Reads how the Deployment is doing. Its pods are read only while it is short of available
/// or updated replicas: a healthy agent costs no extra request.
async fn observe(
    agent: &AgentDeployment,
    namespace: &str,
    deployment: &Deployment,
    wanted: i32,
    ctx: &Context,
) -> Result<DeploymentHealth> {
    let status = deployment.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let failure = if wanted > 0 && (available < wanted || updated < wanted) {
        // Pods are read only once the Deployment counts some: before that there is nothing to
        // fail but their creation, which the Deployment's own conditions report.
        let pods = if status.replicas.unwrap_or(0) > 0 {
            let selector = format!("{}={}", labels::AGENT, agent.name_any());
            // From the apiserver's watch cache: a pod's state a moment old is as good as
            // current here, and a quorum read per reconcile of every starting agent is not.
            let params = ListParams::default().labels(&selector).match_any();
            Api::<Pod>::namespaced(ctx.client.clone(), namespace).list(&params).await?.items
        } else {
            Vec::new()
        };
        pod_failure(deployment, &pods, ctx.clock.now(), ctx.settings.unschedulable_after)
    } else {
        None
    };
    Ok(DeploymentHealth { available, ready: status.ready_replicas.unwrap_or(0), failure })
}

/// Cleanup: the agent shows Terminating, its children go, and its quota is released exactly
/// once, which wakes the agents waiting for it.
async fn cleanup_agent(agent: &AgentDeployment, api: &Api<AgentDeployment>, ctx: &Context) -> Result<Action> {
    let namespace = agent.namespace().unwrap_or_default();
    let generation = agent.metadata.generation;
    let terminating = derive_status(agent.status.as_ref(), generation, ctx.clock.now(), &AgentState::Terminating);
    // Showing Terminating is for people; it must never hold up the release of the quota.
    if let Err(e) = report(api, agent, ctx, terminating).await {
        tracing::info!(agent = %agent.name_any(), %namespace, error = %e, "cannot show Terminating; cleaning up anyway");
    }
    let name = child_name(&agent.name_any());
    delete_if_exists(&Api::<Deployment>::namespaced(ctx.client.clone(), &namespace), &name).await?;
    delete_if_exists(&Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace), &name).await?;
    delete_if_exists(&Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace), &name).await?;
    let uid = object_uid(agent)?;
    let customer_id = store::find_agent_customer(&ctx.pool, uid).await?;
    let released = store::release_agent(&ctx.pool, uid).await?;
    if let Some(customer_id) = customer_id {
        ctx.wake(store::waiting_agents(&ctx.pool, customer_id).await?);
    }
    if released {
        if let Some(customer) = customer_of_namespace(&namespace) {
            ctx.wake_customer(customer);
        }
        ctx.publish(agent, false, "Terminated", "the agent stopped and its quota was released".into()).await;
    }
    Ok(Action::await_change())
}
