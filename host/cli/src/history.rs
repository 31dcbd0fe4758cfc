//! What happened during a run, in virtual time since its start: each Job
//! attempt (one per Job uid) from creation to its end, the domain its pods
//! ran in, pod failures, and the policy decisions. Filled by watches and the
//! controller's observer; read by the summary and the timeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use crate::output::Output;
use crate::report::fmt_duration;

/// The node label that names a node's pool, the default grouping.
pub const POOL_LABEL: &str = "cloud.google.com/gke-nodepool";

/// How a Job attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// Failed, with the condition's reason.
    Failed(String),
    /// Deleted before it finished (a restart).
    Deleted,
}

/// One Job attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `namespace/name` of the JobSet.
    pub jobset: String,
    pub job: String,
    pub uid: String,
    /// Label `jobset.sigs.k8s.io/restart-attempt`.
    pub restart_attempt: String,
    pub created: Duration,
    pub ended: Option<(Duration, Ending)>,
    /// The node pool (or node) its pods ran in.
    pub domain: Option<String>,
    /// Its `parallelism` when created.
    pub pods: i32,
    /// When its `parallelism` changed (an elastic JobSet), and to what.
    pub resizes: Vec<(Duration, i32)>,
}

/// A pod that failed.
#[derive(Debug, Clone)]
pub struct PodFailure {
    pub at: Duration,
    pub job_uid: String,
    pub pod: String,
    /// Exit code and reason, as a person reads them.
    pub why: String,
}

/// A pod whose containers restarted in place (restart policy or rules).
#[derive(Debug, Clone)]
pub struct PodRestart {
    pub at: Duration,
    pub job_uid: String,
    pub pod: String,
    /// The restart count after it.
    pub restarts: i32,
    /// The exit code of the run that ended.
    pub exit_code: Option<i32>,
}

/// A decision a plugin took.
#[derive(Debug, Clone)]
pub struct Decision {
    pub at: Duration,
    pub jobset: String,
    pub text: String,
}

/// The whole record.
#[derive(Debug, Default)]
pub struct Record {
    /// By Job uid.
    pub attempts: BTreeMap<String, Attempt>,
    pub pod_failures: Vec<PodFailure>,
    pub pod_restarts: Vec<PodRestart>,
    /// The highest restart count seen per pod uid.
    restart_counts: BTreeMap<String, i32>,
    pub decisions: Vec<Decision>,
    /// Where a shadow plugin would have decided otherwise (`--shadow`).
    pub divergences: Vec<Decision>,
    /// Why Jobs of a JobSet could not be created yet (latest reconcile).
    pub waiting: BTreeMap<String, Vec<String>>,
    seen_failed_pods: std::collections::BTreeSet<String>,
}

/// The record, shared between the watches and the reader.
#[derive(Clone)]
pub struct History {
    pub start: Instant,
    pub record: Arc<Mutex<Record>>,
    /// Where Job and pod events are logged as they happen.
    out: Output,
}

fn jobset_of(labels: &BTreeMap<String, String>, ns: &str) -> Option<String> {
    labels
        .get(jobset_api::labels::JOBSET_NAME_KEY)
        .map(|n| format!("{ns}/{n}"))
}

impl History {
    pub fn new(start: Instant, out: Output) -> Self {
        History {
            start,
            record: Arc::default(),
            out,
        }
    }

    fn log(&self, at: Duration, jobset: &str, text: &str) {
        self.out
            .line(&format!("[{}] {jobset}: {text}", fmt_duration(at)));
    }

    /// Virtual time since the start of the run.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Notes a plugin decision.
    pub fn decision(&self, jobset: &str, text: &str) {
        let at = self.now();
        if let Ok(mut r) = self.record.lock() {
            r.decisions.push(Decision {
                at,
                jobset: jobset.to_string(),
                text: text.to_string(),
            });
        }
    }

    /// Notes why a JobSet's Jobs wait (replacing the earlier reasons).
    pub fn waiting(&self, jobset: &str, reasons: Vec<String>) {
        if let Ok(mut r) = self.record.lock() {
            if reasons.is_empty() {
                r.waiting.remove(jobset);
            } else {
                r.waiting.insert(jobset.to_string(), reasons);
            }
        }
    }

    fn on_job(&self, job: &Job, deleted: bool) {
        let ns = job.namespace().unwrap_or_default();
        let Some(jobset) = jobset_of(job.labels(), &ns) else {
            return;
        };
        let jobset_key = jobset.clone();
        let uid = job.uid().unwrap_or_default();
        let now = self.now();
        let mut lines = Vec::new();
        let Ok(mut r) = self.record.lock() else {
            return;
        };
        let pods = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        if !r.attempts.contains_key(&uid) {
            lines.push(format!("Job {} created", job.name_any()));
        }
        let attempt = r.attempts.entry(uid.clone()).or_insert_with(|| Attempt {
            jobset,
            job: job.name_any(),
            uid,
            restart_attempt: job
                .labels()
                .get(jobset_api::labels::RESTART_ATTEMPT_KEY)
                .cloned()
                .unwrap_or_default(),
            created: now,
            ended: None,
            domain: None,
            pods,
            resizes: Vec::new(),
        });
        let was = attempt.resizes.last().map_or(attempt.pods, |(_, n)| *n);
        if pods != was && attempt.ended.is_none() {
            attempt.resizes.push((now, pods));
            let plural = if pods == 1 { "" } else { "s" };
            lines.push(format!(
                "Job {} resized from {was} to {pods} pod{plural}",
                attempt.job
            ));
        }
        if attempt.ended.is_some() {
            drop(r);
            for l in lines {
                self.log(now, &jobset_key, &l);
            }
            return;
        }
        let conditions = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten();
        for c in conditions {
            if c.status != "True" {
                continue;
            }
            match c.type_.as_str() {
                "Complete" => attempt.ended = Some((now, Ending::Complete)),
                "Failed" => {
                    attempt.ended =
                        Some((now, Ending::Failed(c.reason.clone().unwrap_or_default())))
                }
                _ => {}
            }
        }
        if deleted && attempt.ended.is_none() {
            attempt.ended = Some((now, Ending::Deleted));
        }
        match &attempt.ended {
            Some((_, Ending::Complete)) => lines.push(format!("Job {} completed", attempt.job)),
            Some((_, Ending::Failed(reason))) => {
                lines.push(format!("Job {} failed ({reason})", attempt.job))
            }
            Some((_, Ending::Deleted)) => lines.push(format!("Job {} deleted", attempt.job)),
            None => {}
        }
        drop(r);
        for l in lines {
            self.log(now, &jobset_key, &l);
        }
    }

    fn on_pod(&self, pod: &Pod, pools: &BTreeMap<String, String>) {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.kind == "Job" && o.controller == Some(true))
        else {
            return;
        };
        let now = self.now();
        let Ok(mut r) = self.record.lock() else {
            return;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let (Some(node), Some(a)) = (node, r.attempts.get_mut(&owner.uid))
            && a.domain.is_none()
        {
            a.domain = Some(pools.get(&node).cloned().unwrap_or(node));
        }
        let status = pod.status.clone().unwrap_or_default();
        let uid = pod.uid().unwrap_or_default();
        let restarts = status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0);
        let before = r.restart_counts.get(&uid).copied().unwrap_or(0);
        if restarts > before {
            r.restart_counts.insert(uid.clone(), restarts);
            let exit_code = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.last_state.as_ref()?.terminated.as_ref())
                .map(|t| t.exit_code)
                .next();
            r.pod_restarts.push(PodRestart {
                at: now,
                job_uid: owner.uid.clone(),
                pod: pod.name_any(),
                restarts,
                exit_code,
            });
            let jobset = jobset_of(pod.labels(), &pod.namespace().unwrap_or_default());
            let why = exit_code
                .map(|c| format!(" after exit code {c}"))
                .unwrap_or_default();
            let line = format!(
                "pod {} restarted in place{why} (restart {restarts})",
                pod.name_any()
            );
            if let Some(js) = jobset {
                self.log(now, &js, &line);
            }
        }
        // A pod stopped because it was deleted (a restart, a failed Job's
        // other pods) did not fail on its own.
        let stopped = pod.metadata.deletion_timestamp.is_some();
        if status.phase.as_deref() == Some("Failed") && !stopped && r.seen_failed_pods.insert(uid) {
            let exit = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .map(|t| t.exit_code)
                .find(|c| *c != 0);
            let cond = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
                .map(|c| c.reason.clone().unwrap_or_default());
            let why = match (exit, cond) {
                (_, Some(reason)) => format!("disrupted ({reason})"),
                (Some(code), None) => format!("exit code {code}"),
                (None, None) => status.reason.clone().unwrap_or_else(|| "failed".into()),
            };
            let jobset = jobset_of(pod.labels(), &pod.namespace().unwrap_or_default());
            let line = format!("pod {} failed: {why}", pod.name_any());
            r.pod_failures.push(PodFailure {
                at: now,
                job_uid: owner.uid.clone(),
                pod: pod.name_any(),
                why,
            });
            drop(r);
            if let Some(js) = jobset {
                self.log(now, &js, &line);
            }
        }
    }

    /// Watches Jobs and pods until the runtime stops; returns at once.
    pub async fn watch(&self, client: &Client) {
        let nodes: Api<Node> = Api::all(client.clone());
        let pools: BTreeMap<String, String> = nodes
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let pool = n.labels().get(POOL_LABEL).cloned();
                let name = n.name_any();
                (name.clone(), pool.unwrap_or(name))
            })
            .collect();
        let jobs: Api<Job> = Api::all(client.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(jobs, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(j) | Event::InitApply(j)) => me.on_job(&j, false),
                    Ok(Event::Delete(j)) => me.on_job(&j, true),
                    _ => {}
                }
            }
        });
        let pods: Api<Pod> = Api::all(client.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(Event::Apply(p) | Event::InitApply(p) | Event::Delete(p)) = ev {
                    me.on_pod(&p, &pools);
                }
            }
        });
    }
}
