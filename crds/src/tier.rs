//! `Tier` (cluster-scoped): the limits of a subscription tier, and the Kubernetes quota a
//! customer's namespace gets on it. `QuotaOverrides` lets a Customer override any field.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// The limits of one subscription tier. Every limit is non-negative.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prospector.dev",
    version = "v1alpha1",
    kind = "Tier",
    plural = "tiers",
    shortname = "tier",
    category = "prospector",
    status = "TierStatus",
    printcolumn = r#"{"name":"Calls/day","type":"integer","jsonPath":".spec.maxApiCallsPerDay"}"#,
    printcolumn = r#"{"name":"Agents","type":"integer","jsonPath":".spec.maxAgents"}"#,
    printcolumn = r#"{"name":"Concurrent","type":"integer","jsonPath":".spec.maxConcurrentAgents"}"#,
    printcolumn = r#"{"name":"Storage MB","type":"integer","jsonPath":".spec.maxStorageMb"}"#,
    printcolumn = r#"{"name":"Documents","type":"integer","jsonPath":".spec.maxDocuments"}"#,
    printcolumn = r#"{"name":"Cost cap","type":"number","jsonPath":".spec.maxCostPerMonthUsd"}"#,
    printcolumn = r#"{"name":"Customers","type":"integer","jsonPath":".status.customers"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// A human-readable name, e.g. `Starter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 63))]
    pub display_name: Option<String>,
    /// API calls allowed per UTC day.
    #[schemars(extend("minimum" = 0))]
    pub max_api_calls_per_day: i64,
    /// API calls allowed per calendar month (UTC).
    #[schemars(extend("minimum" = 0))]
    pub max_api_calls_per_month: i64,
    /// Requests per second the REST API admits for one customer.
    #[schemars(extend("minimum" = 0))]
    pub rate_limit_per_second: i32,
    /// Requests per minute the REST API admits for one customer.
    #[schemars(extend("minimum" = 0))]
    pub rate_limit_per_minute: i32,
    /// AgentDeployments a customer may have.
    #[schemars(extend("minimum" = 0))]
    pub max_agents: i32,
    /// Agent replicas that may run at once, summed over the customer's agents.
    #[schemars(extend("minimum" = 0))]
    pub max_concurrent_agents: i32,
    /// Knowledge-base storage, in MB (10^6 bytes).
    #[schemars(extend("minimum" = 0))]
    pub max_storage_mb: i64,
    /// Knowledge documents a customer may have.
    #[schemars(extend("minimum" = 0))]
    pub max_documents: i32,
    /// Leads agents may produce per calendar month.
    #[schemars(extend("minimum" = 0))]
    pub max_leads_per_month: i64,
    /// Spend cap per calendar month in USD; agents scale to zero when it is reached.
    #[schemars(extend("minimum" = 0))]
    pub max_cost_per_month_usd: f64,
    /// The ResourceQuota and LimitRange of each customer namespace on this tier.
    pub namespace_quota: NamespaceQuota,
}

/// Kubernetes resources a customer namespace may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceQuota {
    /// Total CPU requests, as a Kubernetes quantity (`4`, `500m`).
    #[schemars(extend("maxLength" = 32, "x-kubernetes-validations" = [
        {"rule": "isQuantity(self)", "message": "cpu must be a Kubernetes quantity such as 4 or 500m"}
    ]))]
    pub cpu: String,
    /// Total memory requests, as a Kubernetes quantity (`8Gi`).
    #[schemars(extend("maxLength" = 32, "x-kubernetes-validations" = [
        {"rule": "isQuantity(self)", "message": "memory must be a Kubernetes quantity such as 8Gi"}
    ]))]
    pub memory: String,
    /// Pods the namespace may hold.
    #[schemars(extend("minimum" = 0))]
    pub pods: i32,
    /// GPUs (`requests.nvidia.com/gpu`) the namespace may request.
    #[serde(default)]
    #[schemars(extend("minimum" = 0))]
    pub gpus: i32,
}

/// Per-customer overrides of any tier limit, for a negotiated deal. Unset fields keep the
/// tier's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_api_calls_per_day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_api_calls_per_month: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub rate_limit_per_second: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub rate_limit_per_minute: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_agents: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_concurrent_agents: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_storage_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_documents: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_leads_per_month: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub max_cost_per_month_usd: Option<f64>,
    /// Replaces the tier's namespace quota as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_quota: Option<NamespaceQuota>,
}

impl TierSpec {
    /// The effective limits for a customer: the tier's values with the overrides applied.
    pub fn with_overrides(&self, overrides: Option<&QuotaOverrides>) -> TierSpec {
        let Some(o) = overrides else {
            return self.clone();
        };
        TierSpec {
            display_name: self.display_name.clone(),
            max_api_calls_per_day: o.max_api_calls_per_day.unwrap_or(self.max_api_calls_per_day),
            max_api_calls_per_month: o.max_api_calls_per_month.unwrap_or(self.max_api_calls_per_month),
            rate_limit_per_second: o.rate_limit_per_second.unwrap_or(self.rate_limit_per_second),
            rate_limit_per_minute: o.rate_limit_per_minute.unwrap_or(self.rate_limit_per_minute),
            max_agents: o.max_agents.unwrap_or(self.max_agents),
            max_concurrent_agents: o.max_concurrent_agents.unwrap_or(self.max_concurrent_agents),
            max_storage_mb: o.max_storage_mb.unwrap_or(self.max_storage_mb),
            max_documents: o.max_documents.unwrap_or(self.max_documents),
            max_leads_per_month: o.max_leads_per_month.unwrap_or(self.max_leads_per_month),
            max_cost_per_month_usd: o.max_cost_per_month_usd.unwrap_or(self.max_cost_per_month_usd),
            namespace_quota: o.namespace_quota.clone().unwrap_or_else(|| self.namespace_quota.clone()),
        }
    }
}

/// What the operator observed about a tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierStatus {
    /// Customers currently on this tier.
    #[serde(default)]
    pub customers: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starter() -> TierSpec {
        TierSpec {
            display_name: Some("Starter".into()),
            max_api_calls_per_day: 1_000,
            max_api_calls_per_month: 30_000,
            rate_limit_per_second: 10,
            rate_limit_per_minute: 100,
            max_agents: 5,
            max_concurrent_agents: 3,
            max_storage_mb: 1_000,
            max_documents: 100,
            max_leads_per_month: 1_000,
            max_cost_per_month_usd: 100.0,
            namespace_quota: NamespaceQuota { cpu: "4".into(), memory: "8Gi".into(), pods: 20, gpus: 0 },
        }
    }

    #[test]
    fn overrides_replace_only_the_fields_they_set() {
        let tier = starter();
        let overrides =
            QuotaOverrides { max_agents: Some(12), max_cost_per_month_usd: Some(250.0), ..Default::default() };
        let effective = tier.with_overrides(Some(&overrides));
        assert_eq!(effective.max_agents, 12);
        assert_eq!(effective.max_cost_per_month_usd, 250.0);
        assert_eq!(effective.max_concurrent_agents, 3);
        assert_eq!(effective.namespace_quota, tier.namespace_quota);
        assert_eq!(tier.with_overrides(None), tier);
    }
}
