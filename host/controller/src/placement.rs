//! Placement inputs and outputs: the cluster's topology domains (from a
//! projection of Nodes), which domains exclusive Jobs already hold (from
//! the Jobs' own pins, so no pod is ever read), and how a placement
//! verdict is written into a Job's pod template. Pure.
//!
//! An exclusive Job the placement plugin does not pin (no domain was free,
//! or the plugin left it alone) is still created, so that its pods are
//! Pending where the scheduler and cluster autoscalers see them. Its pod
//! template then carries upstream's exclusive pod affinity (every pod of
//! the Job in one domain) and anti-affinity (no pod of another exclusive
//! Job of the same priority there), and the scheduler picks its domain when
//! one frees. Which domain that is cannot be known without reading pods,
//! so such a Job counts as a holder of every domain of its key, and later
//! Jobs of that key and priority are left to the scheduler too until it
//! ends: pins and the scheduler's choices never meet on one domain.

use std::collections::{BTreeMap, BTreeSet};

use jobset_api::labels::{EXCLUSIVE_KEY, JOB_KEY, NODE_SELECTOR_STRATEGY_KEY, PRIORITY_KEY};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::observe::finished_condition;
use crate::policy::records as p;

/// What the controller keeps of a Node: no spec, no status beyond readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
}

/// The cluster's PriorityClasses, to resolve a pod's priority as the
/// Priority admission plugin does: the pod's own `priority`, else its
/// class's value (the two system classes are built in), else the value of
/// the global default class (the lowest if several), else 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriorityClasses {
    pub by_name: BTreeMap<String, i32>,
    /// Values of the classes marked `globalDefault`.
    pub defaults: BTreeMap<String, i32>,
}

/// kube-apiserver's built-in classes.
const SYSTEM_CLASSES: [(&str, i32); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

impl PriorityClasses {
    /// The priority admission gives a pod of `spec`; `None` when it names a
    /// class that does not exist (the pod would not be admitted).
    pub fn resolve(&self, spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<i32> {
        if let Some(p) = spec.priority {
            return Some(p);
        }
        match spec
            .priority_class_name
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            Some(name) => self.by_name.get(name).copied().or_else(|| {
                SYSTEM_CLASSES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
            }),
            None => Some(self.defaults.values().copied().min().unwrap_or(0)),
        }
    }
}

/// An exclusive Job holding one topology domain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occupant {
    pub topology_key: String,
    /// The domain it is pinned to; `None` for a Job the scheduler places
    /// (no pin), which may be in any domain of its key and so counts in
    /// every one.
    pub value: Option<String>,
    pub job_key: String,
    pub priority: Option<i32>,
}

fn annotation<'j>(job: &'j Job, key: &str) -> Option<&'j str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The domain a Job holds: it is exclusive on key T (and not by the
/// node-selector strategy), pinned to a value of T or else left to the
/// scheduler (then any domain of T), it is not suspended (a suspended Job
/// has no pods, as upstream where exclusivity lives on pods), and it has
/// not finished (a Job being deleted still holds its domain until it is
/// gone, so attempts never overlap on one domain).
pub fn occupant_of(job: &Job) -> Option<Occupant> {
    if finished_condition(job).is_some() && job.metadata.deletion_timestamp.is_none() {
        return None;
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return None;
    }
    let key = annotation(job, EXCLUSIVE_KEY)?;
    if annotation(job, NODE_SELECTOR_STRATEGY_KEY).is_some() {
        return None;
    }
    let pod = job.spec.as_ref()?.template.spec.as_ref();
    let value = pod
        .and_then(|p| p.node_selector.as_ref())
        .and_then(|s| s.get(key));
    Some(Occupant {
        topology_key: key.to_string(),
        value: value.cloned(),
        job_key: job.metadata.labels.as_ref()?.get(JOB_KEY)?.clone(),
        priority: recorded_priority(job),
    })
}

/// The priority written on the Job's pod template when it was created
/// (`jobset.sigs.k8s.io/priority`, the label upstream puts on the pods),
/// else the template's own `priority`.
pub fn recorded_priority(job: &Job) -> Option<i32> {
    let template = &job.spec.as_ref()?.template;
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(PRIORITY_KEY))
        .and_then(|v| v.parse().ok())
        .or_else(|| template.spec.as_ref()?.priority)
}

/// The domains of every topology key in `keys`, with their node counts and
/// occupants, sorted by key then value. An occupant whose priority was not
/// recorded (a Job created before priorities were, or by another
/// controller) counts with `unrecorded`, the priority admission gives a pod
/// that names none. An occupant the scheduler places is listed in every
/// domain of its key.
pub fn domains(
    nodes: &[NodeInfo],
    occupants: &[Occupant],
    keys: &BTreeSet<String>,
    unrecorded: Option<i32>,
) -> Vec<p::TopologyDomain> {
    let mut out: BTreeMap<(String, String), p::TopologyDomain> = BTreeMap::new();
    for node in nodes {
        for key in keys {
            let Some(value) = node.labels.get(key) else {
                continue;
            };
            let d = out
                .entry((key.clone(), value.clone()))
                .or_insert_with(|| p::TopologyDomain {
                    topology_key: key.clone(),
                    value: value.clone(),
                    nodes: 0,
                    ready_nodes: 0,
                    occupied_by: vec![],
                });
            d.nodes += 1;
            if node.ready {
                d.ready_nodes += 1;
            }
        }
    }
    for o in occupants {
        let held: Vec<&mut p::TopologyDomain> = match &o.value {
            Some(v) => out
                .get_mut(&(o.topology_key.clone(), v.clone()))
                .into_iter()
                .collect(),
            None => out
                .range_mut((o.topology_key.clone(), String::new())..)
                .take_while(|((key, _), _)| *key == o.topology_key)
                .map(|(_, d)| d)
                .collect(),
        };
        for d in held {
            if !d.occupied_by.iter().any(|x| x.job_key == o.job_key) {
                d.occupied_by.push(p::Occupant {
                    job_key: o.job_key.clone(),
                    priority: o.priority.or(unrecorded),
                });
            }
        }
    }
    out.into_values().collect()
}

/// Whether a node can host the pods of a Job: it matches the pod's node
/// selector and its required node-affinity terms (any term, every
/// expression). Domains are offered to a Job only from such nodes.
pub fn node_fits(node: &NodeInfo, job: &Job) -> bool {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return true;
    };
    let selector_ok = pod
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let terms = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or(&[]);
    let affinity_ok = terms.is_empty()
        || terms.iter().any(|t| {
            t.match_expressions.iter().flatten().all(|e| {
                let value = node.labels.get(&e.key);
                let values = e.values.as_deref().unwrap_or(&[]);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => true,
                }
            })
        });
    selector_ok && affinity_ok
}

/// The placement record of a Job about to be created.
pub fn pending_job(job: &Job, rjob: &str, index: i32) -> p::PendingJob {
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let parallelism = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
    p::PendingJob {
        name: job.metadata.name.clone().unwrap_or_default(),
        replicated_job: rjob.to_string(),
        job_index: index,
        job_key: job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(JOB_KEY))
            .cloned()
            .unwrap_or_default(),
        exclusive_topology: annotation(job, EXCLUSIVE_KEY).map(str::to_string),
        // As upstream: the strategy counts only beside an exclusive topology.
        node_selector_strategy: annotation(job, EXCLUSIVE_KEY).is_some()
            && annotation(job, NODE_SELECTOR_STRATEGY_KEY).is_some(),
        priority: recorded_priority(job).or_else(|| pod.and_then(|p| p.priority)),
        pods: parallelism,
    }
}

/// Whether the Job is exclusive by topology domain the way the placement
/// plugin decides (not by upstream's node-selector strategy).
pub fn is_domain_exclusive(pending: &p::PendingJob) -> bool {
    pending.exclusive_topology.is_some() && !pending.node_selector_strategy
}

/// Writes a pin into the Job's pod template: node selector entries win over
/// the template's, tolerations and node-affinity requirements are added
/// (required terms are ANDed into every existing term).
pub fn apply_pin(job: &mut Job, pin: &p::Pin) {
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    if !pin.node_selector.is_empty() {
        let sel = pod.node_selector.get_or_insert_with(BTreeMap::new);
        for kv in &pin.node_selector {
            sel.insert(kv.key.clone(), kv.value.clone());
        }
    }
    if !pin.tolerations.is_empty() {
        let tols = pod.tolerations.get_or_insert_with(Vec::new);
        for t in &pin.tolerations {
            let tol = Toleration {
                key: Some(t.key.clone()),
                operator: Some(t.operator.clone()),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: None,
            };
            if !tols.contains(&tol) {
                tols.push(tol);
            }
        }
    }
    if !pin.required_node_affinity.is_empty() {
        let reqs: Vec<NodeSelectorRequirement> = pin
            .required_node_affinity
            .iter()
            .map(|r| NodeSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: Some(r.values.clone()),
            })
            .collect();
        let affinity = pod.affinity.get_or_insert_with(Affinity::default);
        let node = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        let required = node
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: vec![],
            });
        if required.node_selector_terms.is_empty() {
            required
                .node_selector_terms
                .push(NodeSelectorTerm::default());
        }
        for term in &mut required.node_selector_terms {
            term.match_expressions
                .get_or_insert_with(Vec::new)
                .extend(reqs.iter().cloned());
        }
    }
}

/// Whether the Job is exclusive by topology the way the placement plugin
/// decides (not by the node-selector strategy) and its template names no
/// domain of its key: the scheduler chooses its domain.
pub fn is_unpinned_exclusive(job: &Job) -> bool {
    let Some(key) = annotation(job, EXCLUSIVE_KEY) else {
        return false;
    };
    annotation(job, NODE_SELECTOR_STRATEGY_KEY).is_none()
        && !job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.node_selector.as_ref())
            .is_some_and(|sel| sel.contains_key(key))
}

/// Whether the Job's pod template already carries the exclusive pod
/// affinity [`apply_exclusive_affinity`] writes for an unpinned Job.
pub fn has_exclusive_pod_affinity(job: &Job) -> bool {
    let Some(key) = annotation(job, EXCLUSIVE_KEY) else {
        return false;
    };
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| {
            terms.iter().any(|t| {
                t.topology_key == key
                    && t.label_selector
                        .as_ref()
                        .and_then(|l| l.match_expressions.as_ref())
                        .is_some_and(|e| e.iter().any(|r| r.key == JOB_KEY))
            })
        })
}

/// Writes upstream's exclusive affinities into the pod template of a Job
/// exclusive by topology (not by the node-selector strategy): anti-affinity
/// to pods of any other `job-key` with the same
/// `jobset.sigs.k8s.io/priority`, and, when no pin names its domain, pod
/// affinity to the pods of its own `job-key`; both by the exclusive
/// topology key and across namespaces. Unpinned, the first pod may go to
/// any domain with no other exclusive Job of its priority and the others
/// follow it. Pinned Jobs carry the anti-affinity too: a pinned Job whose
/// pods have not yet been bound can find its domain taken by an unpinned
/// Job's pods, and kube-scheduler retries a waiting pod when a pod goes
/// away only if that pod matched the waiting pod's own anti-affinity.
/// Written once, on every pod (upstream writes them on the leader and
/// gives followers the leader's domain through its pod webhook; this needs
/// no webhook and no pod is ever refused). Other Jobs are left alone.
pub fn apply_exclusive_affinity(job: &mut Job) {
    if annotation(job, NODE_SELECTOR_STRATEGY_KEY).is_some() {
        return;
    }
    let unpinned = is_unpinned_exclusive(job);
    let Some(key) = annotation(job, EXCLUSIVE_KEY).map(str::to_string) else {
        return;
    };
    let job_key = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(JOB_KEY))
        .cloned()
        .unwrap_or_default();
    let priority = recorded_priority(job)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let requirement = |op: &str, values: Option<Vec<String>>, key: &str| LabelSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values,
    };
    let term = |expressions: Vec<LabelSelectorRequirement>| PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(expressions),
            match_labels: None,
        }),
        namespace_selector: Some(LabelSelector::default()),
        topology_key: key.clone(),
        ..Default::default()
    };
    let together = term(vec![requirement(
        "In",
        Some(vec![job_key.clone()]),
        JOB_KEY,
    )]);
    let apart = term(vec![
        requirement("Exists", None, JOB_KEY),
        requirement("NotIn", Some(vec![job_key]), JOB_KEY),
        requirement("In", Some(vec![priority]), PRIORITY_KEY),
    ]);
    let affinity = pod.affinity.get_or_insert_with(Affinity::default);
    if unpinned {
        let with = affinity
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new);
        if !with.contains(&together) {
            with.push(together);
        }
    }
    let against = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default)
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new);
    if !against.contains(&apart) {
        against.push(apart);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn priority_resolves_as_the_priority_admission_plugin_does() {
        let pod = |priority: Option<i32>, class: Option<&str>| PodSpec {
            priority,
            priority_class_name: class.map(str::to_string),
            ..Default::default()
        };
        let none = PriorityClasses::default();
        assert_eq!(
            none.resolve(&pod(None, None)),
            Some(0),
            "no default class: 0"
        );
        assert_eq!(none.resolve(&pod(Some(7), Some("x"))), Some(7), "set wins");
        assert_eq!(
            none.resolve(&pod(None, Some("system-node-critical"))),
            Some(2_000_001_000)
        );
        assert_eq!(none.resolve(&pod(None, Some("ghost"))), None);
        let classes = PriorityClasses {
            by_name: [
                ("high".to_string(), 1000),
                ("a".to_string(), 50),
                ("b".to_string(), 20),
            ]
            .into(),
            defaults: [("a".to_string(), 50), ("b".to_string(), 20)].into(),
        };
        assert_eq!(classes.resolve(&pod(None, Some("high"))), Some(1000));
        assert_eq!(
            classes.resolve(&pod(None, None)),
            Some(20),
            "lowest default"
        );
    }

    fn node(name: &str, pool: &str, ready: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("pool".to_string(), pool.to_string())].into(),
            ready,
        }
    }

    fn exclusive_job(key: &str, pinned: Option<&str>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(key.into()),
                labels: Some([(JOB_KEY.to_string(), key.to_string())].into()),
                annotations: Some([(EXCLUSIVE_KEY.to_string(), "pool".to_string())].into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        node_selector: pinned.map(|v| [("pool".to_string(), v.to_string())].into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn domains_count_nodes_and_list_the_jobs_that_hold_them() {
        let nodes = [
            node("a1", "a", true),
            node("a2", "a", false),
            node("b1", "b", true),
        ];
        let occ = [occupant_of(&exclusive_job("k1", Some("a"))).unwrap()];
        let d = domains(&nodes, &occ, &["pool".to_string()].into(), None);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].value.as_str(), d[0].nodes, d[0].ready_nodes),
            ("a", 2, 1)
        );
        assert_eq!(d[0].occupied_by[0].job_key, "k1");
        assert!(d[1].occupied_by.is_empty());
    }

    #[test]
    fn a_job_the_scheduler_places_holds_every_domain_of_its_key() {
        let nodes = [node("a1", "a", true), node("b1", "b", true)];
        let unpinned = occupant_of(&exclusive_job("k1", None)).expect("an occupant");
        assert_eq!(unpinned.value, None);
        let d = domains(&nodes, &[unpinned], &["pool".to_string()].into(), Some(3));
        for domain in &d {
            assert_eq!(domain.occupied_by.len(), 1, "{}", domain.value);
            assert_eq!(domain.occupied_by[0].job_key, "k1");
            assert_eq!(domain.occupied_by[0].priority, Some(3), "unrecorded");
        }
        // Under the node-selector strategy the Job is no domain's occupant.
        let mut strategy = exclusive_job("k2", None);
        strategy
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(NODE_SELECTOR_STRATEGY_KEY.to_string(), "true".to_string());
        assert!(occupant_of(&strategy).is_none());
        assert!(!is_unpinned_exclusive(&strategy));
        apply_exclusive_affinity(&mut strategy);
        assert_eq!(strategy.spec.unwrap().template.spec.unwrap().affinity, None);
    }

    #[test]
    fn exclusive_affinity_is_upstreams_written_once_and_a_pinned_job_gets_the_anti_affinity_only() {
        // A pinned Job gets the anti-affinity only: its domain is named.
        let mut pinned = exclusive_job("k", Some("a"));
        apply_exclusive_affinity(&mut pinned);
        let affinity = pinned
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .affinity
            .unwrap();
        assert_eq!(affinity.pod_affinity, None);
        let against = affinity.pod_anti_affinity.unwrap();
        assert_eq!(
            against
                .required_during_scheduling_ignored_during_execution
                .unwrap()
                .len(),
            1
        );

        let mut job = exclusive_job("k", None);
        job.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
            labels: Some([(PRIORITY_KEY.to_string(), "100".to_string())].into()),
            ..Default::default()
        });
        apply_exclusive_affinity(&mut job);
        apply_exclusive_affinity(&mut job);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let value = serde_json::to_value(pod.affinity.unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchExpressions": [
                        {"key": JOB_KEY, "operator": "In", "values": ["k"]}]},
                    "namespaceSelector": {},
                    "topologyKey": "pool"}]},
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchExpressions": [
                        {"key": JOB_KEY, "operator": "Exists"},
                        {"key": JOB_KEY, "operator": "NotIn", "values": ["k"]},
                        {"key": PRIORITY_KEY, "operator": "In", "values": ["100"]}]},
                    "namespaceSelector": {},
                    "topologyKey": "pool"}]}
            })
        );
    }

    #[test]
    fn a_suspended_or_finished_job_holds_no_domain() {
        let mut suspended = exclusive_job("k", Some("a"));
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        assert!(occupant_of(&suspended).is_none());
        let mut done = exclusive_job("k", Some("a"));
        done.status = Some(JobStatus {
            conditions: Some(vec![k8s_openapi::api::batch::v1::JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(occupant_of(&done).is_none());
    }

    #[test]
    fn a_pin_adds_selector_toleration_and_affinity() {
        let mut job = exclusive_job("k", None);
        let pin = p::Pin {
            node_selector: vec![p::KeyValue {
                key: "pool".into(),
                value: "b".into(),
            }],
            tolerations: vec![p::Toleration {
                key: "t".into(),
                operator: "Exists".into(),
                value: None,
                effect: Some("NoSchedule".into()),
            }],
            required_node_affinity: vec![p::NodeRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: vec!["z1".into()],
            }],
        };
        apply_pin(&mut job, &pin);
        apply_pin(&mut job, &pin);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["pool"], "b");
        assert_eq!(pod.tolerations.unwrap().len(), 1);
        let terms = pod
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "zone");
    }
}
