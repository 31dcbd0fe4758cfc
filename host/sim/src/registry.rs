//! The resources the server knows: built-in kinds and those registered by
//! CustomResourceDefinitions, looked up by path segments or by kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// Verbs of a normal resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource in one group version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub has_status: bool,
    /// For custom resources: the version's structural schema.
    pub schema: Option<Arc<Value>>,
    /// For custom resources: `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// Whether this resource comes from a CRD.
    pub custom: bool,
    /// The version objects are stored in (CRDs: the storage version).
    pub storage_version: String,
    /// The group whose store holds the objects: the resource's own group,
    /// except for a kind served by two groups from one store (Events).
    pub storage_group: String,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this resource are stored under, whatever version
    /// (or, for Events, whichever group) is asked.
    pub fn store_key(&self) -> String {
        format!("{}/{}", self.storage_group, self.resource)
    }
}

fn builtin(
    group: &str,
    version: &str,
    resource: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    has_status: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        has_status,
        schema: None,
        printer_columns: Vec::new(),
        custom: false,
        storage_version: version.into(),
        storage_group: group.into(),
    }
}

/// The built-in kinds served at start.
pub fn builtins() -> Vec<ResourceInfo> {
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "nodes", "Node", false, &["no"], true),
        builtin("", "v1", "pods", "Pod", true, &["po"], true),
        builtin("", "v1", "services", "Service", true, &["svc"], true),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            true,
        ),
        builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
        builtin(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            false,
            &["pc"],
            false,
        ),
        // Stored once with the core Events and converted on the way in and out.
        ResourceInfo {
            storage_group: String::new(),
            ..builtin(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
            )
        },
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        builtin("batch", "v1", "jobs", "Job", true, &[], true),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
    ]
}

/// All served resources, keyed by `(group, version, resource)`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_path: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
    /// Bumped on every change, so OpenAPI and discovery hashes change.
    pub generation: u64,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for info in builtins() {
            r.insert(info);
        }
        r
    }

    pub fn insert(&mut self, info: ResourceInfo) {
        self.generation += 1;
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.resource.clone(),
        );
        self.by_path.insert(key, Arc::new(info));
    }

    /// Drops every version of `group/resource` (a CRD went away).
    pub fn remove(&mut self, group: &str, resource: &str) {
        self.generation += 1;
        self.by_path
            .retain(|(g, _, r), _| !(g == group && r == resource));
    }

    pub fn get(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// Finds the resource of an `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        self.by_path
            .values()
            .find(|i| i.group == group && i.version == version && i.kind == kind)
            .cloned()
    }

    /// The storage-version info for a stored `group/resource` key.
    pub fn by_store_key(&self, group: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        let mut found = None;
        for i in self.by_path.values() {
            if i.group == group && i.resource == resource {
                if i.version == i.storage_version {
                    return Some(i.clone());
                }
                found = Some(i.clone());
            }
        }
        found
    }

    /// Group versions in serving order: core first, then groups by name.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (g, v, _) in self.by_path.keys() {
            if !out.iter().any(|(og, ov)| og == g && ov == v) {
                out.push((g.clone(), v.clone()));
            }
        }
        out
    }

    pub fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.by_path
            .values()
            .filter(|i| i.group == group && i.version == version)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.by_path.values()
    }
}

/// `batch/v1` → `("batch", "v1")`, `v1` → `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_by_kind_and_by_path() {
        let r = Registry::with_builtins();
        let job = r.by_kind("batch/v1", "Job").map(|i| i.resource.clone());
        assert_eq!(job.as_deref(), Some("jobs"));
        assert!(r.get("", "v1", "pods").is_some_and(|i| i.namespaced));
        assert!(r.get("", "v1", "nodes").is_some_and(|i| !i.namespaced));
    }

    #[test]
    fn removing_a_resource_drops_all_its_versions() {
        let mut r = Registry::with_builtins();
        let mut info = builtins().remove(0);
        info.group = "x.io".into();
        info.resource = "widgets".into();
        info.version = "v1".into();
        r.insert(info.clone());
        info.version = "v2".into();
        r.insert(info);
        r.remove("x.io", "widgets");
        assert!(r.get("x.io", "v1", "widgets").is_none());
        assert!(r.get("x.io", "v2", "widgets").is_none());
    }
}
