//! A Customer's children: its namespace, the quota objects from its tier, the default-deny
//! NetworkPolicy, and the API key Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, Secret,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use prospector_crds::labels;
use prospector_crds::tier::NamespaceQuota;

use super::managed_labels;

/// The Secret holding a customer's API key, in its namespace.
pub const API_KEY_SECRET: &str = "prospector-api-key";
/// The key of the API key inside [`API_KEY_SECRET`].
pub const API_KEY_SECRET_KEY: &str = "api-key";
/// The ResourceQuota of a customer namespace.
pub const RESOURCE_QUOTA: &str = "prospector-quota";
/// The LimitRange of a customer namespace.
pub const LIMIT_RANGE: &str = "prospector-defaults";
/// The NetworkPolicy of a customer namespace.
pub const NETWORK_POLICY: &str = "default-deny-ingress";
/// The ConfigMap with the customer's aggregate ICP (`icp.json`), which its agents mount.
pub const ICP_CONFIG_MAP: &str = "customer-icp";
/// The key of the ICP in [`ICP_CONFIG_MAP`].
pub const ICP_FILE: &str = "icp.json";

/// What the children of one customer are built from.
#[derive(Clone, Debug)]
pub struct CustomerChildren<'a> {
    pub customer_name: &'a str,
    pub customer_id: i64,
    pub tier: &'a str,
    pub namespace: &'a str,
    pub platform_namespace: &'a str,
    /// The Customer as owner: the namespace is garbage-collected with it.
    pub owner: OwnerReference,
}

/// The namespace and the four children the operator applies into it, built once per reconcile:
/// their digest, the drift check and the apply all use the same objects.
#[derive(Clone, Debug)]
pub struct NamespaceObjects {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub policy: NetworkPolicy,
    pub icp: ConfigMap,
}

impl NamespaceObjects {
    /// A digest of the objects: when it changes, they are applied again.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let inputs = serde_json::json!({
            "namespace": self.namespace,
            "quota": self.quota,
            "limits": self.limits,
            "policy": self.policy,
            "icp": self.icp,
        });
        hex::encode(&Sha256::digest(inputs.to_string().as_bytes())[..12])
    }
}

impl CustomerChildren<'_> {
    /// The namespace and its four children, from the tier's quota and the customer's ICP.
    pub fn namespace_objects(
        &self,
        quota: &NamespaceQuota,
        icp: Option<&prospector_crds::IcpCriteria>,
    ) -> NamespaceObjects {
        NamespaceObjects {
            namespace: self.namespace(),
            quota: self.resource_quota(quota),
            limits: self.limit_range(),
            policy: self.network_policy(),
            icp: self.icp_config_map(icp),
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        managed_labels(&[(labels::CUSTOMER, self.customer_name), (labels::CUSTOMER_ID, &self.customer_id.to_string())])
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }

    /// The customer's namespace. Pods in it must meet the restricted Pod Security Standard.
    pub fn namespace(&self) -> Namespace {
        let mut labels = self.labels();
        labels.insert(labels::TIER.to_owned(), self.tier.to_owned());
        for mode in ["enforce", "audit", "warn"] {
            labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".to_owned());
        }
        Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.to_owned()),
                labels: Some(labels),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The namespace's ResourceQuota, from the tier (with overrides).
    pub fn resource_quota(&self, quota: &NamespaceQuota) -> ResourceQuota {
        let hard = BTreeMap::from([
            ("requests.cpu".to_owned(), Quantity(quota.cpu.clone())),
            ("requests.memory".to_owned(), Quantity(quota.memory.clone())),
            ("pods".to_owned(), Quantity(quota.pods.to_string())),
            ("requests.nvidia.com/gpu".to_owned(), Quantity(quota.gpus.to_string())),
        ]);
        ResourceQuota {
            metadata: self.meta(RESOURCE_QUOTA),
            spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
            ..Default::default()
        }
    }

    /// Default container requests and limits, so pods without them still fit the quota.
    pub fn limit_range(&self) -> LimitRange {
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity(memory.into()))])
        };
        LimitRange {
            metadata: self.meta(LIMIT_RANGE),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    default_request: Some(quantities("100m", "128Mi")),
                    default: Some(quantities("500m", "512Mi")),
                    ..Default::default()
                }],
            }),
        }
    }

    /// Denies all ingress to the namespace except from the platform namespace.
    pub fn network_policy(&self) -> NetworkPolicy {
        let platform = BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), self.platform_namespace.to_owned())]);
        NetworkPolicy {
            metadata: self.meta(NETWORK_POLICY),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector { match_labels: Some(platform), ..Default::default() }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// The customer's aggregate ICP as `icp.json`, in the seed API's shape, for its agents.
    pub fn icp_config_map(&self, icp: Option<&prospector_crds::IcpCriteria>) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(ICP_CONFIG_MAP),
            data: Some(BTreeMap::from([(ICP_FILE.to_owned(), crate::icp::agent_file(icp))])),
            ..Default::default()
        }
    }

    /// The API key Secret. Created once, never updated: the key is generated only when the
    /// Secret does not exist.
    pub fn api_key_secret(&self, api_key: &str) -> Secret {
        Secret {
            metadata: self.meta(API_KEY_SECRET),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(API_KEY_SECRET_KEY.to_owned(), ByteString(api_key.as_bytes().to_vec()))])),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn children() -> CustomerChildren<'static> {
        CustomerChildren {
            customer_name: "acme",
            customer_id: 7,
            tier: "starter",
            namespace: "cust-acme",
            platform_namespace: "prospector-system",
            owner: OwnerReference {
                api_version: "prospector.dev/v1alpha1".into(),
                kind: "Customer".into(),
                name: "acme".into(),
                uid: "uid-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        }
    }

    #[test]
    fn namespace_is_labelled_restricted_and_owned_by_the_customer() {
        let ns = children().namespace();
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["prospector.dev/customer"], "acme");
        assert_eq!(labels["prospector.dev/customer-id"], "7");
        assert_eq!(labels["prospector.dev/tier"], "starter");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(ns.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }

    #[test]
    fn resource_quota_comes_from_the_tier() {
        let quota = NamespaceQuota { cpu: "6".into(), memory: "12Gi".into(), pods: 10, gpus: 1 };
        let rq = children().resource_quota(&quota);
        let hard = rq.spec.unwrap().hard.unwrap();
        assert_eq!(hard["requests.cpu"], Quantity("6".into()));
        assert_eq!(hard["requests.memory"], Quantity("12Gi".into()));
        assert_eq!(hard["pods"], Quantity("10".into()));
        assert_eq!(hard["requests.nvidia.com/gpu"], Quantity("1".into()));
        assert_eq!(rq.metadata.namespace.as_deref(), Some("cust-acme"));
    }

    #[test]
    fn network_policy_denies_ingress_but_from_the_platform() {
        let spec = children().network_policy().spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()), "applies to every pod");
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let peer = &rules[0].from.as_ref().unwrap()[0];
        let selector = peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(selector["kubernetes.io/metadata.name"], "prospector-system");
        assert!(peer.pod_selector.is_none() && rules[0].ports.is_none());
    }

    #[test]
    fn the_icp_config_map_holds_the_seed_shape() {
        let icp = prospector_crds::IcpCriteria { target_regions: vec!["Europe".into()], ..Default::default() };
        let config_map = children().icp_config_map(Some(&icp));
        assert_eq!(config_map.metadata.name.as_deref(), Some(ICP_CONFIG_MAP));
        let file: serde_json::Value = serde_json::from_str(&config_map.data.unwrap()[ICP_FILE]).unwrap();
        assert_eq!(file["target_regions"], serde_json::json!(["Europe"]));
    }

    #[test]
    fn api_key_secret_holds_the_key() {
        let secret = children().api_key_secret("sa_abc");
        assert_eq!(secret.data.unwrap()[API_KEY_SECRET_KEY].0, b"sa_abc");
    }
}
