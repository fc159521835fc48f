//! Keeps one partial HNSW index per large customer (store `tenant_index`): builds it when the
//! customer's chunks reach `min_chunks`, drops it when they fall below half of that or the
//! customer goes. The gap between the two keeps a customer hovering at the threshold from
//! building and dropping in turn. Runs on the leader only, one build at a time, largest
//! customer first: a build takes a CPU for seconds to tens of seconds.

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

/// Compares chunk counts with the indexes the catalog holds.
pub fn plan(counts: &[(i64, i64)], existing: &[TenantIndex], min_chunks: i64) -> IndexPlan {
    let count_of = |customer: i64| counts.iter().find(|(c, _)| *c == customer).map_or(0, |(_, n)| *n);
    let keeps = |chunks: i64| min_chunks > 0 && chunks >= min_chunks / 2;
    let drop = existing.iter().filter(|i| !keeps(count_of(i.customer_id))).map(|i| i.customer_id).collect();
    let mut build: Vec<(i64, i64)> = counts
        .iter()
        .filter(|(customer, chunks)| {
            min_chunks > 0 && *chunks >= min_chunks && !existing.iter().any(|i| i.customer_id == *customer && i.valid)
        })
        .copied()
        .collect();
    build.sort_by_key(|(customer, chunks)| (std::cmp::Reverse(*chunks), *customer));
    IndexPlan { build: build.into_iter().map(|(customer, _)| customer).collect(), drop }
}

/// One round: drops what should go, then builds the largest missing index. Returns the plan.
pub async fn reconcile_indexes(pool: &PgPool, settings: &TenantIndexSettings) -> Result<IndexPlan, StoreError> {
    let counts = chunk_counts(pool).await?;
    let existing = tenant_indexes(pool).await?;
    let plan = plan(&counts, &existing, settings.min_chunks);
    for &customer in &plan.drop {
        drop_index(pool, customer).await?;
        tracing::info!(customer, "dropped a customer's vector index: searches scan exactly");
    }
    if let Some(&customer) = plan.build.first() {
        let chunks = counts.iter().find(|(c, _)| *c == customer).map_or(0, |(_, n)| *n);
        let started = Instant::now();
        tracing::info!(customer, chunks, "building a customer's vector index");
        build_index(pool, customer, settings.build_memory_mib).await?;
        tracing::info!(customer, chunks, seconds = started.elapsed().as_secs_f64(), "built a customer's vector index");
    }
    Ok(plan)
}

/// Runs rounds forever (the leader's task).
pub async fn manage_tenant_indexes(pool: PgPool, settings: TenantIndexSettings, metrics: Metrics) {
    loop {
        match reconcile_indexes(&pool, &settings).await {
            // More to build: go on at once.
            Ok(plan) if plan.build.len() > 1 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot manage the customers' vector indexes"),
        }
        if let Ok(indexes) = tenant_indexes(&pool).await {
            metrics.tenant_indexes.set(i64::try_from(indexes.iter().filter(|i| i.valid).count()).unwrap_or(i64::MAX));
        }
        tokio::time::sleep(settings.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(customer_id: i64, valid: bool) -> TenantIndex {
        TenantIndex { customer_id, valid }
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
        let plan = plan(&[(1, 25_000)], &[index(1, false)], 20_000);
        assert_eq!(plan, IndexPlan { build: vec![1], drop: vec![] });
        // Shrunk meanwhile: the leftover goes instead.
        let plan = super::plan(&[(1, 100)], &[index(1, false)], 20_000);
        assert_eq!(plan, IndexPlan { build: vec![], drop: vec![1] });
    }

    #[test]
    fn zero_turns_indexes_off() {
        let plan = plan(&[(1, 1_000_000)], &[index(1, true)], 0);
        assert_eq!(plan, IndexPlan { build: vec![], drop: vec![1] });
    }
}
