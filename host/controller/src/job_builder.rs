//! Child Job construction (spec 3.1): the Job of one index of a replicated
//! job, with every JobSet label and annotation, the owner reference,
//! suspend, DNS subdomain, coordinator and shared-volume wiring. Placement
//! pins are applied separately (`placement`). Pure.

use std::collections::BTreeMap;

use jobset_api::labels::*;
use jobset_api::naming;
use jobset_api::{JobSet, ReplicatedJob};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// API version and kind of the JobSet, as written in owner references.
pub const JOBSET_API_VERSION: &str = "jobset.x-k8s.io/v1alpha2";
pub const JOBSET_KIND: &str = "JobSet";

/// Whether the JobSet asks for DNS hostnames (nil counts as off: the
/// mutating webhook defaults it on at creation).
pub fn dns_hostnames_enabled(js: &JobSet) -> bool {
    js.spec
        .network
        .as_ref()
        .and_then(|n| n.enable_dns_hostnames)
        .unwrap_or(false)
}

/// The owner reference every child object carries.
pub fn owner_reference(js: &JobSet) -> OwnerReference {
    OwnerReference {
        api_version: JOBSET_API_VERSION.to_string(),
        kind: JOBSET_KIND.to_string(),
        name: js.metadata.name.clone().unwrap_or_default(),
        uid: js.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The per-index restart counter of `rjob`'s Job `index` in the JobSet's
/// status, if the status has one.
pub fn recorded_job_restarts(js: &JobSet, rjob: &str, index: usize) -> Option<i32> {
    js.status
        .as_ref()?
        .replicated_jobs_status
        .iter()
        .find(|r| r.name == rjob)?
        .job_restarts
        .get(index)
        .copied()
}

/// The per-index restart counter of `rjob`'s Job `index` (0 when absent).
pub fn job_restart_attempt(js: &JobSet, rjob: &str, index: usize) -> i32 {
    recorded_job_restarts(js, rjob, index).unwrap_or(0)
}

/// The exclusive-placement annotations a Job inherits: taken from the
/// replicated job's template if it sets the topology key, else from the
/// JobSet (the node-selector flag travels with the key, from the same level).
pub(crate) fn placement_annotations(js: &JobSet, rjob: &ReplicatedJob) -> BTreeMap<String, String> {
    // Upstream's layering: the JobSet's exclusive topology (with its
    // strategy, if any), then the replicated job's (with its strategy), each
    // over what came before. The template's own annotations are already on
    // the Job, so a strategy there joins a JobSet-level topology.
    let mut out = BTreeMap::new();
    let levels = [
        js.metadata.annotations.as_ref(),
        rjob.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    ];
    for annotations in levels.into_iter().flatten() {
        if let Some(topology) = annotations.get(EXCLUSIVE_KEY) {
            out.insert(EXCLUSIVE_KEY.to_string(), topology.clone());
            if let Some(strategy) = annotations.get(NODE_SELECTOR_STRATEGY_KEY) {
                out.insert(NODE_SELECTOR_STRATEGY_KEY.to_string(), strategy.clone());
            }
        }
    }
    out
}

/// The labels (and, the same, annotations) the JobSet puts on a child Job
/// and its pod template. `per_job_restarts` (the RestartJob gate) adds
/// the Job index's `job-restart-attempt`, as upstream writes it only then.
pub fn jobset_labels(
    js: &JobSet,
    rjob: &ReplicatedJob,
    index: i32,
    per_job_restarts: bool,
) -> BTreeMap<String, String> {
    let name = js.metadata.name.clone().unwrap_or_default();
    let namespace = js.metadata.namespace.clone().unwrap_or_default();
    let job_name = naming::job_name(&name, &rjob.name, i64::from(index));
    let mut l = BTreeMap::new();
    l.insert(JOBSET_NAME_KEY.to_string(), name.clone());
    l.insert(
        JOBSET_UID_KEY.to_string(),
        js.metadata.uid.clone().unwrap_or_default(),
    );
    l.insert(REPLICATED_JOB_NAME_KEY.to_string(), rjob.name.clone());
    l.insert(
        REPLICATED_JOB_REPLICAS_KEY.to_string(),
        rjob.replicas().to_string(),
    );
    l.insert(
        GLOBAL_REPLICAS_KEY.to_string(),
        naming::global_replicas(&js.spec).to_string(),
    );
    l.insert(JOB_INDEX_KEY.to_string(), index.to_string());
    if let Some(g) = naming::global_index(&js.spec, &rjob.name, i64::from(index)) {
        l.insert(JOB_GLOBAL_INDEX_KEY.to_string(), g.to_string());
    }
    l.insert(JOB_KEY.to_string(), naming::job_key(&namespace, &job_name));
    l.insert(GROUP_NAME_KEY.to_string(), rjob.group_name().to_string());
    l.insert(
        GROUP_REPLICAS_KEY.to_string(),
        naming::group_replicas(&js.spec, rjob.group_name()).to_string(),
    );
    if let Some(g) = naming::group_index(&js.spec, &rjob.name, i64::from(index)) {
        l.insert(JOB_GROUP_INDEX_KEY.to_string(), g.to_string());
    }
    let restarts = js.status.as_ref().map(|s| s.restarts).unwrap_or(0);
    l.insert(RESTART_ATTEMPT_KEY.to_string(), restarts.to_string());
    if per_job_restarts {
        let index_usize = usize::try_from(index).unwrap_or(0);
        l.insert(
            JOB_RESTART_ATTEMPT_KEY.to_string(),
            job_restart_attempt(js, &rjob.name, index_usize).to_string(),
        );
    }
    if let Some(c) = &js.spec.coordinator {
        let endpoint = naming::coordinator_endpoint(
            &name,
            &c.replicated_job,
            i64::from(c.job_index()),
            i64::from(c.pod_index()),
            naming::subdomain(&js.spec, &name),
        );
        l.insert(COORDINATOR_KEY.to_string(), endpoint);
    }
    l
}

fn merge_into(target: &mut Option<BTreeMap<String, String>>, extra: &BTreeMap<String, String>) {
    let map = target.get_or_insert_with(BTreeMap::new);
    for (k, v) in extra {
        map.insert(k.clone(), v.clone());
    }
}

/// Adds a `persistentVolumeClaim` volume for every claim template of the
/// JobSet that a container or init container of the pod mounts.
fn add_claim_volumes(js: &JobSet, pod: &mut PodSpec) {
    let jobset_name = js.metadata.name.as_deref().unwrap_or("");
    let mounted = |name: &str| {
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .any(|c| c.volume_mounts.iter().flatten().any(|m| m.name == name))
    };
    let mut wanted = Vec::new();
    for policy in &js.spec.volume_claim_policies {
        for template in &policy.templates {
            let claim = template.name();
            if !claim.is_empty() && mounted(claim) {
                wanted.push(claim.to_string());
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    for claim in wanted {
        if volumes.iter().any(|v| v.name == claim) {
            continue;
        }
        volumes.push(Volume {
            name: claim.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: naming::pvc_name(&claim, jobset_name),
                read_only: None,
            }),
            ..Default::default()
        });
    }
}

/// Builds the child Job `index` of `rjob`; `per_job_restarts` as in
/// [`jobset_labels`].
pub fn build_job(js: &JobSet, rjob: &ReplicatedJob, index: i32, per_job_restarts: bool) -> Job {
    let name = js.metadata.name.clone().unwrap_or_default();
    let template = &rjob.template;
    let template_meta = template.metadata.clone().unwrap_or_default();
    let jobset_keys = jobset_labels(js, rjob, index, per_job_restarts);
    let placement = placement_annotations(js, rjob);

    let mut labels = template_meta.labels.clone();
    merge_into(&mut labels, &jobset_keys);
    let mut annotations = template_meta.annotations.clone();
    merge_into(&mut annotations, &jobset_keys);
    merge_into(&mut annotations, &placement);

    let mut spec: JobSpec = template.spec.clone().unwrap_or_default();
    spec.suspend = Some(js.spec.is_suspended());
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    merge_into(&mut pod_meta.labels, &jobset_keys);
    merge_into(&mut pod_meta.annotations, &jobset_keys);
    merge_into(&mut pod_meta.annotations, &placement);
    let pod = spec.template.spec.get_or_insert_with(PodSpec::default);
    if dns_hostnames_enabled(js) {
        pod.subdomain = Some(naming::subdomain(&js.spec, &name).to_string());
    }
    add_claim_volumes(js, pod);

    Job {
        metadata: ObjectMeta {
            name: Some(naming::job_name(&name, &rjob.name, i64::from(index))),
            namespace: js.metadata.namespace.clone(),
            labels,
            annotations,
            owner_references: Some(vec![owner_reference(js)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobset(yaml: &str) -> JobSet {
        let mut js: JobSet = serde_yaml::from_str(yaml).expect("fixture parses");
        js.metadata.uid = Some("uid-1".into());
        js
    }

    const TWO_GROUPS: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: js
  namespace: ns
  annotations:
    alpha.jobset.sigs.k8s.io/exclusive-topology: cloud.google.com/gke-nodepool
spec:
  network: {enableDNSHostnames: true, subdomain: net}
  coordinator: {replicatedJob: driver, jobIndex: 0, podIndex: 0}
  replicatedJobs:
  - name: driver
    template:
      metadata:
        labels: {team: a}
      spec:
        template:
          metadata:
            labels: {pod: p}
          spec:
            containers: [{name: c, image: i}]
  - name: workers
    replicas: 3
    groupName: g
    template:
      metadata:
        annotations:
          alpha.jobset.sigs.k8s.io/exclusive-topology: kubernetes.io/hostname
      spec:
        template:
          spec:
            containers:
            - name: c
              image: i
              volumeMounts: [{name: data, mountPath: /d}]
  volumeClaimPolicies:
  - templates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce]}
"#;

    #[test]
    fn a_child_job_carries_every_jobset_label_on_job_and_pod() {
        let js = jobset(TWO_GROUPS);
        let job = build_job(&js, &js.spec.replicated_jobs[1], 2, true);
        assert_eq!(job.metadata.name.as_deref(), Some("js-workers-2"));
        let labels = job.metadata.labels.clone().unwrap();
        let pod_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for l in [&labels, &pod_labels] {
            assert_eq!(l[JOBSET_NAME_KEY], "js");
            assert_eq!(l[JOBSET_UID_KEY], "uid-1");
            assert_eq!(l[REPLICATED_JOB_NAME_KEY], "workers");
            assert_eq!(l[REPLICATED_JOB_REPLICAS_KEY], "3");
            assert_eq!(l[GLOBAL_REPLICAS_KEY], "4");
            assert_eq!(l[JOB_INDEX_KEY], "2");
            assert_eq!(l[JOB_GLOBAL_INDEX_KEY], "3");
            assert_eq!(l[GROUP_NAME_KEY], "g");
            assert_eq!(l[GROUP_REPLICAS_KEY], "3");
            assert_eq!(l[JOB_GROUP_INDEX_KEY], "2");
            assert_eq!(l[RESTART_ATTEMPT_KEY], "0");
            assert_eq!(l[JOB_KEY], naming::job_key("ns", "js-workers-2"));
            assert_eq!(l[COORDINATOR_KEY], "js-driver-0-0.net");
        }
        let annotations = job.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[JOB_KEY], labels[JOB_KEY]);
    }

    #[test]
    fn template_labels_are_kept_and_pod_labels_stay_on_the_pod() {
        let js = jobset(TWO_GROUPS);
        let job = build_job(&js, &js.spec.replicated_jobs[0], 0, true);
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key("pod"));
        let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels["pod"], "p");
        assert!(!pod_labels.contains_key("team"));
    }

    #[test]
    fn the_template_exclusive_topology_overrides_the_jobset_one() {
        let js = jobset(TWO_GROUPS);
        let driver = build_job(&js, &js.spec.replicated_jobs[0], 0, true);
        let workers = build_job(&js, &js.spec.replicated_jobs[1], 0, true);
        let key = |j: &Job| j.metadata.annotations.as_ref().unwrap()[EXCLUSIVE_KEY].clone();
        assert_eq!(key(&driver), "cloud.google.com/gke-nodepool");
        assert_eq!(key(&workers), "kubernetes.io/hostname");
        assert!(!driver.metadata.labels.unwrap().contains_key(EXCLUSIVE_KEY));
    }

    #[test]
    fn owner_reference_suspend_subdomain_and_claims_are_wired() {
        let mut js = jobset(TWO_GROUPS);
        js.spec.suspend = Some(true);
        let job = build_job(&js, &js.spec.replicated_jobs[1], 0, true);
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("JobSet", "uid-1")
        );
        assert_eq!(owner.controller, Some(true));
        let spec = job.spec.unwrap();
        assert_eq!(spec.suspend, Some(true));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.subdomain.as_deref(), Some("net"));
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-js"
        );
        let driver = build_job(&js, &js.spec.replicated_jobs[0], 0, true);
        assert!(
            driver
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .volumes
                .is_none()
        );
    }

    #[test]
    fn restart_counters_become_attempt_labels() {
        let mut js = jobset(TWO_GROUPS);
        let mut status = jobset_api::JobSetStatus {
            restarts: 4,
            ..Default::default()
        };
        status
            .replicated_jobs_status
            .push(jobset_api::ReplicatedJobStatus {
                name: "workers".into(),
                job_restarts: vec![0, 7, 0],
                ..Default::default()
            });
        js.status = Some(status);
        let job = build_job(&js, &js.spec.replicated_jobs[1], 1, true);
        let labels = job.metadata.labels.unwrap();
        assert_eq!(labels[RESTART_ATTEMPT_KEY], "4");
        assert_eq!(labels[JOB_RESTART_ATTEMPT_KEY], "7");
        assert_eq!(
            job.metadata.annotations.unwrap()[JOB_RESTART_ATTEMPT_KEY],
            "7"
        );

        // Without the RestartJob gate, upstream writes no per-Job attempt.
        let job = build_job(&js, &js.spec.replicated_jobs[1], 1, false);
        for keys in [
            job.metadata.labels.unwrap(),
            job.metadata.annotations.unwrap(),
        ] {
            assert_eq!(keys[RESTART_ATTEMPT_KEY], "4");
            assert!(!keys.contains_key(JOB_RESTART_ATTEMPT_KEY), "{keys:?}");
        }
    }
}
