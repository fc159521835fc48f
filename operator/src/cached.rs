//! Compact stand-ins for Kubernetes objects in the operator's watch caches. A full object from
//! `k8s-openapi` carries every field of its kind inline (a Deployment's pod template alone is
//! dozens of them); thousands of agents' Deployments held that way were a large share of the
//! operator's memory. These types deserialize only what the reconciles read, so the rest is
//! never allocated, not even while a watch event is decoded.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::desired::agent::CONFIG_HASH_ANNOTATION;

/// An agent's Deployment as the agent reconcile reads it: identity and owner, replicas, the pod
/// template's config hash and image, and the status.
#[derive(Clone, Debug, Deserialize)]
pub struct CachedDeployment {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<DeploymentStatus>,
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
    #[serde(default)]
    annotations: BTreeMap<String, String>,
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
    /// Drops what was decoded but is never read: managed fields, labels, annotations, and the
    /// template's annotations other than the config hash, and containers after the first.
    pub fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.labels = None;
        self.metadata.annotations = None;
        if let Some(spec) = self.spec.as_mut() {
            if let Some(meta) = spec.template.metadata.as_mut() {
                meta.annotations.retain(|key, _| key == CONFIG_HASH_ANNOTATION);
            }
            if let Some(pod) = spec.template.spec.as_mut() {
                pod.containers.truncate(1);
            }
        }
    }

    /// The Deployment, with only the fields this type keeps, for the code that reads
    /// Deployments (built per reconcile, not kept).
    pub fn to_deployment(&self) -> Deployment {
        let spec = self.spec.as_ref().map(|spec| DeploymentSpec {
            replicas: spec.replicas,
            template: PodTemplateSpec {
                metadata: spec
                    .template
                    .metadata
                    .as_ref()
                    .map(|m| ObjectMeta { annotations: Some(m.annotations.clone()), ..Default::default() }),
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
        Deployment { metadata: self.metadata.clone(), spec, status: self.status.clone() }
    }
}
