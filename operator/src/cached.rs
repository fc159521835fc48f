//! Compact stand-ins for Kubernetes objects in the operator's watch caches. A full object from
//! `k8s-openapi` carries every field of its kind inline (a Deployment's pod template alone is
//! dozens of them); thousands of agents' Deployments held that way were a large share of the
//! operator's memory. These types deserialize only what the reconciles read, so the rest is
//! never allocated, not even while a watch event is decoded.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use crate::desired::agent::CONFIG_HASH_ANNOTATION;
use crate::status::agent::DEPLOYMENT_FAILURE_CONDITIONS;

/// An agent's Deployment as the agent reconcile reads it: identity and owner, replicas, the pod
/// template's config hash and image, the replica counts and the conditions that tell a failure.
#[derive(Clone, Debug, Deserialize)]
pub struct CachedDeployment {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Spec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    template: Template,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Template {
    #[serde(default)]
    metadata: Option<TemplateMeta>,
    #[serde(default)]
    spec: Option<TemplateSpec>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct TemplateMeta {
    /// The one annotation the reconcile compares. Kept as a string: a map of one entry would
    /// allocate a whole B-tree node per Deployment.
    #[serde(default, rename = "annotations", deserialize_with = "config_hash_only")]
    config_hash: Option<String>,
}

fn config_hash_only<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let annotations = Option::<BTreeMap<String, String>>::deserialize(deserializer)?;
    Ok(annotations.and_then(|mut a| a.remove(CONFIG_HASH_ANNOTATION)))
}

#[derive(Clone, Debug, Default, Deserialize)]
struct TemplateSpec {
    #[serde(default)]
    containers: Vec<ContainerImage>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ContainerImage {
    name: String,
    #[serde(default)]
    image: Option<String>,
}

/// The replica counts and the failure conditions; a healthy Deployment's conditions (Available,
/// Progressing) and their messages are most of its status and tell the reconcile nothing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    ready_replicas: Option<i32>,
    #[serde(default)]
    available_replicas: Option<i32>,
    #[serde(default)]
    updated_replicas: Option<i32>,
    #[serde(default)]
    conditions: Vec<DeploymentCondition>,
}

impl kube::Resource for CachedDeployment {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Deployment".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "apps".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "deployments".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CachedDeployment {
    /// Drops what was decoded but is never read: managed fields, labels, annotations, containers
    /// after the first, and the conditions that report no failure.
    pub fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.labels = None;
        self.metadata.annotations = None;
        if let Some(pod) = self.spec.as_mut().and_then(|spec| spec.template.spec.as_mut()) {
            pod.containers.truncate(1);
        }
        if let Some(status) = self.status.as_mut() {
            status.conditions.retain(|c| {
                DEPLOYMENT_FAILURE_CONDITIONS.iter().any(|(type_, value)| c.type_ == *type_ && c.status == *value)
            });
            status.conditions.shrink_to_fit();
        }
    }

    /// The Deployment, with only the fields this type keeps, for the code that reads
    /// Deployments (built per reconcile, not kept).
    pub fn to_deployment(&self) -> Deployment {
        let spec = self.spec.as_ref().map(|spec| DeploymentSpec {
            replicas: spec.replicas,
            template: PodTemplateSpec {
                metadata: spec.template.metadata.as_ref().map(|m| ObjectMeta {
                    annotations: m
                        .config_hash
                        .as_ref()
                        .map(|hash| BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash.clone())])),
                    ..Default::default()
                }),
                spec: spec.template.spec.as_ref().map(|pod| PodSpec {
                    containers: pod
                        .containers
                        .iter()
                        .map(|c| Container { name: c.name.clone(), image: c.image.clone(), ..Default::default() })
                        .collect(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        let status = self.status.as_ref().map(|status| DeploymentStatus {
            replicas: status.replicas,
            ready_replicas: status.ready_replicas,
            available_replicas: status.available_replicas,
            updated_replicas: status.updated_replicas,
            conditions: Some(status.conditions.clone()),
            ..Default::default()
        });
        Deployment { metadata: self.metadata.clone(), spec, status }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use std::time::Duration;

    use super::*;
    use crate::status::agent::pod_failure;

    fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason,
            "message": format!("{type_} says {reason}"),
            "lastTransitionTime": "2026-11-29T12:00:00Z", "lastUpdateTime": "2026-11-29T12:00:00Z",
        })
    }

    fn deployment(conditions: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "agent-a", "namespace": "customer-acme", "uid": "u-1",
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 2, "selector": {}, "template": {
                "metadata": {"annotations": {CONFIG_HASH_ANNOTATION: "abc", "other": "x"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}, {"name": "sidecar"}]}}},
            "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                       "updatedReplicas": 2, "conditions": conditions},
        })
    }

    fn cached(json: &serde_json::Value) -> CachedDeployment {
        let mut cached: CachedDeployment = serde_json::from_value(json.clone()).unwrap();
        cached.trim();
        cached
    }

    #[test]
    fn keeps_what_the_agent_reconcile_reads_and_drops_healthy_conditions() {
        let json = deployment(vec![
            condition("Available", "False", "MinimumReplicasUnavailable"),
            condition("Progressing", "True", "ReplicaSetUpdated"),
        ]);
        let kept = cached(&json).to_deployment();
        let spec = kept.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let annotations = spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "abc");
        let containers = &spec.template.spec.as_ref().unwrap().containers;
        assert_eq!((containers.len(), containers[0].image.as_deref()), (1, Some("agent:1")));
        let status = kept.status.as_ref().unwrap();
        assert_eq!(
            (status.replicas, status.ready_replicas, status.available_replicas, status.updated_replicas),
            (Some(2), Some(1), Some(1), Some(2))
        );
        assert_eq!(status.conditions.as_deref(), Some(&[][..]), "no failure to tell");
        assert!(kept.metadata.annotations.is_none());
    }

    #[test]
    fn failures_read_from_the_cache_are_the_failures_read_from_the_deployment() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 5, 0).unwrap();
        for conditions in [
            vec![
                condition("Available", "False", "MinimumReplicasUnavailable"),
                condition("ReplicaFailure", "True", "FailedCreate"),
            ],
            vec![
                condition("Available", "False", "MinimumReplicasUnavailable"),
                condition("Progressing", "False", "ProgressDeadlineExceeded"),
            ],
            vec![
                condition("Available", "True", "MinimumReplicasAvailable"),
                condition("Progressing", "True", "NewReplicaSetAvailable"),
            ],
        ] {
            let json = deployment(conditions);
            let full: Deployment = serde_json::from_value(json.clone()).unwrap();
            let from_cache = cached(&json).to_deployment();
            let failure = |d: &Deployment| pod_failure(d, &[], now, Duration::from_secs(60));
            assert_eq!(failure(&from_cache), failure(&full), "{json}");
        }
        let failing = deployment(vec![condition("ReplicaFailure", "True", "FailedCreate")]);
        assert!(pod_failure(&cached(&failing).to_deployment(), &[], now, Duration::from_secs(60)).is_some());
    }
}
