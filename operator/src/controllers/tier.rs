//! The Tier controller: counts the customers on each tier into its status, and works out from
//! the customer watch which tiers to recount. (A Tier change reaching its customers is the
//! Customer controller's watch on Tiers.)

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
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

/// What of a customer its tier's count depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Membership {
    tier: String,
    deleting: bool,
}

impl Membership {
    fn of(customer: &Customer) -> Self {
        Self { tier: customer.spec.tier.clone(), deleting: customer.metadata.deletion_timestamp.is_some() }
    }
}

/// Which tier each customer is on, as the customer controller's watch last delivered it: the
/// tiers to recount are those a customer joined or left. Fed from the customer watch, so tiers
/// need no watch of Customers of their own, and a customer moving between tiers has both
/// recounted.
#[derive(Debug, Default)]
pub struct TierMemberships {
    by_uid: HashMap<String, Membership>,
    /// While the watch relists: the customers listed so far (those it does not list again were
    /// deleted while it was away), and the tiers to recount once the list is complete. The
    /// customer cache takes a relisted state only at its end, so a recount asked for earlier
    /// would count the old one.
    relist: Option<Relist>,
}

#[derive(Debug, Default)]
struct Relist {
    listed: HashSet<String>,
    recount: BTreeSet<String>,
}

impl TierMemberships {
    /// The tiers whose count `event` may have changed, to recount now that the customer cache
    /// holds it.
    pub fn on_event(&mut self, event: &watcher::Event<Customer>) -> BTreeSet<String> {
        let mut recount = BTreeSet::new();
        match event {
            watcher::Event::Apply(customer) | watcher::Event::InitApply(customer) => {
                let Some(uid) = customer.metadata.uid.clone() else { return recount };
                let now = Membership::of(customer);
                match self.by_uid.insert(uid.clone(), now.clone()) {
                    Some(before) if before == now => {}
                    Some(before) => {
                        recount.insert(before.tier);
                        recount.insert(now.tier);
                    }
                    None => {
                        recount.insert(now.tier);
                    }
                }
                if let (watcher::Event::InitApply(_), Some(relist)) = (event, self.relist.as_mut()) {
                    relist.listed.insert(uid);
                    relist.recount.append(&mut recount);
                }
            }
            watcher::Event::Delete(customer) => {
                let uid = customer.metadata.uid.as_deref().unwrap_or_default();
                recount.extend(self.by_uid.remove(uid).map(|m| m.tier));
                recount.insert(customer.spec.tier.clone());
            }
            watcher::Event::Init => self.relist = Some(Relist::default()),
            watcher::Event::InitDone => {
                let Relist { listed, recount: mut relisted } = self.relist.take().unwrap_or_default();
                self.by_uid.retain(|uid, membership| {
                    let kept = listed.contains(uid);
                    if !kept {
                        relisted.insert(membership.tier.clone());
                    }
                    kept
                });
                recount = relisted;
            }
        }
        recount
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use watcher::Event;

    use super::*;

    fn customer(uid: &str, tier: &str) -> Customer {
        let spec = serde_json::from_value(serde_json::json!({
            "companyName": "Acme", "email": format!("{uid}@example.com"), "tier": tier,
        }))
        .unwrap();
        let mut customer = Customer::new(uid, spec);
        customer.metadata.uid = Some(uid.to_owned());
        customer
    }

    fn tiers(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn joining_moving_leaving_and_deleting_recount_the_tiers_concerned() {
        let mut memberships = TierMemberships::default();
        assert_eq!(memberships.on_event(&Event::Apply(customer("a", "pro"))), tiers(&["pro"]));
        // A status write or any other change that keeps the tier recounts nothing.
        assert_eq!(memberships.on_event(&Event::Apply(customer("a", "pro"))), tiers(&[]));
        // Moving recounts the tier left and the tier joined.
        assert_eq!(memberships.on_event(&Event::Apply(customer("a", "enterprise"))), tiers(&["enterprise", "pro"]));
        // A customer being deleted no longer counts.
        let mut deleting = customer("a", "enterprise");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(memberships.on_event(&Event::Apply(deleting.clone())), tiers(&["enterprise"]));
        assert_eq!(memberships.on_event(&Event::Delete(deleting)), tiers(&["enterprise"]));
        assert!(memberships.by_uid.is_empty());
    }

    #[test]
    fn a_relist_recounts_the_tiers_of_customers_deleted_while_away() {
        let mut memberships = TierMemberships::default();
        for (uid, tier) in [("a", "pro"), ("b", "starter"), ("c", "pro")] {
            memberships.on_event(&Event::Apply(customer(uid, tier)));
        }
        assert_eq!(memberships.on_event(&Event::Init), tiers(&[]));
        // Nothing is recounted before the list is complete: until then the cache holds the
        // state from before the relist.
        assert_eq!(memberships.on_event(&Event::InitApply(customer("a", "pro"))), tiers(&[]));
        assert_eq!(memberships.on_event(&Event::InitApply(customer("c", "enterprise"))), tiers(&[]));
        // "c" moved, and "b" was not listed: it went while the watch was away.
        assert_eq!(memberships.on_event(&Event::InitDone), tiers(&["enterprise", "pro", "starter"]));
        assert_eq!(memberships.by_uid.len(), 2);
        assert_eq!(memberships.on_event(&Event::Apply(customer("b", "starter"))), tiers(&["starter"]));
    }
}
