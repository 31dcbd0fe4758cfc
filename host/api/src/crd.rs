//! The JobSet CustomResourceDefinition, generated from the types and then
//! completed with what the derive cannot express: CEL immutability and
//! exclusion rules, list-map keys, atomic and set lists, bounds and defaults.

use std::sync::LazyLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

use crate::labels::{MAX_DEPENDS_ON, MAX_JOB_RESTARTS_ITEMS, MAX_VOLUME_CLAIM_POLICIES};
use crate::spec::JobSet;

/// Message of the CEL immutability rules, as the API server reports it.
pub const IMMUTABLE_MESSAGE: &str = "Value is immutable";
/// CEL rule: `startupPolicyOrder: InOrder` excludes any `dependsOn`. The
/// `has` guards keep it from erroring on a spec without replicated jobs.
pub const IN_ORDER_DEPENDS_ON_RULE: &str = "!(has(self.startupPolicy) && \
     self.startupPolicy.startupPolicyOrder == 'InOrder' && has(self.replicatedJobs) && \
     self.replicatedJobs.exists(x, has(x.dependsOn)))";
/// Message of [`IN_ORDER_DEPENDS_ON_RULE`].
pub const IN_ORDER_DEPENDS_ON_MESSAGE: &str =
    "StartupPolicy and DependsOn APIs are mutually exclusive";
/// CEL rule on each PVC template: no namespace.
pub const PVC_NAMESPACE_RULE: &str =
    "!has(self.metadata) || !has(self.metadata.namespace) || self.metadata.namespace == ''";
/// Message of [`PVC_NAMESPACE_RULE`].
pub const PVC_NAMESPACE_MESSAGE: &str = "metadata.namespace must not be set in a volume claim template: claims are created in the JobSet's namespace";

/// The JobSet CRD (`jobsets.jobset.x-k8s.io`).
pub fn crd() -> CustomResourceDefinition {
    CRD.clone()
}

/// Generated once: schema generation walks every embedded Kubernetes type.
static CRD: LazyLock<CustomResourceDefinition> = LazyLock::new(generate);

fn generate() -> CustomResourceDefinition {
    let mut value = match serde_json::to_value(JobSet::crd()) {
        Ok(v) => v,
        Err(_) => return JobSet::crd(),
    };
    if let Some(schema) = value.pointer_mut("/spec/versions/0/schema/openAPIV3Schema") {
        complete_schema(schema);
    }
    serde_json::from_value(value).unwrap_or_else(|_| JobSet::crd())
}

/// The JobSet CRD as YAML, as written to `deploy/crd/`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).unwrap_or_default()
}

/// A schema node by a dotted path of property names; `[]` steps into the
/// items of an array.
fn node<'a>(schema: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut cur = schema;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = if part == "[]" {
            cur.get_mut("items")?
        } else {
            cur.get_mut("properties")?.get_mut(part)?
        };
    }
    cur.as_object_mut()
}

fn set(schema: &mut Value, path: &str, entries: Value) {
    if let (Some(n), Value::Object(e)) = (node(schema, path), entries) {
        n.extend(e);
    }
}

fn cel(rule: &str, message: &str) -> Value {
    json!([{ "rule": rule, "message": message }])
}

fn complete_schema(s: &mut Value) {
    let immutable = cel("self == oldSelf", IMMUTABLE_MESSAGE);
    let map_by =
        |key: &str| json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]});
    let atomic = json!({"x-kubernetes-list-type": "atomic"});

    set(
        s,
        "spec",
        json!({"x-kubernetes-validations": cel(IN_ORDER_DEPENDS_ON_RULE, IN_ORDER_DEPENDS_ON_MESSAGE)}),
    );
    for field in [
        "network",
        "successPolicy",
        "failurePolicy",
        "startupPolicy",
        "volumeClaimPolicies",
    ] {
        set(
            s,
            &format!("spec.{field}"),
            json!({"x-kubernetes-validations": immutable}),
        );
    }

    let rj = "spec.replicatedJobs";
    set(s, rj, map_by("name"));
    set(
        s,
        &format!("{rj}.[].replicas"),
        json!({"default": 1, "minimum": 0}),
    );
    set(
        s,
        &format!("{rj}.[].groupName"),
        json!({"default": "default"}),
    );
    set(s, &format!("{rj}.[].dependsOn"), map_by("name"));
    set(
        s,
        &format!("{rj}.[].dependsOn"),
        json!({"maxItems": MAX_DEPENDS_ON, "x-kubernetes-validations": immutable}),
    );

    set(s, "spec.successPolicy.targetReplicatedJobs", atomic.clone());
    set(
        s,
        "spec.failurePolicy.restartStrategy",
        json!({"default": "Recreate"}),
    );
    set(s, "spec.failurePolicy.rules", atomic.clone());
    let rules = "spec.failurePolicy.rules.[]";
    set(s, &format!("{rules}.targetReplicatedJobs"), atomic.clone());
    // Atomic, not sets: upstream admits a reason or pattern listed twice.
    set(s, &format!("{rules}.onJobFailureReasons"), atomic.clone());
    set(
        s,
        &format!("{rules}.onJobFailureMessagePatterns"),
        atomic.clone(),
    );
    set(s, "spec.ttlSecondsAfterFinished", json!({"minimum": 0}));

    let vcp = "spec.volumeClaimPolicies";
    set(s, vcp, json!({"maxItems": MAX_VOLUME_CLAIM_POLICIES}));
    set(s, vcp, atomic.clone());
    set(
        s,
        &format!("{vcp}.[].templates"),
        json!({"maxItems": MAX_VOLUME_CLAIM_POLICIES}),
    );
    set(s, &format!("{vcp}.[].templates"), atomic.clone());
    set(
        s,
        &format!("{vcp}.[].templates.[]"),
        json!({"x-kubernetes-validations": cel(PVC_NAMESPACE_RULE, PVC_NAMESPACE_MESSAGE)}),
    );
    set(
        s,
        &format!("{vcp}.[].retentionPolicy.whenDeleted"),
        json!({"default": "Delete"}),
    );

    // Pod-spec and container fields of Kubernetes releases newer than the
    // compiled types' (e.g. restartPolicyRules, schedulingGroup) must survive
    // pruning, as the Job template keeps them too.
    let pod = format!("{rj}.[].template.spec.template.spec");
    let keep = json!({"x-kubernetes-preserve-unknown-fields": true});
    set(s, &pod, keep.clone());
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        set(s, &format!("{pod}.{list}.[]"), keep.clone());
    }

    set(s, "status.conditions", map_by("type"));
    set(s, "status.replicatedJobsStatus", map_by("name"));
    for field in ["jobRestarts", "jobRestartsCountTowardsMax"] {
        set(
            s,
            &format!("status.replicatedJobsStatus.[].{field}"),
            json!({"maxItems": MAX_JOB_RESTARTS_ITEMS}),
        );
        set(
            s,
            &format!("status.replicatedJobsStatus.[].{field}"),
            atomic.clone(),
        );
    }
    for field in [
        "previousInPlaceRestartAttempt",
        "currentInPlaceRestartAttempt",
    ] {
        set(s, &format!("status.{field}"), json!({"minimum": 0}));
    }
    core_type_defaults(s);
}

/// The defaults the embedded Kubernetes types declare (their `+default`
/// markers), which a CRD generated from those types carries and the API
/// server then fills in on the stored JobSet: as in upstream's CRD.
const CONTAINER_DEFAULTS: &[(&str, &str)] = &[
    ("env.[].valueFrom.configMapKeyRef.name", "\"\""),
    ("env.[].valueFrom.fileKeyRef.optional", "false"),
    ("env.[].valueFrom.secretKeyRef.name", "\"\""),
    ("envFrom.[].configMapRef.name", "\"\""),
    ("envFrom.[].secretRef.name", "\"\""),
    ("livenessProbe.grpc.service", "\"\""),
    ("readinessProbe.grpc.service", "\"\""),
    ("startupProbe.grpc.service", "\"\""),
    ("ports.[].protocol", "\"TCP\""),
];
const POD_DEFAULTS: &[(&str, &str)] = &[
    ("imagePullSecrets.[].name", "\"\""),
    ("volumes.[].azureDisk.fsType", "\"ext4\""),
    ("volumes.[].azureDisk.readOnly", "false"),
    ("volumes.[].cephfs.secretRef.name", "\"\""),
    ("volumes.[].cinder.secretRef.name", "\"\""),
    ("volumes.[].configMap.name", "\"\""),
    ("volumes.[].csi.nodePublishSecretRef.name", "\"\""),
    ("volumes.[].flexVolume.secretRef.name", "\"\""),
    ("volumes.[].iscsi.iscsiInterface", "\"default\""),
    ("volumes.[].iscsi.secretRef.name", "\"\""),
    ("volumes.[].projected.sources.[].configMap.name", "\"\""),
    ("volumes.[].projected.sources.[].secret.name", "\"\""),
    ("volumes.[].rbd.keyring", "\"/etc/ceph/keyring\""),
    ("volumes.[].rbd.pool", "\"rbd\""),
    ("volumes.[].rbd.secretRef.name", "\"\""),
    ("volumes.[].rbd.user", "\"admin\""),
    ("volumes.[].scaleIO.fsType", "\"xfs\""),
    ("volumes.[].scaleIO.secretRef.name", "\"\""),
    ("volumes.[].scaleIO.storageMode", "\"ThinProvisioned\""),
    ("volumes.[].storageos.secretRef.name", "\"\""),
];

fn core_type_defaults(s: &mut Value) {
    let pod = "spec.replicatedJobs.[].template.spec.template.spec";
    let mut put = |path: String, default: &str| {
        if let Ok(v) = serde_json::from_str::<Value>(default)
            && let Some(n) = node(s, &path)
        {
            n.insert("default".to_string(), v);
        }
    };
    for (rel, default) in POD_DEFAULTS {
        put(format!("{pod}.{rel}"), default);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for (rel, default) in CONTAINER_DEFAULTS {
            put(format!("{pod}.{list}.[].{rel}"), default);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        let v = serde_json::to_value(crd()).unwrap();
        v.pointer("/spec/versions/0/schema/openAPIV3Schema")
            .unwrap()
            .clone()
    }

    fn at(path: &str) -> Map<String, Value> {
        let mut s = schema();
        node(&mut s, path)
            .unwrap_or_else(|| panic!("no schema node {path}"))
            .clone()
    }

    fn rules_of(path: &str) -> Vec<String> {
        at(path)
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["rule"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_crd_names_the_jobset_group_version_and_kind() {
        let c = crd();
        assert_eq!(c.metadata.name.as_deref(), Some("jobsets.jobset.x-k8s.io"));
        assert_eq!(c.spec.group, "jobset.x-k8s.io");
        assert_eq!(c.spec.names.kind, "JobSet");
        assert_eq!(c.spec.scope, "Namespaced");
        let v = &c.spec.versions[0];
        assert_eq!(v.name, "v1alpha2");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn the_printer_columns_match_upstream() {
        let c = crd();
        let cols: Vec<(String, String)> = c.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| (c.name.clone(), c.json_path.clone()))
            .collect();
        let expected = [
            ("TerminalState", ".status.terminalState"),
            ("Restarts", ".status.restarts"),
            (
                "Completed",
                ".status.conditions[?(@.type==\"Completed\")].status",
            ),
            ("Suspended", ".spec.suspend"),
            ("Age", ".metadata.creationTimestamp"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(cols, expected);
    }

    #[test]
    fn immutable_fields_carry_a_self_equals_old_self_rule() {
        for p in [
            "spec.network",
            "spec.successPolicy",
            "spec.failurePolicy",
            "spec.startupPolicy",
            "spec.volumeClaimPolicies",
            "spec.replicatedJobs.[].dependsOn",
        ] {
            assert_eq!(rules_of(p), vec!["self == oldSelf"], "{p}");
        }
        assert!(rules_of("spec.suspend").is_empty());
    }

    #[test]
    fn in_order_and_depends_on_exclude_each_other_on_the_spec() {
        assert_eq!(rules_of("spec"), vec![IN_ORDER_DEPENDS_ON_RULE]);
        assert_eq!(
            rules_of("spec.volumeClaimPolicies.[].templates.[]"),
            vec![PVC_NAMESPACE_RULE]
        );
    }

    #[test]
    fn keyed_lists_are_list_maps() {
        for (p, key) in [
            ("spec.replicatedJobs", "name"),
            ("spec.replicatedJobs.[].dependsOn", "name"),
            ("status.replicatedJobsStatus", "name"),
            ("status.conditions", "type"),
        ] {
            let n = at(p);
            assert_eq!(n["x-kubernetes-list-type"], "map", "{p}");
            assert_eq!(n["x-kubernetes-list-map-keys"], json!([key]), "{p}");
        }
        assert_eq!(
            at("spec.successPolicy.targetReplicatedJobs")["x-kubernetes-list-type"],
            "atomic"
        );
    }

    #[test]
    fn the_embedded_core_types_carry_their_defaults_as_upstreams_crd() {
        let pod = "spec.replicatedJobs.[].template.spec.template.spec";
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            assert_eq!(
                at(&format!("{pod}.{list}.[].ports.[].protocol"))["default"],
                "TCP"
            );
            assert_eq!(
                at(&format!(
                    "{pod}.{list}.[].env.[].valueFrom.secretKeyRef.name"
                ))["default"],
                ""
            );
        }
        assert_eq!(
            at(&format!("{pod}.volumes.[].rbd.user"))["default"],
            "admin"
        );
        assert_eq!(
            at(&format!("{pod}.volumes.[].azureDisk.readOnly"))["default"],
            false
        );
        assert_eq!(
            at(&format!("{pod}.imagePullSecrets.[].name"))["default"],
            ""
        );
    }

    #[test]
    fn bounds_and_defaults_are_in_the_schema() {
        assert_eq!(at("spec.replicatedJobs.[].replicas")["default"], 1);
        assert_eq!(at("spec.replicatedJobs.[].replicas")["minimum"], 0.0);
        assert_eq!(at("spec.replicatedJobs.[].groupName")["default"], "default");
        assert_eq!(at("spec.replicatedJobs.[].dependsOn")["maxItems"], 5);
        assert_eq!(
            at("spec.failurePolicy.restartStrategy")["default"],
            "Recreate"
        );
        assert_eq!(at("spec.ttlSecondsAfterFinished")["minimum"], 0.0);
        assert_eq!(at("spec.volumeClaimPolicies")["maxItems"], 50);
        assert_eq!(at("spec.volumeClaimPolicies.[].templates")["maxItems"], 50);
        assert_eq!(
            at("spec.volumeClaimPolicies.[].retentionPolicy.whenDeleted")["default"],
            "Delete"
        );
        assert_eq!(
            at("status.replicatedJobsStatus.[].jobRestarts")["maxItems"],
            1024
        );
        assert_eq!(
            at("spec.failurePolicy.rules.[].action")["enum"],
            json!([
                "FailJobSet",
                "RestartJobSet",
                "RestartJobSetAndIgnoreMaxRestarts",
                "RestartJob",
                "RestartJobAndIgnoreMaxRestarts"
            ])
        );
    }

    #[test]
    fn pod_specs_and_containers_keep_fields_of_newer_kubernetes() {
        let pod = "spec.replicatedJobs.[].template.spec.template.spec";
        for p in [
            pod.to_string(),
            format!("{pod}.containers.[]"),
            format!("{pod}.initContainers.[]"),
        ] {
            let n = at(&p);
            assert_eq!(n["x-kubernetes-preserve-unknown-fields"], true, "{p}");
            assert!(n["properties"].is_object(), "{p} keeps its schema");
        }
    }

    /// A structural schema has a type on every node (or int-or-string /
    /// preserve-unknown-fields), and no `$ref`, `anyOf`, `oneOf` or `allOf`.
    fn structural_problems(n: &Value, path: &str, out: &mut Vec<String>) {
        let Some(o) = n.as_object() else { return };
        for k in ["$ref", "anyOf", "oneOf", "allOf"] {
            if o.contains_key(k) {
                out.push(format!("{path}: {k}"));
            }
        }
        let typed = o.contains_key("type")
            || o.get("x-kubernetes-int-or-string") == Some(&json!(true))
            || o.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if !typed {
            out.push(format!("{path}: no type"));
        }
        if let Some(Value::Object(props)) = o.get("properties") {
            for (k, v) in props {
                structural_problems(v, &format!("{path}.{k}"), out);
            }
        }
        for k in ["items", "additionalProperties"] {
            match o.get(k) {
                Some(Value::Bool(_)) => out.push(format!("{path}: boolean {k}")),
                Some(v) => structural_problems(v, &format!("{path}.{k}"), out),
                None => {}
            }
        }
    }

    #[test]
    fn the_schema_is_structural() {
        let mut problems = Vec::new();
        structural_problems(&schema(), "", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn deploy_holds_the_generated_crd() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/crd/jobsets.jobset.x-k8s.io.yaml");
        let generated = crd_yaml();
        if std::env::var_os("JOBSET_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} differs from crd_yaml(); regenerate it with \
             `JOBSET_BLESS=1 cargo test -p jobset-api deploy_holds_the_generated_crd`",
            path.display()
        );
    }
}
