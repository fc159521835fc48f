//! Prometheus metrics of the operator: reconciles, errors and reconcile duration per
//! controller; the embedding queue's depth and age; documents by phase; customers near each
//! quota. Labels are bounded (controller names, error kinds, phases, quota names), never per
//! tenant: which customers are near a limit, each Customer's `status.usage` says.

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The operator's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub leader: IntGauge,
    pub queue_depth: IntGauge,
    pub queue_running: IntGauge,
    pub oldest_queued: Gauge,
    pub oldest_running: Gauge,
    pub documents: IntGaugeVec,
    pub tenant_indexes: IntGauge,
    pub customers_near_limit: IntGaugeVec,
    pub orphans_released: IntCounterVec,
    pub drift_checks: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("prospector_operator".into()), None).expect("a valid prefix");
        let reconciles =
            IntCounterVec::new(Opts::new("reconciles_total", "Reconciles started, by controller"), &["controller"])
                .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Reconciles that failed, by controller and error kind"),
            &["controller", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Reconcile duration, by controller")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease").expect("valid metric");
        let queue_depth =
            IntGauge::new("embedding_queue_depth", "Documents waiting for an embedding worker").expect("valid metric");
        let queue_running =
            IntGauge::new("embedding_queue_running", "Documents an embedding worker holds").expect("valid metric");
        let oldest_queued =
            Gauge::new("embedding_queue_oldest_seconds", "Seconds the oldest waiting document has waited")
                .expect("valid metric");
        let oldest_running = Gauge::new(
            "embedding_queue_oldest_running_seconds",
            "Seconds the longest-held document has been processed",
        )
        .expect("valid metric");
        let documents = IntGaugeVec::new(Opts::new("documents", "Live knowledge documents, by phase"), &["phase"])
            .expect("valid metric");
        let tenant_indexes =
            IntGauge::new("tenant_vector_indexes", "Customers with a vector index of their own").expect("valid metric");
        let customers_near_limit = IntGaugeVec::new(
            Opts::new(
                "customers_near_quota_limit",
                "Live customers using at least the operator's --quota-near-limit-ratio of a quota, by quota",
            ),
            &["quota"],
        )
        .expect("valid metric");
        let orphans_released = IntCounterVec::new(
            Opts::new(
                "orphan_rows_released_total",
                "Rows released because their AgentDeployment or KnowledgeDocument no longer exists, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for kind in ["agent", "document"] {
            orphans_released.with_label_values(&[kind]);
        }
        let drift_checks = IntCounterVec::new(
            Opts::new(
                "customer_drift_checks_total",
                "Periodic checks of customers' namespace children against the apiserver, by result (current, drifted)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["current", "drifted"] {
            drift_checks.with_label_values(&[result]);
        }
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_running.clone()),
            Box::new(oldest_queued.clone()),
            Box::new(oldest_running.clone()),
            Box::new(documents.clone()),
            Box::new(tenant_indexes.clone()),
            Box::new(customers_near_limit.clone()),
            Box::new(orphans_released.clone()),
            Box::new(drift_checks.clone()),
        ] {
            registry.register(collector).expect("metrics register once");
        }
        Self {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            queue_depth,
            queue_running,
            oldest_queued,
            oldest_running,
            documents,
            tenant_indexes,
            customers_near_limit,
            orphans_released,
            drift_checks,
        }
    }

    /// Starts each controller's counters at zero for every error kind, so that `rate()` sees the
    /// first failure and the series exist before anything fails.
    pub fn start_controllers(&self, controllers: &[&str]) {
        for controller in controllers {
            self.reconciles.with_label_values(&[controller]);
            for error in crate::error::error_kinds() {
                self.errors.with_label_values(&[controller, error]);
            }
        }
    }

    /// Counts a reconcile and returns a timer that records its duration when dropped.
    pub fn reconcile_started(&self, controller: &str) -> prometheus::HistogramTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration.with_label_values(&[controller]).start_timer()
    }

    pub fn reconcile_failed(&self, controller: &str, error: &str) {
        self.errors.with_label_values(&[controller, error]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}
