//! The policy snapshot: the typed records a plugin sees of one JobSet and
//! its current-attempt Jobs (wit/types.wit), built from observed objects.
//! Pure; the only place Kubernetes objects become policy records.

use crate::policy::records as p;
use jobset_api::labels::{
    JOB_INDEX_KEY, JOB_RESTART_ATTEMPT_KEY, REPLICATED_JOB_NAME_KEY, RESTART_ATTEMPT_KEY,
};
use jobset_api::{
    DependsOnStatus, FailurePolicyAction, JobSet, Operator, ReplicatedJobStatus, RestartStrategy,
    StartupPolicyOrder,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;

use crate::observe::{Buckets, finished_condition};

/// Milliseconds since the epoch, as the contract counts time.
pub fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn kv(map: Option<&std::collections::BTreeMap<String, String>>) -> Vec<p::KeyValue> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| p::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn i32_label(job: &Job, key: &str) -> i32 {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn job_record(job: &Job) -> p::Job {
    let status = job.status.as_ref();
    let finished = finished_condition(job).map(|c| p::FinishedCondition {
        kind: if c.type_ == "Complete" {
            p::FinishedType::Complete
        } else {
            p::FinishedType::Failed
        },
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
        time: c
            .last_transition_time
            .as_ref()
            .map(|t| millis(t.0))
            .unwrap_or(0),
    });
    p::Job {
        name: job.metadata.name.clone().unwrap_or_default(),
        replicated_job: job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REPLICATED_JOB_NAME_KEY))
            .cloned()
            .unwrap_or_default(),
        job_index: i32_label(job, JOB_INDEX_KEY),
        restart_attempt: i32_label(job, RESTART_ATTEMPT_KEY),
        job_restart_attempt: i32_label(job, JOB_RESTART_ATTEMPT_KEY),
        active: status.and_then(|s| s.active).unwrap_or(0),
        ready: status.and_then(|s| s.ready).unwrap_or(0),
        succeeded: status.and_then(|s| s.succeeded).unwrap_or(0),
        failed: status.and_then(|s| s.failed).unwrap_or(0),
        suspended: job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
        finished,
    }
}

fn rjob_status(s: &ReplicatedJobStatus) -> p::ReplicatedJobStatus {
    p::ReplicatedJobStatus {
        name: s.name.clone(),
        ready: s.ready,
        succeeded: s.succeeded,
        failed: s.failed,
        active: s.active,
        suspended: s.suspended,
        job_restarts: s.job_restarts.clone(),
        job_restarts_count_towards_max: s.job_restarts_count_towards_max.clone(),
    }
}

/// The JobSet record, with `rjob_status` (this reconcile's fresh counters).
pub fn jobset_record(js: &JobSet, rjob_status_now: &[ReplicatedJobStatus]) -> p::Jobset {
    let spec = &js.spec;
    let status = js.status.clone().unwrap_or_default();
    p::Jobset {
        name: js.metadata.name.clone().unwrap_or_default(),
        namespace: js.metadata.namespace.clone().unwrap_or_default(),
        uid: js.metadata.uid.clone().unwrap_or_default(),
        labels: kv(js.metadata.labels.as_ref()),
        annotations: kv(js.metadata.annotations.as_ref()),
        suspended: spec.is_suspended(),
        replicated_jobs: spec
            .replicated_jobs
            .iter()
            .map(|r| {
                let job_spec = r.template.spec.as_ref();
                p::ReplicatedJob {
                    name: r.name.clone(),
                    group_name: r.group_name().to_string(),
                    replicas: r.replicas(),
                    parallelism: job_spec.and_then(|s| s.parallelism).unwrap_or(1),
                    completions: job_spec.and_then(|s| s.completions),
                    depends_on: r
                        .depends_on
                        .iter()
                        .map(|d| p::Dependency {
                            name: d.name.clone(),
                            status: match d.status {
                                DependsOnStatus::Ready => p::DependencyStatus::Ready,
                                DependsOnStatus::Complete => p::DependencyStatus::Complete,
                            },
                        })
                        .collect(),
                }
            })
            .collect(),
        success_policy: match &spec.success_policy {
            Some(sp) => p::SuccessPolicy {
                operator: match sp.operator {
                    Operator::All => p::SuccessOperator::All,
                    Operator::Any => p::SuccessOperator::Any,
                },
                target_replicated_jobs: sp.target_replicated_jobs.clone(),
            },
            None => p::SuccessPolicy {
                operator: p::SuccessOperator::All,
                target_replicated_jobs: vec![],
            },
        },
        failure_policy: spec.failure_policy.as_ref().map(|fp| p::FailurePolicy {
            max_restarts: fp.max_restarts(),
            restart_strategy: match fp.restart_strategy() {
                RestartStrategy::Recreate => p::RestartStrategy::Recreate,
                RestartStrategy::BlockingRecreate => p::RestartStrategy::BlockingRecreate,
                RestartStrategy::InPlaceRestart => p::RestartStrategy::InPlaceRestart,
            },
            rules: fp
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| p::FailurePolicyRule {
                    name: if r.name.is_empty() {
                        jobset_api::labels::default_rule_name(i)
                    } else {
                        r.name.clone()
                    },
                    action: match r.action {
                        FailurePolicyAction::FailJobSet => p::FailureAction::FailJobSet,
                        FailurePolicyAction::RestartJobSet => p::FailureAction::RestartJobSet,
                        FailurePolicyAction::RestartJobSetAndIgnoreMaxRestarts => {
                            p::FailureAction::RestartJobSetAndIgnoreMaxRestarts
                        }
                        FailurePolicyAction::RestartJob => p::FailureAction::RestartJob,
                        FailurePolicyAction::RestartJobAndIgnoreMaxRestarts => {
                            p::FailureAction::RestartJobAndIgnoreMaxRestarts
                        }
                    },
                    on_job_failure_reasons: r.on_job_failure_reasons.clone(),
                    on_job_failure_message_patterns: r.on_job_failure_message_patterns.clone(),
                    target_replicated_jobs: r.target_replicated_jobs.clone(),
                })
                .collect(),
        }),
        startup_order: match spec.startup_policy.as_ref().map(|s| s.startup_policy_order) {
            Some(StartupPolicyOrder::InOrder) => p::StartupOrder::InOrder,
            _ => p::StartupOrder::AnyOrder,
        },
        status: p::JobsetStatus {
            restarts: status.restarts,
            restarts_count_towards_max: status.restarts_count_towards_max,
            replicated_jobs: rjob_status_now.iter().map(rjob_status).collect(),
        },
    }
}

/// The snapshot handed to every plugin of one reconcile (its `config` is
/// filled in per plugin by the policy engine).
pub fn build(
    js: &JobSet,
    buckets: &Buckets<'_>,
    rjob_status_now: &[ReplicatedJobStatus],
    now: Timestamp,
    feature_gates: &[String],
) -> p::Snapshot {
    let mut jobs: Vec<p::Job> = buckets
        .active
        .iter()
        .chain(&buckets.successful)
        .chain(&buckets.failed)
        .map(|j| job_record(j))
        .collect();
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    p::Snapshot {
        jobset: jobset_record(js, rjob_status_now),
        jobs,
        now: millis(now),
        feature_gates: feature_gates.to_vec(),
        config: String::new(),
    }
}
