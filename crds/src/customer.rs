//! `Customer` (cluster-scoped): a tenant. The operator gives it an id, a namespace with quotas,
//! an API key and an aggregate ICP; `status.usage` shows used vs limit for every quota.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::tier::QuotaOverrides;

/// A tenant of the platform. `kubectl apply` of a Customer does what
/// `POST /api/customers/register` does.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prospector.dev",
    version = "v1alpha1",
    kind = "Customer",
    plural = "customers",
    shortname = "cust",
    category = "prospector",
    status = "CustomerStatus",
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.customerId"}"#,
    printcolumn = r#"{"name":"Tier","type":"string","jsonPath":".spec.tier"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".status.namespace"}"#,
    printcolumn = r#"{"name":"Agents","type":"string","jsonPath":".status.agents"}"#,
    printcolumn = r#"{"name":"Replicas","type":"string","jsonPath":".status.replicas","priority":1}"#,
    printcolumn = r#"{"name":"Documents","type":"string","jsonPath":".status.documents"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSpec {
    /// The customer's company name.
    #[schemars(extend("minLength" = 1, "maxLength" = 255))]
    pub company_name: String,
    /// The account's e-mail address. It identifies the account and cannot change.
    #[schemars(extend("maxLength" = 254, "x-kubernetes-validations" = [
        {"rule": r"self.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')", "message": "email must be an address such as name@example.com"},
        {"rule": "self == oldSelf", "message": "email is immutable"}
    ]))]
    pub email: String,
    /// The name of the customer's Tier.
    #[serde(default = "default_tier")]
    #[schemars(extend("minLength" = 1, "maxLength" = 63))]
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 500))]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 100))]
    pub company_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 200))]
    pub industry: Option<String>,
    /// Negotiated limits that replace the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_overrides: Option<QuotaOverrides>,
    /// Suspends the customer: its agents scale to zero and its API key stops working.
    #[serde(default)]
    pub suspended: bool,
}

fn default_tier() -> String {
    "free".to_owned()
}

/// The customer's contact person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 255))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 200))]
    pub title: Option<String>,
}

/// What the operator observed and allocated for a customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatus {
    /// The customer's integer id (Postgres `customers.id`), used in REST paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<i64>,
    /// The customer's namespace, `cust-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Secret in the customer's namespace that holds its API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<String>,
    /// The tier the limits below were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Agents used / allowed, e.g. `2/5` (for the printer column). A full `5/5` is not
    /// exceeded: `QuotaExceeded` turns True only when something was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<String>,
    /// Concurrent agent replicas used / allowed, e.g. `3/3` (for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<String>,
    /// Documents used / allowed, e.g. `12/100` (for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CustomerUsage>,
    /// The customer's ICP, aggregated over its Ready documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icp: Option<IcpCriteria>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A digest of what the namespace's children were last applied from; with
    /// `childrenAppliedAt`, lets the operator skip re-applying unchanged children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_hash: Option<String>,
    /// When the namespace's children were last applied, or last found as the operator applies
    /// them at the periodic drift check (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_applied_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Used vs limit for every quota of a customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUsage {
    pub agents: UsageCount,
    pub concurrent_agents: UsageCount,
    pub documents: UsageCount,
    pub storage_mb: UsageAmount,
    pub api_calls_today: UsageCount,
    pub api_calls_this_month: UsageCount,
    pub leads_this_month: UsageCount,
    pub cost_this_month_usd: UsageAmount,
}

/// A whole-number quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UsageCount {
    pub used: i64,
    pub limit: i64,
}

/// A fractional quota (money, megabytes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageAmount {
    pub used: f64,
    pub limit: f64,
}

/// Ideal Customer Profile criteria, in the fixed vocabulary of the design (exact strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IcpCriteria {
    #[serde(default)]
    pub target_industries: Vec<String>,
    #[serde(default)]
    pub company_sizes: Vec<String>,
    #[serde(default)]
    pub decision_makers: Vec<String>,
    #[serde(default)]
    pub target_regions: Vec<String>,
    /// When the criteria were extracted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted_at: Option<String>,
}

/// The prefix of every customer namespace: a customer `acme` lives in `cust-acme`.
pub const CUSTOMER_NAMESPACE_PREFIX: &str = "cust-";

/// The namespace the operator creates for a customer.
pub fn customer_namespace(customer_name: &str) -> String {
    format!("{CUSTOMER_NAMESPACE_PREFIX}{customer_name}")
}

/// The customer a namespace belongs to: the inverse of [`customer_namespace`]. `None` for a
/// namespace that is not a customer's.
pub fn customer_of_namespace(namespace: &str) -> Option<&str> {
    namespace.strip_prefix(CUSTOMER_NAMESPACE_PREFIX).filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_namespaces_round_trip() {
        assert_eq!(customer_namespace("acme"), "cust-acme");
        assert_eq!(customer_of_namespace(&customer_namespace("acme")), Some("acme"));
        assert_eq!(customer_of_namespace("default"), None);
        assert_eq!(customer_of_namespace("cust-"), None);
    }
}
