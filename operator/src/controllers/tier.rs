//! The Tier controller: counts the customers on each tier into its status. (A Tier change
//! reaching its customers is the Customer controller's watch on Tiers.)

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{Customer, Tier, TierStatus};

use super::write_status_if_changed;
use crate::context::{Context, object_key};
use crate::error::Result;
use crate::status::condition;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "tier";

/// Reconciles one Tier.
pub async fn reconcile(tier: Arc<Tier>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let name = tier.name_any();
    let on_this_tier = |c: &Customer| c.spec.tier == name && c.metadata.deletion_timestamp.is_none();
    let count = match ctx.synced_customer_cache() {
        Some(cache) => cache.state().iter().filter(|c| on_this_tier(c.as_ref())).count(),
        // Before the cache is there, ask the apiserver.
        _ => {
            let customers: Api<Customer> = Api::all(ctx.client.clone());
            let mut count = 0;
            let mut params = ListParams::default().limit(500);
            loop {
                let page = customers.list(&params).await?;
                count += page.items.iter().filter(|c| on_this_tier(c)).count();
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => break,
                }
            }
            count
        }
    };
    let previous = tier.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let ready = condition(
        &previous,
        types::READY,
        true,
        reasons::RECONCILED,
        format!("{count} customer(s) on this tier"),
        tier.metadata.generation,
        ctx.clock.now(),
    );
    let status = TierStatus {
        customers: i32::try_from(count).unwrap_or(i32::MAX),
        observed_generation: tier.metadata.generation,
        conditions: vec![ready],
    };
    // A tier's status changes with every customer that joins or leaves: counted, not announced.
    write_status_if_changed(&Api::<Tier>::all(ctx.client.clone()), tier.as_ref(), status).await?;
    ctx.succeeded(&object_key(tier.as_ref()));
    Ok(Action::requeue(ctx.settings.resync))
}
