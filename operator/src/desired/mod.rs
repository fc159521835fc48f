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

/// Whether `live`, an object as the apiserver returns it, already holds every field of
/// `desired` with the same value: whether applying `desired` would change nothing the operator
/// sets.
/// - Map keys only `live` has (defaults, status, other managers' labels) do not count, as a
///   server-side apply would leave them too.
/// - Lists compare whole, and an empty map only matches an empty one: the lists and the empty
///   selector the operator sets are atomic, so an apply would replace whatever else is there.
/// - An empty list or map in `desired` matches one the apiserver left out.
/// - Quantities compare as written, so one not in its canonical form always looks changed: a
///   wrong "changed" costs only the apply that would have been made anyway.
pub fn applied_fields_match(desired: &serde_json::Value, live: &serde_json::Value) -> bool {
    use serde_json::Value;
    let empty = |value: &Value| match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    };
    match (desired, live) {
        (wanted, found) if empty(wanted) => empty(found),
        (Value::Object(wanted), Value::Object(found)) => wanted.iter().all(|(key, value)| match found.get(key) {
            Some(found) => applied_fields_match(value, found),
            None => empty(value),
        }),
        (wanted, found) => wanted == found,
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::applied_fields_match;

    #[test]
    fn live_fields_the_operator_does_not_set_do_not_count() {
        let desired = json!({"metadata": {"name": "q", "labels": {"a": "1"}}, "spec": {"hard": {"pods": "10"}}});
        let live = json!({
            "metadata": {"name": "q", "labels": {"a": "1", "added-by-someone": "x"}, "resourceVersion": "7"},
            "spec": {"hard": {"pods": "10"}, "scopes": []},
            "status": {"used": {"pods": "3"}},
        });
        assert!(applied_fields_match(&desired, &live));
    }

    #[test]
    fn a_changed_missing_or_reordered_field_of_the_operator_counts() {
        let desired =
            json!({"spec": {"hard": {"pods": "10"}, "types": ["Ingress"], "rules": [{"port": 80}, {"port": 81}]}});
        for live in [
            json!({"spec": {"hard": {"pods": "99"}, "types": ["Ingress"], "rules": [{"port": 80}, {"port": 81}]}}),
            json!({"spec": {"hard": {}, "types": ["Ingress"], "rules": [{"port": 80}, {"port": 81}]}}),
            json!({"spec": {"hard": {"pods": "10"}, "rules": [{"port": 80}, {"port": 81}]}}),
            json!({"spec": {"hard": {"pods": "10"}, "types": ["Ingress"], "rules": [{"port": 81}, {"port": 80}]}}),
            json!({"spec": {"hard": {"pods": "10"}, "types": ["Ingress"], "rules": [{"port": 80}]}}),
            // Lists are atomic: a field added inside an element is drift an apply would undo.
            json!({"spec": {"hard": {"pods": "10"}, "types": ["Ingress"], "rules": [{"port": 80, "from": "x"}, {"port": 81}]}}),
            json!({}),
        ] {
            assert!(!applied_fields_match(&desired, &live), "{live}");
        }
    }

    #[test]
    fn empty_lists_and_maps_match_only_empty_or_missing_ones() {
        let desired = json!({"spec": {"podSelector": {}, "egress": []}});
        assert!(applied_fields_match(&desired, &json!({"spec": {}})));
        assert!(applied_fields_match(&desired, &json!({"spec": {"podSelector": {}, "egress": null}})));
        // A selector narrowed by someone else: the default deny no longer covers every pod.
        assert!(!applied_fields_match(&desired, &json!({"spec": {"podSelector": {"matchLabels": {"a": "b"}}}})));
        assert!(!applied_fields_match(&desired, &json!({"spec": {"podSelector": {}, "egress": [{}]}})));
    }
}
