//! The failed pods of failed Jobs, for an outcome plugin that asks for the
//! `pod-facts` input: listed once per failed Job, when the plan first
//! needs them, and held only until the outcome is applied (never a cache
//! of pods: a JobSet holds facts for its current attempt's failed Jobs
//! alone, each bounded).
//!
//! The plan says which failed Jobs it needs facts for ([`Needed`]); the
//! reconcile lists their pods (one LIST per Job, by its
//! `controller-uid` label, failed pods only), keeps what it learnt here,
//! and plans again. A list that fails is kept as a failure: the plan then
//! holds the decision with `PolicyFailed` and the reconcile retries.

use jobset_policy::snapshot::{ContainerExit, Disruption, FailedPod, JobPods};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Failed pods kept per Job unless configured.
pub const DEFAULT_PODS_PER_JOB: usize = 16;

/// Bytes of a termination message kept; the rest is cut with a marker.
pub const MESSAGE_BYTES: usize = 1024;

/// The label the Job controller puts on its pods: the Job's UID.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// The annotation of an Indexed Job's pod that gives its index.
const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A failed Job whose pods the plan needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    /// The Job's name.
    pub job: String,
    /// The Job's UID (a Job recreated under the same name is another Job).
    pub uid: String,
}

/// What is known of one failed Job's pods.
#[derive(Clone, Debug, PartialEq)]
pub enum JobFacts {
    /// Its failed pods, as listed.
    Listed(Arc<JobPods>),
    /// The list failed, with why.
    Failed(String),
}

/// The facts of one JobSet's failed Jobs, by Job UID.
pub type Collected = BTreeMap<String, JobFacts>;

/// Facts per JobSet (by UID) until its outcome is applied.
#[derive(Default)]
pub struct FailedPods {
    per_job: usize,
    held: Mutex<HashMap<String, Collected>>,
}

impl FailedPods {
    /// Keeps at most `per_job` failed pods of each Job (at least one).
    pub fn new(per_job: usize) -> FailedPods {
        FailedPods {
            per_job: per_job.max(1),
            held: Mutex::default(),
        }
    }

    /// The bound on failed pods kept per Job.
    pub fn per_job(&self) -> usize {
        self.per_job
    }

    /// What is held for a JobSet, failures dropped so that they are listed
    /// again.
    pub fn listed(&self, jobset_uid: &str) -> Collected {
        let mut held = self.lock();
        let Some(c) = held.get_mut(jobset_uid) else {
            return Collected::new();
        };
        c.retain(|_, f| matches!(f, JobFacts::Listed(_)));
        let listed = c.clone();
        if listed.is_empty() {
            held.remove(jobset_uid);
        }
        listed
    }

    /// Keeps what a list found, and returns everything held for the JobSet.
    pub fn store(&self, jobset_uid: &str, found: Vec<(String, JobFacts)>) -> Collected {
        let mut held = self.lock();
        let c = held.entry(jobset_uid.to_string()).or_default();
        c.extend(found);
        c.clone()
    }

    /// Forgets the facts of Jobs the plan no longer needs (the outcome was
    /// applied, the Job is gone or not failed); everything when none.
    pub fn retain(&self, jobset_uid: &str, needed: &[Needed]) {
        let mut held = self.lock();
        if needed.is_empty() {
            held.remove(jobset_uid);
        } else if let Some(c) = held.get_mut(jobset_uid) {
            c.retain(|uid, _| needed.iter().any(|n| &n.uid == uid));
        }
    }

    /// Forgets a deleted JobSet.
    pub fn forget(&self, jobset_uid: &str) {
        self.lock().remove(jobset_uid);
    }

    /// Pods held now, across every JobSet (a metric).
    pub fn pods_held(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|c| c.values())
            .map(|f| match f {
                JobFacts::Listed(p) => p.pods.len(),
                JobFacts::Failed(_) => 0,
            })
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Collected>> {
        // The map is whole at every step; a panic elsewhere leaves it usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lists a failed Job's failed pods: one LIST, by its controller-uid label
/// and phase.
pub async fn list(
    client: &kube::Client,
    namespace: &str,
    needed: &Needed,
    per_job: usize,
) -> JobFacts {
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default()
        .labels(&format!("{CONTROLLER_UID_LABEL}={}", needed.uid))
        .fields("status.phase=Failed");
    let listed = tokio::time::timeout(std::time::Duration::from_secs(15), api.list(&params)).await;
    match listed {
        Ok(Ok(list)) => JobFacts::Listed(Arc::new(job_pods(&needed.job, &list.items, per_job))),
        Ok(Err(e)) => JobFacts::Failed(format!(
            "cannot list the pods of Job {namespace}/{}: {e}",
            needed.job
        )),
        Err(_) => JobFacts::Failed(format!(
            "cannot list the pods of Job {namespace}/{}: no answer within 15s",
            needed.job
        )),
    }
}

/// The facts of a Job's failed pods: the most recently finished first, at
/// most `per_job`, the rest counted.
pub fn job_pods(job: &str, pods: &[Pod], per_job: usize) -> JobPods {
    let mut failed: Vec<FailedPod> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .map(failed_pod)
        .collect();
    // Newest first; the name breaks ties so the order is reproducible.
    failed.sort_by(|a, b| {
        b.finished
            .or(b.started)
            .cmp(&a.finished.or(a.started))
            .then_with(|| a.name.cmp(&b.name))
    });
    let omitted = failed.len().saturating_sub(per_job);
    failed.truncate(per_job);
    JobPods {
        job: job.to_string(),
        pods: failed,
        omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
    }
}

/// What a pod's status says of how it ended or restarted.
pub(crate) fn failed_pod(pod: &Pod) -> FailedPod {
    let status = pod.status.clone().unwrap_or_default();
    let exits = |statuses: &Option<Vec<ContainerStatus>>, init: bool| -> Vec<ContainerExit> {
        statuses
            .iter()
            .flatten()
            .filter_map(|s| container_exit(s, init))
            .collect()
    };
    let mut containers = exits(&status.init_container_statuses, true);
    containers.extend(exits(&status.container_statuses, false));
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        .map(|c| Disruption {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    FailedPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        completion_index: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(COMPLETION_INDEX))
            .and_then(|v| v.parse().ok()),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        phase: status.phase.clone().unwrap_or_default(),
        reason: status.reason.clone().unwrap_or_default(),
        started: status.start_time.as_ref().map(|t| t.0.as_millisecond()),
        finished: containers.iter().filter_map(|c| c.finished).max(),
        containers,
        disruption,
    }
}

/// A container's last termination: its state, or (restarted in place and
/// waiting) its last state.
fn container_exit(s: &ContainerStatus, init: bool) -> Option<ContainerExit> {
    let term = s
        .state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .or_else(|| s.last_state.as_ref().and_then(|st| st.terminated.as_ref()))?;
    Some(ContainerExit {
        name: s.name.clone(),
        init,
        exit_code: term.exit_code,
        signal: term.signal,
        reason: term.reason.clone().unwrap_or_default(),
        message: cut(term.message.as_deref().unwrap_or_default(), MESSAGE_BYTES),
        restart_count: s.restart_count,
        started: term.started_at.as_ref().map(|t| t.0.as_millisecond()),
        finished: term.finished_at.as_ref().map(|t| t.0.as_millisecond()),
    })
}

/// `text` cut to at most `limit` bytes on a character boundary, with a
/// marker saying how many bytes were cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut {} bytes]", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, v: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).expect("a pod");
        p.metadata.name = Some(name.to_string());
        p
    }

    fn failed(name: &str, exit: i32, finished: &str) -> Pod {
        pod(
            name,
            json!({
                "metadata": {"annotations": {COMPLETION_INDEX: "3"}},
                "spec": {"nodeName": "node-7", "containers": []},
                "status": {
                    "phase": "Failed",
                    "startTime": "2026-01-01T00:00:00Z",
                    "containerStatuses": [{
                        "name": "trainer", "image": "i", "imageID": "", "ready": false,
                        "restartCount": 2,
                        "state": {"terminated": {"exitCode": exit, "signal": 9,
                            "reason": "OOMKilled", "message": "out of memory",
                            "startedAt": "2026-01-01T00:00:01Z", "finishedAt": finished}}
                    }]
                }
            }),
        )
    }

    #[test]
    fn a_failed_pod_gives_its_exit_node_index_times_and_disruption() {
        let mut p = failed("js-w-0-abc", 137, "2026-01-01T00:01:00Z");
        p.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True",
                "reason": "PreemptionByScheduler", "message": "preempted"}))
            .unwrap(),
        ]);
        let facts = job_pods("js-w-0", &[p], 16);
        assert_eq!(facts.job, "js-w-0");
        assert_eq!(facts.omitted, 0);
        let f = &facts.pods[0];
        assert_eq!(
            (f.name.as_str(), f.completion_index, f.node.as_str()),
            ("js-w-0-abc", Some(3), "node-7")
        );
        assert_eq!(f.started, Some(1_767_225_600_000));
        assert_eq!(f.finished, Some(1_767_225_660_000));
        let c = &f.containers[0];
        assert_eq!(
            (
                c.name.as_str(),
                c.init,
                c.exit_code,
                c.signal,
                c.reason.as_str(),
                c.restart_count
            ),
            ("trainer", false, 137, Some(9), "OOMKilled", 2)
        );
        assert_eq!(
            f.disruption,
            Some(Disruption {
                reason: "PreemptionByScheduler".into(),
                message: "preempted".into()
            })
        );
    }

    #[test]
    fn pods_are_newest_first_bounded_with_the_rest_counted_and_running_ones_left_out() {
        let pods = vec![
            failed("a", 1, "2026-01-01T00:01:00Z"),
            failed("b", 2, "2026-01-01T00:03:00Z"),
            failed("c", 3, "2026-01-01T00:02:00Z"),
            pod(
                "running",
                json!({"spec": {"containers": []}, "status": {"phase": "Running"}}),
            ),
        ];
        let facts = job_pods("j", &pods, 2);
        let names: Vec<_> = facts.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(facts.omitted, 1);
    }

    #[test]
    fn a_container_restarted_in_place_reports_its_last_termination() {
        let p = pod(
            "p",
            json!({"spec": {"containers": []}, "status": {"phase": "Failed",
              "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "",
                 "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
              "containerStatuses": [{"name": "main", "image": "i", "imageID": "",
                 "ready": false, "restartCount": 4,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 143, "reason": "Error"}}},
                {"name": "never", "image": "i", "imageID": "", "ready": false,
                 "restartCount": 0, "state": {"waiting": {}}}]}}),
        );
        let f = &job_pods("j", &[p], 16).pods[0];
        let seen: Vec<_> = f
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.init, c.exit_code))
            .collect();
        assert_eq!(seen, [("init", true, 0), ("main", false, 143)]);
        assert_eq!(f.node, "", "never scheduled");
        assert_eq!(f.finished, None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary_with_a_marker() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut(&"é".repeat(10), 5);
        assert_eq!(cut_text, "éé… [cut 16 bytes]");
    }

    fn listed(job: &str) -> JobFacts {
        JobFacts::Listed(Arc::new(job_pods(job, &[], 16)))
    }

    #[test]
    fn facts_are_held_until_no_longer_needed_and_failures_are_retried() {
        let held = FailedPods::new(16);
        held.store(
            "js",
            vec![
                ("u1".into(), listed("a")),
                ("u2".into(), JobFacts::Failed("refused".into())),
            ],
        );
        let again = held.listed("js");
        assert_eq!(again.keys().collect::<Vec<_>>(), ["u1"], "failures retried");
        held.store(
            "only-failed",
            vec![("u".into(), JobFacts::Failed("x".into()))],
        );
        assert!(held.listed("only-failed").is_empty());
        assert!(
            !held.lock().contains_key("only-failed"),
            "no empty entry kept"
        );
        held.retain(
            "js",
            &[Needed {
                job: "b".into(),
                uid: "u3".into(),
            }],
        );
        assert!(
            held.listed("js").is_empty(),
            "a Job no longer needed is dropped"
        );
        held.store("js", vec![("u3".into(), listed("b"))]);
        held.retain("js", &[]);
        assert!(held.listed("js").is_empty());
        held.store("gone", vec![("u".into(), listed("x"))]);
        held.forget("gone");
        assert!(held.listed("gone").is_empty());
    }
}
