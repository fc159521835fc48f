//! Customer usage refreshes, throttled per customer: admissions, resizes and releases of a
//! customer's agents and documents ask for one, and the customer controller re-reads the usage
//! and writes its status.
//!
//! Postgres holds the counters that quota decisions read; the status only shows them. So a
//! usage refresh may wait: the first request waits [`USAGE_REFRESH_DELAY`] for more to coalesce
//! with, and requests after it are served together once [`USAGE_REFRESH_INTERVAL`] has passed.
//! A customer whose agents a busy operator admits one by one, seconds apart, got a status write
//! for each (5.6 per customer with five agents, docs/benchmarks.md).
//!
//! What is news rather than a counter (a refused agent's `QuotaExceeded`, the ICP the agents
//! read from their ConfigMap) asks with [`UsageRefreshes::request_soon`]: it waits only the
//! delay, whatever the interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use prospector_crds::Customer;
use tokio::sync::mpsc::UnboundedSender;

/// How long a customer's first usage refresh waits for more requests to coalesce with.
pub const USAGE_REFRESH_DELAY: Duration = Duration::from_secs(3);

/// The least time between two usage refreshes of one customer.
pub const USAGE_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Sends customers to the customer controller's wake-up channel: usage refreshes at most once
/// per [`USAGE_REFRESH_INTERVAL`] each, news after [`USAGE_REFRESH_DELAY`].
#[derive(Debug)]
pub struct UsageRefreshes {
    sender: UnboundedSender<ObjectRef<Customer>>,
    /// Customers with a refresh scheduled or sent less than an interval ago, and whether another
    /// was asked for since. An entry lives only that long.
    active: Arc<Mutex<HashMap<String, bool>>>,
    /// Customers with a `request_soon` refresh scheduled.
    soon: Arc<Mutex<HashSet<String>>>,
}

impl UsageRefreshes {
    pub fn new(sender: UnboundedSender<ObjectRef<Customer>>) -> Self {
        Self { sender, active: Arc::default(), soon: Arc::default() }
    }

    /// Asks for a refresh of `customer`'s usage.
    pub fn request(&self, customer: &str) {
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(asked_again) = active.get_mut(customer) {
                *asked_again = true;
                return;
            }
            active.insert(customer.to_owned(), false);
        }
        let (active, sender, customer) = (self.active.clone(), self.sender.clone(), customer.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(USAGE_REFRESH_DELAY).await;
            loop {
                // What was asked for until now is served by this refresh.
                if let Some(asked_again) = active.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&customer) {
                    *asked_again = false;
                }
                let _ = sender.send(ObjectRef::new(&customer));
                tokio::time::sleep(USAGE_REFRESH_INTERVAL).await;
                let mut entries = active.lock().unwrap_or_else(|p| p.into_inner());
                if !entries.get(&customer).copied().unwrap_or(false) {
                    entries.remove(&customer);
                    return;
                }
            }
        });
    }

    /// Asks for a refresh of `customer` within [`USAGE_REFRESH_DELAY`], throttled or not:
    /// requests within the delay coalesce into one.
    pub fn request_soon(&self, customer: &str) {
        if !self.soon.lock().unwrap_or_else(|p| p.into_inner()).insert(customer.to_owned()) {
            return;
        }
        let (soon, sender, customer) = (self.soon.clone(), self.sender.clone(), customer.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(USAGE_REFRESH_DELAY).await;
            soon.lock().unwrap_or_else(|p| p.into_inner()).remove(&customer);
            let _ = sender.send(ObjectRef::new(&customer));
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio::time::{Duration, Instant};

    use super::*;

    /// Requests `customer`'s refresh at each of `at` (seconds from now, ascending) on a task of
    /// its own, and returns when each refresh arrived (whole seconds from now) until none has
    /// for two minutes, longer than any gap between requests. Time is paused: it moves only
    /// when every task waits.
    async fn refreshes_for(requests: &[(&str, u64)]) -> Vec<(String, u64)> {
        let requests: Vec<(&str, u64, bool)> = requests.iter().map(|(c, t)| (*c, *t, false)).collect();
        refreshes_with(&requests).await
    }

    /// As [`refreshes_for`], where a `true` asks with `request_soon`.
    async fn refreshes_with(requests: &[(&str, u64, bool)]) -> Vec<(String, u64)> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let refreshes = Arc::new(UsageRefreshes::new(sender));
        let start = Instant::now();
        let requester = {
            let (refreshes, requests) =
                (refreshes.clone(), requests.iter().map(|(c, t, soon)| (c.to_string(), *t, *soon)).collect::<Vec<_>>());
            tokio::spawn(async move {
                for (customer, at, soon) in requests {
                    tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                    if soon {
                        refreshes.request_soon(&customer);
                    } else {
                        refreshes.request(&customer);
                    }
                }
            })
        };
        let mut seen = Vec::new();
        while let Ok(Some(customer)) = tokio::time::timeout(Duration::from_secs(120), receiver.recv()).await {
            seen.push((customer.name, start.elapsed().as_secs_f64().round() as u64));
        }
        requester.await.unwrap();
        assert!(refreshes.active.lock().unwrap().is_empty(), "quiet customers leave no entry");
        assert!(refreshes.soon.lock().unwrap().is_empty(), "nor a served soon request");
        seen
    }

    fn at(customer: &str, after: Duration) -> (String, u64) {
        (customer.to_owned(), after.as_secs())
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_costs_one_refresh_after_the_delay() {
        let burst = [("acme", 0), ("acme", 1), ("acme", 1), ("acme", 2)];
        assert_eq!(refreshes_for(&burst).await, [at("acme", USAGE_REFRESH_DELAY)]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_spread_over_time_are_served_once_per_interval() {
        // One admission every 4 s for 16 s: a refresh after the delay, then one an interval
        // later for whatever came since, and nothing once they stop. After a quiet spell, a
        // request is again served after the delay alone.
        let spread = [("acme", 0), ("acme", 4), ("acme", 8), ("acme", 12), ("acme", 16), ("acme", 100)];
        let delay_then_interval = USAGE_REFRESH_DELAY + USAGE_REFRESH_INTERVAL;
        assert_eq!(
            refreshes_for(&spread).await,
            [
                at("acme", USAGE_REFRESH_DELAY),
                at("acme", delay_then_interval),
                at("acme", Duration::from_secs(100) + USAGE_REFRESH_DELAY)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn customers_are_throttled_apart() {
        let two = [("acme", 0), ("globex", 1), ("acme", 2)];
        assert_eq!(
            refreshes_for(&two).await,
            [at("acme", USAGE_REFRESH_DELAY), at("globex", USAGE_REFRESH_DELAY + Duration::from_secs(1))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn news_is_served_after_the_delay_whatever_the_interval() {
        // Usage at 0 and 4 s: refreshes at 3 s and, for the second, at 33 s. A refused agent
        // at 10 s (twice) is served at 13 s, not held until 33 s.
        let requests = [("acme", 0, false), ("acme", 4, false), ("acme", 10, true), ("acme", 11, true)];
        let delay_then_interval = USAGE_REFRESH_DELAY + USAGE_REFRESH_INTERVAL;
        assert_eq!(
            refreshes_with(&requests).await,
            [
                at("acme", USAGE_REFRESH_DELAY),
                at("acme", Duration::from_secs(10) + USAGE_REFRESH_DELAY),
                at("acme", delay_then_interval)
            ]
        );
    }
}
