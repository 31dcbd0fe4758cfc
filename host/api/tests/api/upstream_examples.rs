//! Every example manifest, ours in `examples/` and (when they are beside
//! the checkout) upstream's, is admitted unchanged: each JobSet document
//! parses with no unknown field, passes CREATE validation after defaulting,
//! and serialises back to the same document.

use std::path::PathBuf;

use jobset_api::*;

use crate::upstream::upstream_examples;
use serde_json::Value;

/// The repository's own example manifests (`examples/*.yaml`, scenarios
/// left out).
fn own_examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The `.yaml` files of `dir` that are manifests, sorted.
fn manifests_in(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.to_string_lossy().ends_with(".scenario.yaml"))
        .collect();
    files.sort();
    files
}

/// Our own examples, then the upstream ones when they are beside the
/// checkout (see `upstream`: skipped with a note, or required in CI).
fn example_files() -> Vec<PathBuf> {
    let mut files = manifests_in(&own_examples());
    assert!(
        files.len() >= 4,
        "only {} manifests in examples/",
        files.len()
    );
    if let Some(dir) = upstream_examples() {
        let upstream = manifests_in(&dir);
        assert!(
            upstream.len() >= 30,
            "only {} example files in {}",
            upstream.len(),
            dir.display()
        );
        files.extend(upstream);
    }
    files
}

/// Equality of the input and the round-tripped document, except that an
/// integer quantity (`google.com/tpu: 4`) comes back as its string, as the
/// API server also returns it.
fn same_document(input: &Value, output: &Value, path: &str, diffs: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => same_document(x, y, &format!("{path}.{k}"), diffs),
                    _ => diffs.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_document(x, y, &format!("{path}[{i}]"), diffs);
            }
        }
        (Value::Number(n), Value::String(s)) if n.to_string() == *s => {}
        (a, b) if a == b => {}
        _ => diffs.push(path.to_string()),
    }
}

/// The JobSet documents in `doc`: the document itself, or JobSets embedded
/// as `manifest` strings (Argo Workflows resource templates).
fn collect_jobsets(doc: &Value, out: &mut Vec<Value>) {
    if is_jobset(doc) {
        out.push(doc.clone());
        return;
    }
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(text) if k == "manifest" => {
                        for d in split_documents(text).unwrap_or_default() {
                            collect_jobsets(&d, out);
                        }
                    }
                    _ => collect_jobsets(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_jobsets(v, out)),
        _ => {}
    }
}

#[test]
fn every_example_jobset_parses_validates_and_round_trips() {
    let files = example_files();
    let mut jobsets = 0;
    let mut files_without_jobsets = 0;
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap();
        let docs = match split_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut found = Vec::new();
        for doc in &docs {
            collect_jobsets(doc, &mut found);
        }
        // A file of RBAC objects only (the agent's service account) holds
        // no JobSet by design.
        let rbac_only = docs.iter().all(|d| {
            matches!(
                d.get("kind").and_then(Value::as_str),
                Some(
                    "ServiceAccount"
                        | "Role"
                        | "RoleBinding"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                )
            )
        });
        if rbac_only {
            files_without_jobsets += 1;
        }
        for (i, doc) in found.iter().enumerate() {
            jobsets += 1;
            let js = match parse_jobset_value(doc) {
                Ok(js) => js,
                Err(e) => {
                    failures.push(format!("{name}#{i}: parse: {e}"));
                    continue;
                }
            };
            let mut defaulted = js.clone();
            default_jobset(&mut defaulted);
            let all_gates = ValidationContext {
                gates: FeatureGates::all(),
                ..Default::default()
            };
            if let Err(e) = validate_create(&defaulted, &all_gates) {
                failures.push(format!("{name}#{i}: validation:\n{e}"));
            }
            // With upstream's default gates (all off), exactly the examples
            // of the alpha features are refused, naming the gate.
            let gated = name.starts_with("in-place-restart__")
                || name.contains("restartjob-action")
                || name.contains("restartjobandignoremaxrestarts-action")
                || name == "restart-job.yaml"
                || name == "in-place-restart.yaml";
            match validate_create(&defaulted, &ValidationContext::default()) {
                Ok(()) if gated => failures.push(format!("{name}#{i}: admitted with gates off")),
                Err(e) if !gated => {
                    failures.push(format!("{name}#{i}: refused with gates off:\n{e}"))
                }
                Err(e) if !e.to_string().contains("feature gate is disabled") => {
                    failures.push(format!("{name}#{i}: refused, not for its gate:\n{e}"))
                }
                _ => {}
            }
            let back = serde_json::to_value(&js).unwrap();
            let mut diffs = Vec::new();
            same_document(doc, &back, "", &mut diffs);
            if !diffs.is_empty() {
                failures.push(format!("{name}#{i}: round trip differs at {diffs:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        jobsets >= files.len() - files_without_jobsets,
        "only {jobsets} JobSets in {} files",
        files.len()
    );
}

#[test]
fn defaulting_an_example_jobset_only_adds_fields() {
    let text = std::fs::read_to_string(own_examples().join("parallel-jobs.yaml")).unwrap();
    let doc = split_documents(&text)
        .unwrap()
        .into_iter()
        .find(is_jobset)
        .unwrap();
    let mut js = parse_jobset_value(&doc).unwrap();
    default_jobset(&mut js);
    let back = serde_json::to_value(&js).unwrap();
    let mut diffs = Vec::new();
    same_document(&doc, &back, "", &mut diffs);
    // Every difference is a field the defaulting added, never a changed one.
    assert!(!diffs.is_empty());
    for d in &diffs {
        let mut node = &doc;
        let present = d.trim_start_matches('.').split('.').all(|seg| {
            let (key, idx) = seg.split_once('[').map_or((seg, None), |(k, i)| {
                (k, i.trim_end_matches(']').parse::<usize>().ok())
            });
            match node.get(key).and_then(|n| match idx {
                Some(i) => n.get(i),
                None => Some(n),
            }) {
                Some(n) => {
                    node = n;
                    true
                }
                None => false,
            }
        });
        assert!(!present, "defaulting changed {d}");
    }
}

/// Pod-spec fields of Kubernetes releases after the oldest one this crate
/// builds against (1.33); the examples may use them.
const NEWER_KUBERNETES_FIELDS: [&str; 2] = ["restartPolicyRules", "schedulingGroup"];

#[test]
fn only_fields_of_newer_kubernetes_releases_are_unknown_inside_templates() {
    for file in example_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in split_documents(&text)
            .unwrap()
            .iter()
            .filter(|d| is_jobset(d))
        {
            let js = parse_jobset_value(doc).unwrap();
            for path in embedded_unknown_fields(&js) {
                let field = path.rsplit('.').next().unwrap_or("");
                assert!(
                    NEWER_KUBERNETES_FIELDS.contains(&field),
                    "{}: {path} is unknown to the Kubernetes types",
                    file.display()
                );
            }
        }
    }
}
