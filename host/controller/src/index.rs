//! The controller's in-memory view of the cluster, fed by its watches:
//! child Jobs indexed by their JobSet's UID (slimmed: see [`slim`]), the
//! owned Services by name, Nodes as a projection (name, labels, readiness),
//! and the topology domains exclusive Jobs hold. Pods are kept only for
//! JobSets that restart in place, and only what the in-place protocol
//! and its decision read of them (name, failed, the agent's attempt,
//! restart count, and for a pod that restarted or failed how it ended), so
//! memory grows with Jobs, and with pods only where in-place restart asks.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use jobset_api::labels::{
    EXCLUSIVE_KEY, JOB_INDEX_KEY, JOB_KEY, JOB_RESTART_ATTEMPT_KEY, NODE_SELECTOR_STRATEGY_KEY,
    PRIORITY_KEY, REPLICATED_JOB_NAME_KEY, RESTART_ATTEMPT_KEY,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{Node, PodSpec, PodTemplateSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::in_place::PodFacts;
use crate::job_builder::{JOBSET_API_VERSION, JOBSET_KIND};
use crate::placement::{NodeInfo, Occupant, PriorityClasses, occupant_of};

/// `namespace/name`.
pub type NsName = (String, String);

/// The UID of a Job's controlling JobSet, if a JobSet controls it.
pub fn controller_uid(job: &Job) -> Option<&str> {
    job.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == JOBSET_KIND
                && o.api_version == JOBSET_API_VERSION
        })
        .map(|o| o.uid.as_str())
}

/// The name of a Job's controlling JobSet.
pub fn controller_name(job: &Job) -> Option<&str> {
    job.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == JOBSET_KIND)
        .map(|o| o.name.as_str())
}

#[derive(Default)]
struct Inner {
    /// JobSet UID -> Job name -> Job.
    jobs: HashMap<String, BTreeMap<String, Arc<StoredJob>>>,
    /// (namespace, name) of a Job -> the UID it is indexed under.
    job_owner: HashMap<NsName, String>,
    /// Domains held, by Job (namespace, name).
    occupants: BTreeMap<NsName, Occupant>,
    services: BTreeSet<NsName>,
    nodes: BTreeMap<String, NodeInfo>,
    /// Claims known to exist, by namespace and name.
    pvcs: BTreeSet<NsName>,
    priority_classes: PriorityClasses,
    /// Pods of the in-place JobSets, by JobSet (namespace, name), then pod
    /// name; present once that JobSet's pod watch has listed them.
    pods: HashMap<NsName, BTreeMap<String, PodFacts>>,
    /// UIDs of the Jobs the watch last removed, oldest first (bounded), so
    /// that a creation's answer arriving after its Job was already deleted
    /// does not bring it back.
    removed: VecDeque<String>,
}

/// How many removed Job UIDs are remembered.
const REMOVED_KEPT: usize = 1024;

/// Shared, cheaply cloneable index. Reads take a snapshot of what a
/// reconcile needs; writes come from the watch tasks.
#[derive(Clone, Default)]
pub struct Index {
    inner: Arc<RwLock<Inner>>,
}

/// Drops what no reconcile reads of a stored Job, which is most of its
/// size: its managed fields; of its spec everything but `parallelism`,
/// `completions`, `suspend` and the pod template; of the template's spec
/// everything but what placement and resuming read (node selector,
/// affinity, tolerations, scheduling gates, priority and its class); and,
/// unless the Job is suspended, the template's labels and annotations but
/// the priority label placement reads (only a suspended Job is resumed,
/// and a resume merges into them). A Job suspended later arrives whole
/// from the watch again. Jobs are only ever patched from the index (a
/// resume writes the fields kept here), never replaced whole, so nothing
/// dropped here is written back.
///
/// Of the Job's own labels it keeps only those the controller reads
/// ([`READ_LABELS`]) and of its annotations only the placement ones
/// ([`READ_ANNOTATIONS`]): the JobSet writes a dozen of each on every Job
/// and the Job controller four more labels, two thirds of what a slimmed
/// Job held before.
pub fn slim(job: &mut Job) {
    job.metadata.managed_fields = None;
    keep_only(&mut job.metadata.labels, &READ_LABELS);
    keep_only(&mut job.metadata.annotations, &READ_ANNOTATIONS);
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    let mut template = std::mem::take(&mut spec.template);
    if let Some(pod) = template.spec.as_mut() {
        *pod = PodSpec {
            node_selector: pod.node_selector.take(),
            affinity: pod.affinity.take(),
            tolerations: pod.tolerations.take(),
            scheduling_gates: pod.scheduling_gates.take(),
            priority: pod.priority.take(),
            priority_class_name: pod.priority_class_name.take(),
            ..PodSpec::default()
        };
    }
    if spec.suspend != Some(true) {
        let priority = template
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .and_then(|l| l.remove_entry(PRIORITY_KEY));
        template.metadata = priority.map(|(k, v)| ObjectMeta {
            labels: Some(BTreeMap::from([(k, v)])),
            ..ObjectMeta::default()
        });
    }
    *spec = JobSpec {
        parallelism: spec.parallelism,
        completions: spec.completions,
        suspend: spec.suspend,
        template,
        ..JobSpec::default()
    };
}

/// The labels of a Job the controller reads: which replicated job and
/// index it is (status counts, creation, scaling, plugin snapshots), its
/// attempts (which Jobs belong to an earlier one) and its key (the domain
/// an exclusive Job holds).
pub const READ_LABELS: [&str; 5] = [
    REPLICATED_JOB_NAME_KEY,
    JOB_INDEX_KEY,
    RESTART_ATTEMPT_KEY,
    JOB_RESTART_ATTEMPT_KEY,
    JOB_KEY,
];

/// The annotations of a Job the controller reads: exclusive placement's.
pub const READ_ANNOTATIONS: [&str; 2] = [EXCLUSIVE_KEY, NODE_SELECTOR_STRATEGY_KEY];

/// Drops every entry of `map` whose key is not in `keep`, and the map
/// itself when nothing is left.
fn keep_only(map: &mut Option<BTreeMap<String, String>>, keep: &[&str]) {
    if let Some(m) = map.as_mut() {
        m.retain(|k, _| keep.contains(&k.as_str()));
        if m.is_empty() {
            *map = None;
        }
    }
}

/// A slimmed Job as the index holds it. The `Job` type takes 2.7 KB
/// before any field is set (its pod spec is inline), more than the rest
/// of a slimmed Job together; so the index keeps what [`slim`] leaves in
/// this smaller form, with the pod template boxed and left out when it
/// holds nothing, and builds the `Job` back when it is read
/// ([`StoredJob::to_job`] gives exactly the slimmed Job).
#[derive(Debug)]
struct StoredJob {
    metadata: ObjectMeta,
    spec: Option<StoredSpec>,
    status: Option<JobStatus>,
}

#[derive(Debug)]
struct StoredSpec {
    parallelism: Option<i32>,
    completions: Option<i32>,
    suspend: Option<bool>,
    /// `None` for the [`empty_template`], the template of most Jobs once
    /// slimmed.
    template: Option<Box<PodTemplateSpec>>,
}

/// What [`slim`] leaves of a running Job's pod template that has no
/// priority label and none of the pod fields placement reads.
fn empty_template() -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec::default()),
    }
}

impl StoredJob {
    /// Stores a slimmed Job.
    fn from_slim(job: Job) -> Self {
        let spec = job.spec.map(|s| StoredSpec {
            parallelism: s.parallelism,
            completions: s.completions,
            suspend: s.suspend,
            template: (s.template != empty_template()).then(|| Box::new(s.template)),
        });
        StoredJob {
            metadata: job.metadata,
            spec,
            status: job.status,
        }
    }

    /// The slimmed Job it was stored from.
    fn to_job(&self) -> Job {
        Job {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| JobSpec {
                parallelism: s.parallelism,
                completions: s.completions,
                suspend: s.suspend,
                template: s
                    .template
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(empty_template),
                ..JobSpec::default()
            }),
            status: self.status.clone(),
        }
    }
}

/// Stores or replaces a Job (slimmed) under the lock held.
fn upsert_job_in(inner: &mut Inner, mut job: Job) {
    slim(&mut job);
    let k = key(job.metadata.namespace.as_ref(), job.metadata.name.as_ref());
    let occupant = occupant_of(&job);
    if let Some(old) = inner.job_owner.remove(&k)
        && let Some(m) = inner.jobs.get_mut(&old)
    {
        m.remove(&k.1);
    }
    match occupant {
        Some(o) => {
            inner.occupants.insert(k.clone(), o);
        }
        None => {
            inner.occupants.remove(&k);
        }
    }
    if let Some(uid) = controller_uid(&job).map(str::to_string) {
        inner.job_owner.insert(k.clone(), uid.clone());
        inner
            .jobs
            .entry(uid)
            .or_default()
            .insert(k.1, Arc::new(StoredJob::from_slim(job)));
    }
}

fn key(ns: Option<&String>, name: Option<&String>) -> NsName {
    (
        ns.cloned().unwrap_or_default(),
        name.cloned().unwrap_or_default(),
    )
}

impl Index {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores or replaces a Job (slimmed, see [`slim`]).
    pub fn upsert_job(&self, job: Job) {
        upsert_job_in(&mut self.write(), job);
    }

    /// Stores a Job this controller has just created, from the API
    /// server's answer, unless the watch has delivered it already (or
    /// delivered its deletion): the next reconcile then sees its own
    /// creation rather than creating it again, whatever the watch's lag.
    /// Returns whether it was stored.
    pub fn insert_created(&self, job: Job) -> bool {
        let k = key(job.metadata.namespace.as_ref(), job.metadata.name.as_ref());
        // Checked and stored under one lock, so a watch delivery cannot
        // come in between and be overwritten.
        let mut inner = self.write();
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        if inner.job_owner.contains_key(&k) || inner.removed.iter().any(|u| u == uid) {
            return false;
        }
        upsert_job_in(&mut inner, job);
        true
    }

    /// Forgets a Job.
    pub fn remove_job(&self, ns: &str, name: &str) {
        self.remove_job_with_uid(ns, name, None);
    }

    /// Forgets a Job the watch saw deleted, remembering its UID.
    pub fn remove_deleted_job(&self, job: &Job) {
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let name = job.metadata.name.as_deref().unwrap_or_default();
        self.remove_job_with_uid(ns, name, job.metadata.uid.clone());
    }

    fn remove_job_with_uid(&self, ns: &str, name: &str, uid: Option<String>) {
        let k = (ns.to_string(), name.to_string());
        let mut inner = self.write();
        if let Some(uid) = uid {
            if inner.removed.len() >= REMOVED_KEPT {
                inner.removed.pop_front();
            }
            inner.removed.push_back(uid);
        }
        inner.occupants.remove(&k);
        if let Some(uid) = inner.job_owner.remove(&k)
            && let Some(m) = inner.jobs.get_mut(&uid)
        {
            m.remove(name);
            if m.is_empty() {
                inner.jobs.remove(&uid);
            }
        }
    }

    /// Replaces every Job (after a relist).
    pub fn reset_jobs(&self, jobs: Vec<Job>) {
        {
            let mut inner = self.write();
            inner.jobs.clear();
            inner.job_owner.clear();
            inner.occupants.clear();
        }
        for job in jobs {
            self.upsert_job(job);
        }
    }

    /// The Jobs a JobSet (by UID) controls, slimmed (see [`slim`]), by
    /// name. They are built from the index's own form after its lock is
    /// released.
    pub fn jobs_of(&self, uid: &str) -> Vec<Arc<Job>> {
        let stored: Vec<Arc<StoredJob>> = self
            .read()
            .jobs
            .get(uid)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        stored.iter().map(|s| Arc::new(s.to_job())).collect()
    }

    /// The PriorityClasses known.
    pub fn priority_classes(&self) -> PriorityClasses {
        self.read().priority_classes.clone()
    }

    /// Records a PriorityClass (added or changed).
    pub fn upsert_priority_class(&self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let mut inner = self.write();
        let classes = &mut inner.priority_classes;
        classes.by_name.insert(name.clone(), pc.value);
        if pc.global_default == Some(true) {
            classes.defaults.insert(name, pc.value);
        } else {
            classes.defaults.remove(&name);
        }
    }

    /// Forgets a deleted PriorityClass.
    pub fn remove_priority_class(&self, name: &str) {
        let mut inner = self.write();
        inner.priority_classes.by_name.remove(name);
        inner.priority_classes.defaults.remove(name);
    }

    /// Replaces every PriorityClass (after a watch (re)list).
    pub fn reset_priority_classes(&self, all: &[PriorityClass]) {
        self.write().priority_classes = PriorityClasses::default();
        for pc in all {
            self.upsert_priority_class(pc);
        }
    }

    /// Every domain an exclusive Job holds.
    pub fn occupants(&self) -> Vec<Occupant> {
        self.read().occupants.values().cloned().collect()
    }

    /// Records that a domain is held by a Job about to be created, so that a
    /// JobSet reconciled in parallel does not pick it too.
    pub fn reserve(&self, ns: &str, job_name: &str, occupant: Occupant) {
        self.write()
            .occupants
            .insert((ns.to_string(), job_name.to_string()), occupant);
    }

    pub fn set_service(&self, ns: &str, name: &str, present: bool) {
        let k = (ns.to_string(), name.to_string());
        let mut inner = self.write();
        if present {
            inner.services.insert(k);
        } else {
            inner.services.remove(&k);
        }
    }

    pub fn reset_services(&self, services: impl IntoIterator<Item = NsName>) {
        self.write().services = services.into_iter().collect();
    }

    pub fn has_service(&self, ns: &str, name: &str) -> bool {
        self.read()
            .services
            .contains(&(ns.to_string(), name.to_string()))
    }

    /// Stores the projection of a Node.
    pub fn upsert_node(&self, node: &Node) {
        let info = project_node(node);
        self.write().nodes.insert(info.name.clone(), info);
    }

    pub fn remove_node(&self, name: &str) {
        self.write().nodes.remove(name);
    }

    pub fn reset_nodes(&self, nodes: &[Node]) {
        self.write().nodes = nodes
            .iter()
            .map(|n| {
                let i = project_node(n);
                (i.name.clone(), i)
            })
            .collect();
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.read().nodes.values().cloned().collect()
    }

    pub fn note_pvc(&self, ns: &str, name: &str) {
        self.write().pvcs.insert((ns.to_string(), name.to_string()));
    }

    /// Names of the claims known to exist in `ns`.
    pub fn pvcs_in(&self, ns: &str) -> BTreeSet<String> {
        self.read()
            .pvcs
            .iter()
            .filter(|(n, _)| n == ns)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Records one pod of the in-place JobSet `jobset`; whether what the
    /// controller keeps of it changed.
    pub fn upsert_pod(&self, jobset: &NsName, facts: PodFacts) -> bool {
        let mut inner = self.write();
        let Some(pods) = inner.pods.get_mut(jobset) else {
            // Not listed yet: the list brings it.
            return false;
        };
        let changed = pods.get(&facts.name) != Some(&facts);
        pods.insert(facts.name.clone(), facts);
        changed
    }

    /// Forgets one pod of the in-place JobSet `jobset`.
    pub fn remove_pod(&self, jobset: &NsName, pod: &str) -> bool {
        self.write()
            .pods
            .get_mut(jobset)
            .is_some_and(|pods| pods.remove(pod).is_some())
    }

    /// Replaces the pods of `jobset` with a fresh list.
    pub fn reset_pods(&self, jobset: &NsName, pods: Vec<PodFacts>) {
        let pods = pods.into_iter().map(|p| (p.name.clone(), p)).collect();
        self.write().pods.insert(jobset.clone(), pods);
    }

    /// Forgets every pod of `jobset` (its watch ended).
    pub fn forget_pods(&self, jobset: &NsName) {
        self.write().pods.remove(jobset);
    }

    /// The pods of the in-place JobSet `jobset`, or `None` until its watch
    /// has listed them.
    pub fn pods_of(&self, jobset: &NsName) -> Option<Vec<PodFacts>> {
        self.read()
            .pods
            .get(jobset)
            .map(|pods| pods.values().cloned().collect())
    }

    /// How many pods the index holds (only those of in-place JobSets).
    pub fn pod_count(&self) -> usize {
        self.read().pods.values().map(BTreeMap::len).sum()
    }

    /// How many Jobs the index holds (for metrics and memory checks).
    pub fn job_count(&self) -> usize {
        self.read().job_owner.len()
    }
}

/// What the controller keeps of a Node: name, labels, Ready.
pub fn project_node(node: &Node) -> NodeInfo {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        ready: ready && !unschedulable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ManagedFieldsEntry, ObjectMeta, OwnerReference,
    };

    fn job(name: &str, owner_uid: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: JOBSET_API_VERSION.into(),
                    kind: JOBSET_KIND.into(),
                    name: "js".into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_stored_job_keeps_what_placement_and_resume_read_and_no_containers() {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "js-w-0", "namespace": "ns",
                         "ownerReferences": [{"apiVersion": JOBSET_API_VERSION, "kind": JOBSET_KIND,
                                              "name": "js", "uid": "u1", "controller": true}]},
            "spec": {"parallelism": 4, "suspend": true, "template": {
                "metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "60"]}],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "nodeSelector": {"pool": "p1"},
                    "tolerations": [{"key": "t", "operator": "Exists"}],
                    "schedulingGates": [{"name": "g"}],
                    "affinity": {"podAntiAffinity": {}},
                    "priority": 7, "priorityClassName": "high"}}},
        }))
        .unwrap();
        let kept = j.clone();
        let index = Index::default();
        index.upsert_job(j.clone());
        let stored = index.jobs_of("u1").pop().unwrap();
        let (spec, was) = (stored.spec.as_ref().unwrap(), kept.spec.as_ref().unwrap());
        assert_eq!(spec.template.metadata, was.template.metadata);
        assert_eq!((spec.parallelism, spec.suspend), (Some(4), Some(true)));
        let (pod, was_pod) = (
            spec.template.spec.as_ref().unwrap(),
            was.template.spec.as_ref().unwrap(),
        );
        assert!(pod.containers.is_empty() && pod.volumes.is_none());
        assert_eq!(pod.node_selector, was_pod.node_selector);
        assert_eq!(pod.tolerations, was_pod.tolerations);
        assert_eq!(pod.scheduling_gates, was_pod.scheduling_gates);
        assert_eq!(pod.affinity, was_pod.affinity);
        assert_eq!(
            (pod.priority, pod.priority_class_name.as_deref()),
            (Some(7), Some("high"))
        );
        // The resume patch of a stored Job writes the same template fields
        // as that of the Job as served.
        slim(&mut j);
        assert_eq!(
            crate::suspend::resume_patch(&j),
            crate::suspend::resume_patch(&kept)
        );
    }

    #[test]
    fn a_running_job_keeps_of_its_template_metadata_only_the_priority_label() {
        let served: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "js-w-0", "namespace": "ns", "labels": {"l": "1"},
                         "annotations": {"alpha.jobset.sigs.k8s.io/exclusive-topology": "pool"}},
            "spec": {"parallelism": 4, "completions": 4, "backoffLimit": 6,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "x"}},
                     "podFailurePolicy": {"rules": []},
                     "template": {
                "metadata": {"labels": {"a": "1", "jobset.sigs.k8s.io/priority": "5"},
                             "annotations": {"b": "2"}},
                "spec": {"containers": [], "nodeSelector": {"pool": "p1"}}}},
        }))
        .unwrap();
        let mut j = served.clone();
        slim(&mut j);
        let spec = j.spec.as_ref().unwrap();
        let meta = spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            meta.labels,
            Some(BTreeMap::from([(
                PRIORITY_KEY.to_string(),
                "5".to_string()
            )]))
        );
        assert_eq!(meta.annotations, None);
        assert_eq!((spec.parallelism, spec.completions), (Some(4), Some(4)));
        assert_eq!((spec.backoff_limit, spec.selector.as_ref()), (None, None));
        // Of the Job's own metadata, an unread label goes; the placement
        // annotation and placement's view stay.
        assert_eq!(j.metadata.labels, None);
        assert_eq!(j.metadata.annotations, served.metadata.annotations);
        assert_eq!(j.metadata.name, served.metadata.name);
        assert_eq!(
            crate::placement::recorded_priority(&j),
            crate::placement::recorded_priority(&served)
        );
        assert_eq!(occupant_of(&j), occupant_of(&served));
    }

    #[test]
    fn a_stored_job_keeps_the_labels_and_annotations_the_controller_reads_and_no_others() {
        let js: jobset_api::JobSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "js", "namespace": "ns", "uid": "u1",
                         "annotations": {EXCLUSIVE_KEY: "pool"}},
            "spec": {"replicatedJobs": [{"name": "w", "replicas": 2, "template": {"spec": {
                "parallelism": 4, "completions": 4,
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}}]},
        }))
        .unwrap();
        let rjob = js.spec.replicated_jobs[0].clone();
        let mut served = crate::job_builder::build_job(&js, &rjob, 1, false);
        served.metadata.uid = Some("job-uid".into());
        let labels = served.metadata.labels.get_or_insert_default();
        labels.insert(
            "batch.kubernetes.io/controller-uid".into(),
            "job-uid".into(),
        );
        labels.insert(JOB_RESTART_ATTEMPT_KEY.into(), "2".into());
        let index = Index::default();
        index.upsert_job(served.clone());
        let stored = index.jobs_of("u1").pop().unwrap();
        let keys = |m: &Option<BTreeMap<String, String>>| {
            m.iter().flat_map(|m| m.keys().cloned()).collect::<Vec<_>>()
        };
        let mut want_labels: Vec<String> = READ_LABELS.iter().map(|k| k.to_string()).collect();
        want_labels.sort();
        assert_eq!(keys(&stored.metadata.labels), want_labels);
        assert_eq!(
            keys(&stored.metadata.annotations),
            vec![EXCLUSIVE_KEY.to_string()]
        );
        for key in READ_LABELS {
            assert_eq!(
                stored.metadata.labels.as_ref().unwrap()[key],
                served.metadata.labels.as_ref().unwrap()[key],
                "{key}"
            );
        }
        // Every reader of a Job sees the stored Job as it sees the served
        // one: the plugins' record of it, its attempt, its domain.
        assert_eq!(
            crate::snapshot::job_record(&stored),
            crate::snapshot::job_record(&served)
        );
        assert_eq!(
            crate::observe::int_label(&stored, RESTART_ATTEMPT_KEY).unwrap(),
            crate::observe::int_label(&served, RESTART_ATTEMPT_KEY).unwrap()
        );
        assert!(occupant_of(&served).is_some());
        assert_eq!(occupant_of(&stored), occupant_of(&served));
    }

    /// The index gives back exactly the slimmed Job, whichever fields it
    /// has: a running Job as served, one with a priority and a pin, a
    /// suspended one with a full template, a finished one, one without a
    /// spec, one whose template has no metadata.
    #[test]
    fn the_index_gives_back_exactly_the_slimmed_job() {
        let owner = serde_json::json!([{"apiVersion": JOBSET_API_VERSION, "kind": JOBSET_KIND,
                                        "name": "js", "uid": "u1", "controller": true}]);
        let cases = [
            serde_json::json!({"metadata": {"name": "running"},
                "spec": {"parallelism": 4, "completions": 4, "suspend": false, "backoffLimit": 0,
                         "template": {"metadata": {"labels": {"job-name": "running"}},
                                      "spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"active": 4, "ready": 4, "startTime": "2026-12-06T10:00:01Z",
                           "uncountedTerminatedPods": {}}}),
            serde_json::json!({"metadata": {"name": "pinned",
                                            "labels": {JOB_KEY: "k", RESTART_ATTEMPT_KEY: "1"},
                                            "annotations": {EXCLUSIVE_KEY: "pool"}},
                "spec": {"parallelism": 1, "template": {
                    "metadata": {"labels": {PRIORITY_KEY: "9", "x": "y"}},
                    "spec": {"containers": [], "nodeSelector": {"pool": "p1"}, "priority": 9}}}}),
            serde_json::json!({"metadata": {"name": "suspended"},
                "spec": {"suspend": true, "template": {
                    "metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}},
                    "spec": {"containers": [], "tolerations": [{"key": "t", "operator": "Exists"}],
                             "schedulingGates": [{"name": "g"}]}}}}),
            serde_json::json!({"metadata": {"name": "finished"},
                "spec": {"template": {"spec": {"containers": []}}},
                "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                        "reason": "BackoffLimitExceeded"}]}}),
            serde_json::json!({"metadata": {"name": "no-spec"}}),
            serde_json::json!({"metadata": {"name": "no-template-meta"},
                "spec": {"suspend": false, "template": {}}}),
        ];
        let index = Index::default();
        let mut want = BTreeMap::new();
        for mut case in cases {
            case["metadata"]["namespace"] = "ns".into();
            case["metadata"]["ownerReferences"] = owner.clone();
            let job: Job = serde_json::from_value(case).unwrap();
            let mut slimmed = job.clone();
            slim(&mut slimmed);
            want.insert(job.metadata.name.clone().unwrap(), slimmed);
            index.upsert_job(job);
        }
        let got: BTreeMap<String, Job> = index
            .jobs_of("u1")
            .into_iter()
            .map(|j| (j.metadata.name.clone().unwrap(), (*j).clone()))
            .collect();
        assert_eq!(got.len(), 6);
        for (name, job) in &want {
            assert_eq!(&got[name], job, "{name}");
        }
        // Most Jobs' templates are stored as nothing.
        let inner = index.read();
        let stored = &inner.jobs["u1"];
        assert!(stored["running"].spec.as_ref().unwrap().template.is_none());
        assert!(
            stored["suspended"]
                .spec
                .as_ref()
                .unwrap()
                .template
                .is_some()
        );
        assert!(stored["pinned"].spec.as_ref().unwrap().template.is_some());
    }

    #[test]
    fn jobs_are_found_by_their_jobset_uid_without_managed_fields() {
        let index = Index::default();
        index.upsert_job(job("a", "u1"));
        index.upsert_job(job("b", "u1"));
        index.upsert_job(job("c", "u2"));
        let jobs = index.jobs_of("u1");
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| j.metadata.managed_fields.is_none()));
        index.remove_job("ns", "a");
        assert_eq!(index.jobs_of("u1").len(), 1);
        assert_eq!(index.job_count(), 2);
    }

    #[test]
    fn a_job_of_a_same_named_older_jobset_is_not_mixed_in() {
        let index = Index::default();
        index.upsert_job(job("a", "old-uid"));
        assert!(index.jobs_of("new-uid").is_empty());
    }

    #[test]
    fn a_created_job_is_seen_at_once_but_never_over_the_watch_nor_after_its_deletion() {
        let index = Index::default();
        let with_uid = |name: &str, uid: &str, rv: &str| {
            let mut j = job(name, "js");
            j.metadata.uid = Some(uid.into());
            j.metadata.resource_version = Some(rv.into());
            j
        };
        // Not yet delivered by the watch: stored.
        assert!(index.insert_created(with_uid("a", "ja", "1")));
        assert_eq!(index.jobs_of("js").len(), 1);
        // The watch delivered a newer version first: kept.
        index.upsert_job(with_uid("b", "jb", "5"));
        assert!(!index.insert_created(with_uid("b", "jb", "4")));
        let b = index
            .jobs_of("js")
            .into_iter()
            .find(|j| j.metadata.name.as_deref() == Some("b"));
        assert_eq!(
            b.and_then(|j| j.metadata.resource_version.clone())
                .as_deref(),
            Some("5")
        );
        // Created, then deleted before the answer was stored: not revived.
        index.upsert_job(with_uid("c", "jc", "6"));
        index.remove_deleted_job(&with_uid("c", "jc", "7"));
        assert!(!index.insert_created(with_uid("c", "jc", "6")));
        assert_eq!(index.jobs_of("js").len(), 2);
        // A new Job of that name (the next attempt) is stored.
        assert!(index.insert_created(with_uid("c", "jc2", "8")));
        assert_eq!(index.jobs_of("js").len(), 3);
    }
}
