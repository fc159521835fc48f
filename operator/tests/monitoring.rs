//! What the chart's alerts read is what the operator exports: the `prospector-operator` binary,
//! running as the chart's ServiceAccount, serves every `prospector_operator_*` metric the
//! PrometheusRule's expressions name; and `customers_near_quota_limit` counts a real customer
//! that reaches its daily API calls, without a per-customer series.

mod common;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use common::{eventually, unique};
use process::{http_get, start_operator};
use prospector_tests::chart::alert_metrics;
use prospector_tests::fixtures::ready_customer;
use prospector_tests::{shared_cluster, shared_postgres};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exports_every_metric_the_charts_alerts_read() {
    let client = shared_cluster().client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    common::install_platform(&client).await;
    let operator = start_operator(&db.url, true, "monitoring");

    let name = unique("nearly");
    let (_, customer_id) = ready_customer(&client, &name, "free", json!({"maxApiCallsPerDay": 10})).await;
    let today = chrono::Utc::now().date_naive();
    prospector_store::customers::add_api_calls(&db.pool, customer_id, today, 9).await.unwrap();

    let wanted = alert_metrics("prospector_operator_").expect("render the chart's alerts");
    assert!(wanted.len() >= 5, "the alerts read {wanted:?}");
    // The gauge is counted every 30 s; 9 of 10 calls is the default 90%.
    let body = eventually("the customer near its daily calls to be counted", Duration::from_secs(90), || async {
        let body = http_get(operator.http_port, "/metrics")?;
        body.contains("prospector_operator_customers_near_quota_limit{quota=\"api_calls_today\"} 1").then_some(body)
    })
    .await;
    for name in &wanted {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "the alerts read {name}, which the operator does not export"
        );
    }
    assert!(body.contains("prospector_operator_customers_near_quota_limit{quota=\"agents\"} 0"), "{body}");
    assert!(!body.contains(&name), "no series names a customer");
}
