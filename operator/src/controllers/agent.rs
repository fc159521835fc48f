//! The AgentDeployment controller: reserves quota atomically in Postgres, runs the agent as a
//! Deployment with its ServiceAccount and ConfigMap, derives the phase, reports performance,
//! holds agents at zero while the customer is suspended or over its cost cap, and on deletion
//! releases the quota and wakes the agents waiting for it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, DeleteParams, GetParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{AgentDeployment, AgentPerformance, AgentPhase, Condition, Customer};
use prospector_store::agents::{self as store, Admission, AgentRecord};
use prospector_store::customers::usage_snapshot;
use uuid::Uuid;

use super::customer::publish_transitions;
use super::{FINALIZER, apply, apply_status};
use crate::context::{Context, object_key};
use crate::desired::agent::{AgentChildren, child_name};
use crate::error::{OperatorError, Result};
use crate::quota::{Hold, deployment_id, desired_replicas, month_start, refusal_message};
use crate::status::{condition, from_kube_time, timestamp};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "agent";

/// Reconciles one AgentDeployment.
pub async fn reconcile(agent: Arc<AgentDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = agent.namespace().ok_or(OperatorError::MissingField("metadata.namespace"))?;
    let api: Api<AgentDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, agent.clone(), |event| async {
        match event {
            Finalizer::Apply(agent) => apply_agent(&agent, &namespace, &ctx).await,
            Finalizer::Cleanup(agent) => cleanup_agent(&agent, &namespace, &ctx).await,
        }
    })
    .await
    .map_err(OperatorError::from)?;
    ctx.succeeded(&object_key(agent.as_ref()));
    Ok(action)
}

fn uid(agent: &AgentDeployment) -> Result<Uuid> {
    agent.uid().and_then(|u| Uuid::parse_str(&u).ok()).ok_or(OperatorError::MissingField("metadata.uid"))
}

/// The phase as stored in `customer_agents.status`.
fn phase_column(phase: AgentPhase) -> &'static str {
    match phase {
        AgentPhase::Pending => "pending",
        AgentPhase::Deployed => "deployed",
        AgentPhase::Running => "running",
        AgentPhase::Suspended => "suspended",
        AgentPhase::QuotaExceeded => "quota_exceeded",
        AgentPhase::Failed => "failed",
        AgentPhase::Terminating => "terminating",
    }
}

struct StatusUpdate<'a> {
    agent: &'a AgentDeployment,
    phase: AgentPhase,
    conditions: Vec<Condition>,
    agent_id: Option<i64>,
    deployment_id: Option<String>,
    ready_replicas: Option<i32>,
    deployed_at: Option<DateTime<Utc>>,
    performance: Option<AgentPerformance>,
}

async fn write_status(ctx: &Context, namespace: &str, update: StatusUpdate<'_>) -> Result<()> {
    let previous = update.agent.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    publish_transitions(update.agent, ctx, &previous, &update.conditions).await;
    let mut status = serde_json::json!({
        "phase": update.phase,
        "observedGeneration": update.agent.metadata.generation,
        "conditions": update.conditions,
    });
    let fields = [
        ("agentId", update.agent_id.map(serde_json::Value::from)),
        ("deploymentId", update.deployment_id.map(serde_json::Value::from)),
        ("readyReplicas", update.ready_replicas.map(serde_json::Value::from)),
        ("deployedAt", update.deployed_at.map(|t| serde_json::Value::from(timestamp(t)))),
        ("performance", update.performance.map(|p| serde_json::to_value(p).unwrap_or_default())),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            status[key] = value;
        }
    }
    // Skip the write when nothing changed (transition times are kept, so a steady state
    // compares equal): most reconciles of a busy cluster are of this kind.
    let unchanged = update
        .agent
        .status
        .as_ref()
        .and_then(|current| serde_json::to_value(current).ok())
        .is_some_and(|current| current == status);
    if unchanged {
        return Ok(());
    }
    let api: Api<AgentDeployment> = Api::namespaced(ctx.client.clone(), namespace);
    apply_status(&api, &update.agent.name_any(), status).await
}

async fn apply_agent(agent: &AgentDeployment, namespace: &str, ctx: &Context) -> Result<Action> {
    let now = ctx.clock.now();
    let generation = agent.metadata.generation;
    let previous = agent.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let pending = |reason: &str, message: String| StatusUpdate {
        agent,
        phase: AgentPhase::Pending,
        conditions: vec![condition(&previous, types::READY, false, reason, message, generation, now)],
        agent_id: None,
        deployment_id: None,
        ready_replicas: None,
        deployed_at: None,
        performance: None,
    };

    // Load and validate: the agent must live in a customer's namespace, cust-<customer>.
    let Some(customer_name) = namespace.strip_prefix("cust-").map(str::to_owned) else {
        let message = format!("namespace {namespace} is not a customer namespace; create agents in cust-<customer>");
        write_status(ctx, namespace, pending(reasons::INVALID_SPEC, message)).await?;
        return Ok(Action::await_change());
    };
    let customer = Api::<Customer>::all(ctx.client.clone()).get_opt(&customer_name).await?;
    let Some((customer, customer_id)) =
        customer.and_then(|c| c.status.as_ref().and_then(|s| s.customer_id).map(|id| (c.clone(), id)))
    else {
        let message = format!("waiting for customer {customer_name} to be set up");
        write_status(ctx, namespace, pending(reasons::IN_PROGRESS, message)).await?;
        return Ok(Action::requeue(std::time::Duration::from_secs(2)));
    };
    if customer.metadata.deletion_timestamp.is_some() {
        let message = format!("customer {customer_name} is being deleted");
        write_status(ctx, namespace, pending(reasons::IN_PROGRESS, message)).await?;
        return Ok(Action::await_change());
    }

    // Mirror the agent in Postgres and reserve its quota in one conditional statement.
    let uid = uid(agent)?;
    let row = store::upsert_agent(
        &ctx.pool,
        &AgentRecord {
            k8s_uid: uid,
            customer_id,
            namespace: namespace.to_owned(),
            name: agent.name_any(),
            agent_name: agent.spec.agent_name.clone(),
            agent_type: agent.spec.agent_type.as_str().to_owned(),
            model: agent.spec.model.clone(),
            config: agent.spec.config.clone().unwrap_or_else(|| serde_json::json!({})),
            replicas: agent.spec.replicas,
            deployment_id: deployment_id(customer_id, &uid.to_string()),
            created_at: agent.creation_timestamp().map(|t| from_kube_time(&t.0)).unwrap_or(now),
        },
    )
    .await?;
    let snapshot = usage_snapshot(&ctx.pool, customer_id, now.date_naive(), month_start(now)).await?;
    let cost_capped = snapshot.as_ref().is_some_and(|s| s.cost_this_month_usd >= s.limits.max_cost_per_month_usd);
    let (wanted, hold) =
        desired_replicas(agent.spec.replicas, agent.spec.suspend, customer.spec.suspended, cost_capped);
    let admission = store::reserve_agent_quota(&ctx.pool, customer_id, row.id, wanted, month_start(now)).await?;
    let performance = store::agent_performance(&ctx.pool, row.id).await?;
    let performance = AgentPerformance {
        total_tasks: performance.total_tasks,
        completed_tasks: performance.completed_tasks,
        failed_tasks: performance.failed_tasks,
        average_latency_ms: performance.average_latency_ms,
        total_api_calls: performance.total_api_calls,
        total_cost_usd: performance.total_cost_usd,
        last_active_at: performance.last_active_at.map(timestamp),
    };
    let first_admission = !row.admitted && matches!(admission, Admission::Admitted { .. });
    if wanted < row.quota_reserved_replicas || first_admission {
        // Capacity was freed (scale-down, hold), or the head of the line moved: waiting agents
        // retry now rather than at their next periodic attempt.
        ctx.wake(store::waiting_agents(&ctx.pool, customer_id).await?);
    }
    let resized = row.admitted
        && matches!(admission, Admission::Admitted { replicas, .. } if replicas != row.quota_reserved_replicas);
    if first_admission || resized {
        // The customer's usage changed.
        ctx.wake_customer(&customer_name);
    }

    let running_replicas = match &admission {
        Admission::Admitted { replicas, .. } => *replicas,
        // Already admitted but a scale-up was refused: keep what it holds.
        Admission::Refused(_) if row.admitted => row.quota_reserved_replicas,
        Admission::Refused(refusal) => {
            // Never admitted: nothing is created until quota frees up.
            let (reason, message) = refusal_message(refusal);
            store::set_agent_status(&ctx.pool, row.id, phase_column(AgentPhase::QuotaExceeded), false).await?;
            let conditions = vec![
                condition(&previous, types::READY, false, reason, &message, generation, now),
                condition(&previous, types::QUOTA_EXCEEDED, true, reason, &message, generation, now),
            ];
            write_status(
                ctx,
                namespace,
                StatusUpdate {
                    agent,
                    phase: AgentPhase::QuotaExceeded,
                    conditions,
                    agent_id: Some(row.id),
                    deployment_id: Some(row.deployment_id.clone()),
                    ready_replicas: Some(0),
                    deployed_at: None,
                    performance: Some(performance),
                },
            )
            .await?;
            return Ok(Action::requeue(ctx.settings.waiting_retry));
        }
    };

    // Build and apply the children.
    let owner = agent.controller_owner_ref(&()).ok_or(OperatorError::MissingField("metadata.uid"))?;
    let image = ctx.settings.catalog.image_for(agent.spec.agent_type, agent.spec.image.as_deref()).to_owned();
    let icp = customer.status.as_ref().and_then(|s| s.icp.as_ref());
    let children = AgentChildren {
        name: &agent.name_any(),
        namespace,
        customer_name: &customer_name,
        spec: &agent.spec,
        owner,
        image: &image,
        api_url: &ctx.settings.api_url,
        agent_id: row.id,
        deployment_id: &row.deployment_id,
        customer_icp: icp,
    };
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    let desired = children.deployment(running_replicas);
    // Most reconciles of a running agent come from its Deployment's status; re-applying
    // unchanged children would only load the apiserver. A cached read decides.
    let current = match deployments.get_with(&child_name(&agent.name_any()), &GetParams::any()).await {
        Ok(deployment) => Some(deployment),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(e.into()),
    };
    let up_to_date = current.as_ref().is_some_and(|current| {
        let observed = agent.status.as_ref().and_then(|s| s.observed_generation) == generation;
        observed && deployment_matches(current, &desired)
    });
    let deployment = if up_to_date {
        current.unwrap_or(desired)
    } else {
        apply(&Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace), &children.service_account()).await?;
        apply(&Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace), &children.config_map()).await?;
        apply(&deployments, &desired).await?
    };
    let available = deployment.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    let ready_replicas = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);

    // Derive the phase and conditions.
    let phase = match hold {
        Some(_) => AgentPhase::Suspended,
        None if running_replicas > 0 && available >= running_replicas => AgentPhase::Running,
        None if running_replicas == 0 => AgentPhase::Running,
        None => AgentPhase::Deployed,
    };
    let mut conditions = Vec::new();
    let (ready_reason, ready_message) = match (hold, phase) {
        (Some(Hold::CustomerSuspended), _) => (reasons::SUSPENDED_BY_SPEC, "the customer is suspended".to_owned()),
        (Some(Hold::AgentSuspended), _) => (reasons::SUSPENDED_BY_SPEC, "spec.suspend is set".to_owned()),
        (Some(Hold::CostCap), _) => (reasons::COST_CAP_REACHED, "the customer reached its monthly cost cap".to_owned()),
        (None, AgentPhase::Running) => {
            (reasons::REPLICAS_AVAILABLE, format!("{available}/{running_replicas} replicas available"))
        }
        (None, _) => (reasons::REPLICAS_UNAVAILABLE, format!("{available}/{running_replicas} replicas available")),
    };
    conditions.push(condition(
        &previous,
        types::READY,
        phase == AgentPhase::Running,
        ready_reason,
        ready_message,
        generation,
        now,
    ));
    conditions.push(match &admission {
        Admission::Refused(refusal) => {
            let (reason, message) = refusal_message(refusal);
            condition(&previous, types::QUOTA_EXCEEDED, true, reason, message, generation, now)
        }
        Admission::Admitted { .. } => {
            condition(&previous, types::QUOTA_EXCEEDED, false, reasons::WITHIN_LIMITS, "", generation, now)
        }
    });
    conditions.push(if hold == Some(Hold::CostCap) {
        let message = snapshot
            .as_ref()
            .map(|s| {
                format!(
                    "${:.2} spent of a ${:.2} monthly cap; agents resume when the cap is raised or the month turns",
                    s.cost_this_month_usd, s.limits.max_cost_per_month_usd
                )
            })
            .unwrap_or_default();
        condition(&previous, types::COST_CAP_EXCEEDED, true, reasons::COST_CAP_REACHED, message, generation, now)
    } else {
        condition(&previous, types::COST_CAP_EXCEEDED, false, reasons::WITHIN_LIMITS, "", generation, now)
    });
    store::set_agent_status(&ctx.pool, row.id, phase_column(phase), true).await?;
    let deployed_at = row.deployed_at.unwrap_or(now);
    write_status(
        ctx,
        namespace,
        StatusUpdate {
            agent,
            phase,
            conditions,
            agent_id: Some(row.id),
            deployment_id: Some(row.deployment_id.clone()),
            ready_replicas: Some(ready_replicas),
            deployed_at: Some(deployed_at),
            performance: Some(performance),
        },
    )
    .await?;
    // Deployment changes wake this agent through the owned-object watch; the periodic resync
    // picks up reported usage, a cost cap and the turn of the month.
    Ok(Action::requeue(if hold == Some(Hold::CostCap) { ctx.settings.waiting_retry } else { ctx.settings.resync }))
}

/// Whether a Deployment already runs what `desired` asks for: replicas, image, config hash.
fn deployment_matches(current: &Deployment, desired: &Deployment) -> bool {
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    let template_hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("prospector.dev/config-hash").cloned())
    };
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
    };
    replicas(current) == replicas(desired)
        && template_hash(current) == template_hash(desired)
        && image(current) == image(desired)
}

async fn cleanup_agent(agent: &AgentDeployment, namespace: &str, ctx: &Context) -> Result<Action> {
    let name = child_name(&agent.name_any());
    let params = DeleteParams::background();
    let not_found = |r: std::result::Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    };
    not_found(Api::<Deployment>::namespaced(ctx.client.clone(), namespace).delete(&name, &params).await.map(|_| ()))?;
    not_found(Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace).delete(&name, &params).await.map(|_| ()))?;
    not_found(
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace).delete(&name, &params).await.map(|_| ()),
    )?;
    let customer_id = store::find_agent_customer(&ctx.pool, uid(agent)?).await?;
    let released = store::release_agent(&ctx.pool, uid(agent)?).await?;
    if let Some(customer_id) = customer_id {
        ctx.wake(store::waiting_agents(&ctx.pool, customer_id).await?);
    }
    if released {
        if let Some(customer) = namespace.strip_prefix("cust-") {
            ctx.wake_customer(customer);
        }
        ctx.publish(agent, false, "Terminated", "the agent stopped and its quota was released".into()).await;
    }
    Ok(Action::await_change())
}
