//! The top-level and metadata fields each built-in kind has, so unknown ones
//! are pruned (and rejected under `fieldValidation=Strict`) as a real server
//! does. Deeper levels of built-in kinds are not checked.

use serde_json::Value;

use crate::registry::ResourceInfo;

const META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn top_level(kind: &str, group: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "Pod" | "Service" | "Namespace" | "Node" | "PersistentVolumeClaim")
        | ("batch", "Job")
        | ("coordination.k8s.io", "Lease")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => &["spec", "status"],
        ("", "ConfigMap") => &["data", "binaryData", "immutable"],
        ("", "Secret") => &["data", "stringData", "type", "immutable"],
        ("", "ServiceAccount") => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        ("", "Endpoints") => &["subsets"],
        ("", "Event") => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        ("events.k8s.io", "Event") => &[
            "eventTime",
            "series",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "regarding",
            "related",
            "note",
            "type",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ],
        ("rbac.authorization.k8s.io", "Role") => &["rules"],
        ("rbac.authorization.k8s.io", "ClusterRole") => &["rules", "aggregationRule"],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            &["subjects", "roleRef"]
        }
        ("admissionregistration.k8s.io", _) => &["webhooks"],
        _ => return None,
    })
}

/// Removes unknown top-level (built-in kinds) and metadata fields; returns their paths.
pub fn prune(info: &ResourceInfo, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let extra: Vec<String> = meta
            .keys()
            .filter(|k| !META.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in extra {
            meta.remove(&k);
            unknown.push(format!("metadata.{k}"));
        }
    }
    if info.custom {
        return unknown;
    }
    let Some(known) = top_level(&info.kind, &info.group) else {
        return unknown;
    };
    if let Some(m) = obj.as_object_mut() {
        let extra: Vec<String> = m
            .keys()
            .filter(|k| {
                !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    && !known.contains(&k.as_str())
            })
            .cloned()
            .collect();
        for k in extra {
            m.remove(&k);
            unknown.push(k);
        }
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn unknown_top_level_and_metadata_fields_are_pruned() {
        let info = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .unwrap();
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "lables": {}}, "data": {}, "spec": {}});
        let unknown = prune(&info, &mut o);
        assert_eq!(
            unknown,
            vec!["metadata.lables".to_string(), "spec".to_string()]
        );
        assert_eq!(
            o,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}})
        );
    }
}
