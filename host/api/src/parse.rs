//! Reading JobSets from YAML or JSON text: wrong types and unknown fields
//! are reported with their field paths, multi-document YAML is split, and
//! no input makes it panic.

use serde::Deserialize;
use serde_json::Value;

use std::sync::LazyLock;

use crate::embedded::{INNER_PATH_MARKER, is_empty_value, unknown_roots, vanished};
use crate::spec::JobSet;

/// The `apiVersion` of a JobSet.
pub const API_VERSION: &str = "jobset.x-k8s.io/v1alpha2";
/// The `kind` of a JobSet.
pub const KIND: &str = "JobSet";

/// Why a text is not a JobSet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not YAML (or not JSON).
    #[error("not valid {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The document is not an object with the JobSet apiVersion and kind.
    #[error(
        "not a JobSet: apiVersion {api_version:?}, kind {kind:?} (expected {API_VERSION:?}, {KIND:?})"
    )]
    NotAJobSet {
        /// The document's apiVersion.
        api_version: String,
        /// The document's kind.
        kind: String,
    },
    /// A field has the wrong type or value.
    #[error("{path}: {message}")]
    Field {
        /// Field path, e.g. `spec.replicatedJobs[0].replicas`.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Fields that are not part of the JobSet API.
    #[error("unknown fields: {}", .0.join(", "))]
    UnknownFields(Vec<String>),
}

/// Parses one YAML document into a JobSet.
pub fn parse_jobset_yaml(text: &str) -> Result<JobSet, ParseError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| ParseError::Syntax {
        format: "YAML",
        message: e.to_string(),
    })?;
    parse_jobset_value(&value)
}

/// Parses a JSON document into a JobSet.
pub fn parse_jobset_json(text: &str) -> Result<JobSet, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Syntax {
        format: "JSON",
        message: e.to_string(),
    })?;
    parse_jobset_value(&value)
}

/// Turns one decoded document into a JobSet: checks apiVersion and kind,
/// deserialises with field paths in errors, and rejects fields that the
/// JobSet API does not have. Fields unknown inside embedded Kubernetes
/// objects (the Job template, claim templates) are kept, not rejected: see
/// [`embedded_unknown_fields`].
pub fn parse_jobset_value(value: &Value) -> Result<JobSet, ParseError> {
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if !value.is_object() || api_version != API_VERSION || kind != KIND {
        return Err(ParseError::NotAJobSet { api_version, kind });
    }
    let js: JobSet = serde_path_to_error::deserialize(value).map_err(|e| {
        let outer = e.path().to_string();
        let message = e.inner().to_string();
        match message
            .strip_prefix(INNER_PATH_MARKER)
            .and_then(|m| m.split_once(": "))
        {
            Some((inner, rest)) => ParseError::Field {
                path: join_path(&outer, inner),
                message: rest.to_string(),
            },
            None => ParseError::Field {
                path: outer,
                message,
            },
        }
    })?;
    let back = serde_json::to_value(&js).map_err(|e| ParseError::Field {
        path: ".".into(),
        message: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    if let Some(Value::Object(missing)) = vanished(value, &back) {
        for (k, v) in &missing {
            match (k.as_str(), SCHEMA.get("properties").and_then(|p| p.get(k))) {
                // ObjectMeta is not in the CRD schema; its fields are typed.
                ("metadata", _) => unknown_roots(
                    v,
                    back.get("metadata").unwrap_or(&Value::Null),
                    k.clone(),
                    &mut unknown,
                ),
                (_, Some(node)) => unknown_paths(v, node, k.clone(), &mut unknown),
                (_, None) => unknown.push(k.clone()),
            }
        }
    }
    if unknown.is_empty() {
        Ok(js)
    } else {
        Err(ParseError::UnknownFields(unknown))
    }
}

/// The JobSet's OpenAPI schema, to tell unknown keys from known ones that
/// vanished only because they held an empty value.
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(crate::crd::crd())
        .ok()
        .and_then(|v| {
            v.pointer("/spec/versions/0/schema/openAPIV3Schema")
                .cloned()
        })
        .unwrap_or(Value::Null)
});

/// Paths of unknown fields in `missing` (the part of the input the typed
/// value did not keep), walking the schema alongside: a key the schema
/// lacks is unknown whatever its value; a known key that vanished with an
/// empty value was only omitted, as Go's `omitempty` would.
fn unknown_paths(missing: &Value, schema: &Value, path: String, out: &mut Vec<String>) {
    match missing {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{path}.{k}");
                let sub = schema
                    .get("properties")
                    .and_then(|props| props.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                match sub {
                    None => out.push(p),
                    Some(_) if is_empty_value(v) => {}
                    Some(node) => unknown_paths(v, node, p, out),
                }
            }
        }
        Value::Array(a) => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            for (i, v) in a.iter().enumerate() {
                if !v.is_null() {
                    unknown_paths(v, items, format!("{path}[{i}]"), out);
                }
            }
        }
        v if !is_empty_value(v) => out.push(path),
        _ => {}
    }
}

fn join_path(outer: &str, inner: &str) -> String {
    match (outer, inner) {
        (".", i) => i.to_string(),
        (o, ".") => o.to_string(),
        (o, i) if i.starts_with('[') => format!("{o}{i}"),
        (o, i) => format!("{o}.{i}"),
    }
}

/// Paths of fields that embedded Kubernetes objects carry but this build's
/// Kubernetes types do not know (kept verbatim, e.g. fields of a newer
/// Kubernetes), for a warning.
pub fn embedded_unknown_fields(js: &JobSet) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in js.spec.replicated_jobs.iter().enumerate() {
        for p in r.template.unknown_fields() {
            out.push(format!("spec.replicatedJobs[{i}].template.{p}"));
        }
    }
    for (i, policy) in js.spec.volume_claim_policies.iter().enumerate() {
        for (j, t) in policy.templates.iter().enumerate() {
            for p in t.unknown_fields() {
                out.push(format!("spec.volumeClaimPolicies[{i}].templates[{j}].{p}"));
            }
        }
    }
    out
}

/// Splits multi-document YAML into one JSON value per non-empty document.
pub fn split_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut docs = Vec::new();
    for (n, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| ParseError::Syntax {
            format: "YAML",
            message: format!("document {}: {e}", n + 1),
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Whether a decoded document is a JobSet (by apiVersion and kind).
pub fn is_jobset(doc: &Value) -> bool {
    doc.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
        && doc.get("kind").and_then(Value::as_str) == Some(KIND)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: js}\n";

    fn yaml(spec: &str) -> String {
        format!("{OK}spec:\n{spec}")
    }

    #[test]
    fn a_minimal_jobset_parses() {
        let js = parse_jobset_yaml(&yaml("  replicatedJobs: []")).unwrap();
        assert_eq!(js.metadata.name.as_deref(), Some("js"));
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let err = parse_jobset_yaml(&yaml(
            "  replicatedJobs:\n  - name: a\n    replicas: many\n    template: {}",
        ))
        .unwrap_err();
        match err {
            ParseError::Field { path, message } => {
                assert_eq!(path, "spec.replicatedJobs[0].replicas");
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_inside_the_job_template_names_the_full_path() {
        let err = parse_jobset_yaml(&yaml(
            "  replicatedJobs:\n  - name: a\n    template:\n      spec:\n        parallelism: lots",
        ))
        .unwrap_err();
        assert!(
            matches!(&err, ParseError::Field { path, .. } if path == "spec.replicatedJobs[0].template.spec.parallelism"),
            "{err:?}"
        );
    }

    #[test]
    fn an_unknown_enum_value_lists_the_allowed_ones() {
        let err = parse_jobset_yaml(&yaml("  successPolicy: {operator: Some}")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("spec.successPolicy.operator: unknown variant `Some`"),
            "{text}"
        );
        assert!(text.contains("All") && text.contains("Any"), "{text}");
    }

    #[test]
    fn unknown_fields_are_reported_with_their_paths() {
        let err = parse_jobset_yaml(&yaml(
            "  replicatedJob: []\n  failurePolicy: {maxRestart: 3}\n  network: {enableDnsHostnames: true}",
        ))
        .unwrap_err();
        assert_eq!(
            err,
            ParseError::UnknownFields(vec![
                "spec.failurePolicy.maxRestart".into(),
                "spec.network.enableDnsHostnames".into(),
                "spec.replicatedJob".into(),
            ])
        );
    }

    #[test]
    fn fields_of_newer_kubernetes_in_the_template_are_kept_not_rejected() {
        let js = parse_jobset_yaml(&yaml(
            "  replicatedJobs:\n  - name: a\n    template:\n      spec:\n        template:\n          spec:\n            schedulingGroupX: {podGroupName: g}\n            containers: []",
        ))
        .unwrap();
        assert_eq!(
            embedded_unknown_fields(&js),
            vec!["spec.replicatedJobs[0].template.spec.template.spec.schedulingGroupX"]
        );
    }

    #[test]
    fn unknown_metadata_fields_are_reported() {
        let err = parse_jobset_yaml(
            "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: js, lables: {a: b}}\nspec: {}\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            ParseError::UnknownFields(vec!["metadata.lables".into()])
        );
    }

    #[test]
    fn other_kinds_are_not_jobsets() {
        let err = parse_jobset_yaml("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(matches!(err, ParseError::NotAJobSet { .. }));
        assert!(matches!(
            parse_jobset_yaml("[1, 2]"),
            Err(ParseError::NotAJobSet { .. })
        ));
    }

    #[test]
    fn syntax_errors_say_which_format() {
        assert!(matches!(
            parse_jobset_yaml("a: [b"),
            Err(ParseError::Syntax { format: "YAML", .. })
        ));
        assert!(matches!(
            parse_jobset_json("{"),
            Err(ParseError::Syntax { format: "JSON", .. })
        ));
    }

    #[test]
    fn json_input_parses_too() {
        let js = parse_jobset_json(
            r#"{"apiVersion":"jobset.x-k8s.io/v1alpha2","kind":"JobSet","metadata":{"name":"j"},"spec":{"suspend":true}}"#,
        )
        .unwrap();
        assert!(js.spec.is_suspended());
    }

    #[test]
    fn documents_are_split_and_empty_ones_skipped() {
        let docs = split_documents(&format!(
            "---\n{OK}---\n---\napiVersion: v1\nkind: Service\n"
        ))
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert!(is_jobset(&docs[0]));
        assert!(!is_jobset(&docs[1]));
        assert!(split_documents("a: [").is_err());
    }
}
