//! Suspend and resume of child Jobs (spec 4.7): on resume the replicated
//! job's current pod template is merged into the Job's, which is how Kueue
//! hands a JobSet its node selectors, tolerations and scheduling gates.
//! Pure: builds the Job to write; `apply` writes it.

use std::collections::BTreeMap;

use jobset_api::ReplicatedJob;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

fn merge_map(
    target: &mut Option<BTreeMap<String, String>>,
    from: Option<&BTreeMap<String, String>>,
) {
    let Some(from) = from.filter(|m| !m.is_empty()) else {
        return;
    };
    let map = target.get_or_insert_with(BTreeMap::new);
    for (k, v) in from {
        map.insert(k.clone(), v.clone());
    }
}

fn union<T: Clone + PartialEq>(target: &mut Option<Vec<T>>, from: Option<&Vec<T>>) {
    let Some(from) = from.filter(|v| !v.is_empty()) else {
        return;
    };
    let list = target.get_or_insert_with(Vec::new);
    for item in from {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

/// Whether a Job still has to be resumed.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// The Job as it must be written to resume it: the replicated job's pod
/// template labels, annotations and node selector merged in (the template
/// wins), its tolerations and scheduling gates added (nothing is removed),
/// and `suspend=false`.
pub fn resumed(job: &Job, rjob: &ReplicatedJob) -> Job {
    let mut job = job.clone();
    let template = rjob.template.spec.as_ref().map(|s| &s.template);
    if let Some(spec) = job.spec.as_mut() {
        spec.suspend = Some(false);
        if let Some(template) = template {
            let meta = spec
                .template
                .metadata
                .get_or_insert_with(ObjectMeta::default);
            let from = template.metadata.as_ref();
            merge_map(&mut meta.labels, from.and_then(|m| m.labels.as_ref()));
            merge_map(
                &mut meta.annotations,
                from.and_then(|m| m.annotations.as_ref()),
            );
            if let (Some(pod), Some(from)) = (spec.template.spec.as_mut(), template.spec.as_ref()) {
                merge_map(&mut pod.node_selector, from.node_selector.as_ref());
                union(&mut pod.tolerations, from.tolerations.as_ref());
                union(&mut pod.scheduling_gates, from.scheduling_gates.as_ref());
            }
        }
    }
    job
}

/// The JSON merge patch that writes a [`resumed`] Job: `suspend=false` and
/// the merged pod-template labels, annotations, node selector, tolerations
/// and scheduling gates, guarded by the Job's resourceVersion. A patch and
/// not a full replace, so that fields of the stored Job which the compiled
/// Kubernetes types do not know (a newer pod field) are left as they are.
pub fn resume_patch(job: &Job) -> Value {
    let mut template = Map::new();
    let spec = job.spec.as_ref();
    if let Some(meta) = spec.and_then(|s| s.template.metadata.as_ref()) {
        let mut m = Map::new();
        if let Some(labels) = &meta.labels {
            m.insert("labels".into(), json!(labels));
        }
        if let Some(annotations) = &meta.annotations {
            m.insert("annotations".into(), json!(annotations));
        }
        if !m.is_empty() {
            template.insert("metadata".into(), Value::Object(m));
        }
    }
    if let Some(pod) = spec.and_then(|s| s.template.spec.as_ref()) {
        let mut m = Map::new();
        if let Some(sel) = &pod.node_selector {
            m.insert("nodeSelector".into(), json!(sel));
        }
        if let Some(tols) = &pod.tolerations {
            m.insert("tolerations".into(), json!(tols));
        }
        if let Some(gates) = &pod.scheduling_gates {
            m.insert("schedulingGates".into(), json!(gates));
        }
        if !m.is_empty() {
            template.insert("spec".into(), Value::Object(m));
        }
    }
    let mut patch = json!({"spec": {"suspend": false}});
    if !template.is_empty() {
        patch["spec"]["template"] = Value::Object(template);
    }
    if let Some(rv) = &job.metadata.resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}

/// Whether the Job has started, so its start time must be cleared before
/// its pod template may change.
pub fn needs_start_time_cleared(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_merges_the_template_and_unions_tolerations_and_gates() {
        let job: Job = serde_yaml::from_str(
            r#"
metadata: {name: js-w-0}
spec:
  suspend: true
  template:
    metadata: {labels: {a: old, keep: k}}
    spec:
      containers: [{name: c}]
      nodeSelector: {pool: x}
      tolerations: [{key: t1, operator: Exists}]
      schedulingGates: [{name: g1}]
status: {startTime: "2026-01-01T00:00:00Z"}
"#,
        )
        .unwrap();
        let rjob: ReplicatedJob = serde_yaml::from_str(
            r#"
name: w
template:
  spec:
    template:
      metadata: {labels: {a: new}, annotations: {kueue: yes}}
      spec:
        containers: [{name: c}]
        nodeSelector: {flavor: f}
        tolerations: [{key: t2, operator: Exists}, {key: t1, operator: Exists}]
        schedulingGates: [{name: kueue.x-k8s.io/topology}]
"#,
        )
        .unwrap();
        assert!(needs_start_time_cleared(&job));
        let out = resumed(&job, &rjob);
        let spec = out.spec.unwrap();
        assert_eq!(spec.suspend, Some(false));
        let meta = spec.template.metadata.unwrap();
        assert_eq!(meta.labels.as_ref().unwrap()["a"], "new");
        assert_eq!(meta.labels.as_ref().unwrap()["keep"], "k");
        assert_eq!(meta.annotations.unwrap()["kueue"], "yes");
        let pod = spec.template.spec.unwrap();
        let sel = pod.node_selector.unwrap();
        assert_eq!((sel["pool"].as_str(), sel["flavor"].as_str()), ("x", "f"));
        let tols: Vec<_> = pod
            .tolerations
            .unwrap()
            .into_iter()
            .map(|t| t.key.unwrap())
            .collect();
        assert_eq!(tols, ["t1", "t2"]);
        assert_eq!(pod.scheduling_gates.unwrap().len(), 2);
    }

    #[test]
    fn the_resume_patch_writes_only_what_resuming_changes() {
        let job: Job = serde_yaml::from_str(
            r#"
metadata: {name: js-w-0, resourceVersion: "42"}
spec:
  suspend: false
  parallelism: 3
  template:
    metadata: {labels: {a: new}}
    spec:
      containers: [{name: c, image: i}]
      nodeSelector: {flavor: f}
      tolerations: [{key: t1, operator: Exists}]
"#,
        )
        .unwrap();
        assert_eq!(
            resume_patch(&job),
            json!({
                "metadata": {"resourceVersion": "42"},
                "spec": {"suspend": false, "template": {
                    "metadata": {"labels": {"a": "new"}},
                    "spec": {"nodeSelector": {"flavor": "f"},
                             "tolerations": [{"key": "t1", "operator": "Exists"}]}}}
            })
        );
        let bare: Job = serde_yaml::from_str("metadata: {name: j}\nspec: {template: {}}").unwrap();
        assert_eq!(resume_patch(&bare), json!({"spec": {"suspend": false}}));
    }
}
