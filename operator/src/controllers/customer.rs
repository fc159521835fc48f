//! The Customer controller: allocates the customer's id, builds its namespace with quotas,
//! NetworkPolicy and API key, keeps `status.usage` current, and on deletion stops its agents,
//! purges its data and deletes the namespace.
//!
//! `apply_customer` is the pipeline: [`load`] → [`admit`] → build the children (pure,
//! `crate::desired::customer`) → [`apply_children`] → `status::customer::derive_status` →
//! `report`.

use std::sync::Arc;

use chrono::Datelike;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, Customer, Tier};
use prospector_store::StoreError;
use prospector_store::api_keys::{self, KeyActivation};
use prospector_store::customers::{self as store, CustomerRecord};

use super::{
    FinalizerEvent, apply, delete_all_if_exists, delete_if_exists, matches_live, object_uid, report, with_finalizer,
};
use crate::context::{Context, object_key};
use crate::desired::customer::{API_KEY_SECRET, API_KEY_SECRET_KEY, CustomerChildren, NamespaceObjects};
use crate::error::{OperatorError, Result};
use crate::quota::{effective_limits, month_start, usage_view};
use crate::status::customer::{CustomerFacts, CustomerState, derive_status};
use crate::status::timestamp;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "customer";

/// Reconciles one Customer.
pub async fn reconcile(customer: Arc<Customer>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let api: Api<Customer> = Api::all(ctx.client.clone());
    let action = with_finalizer(&api, customer.clone(), &ctx, |event| async {
        match event {
            FinalizerEvent::Apply(customer) => apply_customer(&customer, &ctx).await,
            FinalizerEvent::Cleanup(customer) => cleanup_customer(&customer, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&object_key(customer.as_ref()));
    Ok(action)
}

async fn apply_customer(customer: &Customer, ctx: &Context) -> Result<Action> {
    let api: Api<Customer> = Api::all(ctx.client.clone());
    let now = ctx.clock.now();
    let tier = match load(customer, ctx).await? {
        Ok(tier) => tier,
        Err(invalid) => return stop_invalid(customer, &api, ctx, invalid).await,
    };
    let customer_id = match admit(customer, &tier, ctx).await? {
        Ok(id) => id,
        Err(invalid) => return stop_invalid(customer, &api, ctx, invalid).await,
    };
    let name = customer.name_any();
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
    let icp = crate::icp::aggregate(&prospector_store::documents::ready_document_icps(&ctx.pool, customer_id).await?);
    let (children_hash, children_applied_at) = apply_children(customer, &children, &quota, icp.as_ref(), ctx).await?;

    let snapshot = store::usage_snapshot(&ctx.pool, customer_id, now.date_naive(), month_start(now))
        .await?
        .ok_or(OperatorError::MissingField("customer_quotas row"))?;
    let facts = CustomerFacts {
        customer_id,
        namespace: namespace.clone(),
        api_key_secret: API_KEY_SECRET.to_owned(),
        tier: customer.spec.tier.clone(),
        usage: usage_view(&snapshot),
        refused_agents: prospector_store::agents::refused_agents(&ctx.pool, customer_id).await?,
        suspended: customer.spec.suspended,
        children_hash,
        children_applied_at,
        icp,
    };
    let status = derive_status(
        customer.status.as_ref(),
        customer.metadata.generation,
        now,
        &CustomerState::Reconciled(Box::new(facts)),
    );
    report(&api, customer, ctx, status).await?;
    if customer.status.as_ref().and_then(|s| s.observed_generation) != customer.metadata.generation {
        // A spec change (suspension, tier, overrides) concerns every agent of the customer. They
        // are woken from here, after this reconcile, so that they read the customer from a cache
        // that already holds the change.
        ctx.wake(prospector_store::agents::live_agents(&ctx.pool, customer_id).await?);
    }
    // Usage moves without spec changes; re-read it periodically and at the turn of the month.
    Ok(Action::requeue(ctx.settings.resync.min(until_next_month(now).unwrap_or(ctx.settings.resync))))
}

/// Why a customer cannot be reconciled until its spec (or its tier) changes.
struct Invalid {
    reason: &'static str,
    message: String,
}

/// Reports an invalid spec on the customer and waits for a change. The Tier watch wakes a
/// customer whose tier appears.
async fn stop_invalid(customer: &Customer, api: &Api<Customer>, ctx: &Context, invalid: Invalid) -> Result<Action> {
    let state = CustomerState::Invalid { reason: invalid.reason, message: invalid.message };
    let status = derive_status(customer.status.as_ref(), customer.metadata.generation, ctx.clock.now(), &state);
    report(api, customer, ctx, status).await?;
    Ok(Action::await_change())
}

/// Load and validate: the customer's tier must exist. The tier controller's cache answers; a
/// tier it lacks (one just created may not be there yet) is looked up in the apiserver.
async fn load(customer: &Customer, ctx: &Context) -> Result<std::result::Result<Arc<Tier>, Invalid>> {
    let tier = match ctx.cached_tier(&customer.spec.tier) {
        Some(tier) => Some(tier),
        None => Api::<Tier>::all(ctx.client.clone()).get_opt(&customer.spec.tier).await?.map(Arc::new),
    };
    Ok(tier.ok_or_else(|| Invalid {
        reason: reasons::TIER_NOT_FOUND,
        message: format!("tier {:?} does not exist; create it or choose another tier", customer.spec.tier),
    }))
}

/// Admit: mirror the customer in Postgres (allocating its id) and write the limits snapshot its
/// quota decisions compare against.
async fn admit(customer: &Customer, tier: &Tier, ctx: &Context) -> Result<std::result::Result<i64, Invalid>> {
    let record = CustomerRecord {
        k8s_uid: object_uid(customer)?,
        name: customer.name_any(),
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
            return Ok(Err(Invalid { reason: reasons::INVALID_SPEC, message }));
        }
        Err(e) => return Err(e.into()),
    };
    let limits = effective_limits(&tier.spec, customer.spec.quota_overrides.as_ref());
    if store::set_quota_limits(&ctx.pool, customer_id, &limits).await? {
        // New limits (a tier change, an override): agents waiting for quota may fit now.
        ctx.wake(prospector_store::agents::waiting_agents(&ctx.pool, customer_id).await?);
    }
    Ok(Ok(customer_id))
}

/// Applies the namespace's children unless they are current, and returns the digest they were
/// built from and when they were last applied or found current.
///
/// Most reconciles only refresh usage (an agent was admitted or released); re-applying the same
/// children would only load the apiserver. They are applied when what they are built from
/// changes, on a new generation, and when the API key Secret is gone. Once per resync period
/// they are compared with the apiserver's copies, and applied only if one of those drifted.
async fn apply_children(
    customer: &Customer,
    children: &CustomerChildren<'_>,
    quota: &prospector_crds::NamespaceQuota,
    icp: Option<&prospector_crds::IcpCriteria>,
    ctx: &Context,
) -> Result<(String, String)> {
    let now = ctx.clock.now();
    let objects = children.namespace_objects(quota, icp);
    let children_hash = objects.digest();
    let current = customer.status.as_ref();
    let applied_at = current.and_then(|s| s.children_applied_at.clone());
    let applied_recently = applied_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| (now - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default() < ctx.settings.resync);
    let inputs_current = current.and_then(|s| s.children_hash.as_deref()) == Some(children_hash.as_str())
        && current.and_then(|s| s.observed_generation) == customer.metadata.generation
        && crate::status::is_true(current.map(|s| s.conditions.as_slice()).unwrap_or_default(), types::READY)
        && ctx.key_secret_exists(children.namespace);
    if let Some(applied_at) = applied_at.filter(|_| inputs_current && applied_recently) {
        return Ok((children_hash, applied_at));
    }
    let apis = NamespaceApis::new(&ctx.client, children.namespace);
    if inputs_current {
        let current = apis.match_live(&objects).await;
        ctx.metrics.drift_checks.with_label_values(&[if current { "current" } else { "drifted" }]).inc();
        if current {
            ensure_api_key(ctx, children, children.customer_id).await?;
            return Ok((children_hash, timestamp(now)));
        }
    }
    apply(&apis.namespaces, &objects.namespace).await?;
    // The namespace's children do not depend on each other: one round trip for all of them,
    // not five in a row, is what a new customer waits for.
    tokio::try_join!(
        apply(&apis.quotas, &objects.quota),
        apply(&apis.limit_ranges, &objects.limits),
        apply(&apis.policies, &objects.policy),
        apply(&apis.config_maps, &objects.icp),
        ensure_api_key(ctx, children, children.customer_id),
    )?;
    Ok((children_hash, timestamp(now)))
}

/// Where a customer's [`NamespaceObjects`] live.
struct NamespaceApis {
    namespaces: Api<Namespace>,
    quotas: Api<ResourceQuota>,
    limit_ranges: Api<LimitRange>,
    policies: Api<NetworkPolicy>,
    config_maps: Api<ConfigMap>,
}

impl NamespaceApis {
    fn new(client: &kube::Client, namespace: &str) -> Self {
        Self {
            namespaces: Api::all(client.clone()),
            quotas: Api::namespaced(client.clone(), namespace),
            limit_ranges: Api::namespaced(client.clone(), namespace),
            policies: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
        }
    }

    /// Whether the apiserver's watch cache still holds everything the operator would apply:
    /// the periodic drift check, at the cost of five reads instead of five applies. One that
    /// cannot be read counts as drifted: it is applied.
    async fn match_live(&self, objects: &NamespaceObjects) -> bool {
        let found = tokio::join!(
            matches_live(&self.namespaces, &objects.namespace),
            matches_live(&self.quotas, &objects.quota),
            matches_live(&self.limit_ranges, &objects.limits),
            matches_live(&self.policies, &objects.policy),
            matches_live(&self.config_maps, &objects.icp),
        );
        found == (true, true, true, true, true)
    }
}

/// Whether the namespace and its children, as the apiserver's watch cache holds them, still
/// carry everything the operator would apply for this customer (the periodic drift check).
pub async fn children_match_live(
    client: &kube::Client,
    children: &CustomerChildren<'_>,
    quota: &prospector_crds::NamespaceQuota,
    icp: Option<&prospector_crds::IcpCriteria>,
) -> bool {
    NamespaceApis::new(client, children.namespace).match_live(&children.namespace_objects(quota, icp)).await
}

/// The first second of the next UTC month, as a delay from `now`.
fn until_next_month(now: chrono::DateTime<chrono::Utc>) -> Option<std::time::Duration> {
    let today = now.date_naive();
    let (year, month) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
    let next = chrono::NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 1)?;
    Some((next.and_utc() - now).to_std().unwrap_or_default())
}

/// Creates the API key Secret once and makes its key the customer's one active key. The Secret
/// is the key's only home: a key is generated only when the Secret does not exist, a replayed
/// reconcile re-activates the same hash, and a Secret deleted and made anew revokes the key it
/// held.
async fn ensure_api_key(ctx: &Context, children: &CustomerChildren<'_>, customer_id: i64) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), children.namespace);
    // A Secret the watch has listed no copy of is most likely not there (a new customer): create
    // it without asking first. A cache lagging behind an earlier create finds it on the conflict.
    let existing =
        if ctx.key_secret_known_absent(children.namespace) { None } else { secrets.get_opt(API_KEY_SECRET).await? };
    let secret = match existing {
        Some(secret) => secret,
        None => {
            let key = api_keys::generate();
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
    if api_keys::activate_key(&ctx.pool, customer_id, &key).await? == KeyActivation::Stale {
        // Read just before a rotation replaced it: the next reconcile reads the new key.
        tracing::debug!(customer_id, "the API key Secret was read before a rotation");
    }
    Ok(())
}

async fn cleanup_customer(customer: &Customer, ctx: &Context) -> Result<Action> {
    let namespace = customer_namespace(&customer.name_any());
    // Stop the agents: their own finalizers release their quota and children.
    delete_all_if_exists(&Api::<AgentDeployment>::namespaced(ctx.client.clone(), &namespace)).await?;
    // Hard-delete blobs, chunks and vectors; keep the billing rows; revoke the keys.
    let purge = store::purge_customer(&ctx.pool, object_uid(customer)?).await?;
    delete_if_exists(&Api::<Namespace>::all(ctx.client.clone()), &namespace).await?;
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
