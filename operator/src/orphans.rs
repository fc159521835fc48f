//! The orphan sweep: releases the Postgres rows of AgentDeployments and KnowledgeDocuments that
//! no longer exist.
//!
//! A row is written only by a reconcile of a live object and released by that object's
//! finalizer, so normally no row outlives its object. Leases have no fencing, though: a replica
//! that lost its lease can still finish a reconcile it had started, from a stale cache, after
//! the new leader ran the object's cleanup. Its row would then hold quota forever. The sweep is
//! the backstop: a live row whose object the apiserver no longer has (looked up by name and
//! compared by UID, read from etcd rather than a cache) is released as the object's cleanup
//! would have released it. A UID never comes back, so a row found gone stays gone.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use prospector_crds::customer::customer_of_namespace;
use prospector_crds::{AgentDeployment, KnowledgeDocument};
use prospector_store::agents::RowObject;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::context::Context;
use crate::error::Result;

/// Sweeps every `interval` until aborted. The caches need not have synced: a row they cannot
/// place is looked up in the apiserver. (Waiting on their readiness here would race the
/// controllers' own wait on it: kube's readiness signal wakes only one waiter.)
pub async fn sweep_orphans(
    ctx: Arc<Context>,
    agents: Store<AgentDeployment>,
    documents: Store<KnowledgeDocument>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = sweep_once(&ctx, &agents, &documents).await {
            tracing::warn!(error = %e, "cannot sweep for orphaned rows");
        }
    }
}

/// One pass over the live rows of both kinds; each release is logged and counted in `report`.
async fn sweep_once(
    ctx: &Context,
    agents: &Store<AgentDeployment>,
    documents: &Store<KnowledgeDocument>,
) -> Result<()> {
    for row in prospector_store::agents::live_agent_objects(&ctx.pool).await? {
        if !gone(ctx, agents, &row).await? {
            continue;
        }
        if prospector_store::agents::release_agent(&ctx.pool, row.k8s_uid).await? {
            report(ctx, "agent", &row);
            // Its quota may admit an agent that waits.
            ctx.wake(prospector_store::agents::waiting_agents(&ctx.pool, row.customer_id).await?);
        }
    }
    for row in prospector_store::documents::live_document_objects(&ctx.pool).await? {
        if !gone(ctx, documents, &row).await? {
            continue;
        }
        if prospector_store::documents::delete_document(&ctx.pool, row.k8s_uid).await?.deleted {
            report(ctx, "document", &row);
        }
    }
    Ok(())
}

/// Whether a row's object is gone: neither the cache nor the apiserver has an object of that
/// name with the row's UID. The cache answers for the objects that exist, so only a row it
/// cannot place costs a request.
async fn gone<K>(ctx: &Context, cache: &Store<K>, row: &RowObject) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let is_row_object = |uid: Option<String>| uid.and_then(|u| Uuid::parse_str(&u).ok()) == Some(row.k8s_uid);
    if cache.get(&ObjectRef::new(&row.name).within(&row.namespace)).is_some_and(|o| is_row_object(o.uid())) {
        return Ok(false);
    }
    let live = Api::<K>::namespaced(ctx.client.clone(), &row.namespace).get_metadata_opt(&row.name).await?;
    Ok(!live.is_some_and(|o| is_row_object(o.uid())))
}

/// Logs, counts and refreshes the customer's usage for one released row.
fn report(ctx: &Context, kind: &'static str, row: &RowObject) {
    tracing::warn!(
        kind,
        namespace = %row.namespace,
        name = %row.name,
        uid = %row.k8s_uid,
        "released the row of an object that no longer exists"
    );
    ctx.metrics.orphans_released.with_label_values(&[kind]).inc();
    if let Some(customer) = customer_of_namespace(&row.namespace) {
        ctx.wake_customer(customer);
    }
}
