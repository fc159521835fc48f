//! The controllers: one per custom resource, each a pipeline of load/validate → build desired
//! objects → server-side apply → status patch.

pub mod agent;
pub mod customer;
pub mod tier;

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, FIELD_MANAGER, object_key};
use crate::error::OperatorError;

/// The finalizer every Prospector resource with external state carries.
pub const FINALIZER: &str = "prospector.dev/cleanup";

/// Server-side applies `object` with the operator's field manager.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, OperatorError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.meta().name.clone().ok_or(OperatorError::MissingField("metadata.name"))?;
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Server-side applies the status of `K` named `name`.
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<(), OperatorError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
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
