//! Read-only helpers over a [`Snapshot`]: the questions every policy asks
//! (which Jobs failed and in what order, counts per replicated job, gates).
//! Nothing here decides anything.

use alloc::vec::Vec;

use crate::types::{
    FinishedCondition, FinishedType, Job, ReplicatedJob, ReplicatedJobStatus, Snapshot,
};

/// Convenience queries on a snapshot.
pub trait SnapshotView {
    /// Current-attempt Jobs with `Failed=True`, oldest failure first (ties
    /// keep the snapshot's name order).
    fn failed_jobs(&self) -> Vec<(&Job, &FinishedCondition)>;
    /// Current-attempt Jobs with `Complete=True`, in name order.
    fn succeeded_jobs(&self) -> Vec<&Job>;
    /// The failed Job whose failure is the oldest.
    fn first_failed_job(&self) -> Option<(&Job, &FinishedCondition)> {
        self.failed_jobs().into_iter().next()
    }
    /// The replicated job with this name.
    fn replicated_job(&self, name: &str) -> Option<&ReplicatedJob>;
    /// The status entry of this replicated job.
    fn replicated_job_status(&self, name: &str) -> Option<&ReplicatedJobStatus>;
    /// Whether a feature gate is on.
    fn gate_enabled(&self, gate: &str) -> bool;
    /// A JobSet annotation's value.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// Sum of `replicas` over every replicated job.
    fn total_replicas(&self) -> i64;
    /// The Job that owns the pod named `pod`: the Job whose name, followed
    /// by `-`, is the longest start of the pod's name (the Job controller
    /// names pods `<job>-<index>-<suffix>` or `<job>-<suffix>`).
    fn job_of_pod(&self, pod: &str) -> Option<&Job>;
}

impl SnapshotView for Snapshot {
    fn job_of_pod(&self, pod: &str) -> Option<&Job> {
        self.jobs
            .iter()
            .filter(|job| {
                pod.strip_prefix(job.name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|job| job.name.len())
    }

    fn failed_jobs(&self) -> Vec<(&Job, &FinishedCondition)> {
        let mut failed: Vec<(&Job, &FinishedCondition)> = self
            .jobs
            .iter()
            .filter_map(|job| match &job.finished {
                Some(cond) if cond.kind == FinishedType::Failed => Some((job, cond)),
                _ => None,
            })
            .collect();
        failed.sort_by_key(|(_, cond)| cond.time);
        failed
    }

    fn succeeded_jobs(&self) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(
                |job| matches!(&job.finished, Some(cond) if cond.kind == FinishedType::Complete),
            )
            .collect()
    }

    fn replicated_job(&self, name: &str) -> Option<&ReplicatedJob> {
        self.jobset.replicated_jobs.iter().find(|r| r.name == name)
    }

    fn replicated_job_status(&self, name: &str) -> Option<&ReplicatedJobStatus> {
        self.jobset
            .status
            .replicated_jobs
            .iter()
            .find(|r| r.name == name)
    }

    fn gate_enabled(&self, gate: &str) -> bool {
        self.feature_gates.iter().any(|g| g == gate)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.jobset
            .annotations
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    }

    fn total_replicas(&self) -> i64 {
        self.jobset
            .replicated_jobs
            .iter()
            .map(|r| i64::from(r.replicas))
            .sum()
    }
}

/// Whether a finished or unfinished Job counts as ready per the status rules:
/// unfinished, and ready plus succeeded pods reach min(parallelism,
/// completions).
pub fn job_is_ready(job: &Job, rjob: &ReplicatedJob) -> bool {
    let expected = rjob
        .completions
        .map_or(rjob.parallelism, |c| c.min(rjob.parallelism));
    job.finished.is_none() && job.ready + job.succeeded >= expected
}

/// Computes `replicatedJobsStatus` counts from the Jobs, one entry per
/// replicated job in spec order, keeping the restart arrays of `previous`.
pub fn count_replicated_jobs(
    rjobs: &[ReplicatedJob],
    jobs: &[Job],
    previous: &[ReplicatedJobStatus],
) -> Vec<ReplicatedJobStatus> {
    rjobs
        .iter()
        .map(|rjob| {
            let old = previous.iter().find(|s| s.name == rjob.name);
            let mut status = ReplicatedJobStatus {
                name: rjob.name.clone(),
                ready: 0,
                succeeded: 0,
                failed: 0,
                active: 0,
                suspended: 0,
                job_restarts: old.map(|s| s.job_restarts.clone()).unwrap_or_default(),
                job_restarts_count_towards_max: old
                    .map(|s| s.job_restarts_count_towards_max.clone())
                    .unwrap_or_default(),
            };
            for job in jobs.iter().filter(|j| j.replicated_job == rjob.name) {
                match job.finished.as_ref().map(|c| c.kind) {
                    Some(FinishedType::Complete) => status.succeeded += 1,
                    Some(FinishedType::Failed) => status.failed += 1,
                    None => {
                        if job_is_ready(job, rjob) {
                            status.ready += 1;
                        }
                        if job.active > 0 {
                            status.active += 1;
                        }
                        if job.suspended {
                            status.suspended += 1;
                        }
                    }
                }
            }
            status
        })
        .collect()
}

/// The failed pods the host gave for `job` (a plugin that asked for
/// `pod-facts`), if any.
pub fn pods_of<'a>(
    pods: &'a [crate::pods::JobPods],
    job: &str,
) -> Option<&'a crate::pods::JobPods> {
    pods.iter().find(|p| p.job == job)
}

/// Non-zero exit codes of a failed pod's containers, init containers
/// first, in the order the host gave them.
pub fn failing_exit_codes(pod: &crate::pods::FailedPod) -> Vec<i32> {
    pod.containers
        .iter()
        .filter(|c| c.exit_code != 0)
        .map(|c| c.exit_code)
        .collect()
}
