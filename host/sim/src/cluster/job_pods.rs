//! The pods a Job creates: name, hostname and completion index for Indexed
//! Jobs, the template's labels and annotations plus the Job's own, the owner
//! reference and the tracking finalizer, as the Kubernetes Job controller
//! builds them.

use serde_json::{Value, json};

use super::scenario::COMPLETION_INDEX;
use super::util::{Rng, meta};

/// The finalizer that keeps a Job's pod until its outcome is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Per-index failure count, on pods of Jobs with `backoffLimitPerIndex`.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// Longest generated-name prefix the API server keeps (63 minus 5 random characters).
const MAX_PREFIX: usize = 58;

/// Whether the Job is Indexed.
pub fn is_indexed(job: &Value) -> bool {
    job.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed")
}

/// A pod name as generateName would make it: `<job>-<index>-xxxxx` or `<job>-xxxxx`.
pub fn pod_name(job_name: &str, index: Option<u32>, rng: &mut Rng) -> String {
    let mut prefix = match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    };
    if prefix.len() > MAX_PREFIX {
        prefix.truncate(MAX_PREFIX);
    }
    format!("{prefix}{}", rng.name_suffix())
}

/// The pod for `index` (Indexed Jobs) from the Job's template.
pub fn build_pod(
    job: &Value,
    name: &str,
    index: Option<u32>,
    index_failures: Option<u32>,
) -> Value {
    let job_name = meta(job, "name");
    let ns = meta(job, "namespace");
    let template = job
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        metadata = json!({});
    }
    for k in [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(m) = metadata.as_object_mut() {
            m.remove(k);
        }
    }
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(ns);
    if !metadata.get("labels").is_some_and(Value::is_object) {
        metadata["labels"] = json!({});
    }
    if !metadata.get("annotations").is_some_and(Value::is_object) {
        metadata["annotations"] = json!({});
    }
    if let Some(i) = index {
        metadata["labels"][COMPLETION_INDEX] = json!(i.to_string());
        metadata["annotations"][COMPLETION_INDEX] = json!(i.to_string());
    }
    if let Some(n) = index_failures {
        metadata["annotations"][INDEX_FAILURE_COUNT] = json!(n.to_string());
    }
    if metadata["annotations"]
        .as_object()
        .is_some_and(|a| a.is_empty())
        && let Some(m) = metadata.as_object_mut()
    {
        m.remove("annotations");
    }
    metadata["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
        "uid": meta(job, "uid"), "controller": true, "blockOwnerDeletion": true,
    }]);
    metadata["finalizers"] = json!([TRACKING_FINALIZER]);
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(i) = index {
        spec["hostname"] = json!(format!("{job_name}-{i}"));
        if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for c in cs {
                add_index_env(c);
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

fn add_index_env(container: &mut Value) {
    if !container.get("env").is_some_and(Value::is_array) {
        container["env"] = json!([]);
    }
    let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) else {
        return;
    };
    if env
        .iter()
        .any(|e| e.get("name").and_then(Value::as_str) == Some("JOB_COMPLETION_INDEX"))
    {
        return;
    }
    env.push(json!({
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}},
    }));
}

/// The completion index of a pod, if it has a valid one.
pub fn pod_index(pod: &Value) -> Option<u32> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(COMPLETION_INDEX))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// `1,3-5,7` from sorted indexes.
pub fn compress_indexes(idx: &std::collections::BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = idx.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses `1,3-5,7`; malformed pieces are skipped.
pub fn parse_indexes(s: &str) -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(100_000)));
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        serde_json::from_str(r#"{"metadata":{"name":"js-workers-0","namespace":"ns","uid":"u-1"},
          "spec":{"completionMode":"Indexed","template":{"metadata":{"labels":{"a":"b","batch.kubernetes.io/job-name":"js-workers-0"}},
          "spec":{"subdomain":"js","containers":[{"name":"main","image":"x"}]}}}}"#)
        .expect("json")
    }

    #[test]
    fn indexed_pods_get_hostname_index_owner_and_finalizer() {
        let mut rng = Rng::new(1);
        let name = pod_name("js-workers-0", Some(2), &mut rng);
        assert!(name.starts_with("js-workers-0-2-") && name.len() == "js-workers-0-2-".len() + 5);
        let pod = build_pod(&job(), &name, Some(2), None);
        assert_eq!(pod["spec"]["hostname"], "js-workers-0-2");
        assert_eq!(pod["spec"]["subdomain"], "js");
        assert_eq!(pod["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(pod["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(pod["metadata"]["labels"]["a"], "b");
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(pod["metadata"]["finalizers"][0], TRACKING_FINALIZER);
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        assert_eq!(pod_index(&pod), Some(2));
    }

    #[test]
    fn completed_indexes_compress_to_ranges_and_back() {
        let set: std::collections::BTreeSet<u32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(compress_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
    }
}
