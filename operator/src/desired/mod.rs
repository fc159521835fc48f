//! The desired Kubernetes objects of each custom resource, built by pure functions so they are
//! unit-tested without a cluster. The reconcilers apply them with server-side apply.

pub mod agent;
pub mod customer;
pub mod embedder_job;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

/// Labels every managed object carries.
pub fn managed_labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels =
        BTreeMap::from([(prospector_crds::labels::MANAGED_BY.to_owned(), prospector_crds::labels::MANAGER.to_owned())]);
    for (key, value) in extra {
        labels.insert((*key).to_owned(), (*value).to_owned());
    }
    labels
}

/// The pod-level half of the restricted Pod Security Standard.
pub fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(10001),
        run_as_group: Some(10001),
        fs_group: Some(10001),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// The container-level half of the restricted Pod Security Standard, with a read-only root.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}
