//! The Customer controller: allocates the customer's id, builds its namespace with quotas,
//! NetworkPolicy and API key, keeps `status.usage` current, and on deletion stops its agents,
//! purges its data and deletes the namespace.

use std::sync::Arc;

use chrono::Datelike;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, Condition, Customer, Tier};
use prospector_store::StoreError;
use prospector_store::customers::{self as store, CustomerRecord};
use uuid::Uuid;

use super::{FINALIZER, apply, apply_status};
use crate::apikey;
use crate::context::{Context, object_key};
use crate::desired::customer::{API_KEY_SECRET, API_KEY_SECRET_KEY, CustomerChildren};
use crate::error::{OperatorError, Result};
use crate::quota::{effective_limits, exhausted_quotas, month_start, usage_view};
use crate::status::{condition, timestamp};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "customer";

/// Reconciles one Customer.
pub async fn reconcile(customer: Arc<Customer>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let api: Api<Customer> = Api::all(ctx.client.clone());
    let action = finalizer(&api, FINALIZER, customer.clone(), |event| async {
        match event {
            Finalizer::Apply(customer) => apply_customer(&customer, &ctx).await,
            Finalizer::Cleanup(customer) => cleanup_customer(&customer, &ctx).await,
        }
    })
    .await
    .map_err(OperatorError::from)?;
    ctx.succeeded(&object_key(customer.as_ref()));
    Ok(action)
}

fn uid(customer: &Customer) -> Result<Uuid> {
    customer.uid().and_then(|u| Uuid::parse_str(&u).ok()).ok_or(OperatorError::MissingField("metadata.uid"))
}

async fn apply_customer(customer: &Customer, ctx: &Context) -> Result<Action> {
    let name = customer.name_any();
    let api: Api<Customer> = Api::all(ctx.client.clone());
    let previous = customer.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let generation = customer.metadata.generation;
    let now = ctx.clock.now();

    // Load and validate.
    let Some(tier) = Api::<Tier>::all(ctx.client.clone()).get_opt(&customer.spec.tier).await? else {
        let message = format!("tier {:?} does not exist; create it or choose another tier", customer.spec.tier);
        let ready = condition(&previous, types::READY, false, reasons::TIER_NOT_FOUND, &message, generation, now);
        publish_transitions(customer, ctx, &previous, std::slice::from_ref(&ready)).await;
        apply_status(&api, &name, serde_json::json!({"observedGeneration": generation, "conditions": [ready]})).await?;
        // The Tier watch wakes this customer when the tier appears.
        return Ok(Action::await_change());
    };
    let record = CustomerRecord {
        k8s_uid: uid(customer)?,
        name: name.clone(),
        company_name: customer.spec.company_name.clone(),
        email: customer.spec.email.clone(),
        subscription_tier: customer.spec.tier.clone(),
        contact_name: customer.spec.contact.as_ref().and_then(|c| c.name.clone()),
        contact_title: customer.spec.contact.as_ref().and_then(|c| c.title.clone()),
        company_website: customer.spec.website.clone(),
        company_size: customer.spec.company_size.clone(),
        industry: customer.spec.industry.clone(),
        suspended: customer.spec.suspended,
    };
    let customer_id = match store::upsert_customer(&ctx.pool, &record).await {
        Ok(id) => id,
        Err(StoreError::EmailInUse) => {
            let message =
                format!("another customer already uses {}; each account needs its own address", customer.spec.email);
            let ready = condition(&previous, types::READY, false, reasons::INVALID_SPEC, message, generation, now);
            publish_transitions(customer, ctx, &previous, std::slice::from_ref(&ready)).await;
            apply_status(&api, &name, serde_json::json!({"observedGeneration": generation, "conditions": [ready]}))
                .await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    let limits = effective_limits(&tier.spec, customer.spec.quota_overrides.as_ref());
    if store::set_quota_limits(&ctx.pool, customer_id, &limits).await? {
        // New limits (a tier change, an override): agents waiting for quota may fit now.
        ctx.wake(prospector_store::agents::waiting_agents(&ctx.pool, customer_id).await?);
    }

    // Build and apply the children.
    let namespace = customer_namespace(&name);
    let owner = customer.controller_owner_ref(&()).ok_or(OperatorError::MissingField("metadata.uid"))?;
    let children = CustomerChildren {
        customer_name: &name,
        customer_id,
        tier: &customer.spec.tier,
        namespace: &namespace,
        platform_namespace: &ctx.settings.platform_namespace,
        owner,
    };
    let quota = tier.spec.with_overrides(customer.spec.quota_overrides.as_ref()).namespace_quota;
    // Most reconciles only refresh usage (an agent was admitted or released); re-applying the
    // same children would only load the apiserver. They are re-applied when what they are built
    // from changes, on a new generation, and at least once per resync period to repair drift.
    let children_hash = children_digest(&children, &quota);
    let status_now = customer.status.as_ref();
    let applied_recently = status_now
        .and_then(|s| s.children_applied_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| (now - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default() < ctx.settings.resync);
    let children_current = applied_recently
        && status_now.and_then(|s| s.children_hash.as_deref()) == Some(children_hash.as_str())
        && status_now.and_then(|s| s.observed_generation) == generation
        && crate::status::is_true(&previous, types::READY);
    let children_applied_at = if children_current {
        status_now.and_then(|s| s.children_applied_at.clone()).unwrap_or_else(|| timestamp(now))
    } else {
        apply(&Api::<Namespace>::all(ctx.client.clone()), &children.namespace()).await?;
        apply(&Api::<ResourceQuota>::namespaced(ctx.client.clone(), &namespace), &children.resource_quota(&quota))
            .await?;
        apply(&Api::<LimitRange>::namespaced(ctx.client.clone(), &namespace), &children.limit_range()).await?;
        apply(&Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &namespace), &children.network_policy()).await?;
        ensure_api_key(ctx, &children, customer_id).await?;
        timestamp(now)
    };

    // Status.
    let today = now.date_naive();
    let snapshot = store::usage_snapshot(&ctx.pool, customer_id, today, month_start(now))
        .await?
        .ok_or(OperatorError::MissingField("customer_quotas row"))?;
    let usage = usage_view(&snapshot);
    let exhausted = exhausted_quotas(&usage);
    let conditions = vec![
        condition(
            &previous,
            types::READY,
            true,
            reasons::RECONCILED,
            "namespace, quotas and API key are in place",
            generation,
            now,
        ),
        if exhausted.is_empty() {
            condition(&previous, types::QUOTA_EXCEEDED, false, reasons::WITHIN_LIMITS, "", generation, now)
        } else {
            condition(
                &previous,
                types::QUOTA_EXCEEDED,
                true,
                reasons::LIMIT_REACHED,
                format!("at the limit: {}", exhausted.join(", ")),
                generation,
                now,
            )
        },
        if customer.spec.suspended {
            condition(
                &previous,
                types::SUSPENDED,
                true,
                reasons::SUSPENDED_BY_SPEC,
                "agents are scaled to zero",
                generation,
                now,
            )
        } else {
            condition(&previous, types::SUSPENDED, false, reasons::ACTIVE, "", generation, now)
        },
    ];
    publish_transitions(customer, ctx, &previous, &conditions).await;
    let status = serde_json::json!({
        "customerId": customer_id,
        "namespace": namespace,
        "apiKeySecret": API_KEY_SECRET,
        "tier": customer.spec.tier,
        "agents": format!("{}/{}", usage.agents.used, usage.agents.limit),
        "usage": usage,
        "observedGeneration": generation,
        "childrenHash": children_hash,
        "childrenAppliedAt": children_applied_at,
        "conditions": conditions,
    });
    let unchanged = customer
        .status
        .as_ref()
        .and_then(|current| serde_json::to_value(current).ok())
        .is_some_and(|current| current == status);
    if !unchanged {
        apply_status(&api, &name, status).await?;
    }
    // Usage moves without spec changes; re-read it periodically and at the turn of the month.
    let next_month = chrono::NaiveDate::from_ymd_opt(
        if today.month() == 12 { today.year() + 1 } else { today.year() },
        if today.month() == 12 { 1 } else { today.month() + 1 },
        1,
    );
    let until_month_end = next_month
        .and_then(|d| d.and_hms_opt(0, 0, 1))
        .map(|t| (t.and_utc() - now).to_std().unwrap_or_default())
        .unwrap_or(ctx.settings.resync);
    Ok(Action::requeue(ctx.settings.resync.min(until_month_end)))
}

/// A digest of everything the namespace's children are built from.
fn children_digest(children: &CustomerChildren<'_>, quota: &prospector_crds::NamespaceQuota) -> String {
    use sha2::{Digest, Sha256};
    let inputs = serde_json::json!({
        "namespace": children.namespace(),
        "quota": children.resource_quota(quota),
        "limits": children.limit_range(),
        "policy": children.network_policy(),
    });
    hex::encode(&Sha256::digest(inputs.to_string().as_bytes())[..12])
}

/// Creates the API key Secret once and records the key's hash. The Secret is the key's only
/// home: a key is generated only when the Secret does not exist, and a replayed reconcile
/// re-registers the same hash.
async fn ensure_api_key(ctx: &Context, children: &CustomerChildren<'_>, customer_id: i64) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), children.namespace);
    let secret = match secrets.get_opt(API_KEY_SECRET).await? {
        Some(secret) => secret,
        None => {
            let key = apikey::generate();
            match secrets.create(&PostParams::default(), &children.api_key_secret(&key)).await {
                Ok(secret) => secret,
                // Another reconcile created it first: use that one.
                Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(API_KEY_SECRET).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let key = secret
        .data
        .as_ref()
        .and_then(|d| d.get(API_KEY_SECRET_KEY))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or(OperatorError::MissingField("the API key in the Secret"))?;
    store::register_api_key(&ctx.pool, customer_id, apikey::prefix(&key), &apikey::sha256(&key)).await?;
    Ok(())
}

async fn cleanup_customer(customer: &Customer, ctx: &Context) -> Result<Action> {
    let namespace = customer_namespace(&customer.name_any());
    // Stop the agents: their own finalizers release their quota and children.
    let agents: Api<AgentDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    match agents.delete_collection(&DeleteParams::default(), &ListParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    // Hard-delete blobs, chunks and vectors; keep the billing rows; revoke the keys.
    let purge = store::purge_customer(&ctx.pool, uid(customer)?).await?;
    match Api::<Namespace>::all(ctx.client.clone()).delete(&namespace, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.publish(
        customer,
        false,
        "Deleted",
        format!(
            "namespace {namespace} deleted; {} documents and {} blobs purged; {} API keys revoked",
            purge.documents, purge.blobs, purge.keys_revoked
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Publishes an Event for each condition that changed.
pub(crate) async fn publish_transitions<K: Resource<DynamicType = ()>>(
    object: &K,
    ctx: &Context,
    previous: &[Condition],
    next: &[Condition],
) {
    for changed in crate::status::transitions(previous, next) {
        // A first "nothing is wrong" (QuotaExceeded=False, Suspended=False, ...) is not news;
        // skipping it keeps a busy cluster's event volume down.
        let first_time = !previous.iter().any(|p| p.type_ == changed.type_);
        if first_time && changed.type_ != types::READY && !changed.is_true() {
            continue;
        }
        let warning = match changed.type_.as_str() {
            types::READY => !changed.is_true(),
            _ => changed.is_true(),
        };
        let note = if changed.message.is_empty() {
            format!("{} is {}", changed.type_, changed.status)
        } else {
            format!("{} is {}: {}", changed.type_, changed.status, changed.message)
        };
        ctx.publish(object, warning, &changed.reason, note).await;
    }
}
