//! An AgentDeployment's children: a ServiceAccount without a token, a ConfigMap with the agent's
//! config, and the Deployment that runs the agent with that config and its customer's ICP
//! (the customer's `customer-icp` ConfigMap) in one directory.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, SecretKeySelector, ServiceAccount, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use prospector_crds::AgentDeploymentSpec;
use prospector_crds::labels;
use sha2::{Digest, Sha256};

use super::customer::{API_KEY_SECRET, API_KEY_SECRET_KEY, ICP_CONFIG_MAP};
use super::{managed_labels, restricted_container_security, restricted_pod_security};

/// Where the agent finds its ConfigMap's files.
pub const CONFIG_MOUNT_PATH: &str = "/etc/prospector";

/// What the children of one agent are built from.
#[derive(Clone, Debug)]
pub struct AgentChildren<'a> {
    /// The AgentDeployment's name.
    pub name: &'a str,
    pub namespace: &'a str,
    pub customer_name: &'a str,
    pub spec: &'a AgentDeploymentSpec,
    pub owner: OwnerReference,
    /// The image the catalog maps the agent type to (or `spec.image`).
    pub image: &'a str,
    pub api_url: &'a str,
    pub agent_id: i64,
    pub deployment_id: &'a str,
}

/// The pod template annotation holding a digest of the agent's configuration: a change rolls
/// the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "prospector.dev/config-hash";

/// The name of the Deployment, ServiceAccount and ConfigMap of an agent.
pub fn child_name(agent_name: &str) -> String {
    format!("agent-{agent_name}")
}

impl AgentChildren<'_> {
    fn labels(&self) -> BTreeMap<String, String> {
        managed_labels(&[(labels::CUSTOMER, self.customer_name), (labels::AGENT, self.name)])
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(child_name(self.name)),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }

    /// The agent's identity; its token is never mounted (agents authenticate with their API key).
    pub fn service_account(&self) -> ServiceAccount {
        ServiceAccount { metadata: self.meta(), automount_service_account_token: Some(false), ..Default::default() }
    }

    fn config_data(&self) -> BTreeMap<String, String> {
        let config = self.spec.config.clone().unwrap_or_else(|| serde_json::json!({}));
        BTreeMap::from([("config.json".to_owned(), config.to_string())])
    }

    /// The agent's configuration, mounted at [`CONFIG_MOUNT_PATH`]`/config.json`.
    pub fn config_map(&self) -> ConfigMap {
        ConfigMap { metadata: self.meta(), data: Some(self.config_data()), ..Default::default() }
    }

    /// The Deployment running `replicas` pods of the agent under the restricted Pod Security
    /// Standard. A hash of the ConfigMap's content in the pod template rolls the pods when it
    /// changes. The customer's ICP is projected beside it as `icp.json`: kubelet refreshes that
    /// file when the ICP changes, without restarting the agent.
    pub fn deployment(&self, replicas: i32) -> Deployment {
        let selector = BTreeMap::from([(labels::AGENT.to_owned(), self.name.to_owned())]);
        let mut pod_labels = self.labels();
        pod_labels.extend(selector.clone());
        let config_hash = {
            let mut hasher = Sha256::new();
            for (key, value) in self.config_data() {
                hasher.update(key.as_bytes());
                hasher.update([0]);
                hasher.update(value.as_bytes());
                hasher.update([0]);
            }
            hex::encode(&hasher.finalize()[..8])
        };
        let env = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
        let container = Container {
            name: "agent".into(),
            image: Some(self.image.to_owned()),
            env: Some(vec![
                env("PROSPECTOR_API_URL", self.api_url.to_owned()),
                EnvVar {
                    name: "PROSPECTOR_API_KEY".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: API_KEY_SECRET.into(),
                            key: API_KEY_SECRET_KEY.into(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                env("PROSPECTOR_AGENT_ID", self.agent_id.to_string()),
                env("PROSPECTOR_DEPLOYMENT_ID", self.deployment_id.to_owned()),
                env("PROSPECTOR_MODEL", self.spec.model.clone()),
                env("PROSPECTOR_AGENT_TYPE", self.spec.agent_type.as_str().to_owned()),
                env("PROSPECTOR_CONFIG_DIR", CONFIG_MOUNT_PATH.to_owned()),
            ]),
            resources: self.spec.resources.clone(),
            security_context: Some(restricted_container_security()),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_MOUNT_PATH.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
            ]),
            ..Default::default()
        };
        Deployment {
            metadata: self.meta(),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some(selector), ..Default::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash)])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(child_name(self.name)),
                        automount_service_account_token: Some(false),
                        security_context: Some(restricted_pod_security()),
                        containers: vec![container],
                        volumes: Some(vec![
                            Volume {
                                name: "config".into(),
                                projected: Some(ProjectedVolumeSource {
                                    sources: Some(vec![
                                        VolumeProjection {
                                            config_map: Some(ConfigMapProjection {
                                                name: child_name(self.name),
                                                ..Default::default()
                                            }),
                                            ..Default::default()
                                        },
                                        VolumeProjection {
                                            config_map: Some(ConfigMapProjection {
                                                name: ICP_CONFIG_MAP.into(),
                                                // An agent starts before its customer's first
                                                // document is processed.
                                                optional: Some(true),
                                                ..Default::default()
                                            }),
                                            ..Default::default()
                                        },
                                    ]),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            Volume {
                                name: "tmp".into(),
                                empty_dir: Some(EmptyDirVolumeSource { size_limit: None, ..Default::default() }),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Whether a Deployment already runs what `desired` asks for: replicas, image, config hash.
pub fn deployment_matches(current: &Deployment, desired: &Deployment) -> bool {
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    let template_hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
    };
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
    };
    replicas(current) == replicas(desired)
        && template_hash(current) == template_hash(desired)
        && image(current) == image(desired)
}

#[cfg(test)]
mod tests {
    use prospector_crds::AgentType;

    use super::*;

    fn spec() -> AgentDeploymentSpec {
        AgentDeploymentSpec {
            agent_name: "Lead Qualifier".into(),
            agent_type: AgentType::LeadQualifier,
            model: "llama3.1-8b".into(),
            config: Some(serde_json::json!({"temperature": 0.2})),
            replicas: 2,
            image: None,
            resources: None,
            suspend: false,
        }
    }

    fn children(spec: &AgentDeploymentSpec) -> AgentChildren<'_> {
        AgentChildren {
            name: "qualifier",
            namespace: "cust-acme",
            customer_name: "acme",
            spec,
            owner: OwnerReference {
                api_version: "prospector.dev/v1alpha1".into(),
                kind: "AgentDeployment".into(),
                name: "qualifier".into(),
                uid: "uid-2".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            image: "registry.example/agents/lead-qualifier:1",
            api_url: "http://prospector-apiserver.prospector-system:8080",
            agent_id: 42,
            deployment_id: "agent_7_0123abcd",
        }
    }

    #[test]
    fn a_cached_deployment_still_matches_and_is_a_fraction_of_the_size() {
        let spec = spec();
        let desired = children(&spec).deployment(2);
        // As a watch delivers it: the apiserver's JSON, decoded into the cache's type.
        let mut compact: crate::cached::CachedDeployment =
            serde_json::from_value(serde_json::to_value(&desired).unwrap()).unwrap();
        compact.trim();
        let cached = compact.to_deployment();
        assert!(deployment_matches(&cached, &desired), "what the reconcile compares survives");
        assert_eq!(cached.metadata.owner_references, desired.metadata.owner_references, "owner kept for the watch");
        let size = |d: &Deployment| serde_json::to_vec(d).unwrap().len();
        assert!(size(&cached) * 4 < size(&desired), "{} of {} bytes", size(&cached), size(&desired));
        // Another image, replica count or configuration does not match.
        for other in [children(&spec).deployment(3), {
            let mut changed = spec.clone();
            changed.config = Some(serde_json::json!({"temperature": 0.9}));
            children(&changed).deployment(2)
        }] {
            assert!(!deployment_matches(&cached, &other));
        }
    }

    #[test]
    fn deployment_carries_the_agent_env_and_the_api_key_from_the_secret() {
        let spec = spec();
        let deployment = children(&spec).deployment(2);
        let pod = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let env: BTreeMap<_, _> =
            pod.containers[0].env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e.clone())).collect();
        assert_eq!(env["PROSPECTOR_AGENT_ID"].value.as_deref(), Some("42"));
        assert_eq!(env["PROSPECTOR_DEPLOYMENT_ID"].value.as_deref(), Some("agent_7_0123abcd"));
        assert_eq!(env["PROSPECTOR_MODEL"].value.as_deref(), Some("llama3.1-8b"));
        assert_eq!(env["PROSPECTOR_AGENT_TYPE"].value.as_deref(), Some("lead_qualifier"));
        assert_eq!(
            env["PROSPECTOR_API_URL"].value.as_deref(),
            Some("http://prospector-apiserver.prospector-system:8080")
        );
        let key = env["PROSPECTOR_API_KEY"].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((key.name.as_str(), key.key.as_str()), (API_KEY_SECRET, API_KEY_SECRET_KEY));
        assert!(env["PROSPECTOR_API_KEY"].value.is_none(), "the key is never inlined");
        assert_eq!(deployment.spec.unwrap().replicas, Some(2));
    }

    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let spec = spec();
        let deployment = children(&spec).deployment(1);
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name.as_deref(), Some("agent-qualifier"));
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert!(container.privileged.is_none());
    }

    #[test]
    fn config_changes_roll_the_pods() {
        let spec = spec();
        let hash = |d: Deployment| {
            d.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        let before = hash(children(&spec).deployment(1));
        let mut changed = spec.clone();
        changed.config = Some(serde_json::json!({"temperature": 0.9}));
        assert_ne!(before, hash(children(&changed).deployment(1)));
        assert_eq!(before, hash(children(&spec).deployment(3)), "scaling alone does not roll pods");
    }

    #[test]
    fn service_account_has_no_token_and_config_and_icp_share_a_directory() {
        let spec = spec();
        let agent = children(&spec);
        assert_eq!(agent.service_account().automount_service_account_token, Some(false));
        let data = agent.config_map().data.unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&data["config.json"]).unwrap()["temperature"], 0.2);
        let pod = agent.deployment(1).spec.unwrap().template.spec.unwrap();
        let config = pod.volumes.unwrap().into_iter().find(|v| v.name == "config").unwrap();
        let sources: Vec<(String, Option<bool>)> = config
            .projected
            .unwrap()
            .sources
            .unwrap()
            .into_iter()
            .map(|s| s.config_map.map(|c| (c.name, c.optional)).unwrap())
            .collect();
        assert_eq!(sources, [("agent-qualifier".to_owned(), None), (ICP_CONFIG_MAP.to_owned(), Some(true))]);
    }
}
