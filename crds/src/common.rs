//! Types shared by several resources: the condition shape and schema helpers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition in the shape of `metav1.Condition`. Lists of these are list-maps keyed on
/// `type`, so server-side apply merges them per type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// A PascalCase, machine-readable reason for the last transition.
    pub reason: String,
    /// A human-readable message with details about the transition.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `.metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// Whether this condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// A status with a list of conditions.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];

    /// The condition of type `type_`, if present.
    fn condition(&self, type_: &str) -> Option<&Condition> {
        find_condition(self.conditions(), type_)
    }
}

macro_rules! has_conditions {
    ($($status:ty),*) => {
        $(impl HasConditions for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        })*
    };
}
has_conditions!(crate::TierStatus, crate::CustomerStatus, crate::AgentDeploymentStatus, crate::KnowledgeDocumentStatus);

/// Finds a condition by type in an optional list (as read from an optional status).
pub fn find_condition_in<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    conditions.and_then(|c| find_condition(c, type_))
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Schema of a free-form JSON object: any keys, kept as they are by the apiserver.
pub fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
