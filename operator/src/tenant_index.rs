//! Keeps one partial HNSW index per large customer (store `tenant_index`): builds it when the
//! customer's chunks reach `min_chunks`, drops it when they fall below half of that or the
//! customer goes. The gap between the two keeps a customer hovering at the threshold from
//! building and dropping in turn. Runs on the leader only, one build at a time, largest
//! customer first: a build takes a CPU for seconds to tens of seconds.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use prospector_store::StoreError;
use prospector_store::tenant_index::{TenantIndex, build_index, chunk_counts, drop_index, tenant_indexes};
use sqlx::PgPool;

use crate::metrics::Metrics;

/// When customers get an index of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantIndexSettings {
    /// Chunks at which a customer's searches are worth an index (0 turns indexes off: every
    /// search scans exactly, and existing indexes are dropped).
    pub min_chunks: i64,
    /// `maintenance_work_mem` of a build, in MiB: a graph that fits builds several times faster.
    pub build_memory_mib: u32,
    /// How often the counts are compared with the indexes.
    pub interval: Duration,
}

impl Default for TenantIndexSettings {
    /// `min_chunks` comes from the tenant search benchmark (docs/benchmarks.md): around this
    /// size an exact scan's p95 nears the search latency target on two cores.
    fn default() -> Self {
        Self { min_chunks: 10_000, build_memory_mib: 512, interval: Duration::from_secs(30) }
    }
}

/// What one round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexPlan {
    /// Customers to build an index for, largest first.
    pub build: Vec<i64>,
    /// Customers whose index goes.
    pub drop: Vec<i64>,
}

/// Compares chunk counts with the indexes the catalog holds. An index being built (perhaps by
/// a replica that was leader a moment ago) is left alone; customers in `resting` (their last
/// build failed) are not built for now, so one failing build cannot hold up the others.
pub fn plan(counts: &[(i64, i64)], existing: &[TenantIndex], min_chunks: i64, resting: &HashSet<i64>) -> IndexPlan {
    let count_of = |customer: i64| counts.iter().find(|(c, _)| *c == customer).map_or(0, |(_, n)| *n);
    let keeps = |chunks: i64| min_chunks > 0 && chunks >= min_chunks / 2;
    let drop =
        existing.iter().filter(|i| !i.building && !keeps(count_of(i.customer_id))).map(|i| i.customer_id).collect();
    let mut build: Vec<(i64, i64)> = counts
        .iter()
        .filter(|(customer, chunks)| {
            min_chunks > 0
                && *chunks >= min_chunks
                && !resting.contains(customer)
                && !existing.iter().any(|i| i.customer_id == *customer && (i.valid || i.building))
        })
        .copied()
        .collect();
    build.sort_by_key(|(customer, chunks)| (std::cmp::Reverse(*chunks), *customer));
    IndexPlan { build: build.into_iter().map(|(customer, _)| customer).collect(), drop }
}

/// What one round did.
#[derive(Debug)]
pub struct Round {
    pub plan: IndexPlan,
    /// The customer whose build failed, and why.
    pub failed_build: Option<(i64, StoreError)>,
}

/// One round: drops what should go, then builds the largest missing index.
pub async fn reconcile_indexes(
    pool: &PgPool,
    settings: &TenantIndexSettings,
    resting: &HashSet<i64>,
) -> Result<Round, StoreError> {
    let counts = chunk_counts(pool).await?;
    let existing = tenant_indexes(pool).await?;
    let plan = plan(&counts, &existing, settings.min_chunks, resting);
    for &customer in &plan.drop {
        drop_index(pool, customer).await?;
        tracing::info!(customer, "dropped a customer's vector index: searches scan exactly");
    }
    let mut failed_build = None;
    if let Some(&customer) = plan.build.first() {
        let chunks = counts.iter().find(|(c, _)| *c == customer).map_or(0, |(_, n)| *n);
        let started = Instant::now();
        tracing::info!(customer, chunks, "building a customer's vector index");
        match build_index(pool, customer, settings.build_memory_mib).await {
            Ok(()) => {
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(customer, chunks, seconds, "built a customer's vector index");
            }
            Err(e) => failed_build = Some((customer, e)),
        }
    }
    Ok(Round { plan, failed_build })
}

/// How long a customer whose build failed waits before the next try.
const FAILED_BUILD_REST: Duration = Duration::from_secs(600);

/// Runs rounds forever (the leader's task).
pub async fn manage_tenant_indexes(pool: PgPool, settings: TenantIndexSettings, metrics: Metrics) {
    let mut failed: HashMap<i64, Instant> = HashMap::new();
    loop {
        failed.retain(|_, at| at.elapsed() < FAILED_BUILD_REST);
        let resting: HashSet<i64> = failed.keys().copied().collect();
        let more = match reconcile_indexes(&pool, &settings, &resting).await {
            Ok(Round { plan, failed_build }) => {
                if let Some((customer, e)) = failed_build {
                    // Rest that customer and go on with the others.
                    tracing::warn!(customer, error = %e, "cannot build a customer's vector index; trying others first");
                    failed.insert(customer, Instant::now());
                }
                plan.build.len() > 1
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot manage the customers' vector indexes");
                false
            }
        };
        if let Ok(indexes) = tenant_indexes(&pool).await {
            metrics.tenant_indexes.set(i64::try_from(indexes.iter().filter(|i| i.valid).count()).unwrap_or(i64::MAX));
        }
        if !more {
            tokio::time::sleep(settings.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(customer_id: i64, valid: bool) -> TenantIndex {
        TenantIndex { customer_id, valid, building: false }
    }

    fn plan(counts: &[(i64, i64)], existing: &[TenantIndex], min_chunks: i64) -> IndexPlan {
        super::plan(counts, existing, min_chunks, &HashSet::new())
    }

    #[test]
    fn builds_for_large_customers_largest_first() {
        let counts = [(1, 500), (2, 30_000), (3, 20_000), (4, 90_000)];
        let plan = plan(&counts, &[], 20_000);
        assert_eq!(plan, IndexPlan { build: vec![4, 2, 3], drop: vec![] });
    }

    #[test]
    fn keeps_an_index_until_the_customer_falls_below_half_the_threshold() {
        let existing = [index(1, true), index(2, true), index(3, true)];
        let counts = [(1, 19_999), (2, 10_000), (3, 9_999)];
        let plan = plan(&counts, &existing, 20_000);
        assert_eq!(plan, IndexPlan { build: vec![], drop: vec![3] });
    }

    #[test]
    fn drops_the_index_of_a_customer_without_chunks() {
        let plan = plan(&[(1, 25_000)], &[index(1, true), index(7, true)], 20_000);
        assert_eq!(plan, IndexPlan { build: vec![], drop: vec![7] });
    }

    #[test]
    fn rebuilds_an_index_that_a_failed_build_left_invalid() {
        let rebuilt = plan(&[(1, 25_000)], &[index(1, false)], 20_000);
        assert_eq!(rebuilt, IndexPlan { build: vec![1], drop: vec![] });
        // Shrunk meanwhile: the leftover goes instead.
        let dropped = plan(&[(1, 100)], &[index(1, false)], 20_000);
        assert_eq!(dropped, IndexPlan { build: vec![], drop: vec![1] });
    }

    #[test]
    fn leaves_an_index_being_built_alone() {
        let building = TenantIndex { customer_id: 1, valid: false, building: true };
        assert_eq!(plan(&[(1, 25_000)], std::slice::from_ref(&building), 20_000), IndexPlan::default());
        assert_eq!(plan(&[(1, 100)], &[building], 20_000), IndexPlan::default(), "dropped once built, not during");
    }

    #[test]
    fn a_resting_customer_lets_the_next_one_build() {
        let resting = HashSet::from([2]);
        let next = super::plan(&[(1, 15_000), (2, 90_000)], &[], 10_000, &resting);
        assert_eq!(next, IndexPlan { build: vec![1], drop: vec![] });
    }

    #[test]
    fn zero_turns_indexes_off() {
        let plan = plan(&[(1, 1_000_000)], &[index(1, true)], 0);
        assert_eq!(plan, IndexPlan { build: vec![], drop: vec![1] });
    }
}
