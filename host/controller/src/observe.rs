//! Observe: sorts a JobSet's child Jobs into attempt buckets and computes the
//! per-replicated-job counters of its status (spec 4.1 steps 3-4, 2.6).
//! Pure: it reads objects handed to it and never calls the API.

use std::borrow::Borrow;

use std::collections::BTreeMap;

use jobset_api::labels::{
    JOB_INDEX_KEY, JOB_RESTART_ATTEMPT_KEY, REPLICATED_JOB_NAME_KEY, RESTART_ATTEMPT_KEY,
};
use jobset_api::{JobSet, ReplicatedJobStatus};
use k8s_openapi::api::batch::v1::{Job, JobCondition};

use crate::error::ControllerError;
use crate::job_builder::recorded_job_restarts;

/// The child Jobs of one JobSet, sorted into buckets.
#[derive(Debug, Default)]
pub struct Buckets<'a> {
    /// Jobs of an earlier attempt (global, or of their own index): deleted.
    pub previous: Vec<&'a Job>,
    /// Current-attempt Jobs that have not finished (FailureTarget included).
    pub active: Vec<&'a Job>,
    /// Current-attempt Jobs with `Complete=True`.
    pub successful: Vec<&'a Job>,
    /// Current-attempt Jobs with `Failed=True`.
    pub failed: Vec<&'a Job>,
}

impl<'a> Buckets<'a> {
    /// Every Job in any bucket.
    pub fn all(&self) -> impl Iterator<Item = &'a Job> + '_ {
        self.previous
            .iter()
            .chain(&self.active)
            .chain(&self.successful)
            .chain(&self.failed)
            .copied()
    }

    /// Whether a Job of that name exists in any bucket.
    pub fn contains_name(&self, name: &str) -> bool {
        self.all().any(|j| j.metadata.name.as_deref() == Some(name))
    }
}

/// The True `Complete` or `Failed` condition of a Job, if it finished.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn label<'j>(job: &'j Job, key: &str) -> Option<&'j str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn job_name(job: &Job) -> &str {
    job.metadata.name.as_deref().unwrap_or("")
}

/// Parses an integer label of a child Job, naming the Job and the label
/// when it is missing or not a number.
pub fn int_label(job: &Job, key: &str) -> Result<i64, ControllerError> {
    let raw = label(job, key).ok_or_else(|| ControllerError::BadJobLabel {
        job: job_name(job).to_string(),
        label: key.to_string(),
        detail: "missing".to_string(),
    })?;
    raw.trim()
        .parse()
        .map_err(|_| ControllerError::BadJobLabel {
            job: job_name(job).to_string(),
            label: key.to_string(),
            detail: format!("{raw:?} is not an integer"),
        })
}

/// The per-index restart counter recorded for this Job's index, if any.
fn job_restarts_for(js: &JobSet, job: &Job) -> Option<i64> {
    let rjob = label(job, REPLICATED_JOB_NAME_KEY)?;
    let index: usize = label(job, JOB_INDEX_KEY)?.parse().ok()?;
    recorded_job_restarts(js, rjob, index).map(i64::from)
}

/// Sorts `jobs` (already filtered to this JobSet's UID) into buckets.
/// A missing or unparseable `restart-attempt` label is an error; a missing
/// `job-restart-attempt` label only means the Job predates per-Job restarts.
/// That label is read only when `per_job_restarts` (the RestartJob gate)
/// is on, as upstream.
pub fn bucket_jobs<'a, J: Borrow<Job>>(
    js: &JobSet,
    jobs: &'a [J],
    per_job_restarts: bool,
) -> Result<Buckets<'a>, ControllerError> {
    let restarts = i64::from(js.status.as_ref().map(|s| s.restarts).unwrap_or(0));
    let mut buckets = Buckets::default();
    for job in jobs {
        let job: &Job = job.borrow();
        let attempt = int_label(job, RESTART_ATTEMPT_KEY)?;
        let mut previous = attempt < restarts;
        if per_job_restarts && !previous && label(job, JOB_RESTART_ATTEMPT_KEY).is_some() {
            let job_attempt = int_label(job, JOB_RESTART_ATTEMPT_KEY)?;
            previous = job_restarts_for(js, job).is_some_and(|want| job_attempt < want);
        }
        if previous {
            buckets.previous.push(job);
            continue;
        }
        match finished_condition(job).map(|c| c.type_.as_str()) {
            Some("Complete") => buckets.successful.push(job),
            Some("Failed") => buckets.failed.push(job),
            _ => buckets.active.push(job),
        }
    }
    Ok(buckets)
}

/// Whether an unfinished Job counts as ready: its ready plus succeeded pods
/// reach min(parallelism, completions).
pub fn job_is_ready(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    let completions = spec.and_then(|s| s.completions).unwrap_or(parallelism);
    let status = job.status.as_ref();
    let ready = status.and_then(|s| s.ready).unwrap_or(0);
    let succeeded = status.and_then(|s| s.succeeded).unwrap_or(0);
    ready + succeeded >= parallelism.min(completions)
}

/// The `replicatedJobsStatus` of spec 2.6, one entry per replicated job in
/// spec order, counting current-attempt Jobs only. The per-index restart
/// arrays are carried over from the existing status when `per_job_restarts`
/// (the RestartJob gate) is on, and dropped when it is off, as upstream.
pub fn replicated_jobs_status(
    js: &JobSet,
    buckets: &Buckets<'_>,
    per_job_restarts: bool,
) -> Vec<ReplicatedJobStatus> {
    let mut by_name: BTreeMap<&str, ReplicatedJobStatus> = BTreeMap::new();
    for rjob in &js.spec.replicated_jobs {
        let previous = js
            .status
            .as_ref()
            .and_then(|s| {
                s.replicated_jobs_status
                    .iter()
                    .find(|r| r.name == rjob.name)
            })
            .filter(|_| per_job_restarts);
        by_name.insert(
            rjob.name.as_str(),
            ReplicatedJobStatus {
                name: rjob.name.clone(),
                job_restarts: previous.map(|p| p.job_restarts.clone()).unwrap_or_default(),
                job_restarts_count_towards_max: previous
                    .map(|p| p.job_restarts_count_towards_max.clone())
                    .unwrap_or_default(),
                ..Default::default()
            },
        );
    }
    let entry = |job: &Job| label(job, REPLICATED_JOB_NAME_KEY).map(str::to_string);
    for job in &buckets.active {
        let Some(name) = entry(job) else { continue };
        let Some(s) = by_name.get_mut(name.as_str()) else {
            continue;
        };
        if job_is_ready(job) {
            s.ready += 1;
        }
        if job.status.as_ref().and_then(|st| st.active).unwrap_or(0) > 0 {
            s.active += 1;
        }
        if job.spec.as_ref().and_then(|sp| sp.suspend).unwrap_or(false) {
            s.suspended += 1;
        }
    }
    for (jobs, succeeded) in [(&buckets.successful, true), (&buckets.failed, false)] {
        for job in jobs.iter() {
            let Some(name) = entry(job) else { continue };
            let Some(s) = by_name.get_mut(name.as_str()) else {
                continue;
            };
            if succeeded {
                s.succeeded += 1;
            } else {
                s.failed += 1;
            }
        }
    }
    js.spec
        .replicated_jobs
        .iter()
        .filter_map(|r| by_name.remove(r.name.as_str()))
        .collect()
}

/// Whether two status lists are equal regardless of order.
pub fn same_replicated_jobs_status(a: &[ReplicatedJobStatus], b: &[ReplicatedJobStatus]) -> bool {
    let mut a: Vec<_> = a.iter().collect();
    let mut b: Vec<_> = b.iter().collect();
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    a == b
}
