//! The Prospector operator: reconciles Tiers, Customers and AgentDeployments, enforcing tier
//! quotas with atomic decisions in Postgres, and records state there.

pub mod apikey;
pub mod catalog;
pub mod clock;
pub mod context;
pub mod controllers;
pub mod desired;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod quota;
pub mod runtime;
pub mod status;
pub mod telemetry;

pub use error::OperatorError;
