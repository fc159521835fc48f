//! The controllers, one per custom resource, and the steps they share. Every reconcile reads as
//! the same pipeline: load/validate → admit (Postgres) → build the desired children (pure,
//! `crate::desired`) → apply them with server-side apply → derive the status (pure,
//! `crate::status`) → [`write_status_if_changed`] → [`publish_transitions`].

pub mod agent;
pub mod customer;
pub mod document;
pub mod tier;

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, GetParams, ListParams, Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::customer::customer_of_namespace;
use prospector_crds::{Condition, Customer, HasConditions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::context::{Context, FIELD_MANAGER, object_key};
use crate::error::{OperatorError, Result};

/// The finalizer every Prospector resource with external state carries.
pub const FINALIZER: &str = prospector_crds::labels::CLEANUP_FINALIZER;

/// Runs one reconcile of an object that carries [`FINALIZER`]: `Apply` while it lives, `Cleanup`
/// once it is being deleted, after which the finalizer is removed.
///
/// kube's `runtime::finalizer` does the same, but a pass that adds the finalizer ends there and
/// waits for the watch to bring the object back. Here the same pass goes on to `Apply` once the
/// apiserver has confirmed the finalizer, so external state still never exists without it, and
/// a new object costs one pass through the controller's queue instead of two. At scale the
/// second pass was most of a new object's wait (docs/benchmarks.md).
///
/// A pass that starts from a cached copy older than the operator's own last write to the object
/// is skipped: the watch event of that write brings the object back (`crate::own_writes`).
pub async fn with_finalizer<K, F, Fut>(api: &Api<K>, object: Arc<K>, ctx: &Context, reconcile: F) -> Result<Action>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnOnce(FinalizerEvent<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Action>>,
{
    if ctx.own_writes.is_behind(object.meta(), std::time::Instant::now()) {
        return Ok(Action::requeue(ctx.own_writes.patience()));
    }
    let name = object.meta().name.clone().ok_or(OperatorError::MissingField("metadata.name"))?;
    let finalizers = object.finalizers();
    let ours = finalizers.iter().position(|f| f == FINALIZER);
    match (ours, object.meta().deletion_timestamp.is_some()) {
        (Some(index), true) => {
            let action = reconcile(FinalizerEvent::Cleanup(object.clone())).await?;
            // The test makes a concurrent change to the list fail this patch (and retry) rather
            // than remove someone else's finalizer.
            let patch = json_patch_of(serde_json::json!([
                {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
                {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
            ]))?;
            match api.patch::<K>(&name, &PatchParams::default(), &Patch::Json(patch)).await {
                // Gone already: an earlier pass removed the finalizer and the object with it.
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(action),
                other => other.map(|_| action).map_err(|source| OperatorError::Finalizer { step: "remove", source }),
            }
        }
        // Being deleted without our finalizer: nothing of ours to clean up.
        (None, true) => Ok(Action::await_change()),
        (Some(_), false) => reconcile(FinalizerEvent::Apply(object)).await,
        (None, false) => {
            // The apiserver does not deduplicate finalizers: the test makes a concurrent add
            // fail this one (and retry) instead of adding ours twice.
            let patch = if finalizers.is_empty() {
                serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ])
            } else {
                serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                ])
            };
            let patched = api
                .patch::<K>(&name, &PatchParams::default(), &Patch::Json(json_patch_of(patch)?))
                .await
                .map_err(|source| OperatorError::Finalizer { step: "add", source })?;
            ctx.own_writes.wrote(patched.meta(), std::time::Instant::now());
            reconcile(FinalizerEvent::Apply(Arc::new(patched))).await
        }
    }
}

/// What [`with_finalizer`] asks a controller to do.
#[derive(Debug)]
pub enum FinalizerEvent<K> {
    /// The object lives (and carries the finalizer): bring the world in line with it.
    Apply(Arc<K>),
    /// The object is being deleted: remove what it owns outside Kubernetes.
    Cleanup(Arc<K>),
}

fn json_patch_of(operations: serde_json::Value) -> Result<json_patch::Patch> {
    Ok(serde_json::from_value(operations)?)
}

/// Server-side applies `object` with the operator's field manager.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.meta().name.clone().ok_or(OperatorError::MissingField("metadata.name"))?;
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Whether applying `object` would change nothing the operator sets, judged from the
/// apiserver's watch cache: a read there costs the apiserver a fraction of an apply that
/// changes nothing. An object that is missing or cannot be read (an older chart's role may not
/// grant the read) does not match, so the caller applies it.
pub async fn matches_live<K>(api: &Api<K>, object: &K) -> bool
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let Some(name) = object.meta().name.as_deref() else { return false };
    match api.get_with(name, &GetParams::any()).await {
        Ok(live) => match (serde_json::to_value(object), serde_json::to_value(&live)) {
            (Ok(desired), Ok(live)) => crate::desired::applied_fields_match(&desired, &live),
            _ => false,
        },
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => {
            tracing::debug!(error = %e, object = name, "cannot read an object to compare; applying it");
            false
        }
    }
}

/// Deletes `name`, treating "already gone" as done: cleanups are replayed after a crash.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    ignore_not_found(api.delete(name, &DeleteParams::background()).await.map(|_| ()))
}

/// Deletes every object behind `api`, treating a namespace that is already gone as done.
pub async fn delete_all_if_exists<K>(api: &Api<K>) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    ignore_not_found(api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.map(|_| ()))
}

fn ignore_not_found(result: std::result::Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => Ok(other?),
    }
}

/// The object's UID, the key of its Postgres rows.
pub fn object_uid<K: Resource>(object: &K) -> Result<Uuid> {
    object
        .meta()
        .uid
        .as_deref()
        .and_then(|u| Uuid::parse_str(u).ok())
        .ok_or(OperatorError::MissingField("metadata.uid"))
}

/// A status the operator writes.
pub trait OperatorStatus: HasConditions + Serialize + PartialEq {
    /// Whether `current` already holds everything this controller writes. Fields another writer
    /// owns are not compared (and not applied).
    fn is_written_in(&self, current: &Self) -> bool {
        self == current
    }
}

impl OperatorStatus for prospector_crds::TierStatus {}
impl OperatorStatus for prospector_crds::AgentDeploymentStatus {}
impl OperatorStatus for prospector_crds::KnowledgeDocumentStatus {}
impl OperatorStatus for prospector_crds::CustomerStatus {}

/// Writes `status` to `object` with server-side apply, unless the object already carries
/// exactly that status, and returns the object as written. Transition times are kept by
/// `crate::status::condition`, so a steady state compares equal: most reconciles of a busy
/// cluster write nothing.
pub async fn write_status_if_changed<K>(api: &Api<K>, object: &K, status: K::Status) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug,
    K::Status: OperatorStatus,
{
    if object.status().is_some_and(|current| status.is_written_in(current)) {
        return Ok(None);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        // Which fields moved is what tells a needed write from a wasted one (docs/benchmarks.md).
        let changed = changed_fields(object.status().and_then(|s| serde_json::to_value(s).ok()), &status);
        let namespace = object.meta().namespace.as_deref().unwrap_or("");
        tracing::debug!(kind = K::kind(&()).as_ref(), %namespace, object = %object.name_any(), ?changed, "writing status");
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written =
        api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(Some(written))
}

/// The top-level fields that differ between `current` and `next` (all of `next`'s without a
/// current status), added, changed or removed; a condition counts under its type.
fn changed_fields(current: Option<serde_json::Value>, next: &impl Serialize) -> Vec<String> {
    let next = serde_json::to_value(next).unwrap_or_default();
    let (empty, no_conditions) = (serde_json::Map::new(), Vec::new());
    let current = current.unwrap_or_default();
    let current_fields = current.as_object().unwrap_or(&empty);
    let conditions = |status: &serde_json::Value| -> Vec<serde_json::Value> {
        status.get("conditions").and_then(|c| c.as_array()).unwrap_or(&no_conditions).clone()
    };
    let (old_conditions, new_conditions) = (conditions(&current), conditions(&next));
    let next_fields = next.as_object().unwrap_or(&empty);
    let mut changed: Vec<String> = next_fields
        .iter()
        .filter(|(field, value)| *field != "conditions" && current_fields.get(*field) != Some(value))
        .chain(current_fields.iter().filter(|(field, _)| *field != "conditions" && !next_fields.contains_key(*field)))
        .map(|(field, _)| field.clone())
        .collect();
    let condition_type = |c: &serde_json::Value| c.get("type").and_then(|t| t.as_str()).map(str::to_owned);
    let new_types: Vec<String> = new_conditions.iter().filter_map(condition_type).collect();
    changed.extend(
        new_conditions
            .iter()
            .filter(|c| !old_conditions.contains(c))
            .chain(old_conditions.iter().filter(|c| condition_type(c).is_some_and(|t| !new_types.contains(&t))))
            .filter_map(condition_type)
            .map(|t| format!("conditions.{t}")),
    );
    changed
}

/// Whether a Ready=False `reason` says only that work is under way.
fn is_progress(reason: &str) -> bool {
    [reasons::IN_PROGRESS, reasons::REPLICAS_UNAVAILABLE, reasons::QUEUED].contains(&reason)
}

/// Publishes an Event for each condition that changed between `previous` and `next`.
pub async fn publish_transitions<K: Resource<DynamicType = ()>>(
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
        // Nor is a new object's first "not Ready yet, on its way" (pods starting, a document
        // queued): each would be one more apiserver write per object created.
        if first_time && changed.type_ == types::READY && !changed.is_true() && is_progress(&changed.reason) {
            continue;
        }
        let warning = match changed.type_.as_str() {
            // Deleting and scaling to zero are asked for, not faults.
            types::READY => {
                !changed.is_true()
                    && ![reasons::TERMINATING, reasons::SCALED_TO_ZERO].contains(&changed.reason.as_str())
            }
            _ => changed.is_true(),
        };
        ctx.publish(object, warning, &changed.reason, transition_note(changed)).await;
    }
}

/// The note of the Event for a condition that changed: "Ready is True: <message>".
pub fn transition_note(changed: &Condition) -> String {
    if changed.message.is_empty() {
        format!("{} is {}", changed.type_, changed.status)
    } else {
        format!("{} is {}: {}", changed.type_, changed.status, changed.message)
    }
}

/// The last two steps of every pipeline: write the status if it changed, then publish an Event
/// for each condition that moved.
pub async fn report<K>(api: &Api<K>, object: &K, ctx: &Context, status: K::Status) -> Result<()>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug,
    K::Status: OperatorStatus,
{
    let previous = object.status().map(|s| s.conditions().to_vec()).unwrap_or_default();
    let next = status.conditions().to_vec();
    if let Some(written) = write_status_if_changed(api, object, status).await? {
        ctx.own_writes.wrote(written.meta(), std::time::Instant::now());
    }
    publish_transitions(object, ctx, &previous, &next).await;
    Ok(())
}

/// The customer a namespaced object (agent, document) belongs to, as far as it needs it.
#[derive(Clone, Debug)]
pub struct CustomerView {
    pub name: String,
    pub id: i64,
    pub suspended: bool,
}

/// The outcome of loading an object's customer.
#[derive(Debug)]
pub enum Loaded {
    Customer(CustomerView),
    /// The pipeline stops here: the object is Pending for `reason`, and retries per `action`.
    Stopped {
        reason: &'static str,
        message: String,
        action: Action,
    },
}

/// Load and validate the customer of an object in `namespace`: it must be a customer's
/// namespace, `cust-<customer>`, and that customer must be set up and not being deleted.
/// `objects` names what is being created there, for the message ("agents", "documents").
pub async fn load_customer(namespace: &str, objects: &str, ctx: &Context) -> Result<Loaded> {
    let Some(customer_name) = customer_of_namespace(namespace) else {
        let message = format!("namespace {namespace} is not a customer namespace; create {objects} in cust-<customer>");
        return Ok(Loaded::Stopped { reason: reasons::INVALID_SPEC, message, action: Action::await_change() });
    };
    // Most reconciles find their customer set up in the cache; one it does not show set up yet
    // (a cache lagging behind the customer's first status) is read from the apiserver.
    let has_id = |c: &Customer| c.status.as_ref().and_then(|s| s.customer_id).is_some();
    let customer = match ctx.cached_customer(customer_name).filter(|c| has_id(c)) {
        Some(cached) => Some(cached),
        None => Api::<Customer>::all(ctx.client.clone()).get_opt(customer_name).await?.map(Arc::new),
    };
    let Some((customer, id)) = customer.and_then(|c| c.status.as_ref().and_then(|s| s.customer_id).map(|id| (c, id)))
    else {
        let message = format!("waiting for customer {customer_name} to be set up");
        let action = Action::requeue(std::time::Duration::from_secs(2));
        return Ok(Loaded::Stopped { reason: reasons::IN_PROGRESS, message, action });
    };
    if customer.metadata.deletion_timestamp.is_some() {
        let message = format!("customer {customer_name} is being deleted");
        return Ok(Loaded::Stopped { reason: reasons::IN_PROGRESS, message, action: Action::await_change() });
    }
    Ok(Loaded::Customer(CustomerView { name: customer_name.to_owned(), id, suspended: customer.spec.suspended }))
}

/// The error policy of every controller: count the error and retry with per-object backoff. A
/// database outage lands here, so objects are never marked Failed for it.
pub fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &OperatorError, Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    move |object, error, ctx| {
        ctx.metrics.reconcile_failed(controller, error.metric_label());
        let delay = ctx.backoff(object_key(object.as_ref()));
        tracing::warn!(
            controller,
            object = %object.name_any(),
            namespace = object.namespace().as_deref().unwrap_or(""),
            error = %error,
            retry_in_s = delay.as_secs(),
            "reconcile failed"
        );
        Action::requeue(delay)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changed_fields;

    #[test]
    fn changed_fields_name_the_fields_and_conditions_that_moved() {
        let ready = json!({"type": "Ready", "status": "True", "reason": "Reconciled"});
        let quota = json!({"type": "QuotaExceeded", "status": "False", "reason": "WithinLimits"});
        let current = json!({"agents": "1/5", "namespace": "cust-a", "conditions": [ready, quota]});
        let quota_full = json!({"type": "QuotaExceeded", "status": "False", "reason": "WithinLimits", "message": "at the limit: agents"});
        let next = json!({"agents": "5/5", "namespace": "cust-a", "conditions": [ready, quota_full]});
        assert_eq!(changed_fields(Some(current.clone()), &next), ["agents", "conditions.QuotaExceeded"]);
        assert!(changed_fields(Some(current.clone()), &current).is_empty());
        // Removed fields and conditions count too.
        let trimmed = json!({"agents": "1/5", "conditions": [ready]});
        assert_eq!(changed_fields(Some(current.clone()), &trimmed), ["namespace", "conditions.QuotaExceeded"]);
        assert_eq!(
            changed_fields(None, &next),
            ["agents", "namespace", "conditions.Ready", "conditions.QuotaExceeded"]
        );
    }
}
