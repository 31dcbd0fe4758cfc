//! Validation every stored object passes: object names, label keys and
//! values, and a few per-kind rules a real server enforces (422 Invalid with
//! the field path of each problem).

use serde_json::Value;

use crate::errors::ApiError;
use crate::read::meta;
use crate::registry::ResourceInfo;

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

fn dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && dns_subdomain(s)
}

fn label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

/// kube-apiserver's words for what is wrong with a label value, one per
/// problem (too long, then the characters), as kube-apiserver v1.35 gives them.
fn label_value_problems(v: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if v.len() > 63 {
        problems.push("must be no more than 63 bytes".to_string());
    }
    let chars_ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())));
    if !chars_ok {
        problems.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    }
    problems
}

/// A pod spec's `nodeSelector` holds labels: qualified keys, label values.
fn node_selector(spec: Option<&Value>, path: &str, causes: &mut Vec<(String, String)>) {
    let Some(m) = spec
        .and_then(|s| s.get("nodeSelector"))
        .and_then(Value::as_object)
    else {
        return;
    };
    for (k, v) in m {
        if !label_key(k) {
            causes.push((
                path.to_string(),
                format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
            ));
        }
        let v = v.as_str().unwrap_or_default();
        for problem in label_value_problems(v) {
            causes.push((
                path.to_string(),
                format!("Invalid value: \"{v}\": {problem}"),
            ));
        }
    }
}

fn label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(dns_subdomain) && !name.is_empty() && label_value(name)
}

/// The most bytes (keys and values together) an object's annotations may
/// hold, as kube-apiserver counts them. Client-side `kubectl apply` copies
/// the whole object into an annotation, so a packed plugin of more than
/// about 190 KiB needs `apply --server-side` or `create`.
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// Checks an object about to be stored (`old` is the stored one on update).
pub fn validate_object(
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = meta(obj, "name");
    let mut causes: Vec<(String, String)> = Vec::new();
    let label_names = matches!(info.resource.as_str(), "namespaces" | "services");
    let name_ok = if info.group == "rbac.authorization.k8s.io" {
        !name.is_empty() && !name.contains('/') && !name.contains('%')
    } else if label_names {
        dns_label(name)
    } else {
        dns_subdomain(name)
    };
    if !name_ok {
        let rule = if label_names {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": {rule}"),
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if !label_key(k) {
                        causes.push(("metadata.labels".to_string(), format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.'")));
                    }
                    match v.as_str() {
                        Some(s) if label_value(s) => {}
                        _ => causes.push(("metadata.labels".to_string(), format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"))),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push((
                "metadata.labels".into(),
                "Invalid value: labels must be a map of strings".into(),
            )),
        }
    }
    if let Some(a) = obj.pointer("/metadata/annotations")
        && !a.is_null()
        && !a
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    {
        causes.push((
            "metadata.annotations".into(),
            "Invalid value: annotations must be a map of strings".into(),
        ));
    }
    if let Some(m) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let total: usize = m
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > ANNOTATIONS_LIMIT {
            causes.push((
                "metadata.annotations".into(),
                format!("Too long: may not be more than {ANNOTATIONS_LIMIT} bytes"),
            ));
        }
    }
    kind_rules(info, obj, old, &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&info.group, &info.kind, name, &causes))
    }
}

fn kind_rules(
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            node_selector(obj.get("spec"), "spec.nodeSelector", causes);
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            if containers.is_none_or(|c| c.is_empty()) {
                causes.push(("spec.containers".into(), "Required value".into()));
            }
            for (i, c) in containers.into_iter().flatten().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(|n| !dns_label(n))
                {
                    causes.push((
                        format!("spec.containers[{i}].name"),
                        "Required value".into(),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push((
                        format!("spec.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
            if let Some(old) = old {
                let node = |o: &Value| o.pointer("/spec/nodeName").cloned();
                if node(old).is_some() && node(old) != node(obj) {
                    causes.push(("spec.nodeName".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`".into()));
                }
            }
        }
        ("batch", "Job") => {
            node_selector(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec.nodeSelector",
                causes,
            );
            if obj.pointer("/spec/template").is_none() {
                causes.push(("spec.template".into(), "Required value".into()));
            }
            let rp = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str);
            if !matches!(rp, Some("Never" | "OnFailure")) {
                causes.push((
                    "spec.template.spec.restartPolicy".into(),
                    format!("Required value: valid values: \"OnFailure\", \"Never\" (got {rp:?})"),
                ));
            }
            if let Some(old) = old {
                job_completions_change(old, obj, causes);
                for f in ["/spec/selector", "/spec/completionMode", "/spec/template"] {
                    let immutable_template = f != "/spec/template" || !is_suspended(old);
                    if immutable_template && old.pointer(f) != obj.pointer(f) {
                        causes.push((
                            f.trim_start_matches('/').replace('/', "."),
                            "Invalid value: field is immutable".into(),
                        ));
                    }
                }
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if let Some(old) = old
                && old.get("immutable") == Some(&Value::Bool(true))
                && (old.get("data") != obj.get("data")
                    || old.get("binaryData") != obj.get("binaryData"))
            {
                causes.push((
                    "data".into(),
                    "Forbidden: field is immutable when `immutable` is set".into(),
                ));
            }
        }
        _ => {}
    }
}

/// `spec.completions` of a Job changes only for an Indexed Job, and then
/// only together with `spec.parallelism` (elastic Indexed Jobs).
fn job_completions_change(old: &Value, obj: &Value, causes: &mut Vec<(String, String)>) {
    let completions = obj.pointer("/spec/completions");
    if completions == old.pointer("/spec/completions") {
        return;
    }
    let shown = completions.map_or("null".to_string(), Value::to_string);
    let indexed = obj.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
    if !indexed {
        causes.push((
            "spec.completions".into(),
            format!("Invalid value: {shown}: field is immutable"),
        ));
    } else if completions.is_some_and(|c| !c.is_null())
        && completions != obj.pointer("/spec/parallelism")
    {
        causes.push((
            "spec.completions".into(),
            format!("Invalid value: {shown}: can only be modified in tandem with spec.parallelism"),
        ));
    }
}

fn is_suspended(job: &Value) -> bool {
    job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn bad_names_and_labels_are_invalid_with_field_causes() {
        let info = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .unwrap();
        let o =
            json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "fine", "x": "no spaces"}}});
        let e = validate_object(&info, &o, None).unwrap_err();
        assert_eq!(e.code, 422);
        let causes = e.to_status()["details"]["causes"].clone();
        let fields: Vec<&str> = causes
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["field"].as_str())
            .collect();
        assert_eq!(fields, vec!["metadata.name", "metadata.labels"]);
    }

    #[test]
    fn a_node_selector_holds_labels_in_jobs_and_pods() {
        let registry = Registry::with_builtins();
        let long = "n".repeat(64);
        let pod_spec = json!({"restartPolicy": "Never", "nodeSelector": {"pool": long, "ok": "a"},
                              "containers": [{"name": "c", "image": "i"}]});
        let job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": pod_spec}}});
        let info = registry.get("batch", "v1", "jobs").unwrap();
        let e = validate_object(&info, &job, None).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "Job.batch \"j\" is invalid: spec.template.spec.nodeSelector: Invalid value: \"{long}\": must be no more than 63 bytes"
            )
        );
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}],
                         "nodeSelector": {"pool": "-bad"}}});
        let info = registry.get("", "v1", "pods").unwrap();
        let e = validate_object(&info, &pod, None).unwrap_err();
        assert!(e.message.starts_with("Pod \"p\" is invalid: spec.nodeSelector: Invalid value: \"-bad\": a valid label must be"), "{}", e.message);
    }

    #[test]
    fn annotations_over_256_kib_in_all_are_too_long() {
        let info = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .unwrap();
        // Two annotations, each under the limit, together one byte over it:
        // the limit counts keys and values of all of them.
        let half = ANNOTATIONS_LIMIT / 2;
        let at = |extra: usize| {
            json!({"metadata": {"name": "plugin", "annotations": {
                "a": "x".repeat(half - 1),
                "b": "x".repeat(half - 1 + extra),
            }}})
        };
        assert!(validate_object(&info, &at(0), None).is_ok());
        let e = validate_object(&info, &at(1), None).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "ConfigMap \"plugin\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn a_job_template_cannot_change_unless_suspended() {
        let info = Registry::with_builtins()
            .get("batch", "v1", "jobs")
            .unwrap();
        let job = |img: &str, suspend: bool| json!({"metadata": {"name": "j"}, "spec": {"suspend": suspend, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": img}]}}}});
        assert!(validate_object(&info, &job("b", false), Some(&job("a", false))).is_err());
        assert!(validate_object(&info, &job("b", true), Some(&job("a", true))).is_ok());
    }

    #[test]
    fn only_an_indexed_job_changes_completions_and_only_with_parallelism() {
        let info = Registry::with_builtins()
            .get("batch", "v1", "jobs")
            .unwrap();
        let job = |mode: &str, p: i64, c: i64| {
            json!({"metadata": {"name": "j"}, "spec": {
            "completionMode": mode, "parallelism": p, "completions": c,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
        };
        assert!(validate_object(&info, &job("Indexed", 4, 4), Some(&job("Indexed", 2, 2))).is_ok());
        let e =
            validate_object(&info, &job("Indexed", 3, 4), Some(&job("Indexed", 2, 2))).unwrap_err();
        assert!(
            e.message.ends_with("spec.completions: Invalid value: 4: can only be modified in tandem with spec.parallelism"),
            "{}",
            e.message
        );
        let e = validate_object(
            &info,
            &job("NonIndexed", 4, 4),
            Some(&job("NonIndexed", 2, 2)),
        )
        .unwrap_err();
        assert!(
            e.message
                .ends_with("spec.completions: Invalid value: 4: field is immutable"),
            "{}",
            e.message
        );
        // Parallelism alone may change for any Job.
        assert!(
            validate_object(
                &info,
                &job("NonIndexed", 1, 2),
                Some(&job("NonIndexed", 2, 2))
            )
            .is_ok()
        );
    }
}
