//! `AgentDeployment` (namespaced, in a customer namespace): an AI sales agent the operator runs
//! as a Deployment once the customer's quota admits it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, free_form_object};

/// One agent (or team of replicas) of a customer.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prospector.dev",
    version = "v1alpha1",
    kind = "AgentDeployment",
    plural = "agentdeployments",
    shortname = "agd",
    category = "prospector",
    namespaced,
    status = "AgentDeploymentStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.agentType"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Deployment ID","type":"string","jsonPath":".status.deploymentId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentDeploymentSpec {
    /// A display name, e.g. `Lead Qualifier Pro`.
    #[schemars(extend("minLength" = 1, "maxLength" = 255, "x-kubernetes-validations" = [
        {"rule": "self.matches('\\\\S')", "message": "agentName must not be blank"}
    ]))]
    pub agent_name: String,
    pub agent_type: AgentType,
    /// The LLM the agent uses.
    #[serde(default = "default_model")]
    #[schemars(extend("minLength" = 1, "maxLength" = 100))]
    pub model: String,
    /// Free-form agent configuration, passed to the agent in its ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Pods to run; they count against the customer's concurrent-agent limit. `0` keeps the
    /// agent (and its agent slot) without running pods.
    #[serde(default = "default_replicas")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub replicas: i32,
    /// Overrides the image the agent catalog maps `agentType` to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 512))]
    pub image: Option<String>,
    /// Container resources; the namespace LimitRange supplies defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scales the agent to zero without deleting it.
    #[serde(default)]
    pub suspend: bool,
}

/// The most replicas one AgentDeployment may ask for.
pub const MAX_REPLICAS: i32 = 100;

/// The longest AgentDeployment name. The name becomes the value of the `prospector.dev/agent`
/// label on the agent's pods and, as `agent-<name>`, the name of its Deployment,
/// ServiceAccount and ConfigMap; label values stop at 63 characters.
pub const MAX_NAME_LENGTH: usize = 57;

/// The AgentDeployment CRD, with the rules on the object's name that only the root of the
/// schema can express.
pub fn agent_crd() -> CustomResourceDefinition {
    let mut crd = AgentDeployment::crd();
    let rules = [
        serde_json::json!({
            "rule": format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}"),
            "message": format!("metadata.name must be at most {MAX_NAME_LENGTH} characters: it names the agent's Deployment (agent-<name>) and labels its pods"),
        }),
        serde_json::json!({
            "rule": format!("self.spec.replicas >= 0 && self.spec.replicas <= {MAX_REPLICAS}"),
            "message": format!("spec.replicas must be between 0 and {MAX_REPLICAS}"),
        }),
    ];
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            let validations = schema.x_kubernetes_validations.get_or_insert_with(Vec::new);
            validations.extend(rules.iter().map(|r| serde_json::from_value(r.clone()).expect("a ValidationRule")));
        }
    }
    crd
}

fn default_model() -> String {
    "llama3.1-8b".to_owned()
}

fn default_replicas() -> i32 {
    1
}

/// The kinds of agent the catalog knows. It may change on a live agent: the operator rolls the
/// pods onto the new type's image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
pub enum AgentType {
    LeadQualifier,
    LeadResearcher,
    OutreachWriter,
    MeetingScheduler,
    Custom,
}

impl AgentType {
    /// The wire name, as in the seed API (`lead_qualifier`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::LeadQualifier => "lead_qualifier",
            AgentType::LeadResearcher => "lead_researcher",
            AgentType::OutreachWriter => "outreach_writer",
            AgentType::MeetingScheduler => "meeting_scheduler",
            AgentType::Custom => "custom",
        }
    }
}

/// Where an agent is in its life.
// Postgres mirrors it in `customer_agents.status`, in snake_case (`quota_exceeded`); the `sqlx`
// feature maps the column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
pub enum AgentPhase {
    Pending,
    Deployed,
    Running,
    Suspended,
    QuotaExceeded,
    Failed,
    Terminating,
}

impl AgentPhase {
    /// The phase in snake_case: the seed's agent `status` field, and Postgres's
    /// `customer_agents.status` (the `sqlx` mapping above).
    pub fn snake_case(self) -> &'static str {
        match self {
            AgentPhase::Pending => "pending",
            AgentPhase::Deployed => "deployed",
            AgentPhase::Running => "running",
            AgentPhase::Suspended => "suspended",
            AgentPhase::QuotaExceeded => "quota_exceeded",
            AgentPhase::Failed => "failed",
            AgentPhase::Terminating => "terminating",
        }
    }
}

/// What the operator observed about an agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDeploymentStatus {
    /// The agent's integer id (Postgres `customer_agents.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
    /// `agent_<customerId>_<8 hex>`, as in the seed API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AgentPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// When the agent was first admitted and deployed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<AgentPerformance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Totals of the usage the agent reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPerformance {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_latency_ms: Option<f64>,
    pub total_api_calls: i64,
    pub total_cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_carries_the_root_rules_and_the_replica_bound() {
        let crd = agent_crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let rules: Vec<&str> =
            schema.x_kubernetes_validations.as_ref().unwrap().iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["self.metadata.name.size() <= 57", "self.spec.replicas >= 0 && self.spec.replicas <= 100"]);
        let replicas = &schema.properties.as_ref().unwrap()["spec"].properties.as_ref().unwrap()["replicas"];
        assert_eq!(replicas.maximum, Some(f64::from(MAX_REPLICAS)), "the schema's bound is MAX_REPLICAS");
    }
}
