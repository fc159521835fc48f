//! The Prospector operator: reconciles Tiers, Customers, AgentDeployments and
//! KnowledgeDocuments. This slice is the runtime plumbing the controllers build on:
//! telemetry and the error type.

pub mod error;
pub mod telemetry;

pub use error::OperatorError;
