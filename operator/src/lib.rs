//! The Prospector operator: reconciles Tiers, Customers and AgentDeployments, enforcing tier
//! quotas with atomic decisions in Postgres, and records state there.

pub mod cached;
pub mod catalog;
pub mod clock;
pub mod context;
pub mod controllers;
pub mod desired;
pub mod error;
pub mod icp;
pub mod leader;
pub mod metrics;
pub mod orphans;
pub mod own_writes;
pub mod quota;
pub mod refresh;
pub mod runtime;
pub mod status;
pub mod telemetry;
pub mod tenant_index;

pub use error::OperatorError;

/// A Kubernetes client from the environment (in-cluster or KUBECONFIG) that keeps at most
/// `max_in_flight` requests outstanding, so a burst of reconciles cannot flood the apiserver.
pub async fn kube_client(max_in_flight: usize) -> Result<kube::Client, OperatorError> {
    let config = kube::Config::infer().await.map_err(|e| OperatorError::Config(format!("kubernetes config: {e}")))?;
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(max_in_flight.max(1)))
        .build();
    Ok(client)
}
