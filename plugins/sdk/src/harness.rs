//! Builders for snapshots in native unit tests: describe a JobSet and its
//! Jobs in a few lines, and the builder fills in the status counters the
//! way the host computes them. For tests only; the host builds real
//! snapshots from the cluster.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::pods::{ContainerExit, FailedPod, JobPods};
use crate::types::{
    Dependency, DependencyStatus, FailurePolicy, FailurePolicyRule, FinishedCondition,
    FinishedType, Job, Jobset, JobsetStatus, KeyValue, ReplicatedJob, RestartStrategy, Snapshot,
    StartupOrder, SuccessOperator, SuccessPolicy, Timestamp,
};
use crate::view::count_replicated_jobs;

/// Builds a [`Snapshot`] for a test.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
}

impl SnapshotBuilder {
    /// A JobSet called `name` in namespace `default`, no replicated jobs,
    /// success policy All, AnyOrder, no failure policy, `now` = 1_000_000.
    pub fn new(name: &str) -> Self {
        SnapshotBuilder {
            snapshot: Snapshot {
                jobset: Jobset {
                    name: name.to_string(),
                    namespace: "default".to_string(),
                    uid: format!("uid-{name}"),
                    labels: Vec::new(),
                    annotations: Vec::new(),
                    suspended: false,
                    replicated_jobs: Vec::new(),
                    success_policy: SuccessPolicy {
                        operator: SuccessOperator::All,
                        target_replicated_jobs: Vec::new(),
                    },
                    failure_policy: None,
                    startup_order: StartupOrder::AnyOrder,
                    status: JobsetStatus {
                        restarts: 0,
                        restarts_count_towards_max: 0,
                        replicated_jobs: Vec::new(),
                    },
                },
                jobs: Vec::new(),
                now: 1_000_000,
                feature_gates: Vec::new(),
                config: String::new(),
            },
        }
    }

    /// Adds a replicated job with `replicas` Jobs of one pod each.
    pub fn rjob(mut self, name: &str, replicas: i32) -> Self {
        self.snapshot.jobset.replicated_jobs.push(ReplicatedJob {
            name: name.to_string(),
            group_name: "default".to_string(),
            replicas,
            parallelism: 1,
            completions: Some(1),
            depends_on: Vec::new(),
        });
        self
    }

    /// Makes the last added replicated job depend on `on` reaching `status`.
    pub fn depends_on(mut self, on: &str, status: DependencyStatus) -> Self {
        if let Some(last) = self.snapshot.jobset.replicated_jobs.last_mut() {
            last.depends_on.push(Dependency {
                name: on.to_string(),
                status,
            });
        }
        self
    }

    /// Sets the success policy.
    pub fn success(mut self, operator: SuccessOperator, targets: &[&str]) -> Self {
        self.snapshot.jobset.success_policy = SuccessPolicy {
            operator,
            target_replicated_jobs: strings(targets),
        };
        self
    }

    /// Sets a failure policy with `max_restarts` and no rules.
    pub fn max_restarts(mut self, max_restarts: i32) -> Self {
        self.failure_policy_mut().max_restarts = max_restarts;
        self
    }

    /// Appends a failure-policy rule (creating the policy if needed).
    pub fn rule(mut self, rule: FailurePolicyRule) -> Self {
        self.failure_policy_mut().rules.push(rule);
        self
    }

    /// Sets the startup order.
    pub fn startup_order(mut self, order: StartupOrder) -> Self {
        self.snapshot.jobset.startup_order = order;
        self
    }

    /// Suspends the JobSet.
    pub fn suspended(mut self, suspended: bool) -> Self {
        self.snapshot.jobset.suspended = suspended;
        self
    }

    /// Sets the global restart counters.
    pub fn restarts(mut self, restarts: i32, count_towards_max: i32) -> Self {
        self.snapshot.jobset.status.restarts = restarts;
        self.snapshot.jobset.status.restarts_count_towards_max = count_towards_max;
        self
    }

    /// Sets the per-index restart counters of a replicated job.
    pub fn job_restarts(mut self, rjob: &str, all: &[i32], towards_max: &[i32]) -> Self {
        let entry = crate::types::ReplicatedJobStatus {
            name: rjob.to_string(),
            ready: 0,
            succeeded: 0,
            failed: 0,
            active: 0,
            suspended: 0,
            job_restarts: all.to_vec(),
            job_restarts_count_towards_max: towards_max.to_vec(),
        };
        let statuses = &mut self.snapshot.jobset.status.replicated_jobs;
        statuses.retain(|s| s.name != rjob);
        statuses.push(entry);
        self
    }

    /// Turns a feature gate on.
    pub fn gate(mut self, gate: &str) -> Self {
        self.snapshot.feature_gates.push(gate.to_string());
        self
    }

    /// Adds a JobSet annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.snapshot.jobset.annotations.push(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        });
        self
    }

    /// Sets the plugin configuration text.
    pub fn config(mut self, config: &str) -> Self {
        self.snapshot.config = config.to_string();
        self
    }

    /// Sets `now`.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.snapshot.now = now;
        self
    }

    /// Adds an unfinished Job `<js>-<rjob>-<index>` with no pods yet.
    pub fn created(self, rjob: &str, index: i32) -> Self {
        self.job(rjob, index, |_| {})
    }

    /// Adds an unfinished Job whose pods are all ready.
    pub fn ready(self, rjob: &str, index: i32) -> Self {
        self.job(rjob, index, |job| {
            job.active = 1;
            job.ready = 1;
        })
    }

    /// Adds a Job that completed at `time`.
    pub fn succeeded(self, rjob: &str, index: i32, time: Timestamp) -> Self {
        self.job(rjob, index, |job| {
            job.succeeded = 1;
            job.finished = Some(FinishedCondition {
                kind: FinishedType::Complete,
                reason: "Completed".to_string(),
                message: "Reached expected number of succeeded pods".to_string(),
                time,
            });
        })
    }

    /// Adds a Job that failed at `time` with this reason and message.
    pub fn failed(
        self,
        rjob: &str,
        index: i32,
        reason: &str,
        message: &str,
        time: Timestamp,
    ) -> Self {
        self.job(rjob, index, |job| {
            job.failed = 1;
            job.finished = Some(FinishedCondition {
                kind: FinishedType::Failed,
                reason: reason.to_string(),
                message: message.to_string(),
                time,
            });
        })
    }

    /// Adds a Job `<js>-<rjob>-<index>` and lets `edit` shape it.
    pub fn job(mut self, rjob: &str, index: i32, edit: impl FnOnce(&mut Job)) -> Self {
        let mut job = Job {
            name: format!("{}-{}-{}", self.snapshot.jobset.name, rjob, index),
            replicated_job: rjob.to_string(),
            job_index: index,
            restart_attempt: self.snapshot.jobset.status.restarts,
            job_restart_attempt: 0,
            active: 0,
            ready: 0,
            succeeded: 0,
            failed: 0,
            suspended: self.snapshot.jobset.suspended,
            finished: None,
        };
        edit(&mut job);
        self.snapshot.jobs.push(job);
        self
    }

    /// The snapshot, Jobs sorted by name and status counters computed.
    pub fn build(mut self) -> Snapshot {
        self.snapshot.jobs.sort_by(|a, b| a.name.cmp(&b.name));
        self.snapshot.jobset.status.replicated_jobs = count_replicated_jobs(
            &self.snapshot.jobset.replicated_jobs,
            &self.snapshot.jobs,
            &self.snapshot.jobset.status.replicated_jobs,
        );
        self.snapshot
    }

    fn failure_policy_mut(&mut self) -> &mut FailurePolicy {
        self.snapshot
            .jobset
            .failure_policy
            .get_or_insert_with(|| FailurePolicy {
                max_restarts: 0,
                restart_strategy: RestartStrategy::Recreate,
                rules: Vec::new(),
            })
    }
}

/// A failure-policy rule with this name and action, matching everything.
pub fn rule(name: &str, action: crate::types::FailureAction) -> FailurePolicyRule {
    FailurePolicyRule {
        name: name.to_string(),
        action,
        on_job_failure_reasons: Vec::new(),
        on_job_failure_message_patterns: Vec::new(),
        target_replicated_jobs: Vec::new(),
    }
}

/// Owned strings from string slices.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A small deterministic generator (xorshift64) for randomized tests that
/// must see the same cases on every run.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator started from `seed`, which must not be 0 (it would stay 0).
    pub fn new(seed: u64) -> Self {
        Xorshift(seed)
    }

    /// The next number, below `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A failed pod on `node` whose one container `main` exited with
/// `exit_code` at `finished`.
pub fn failed_pod(name: &str, node: &str, exit_code: i32, finished: Timestamp) -> FailedPod {
    FailedPod {
        name: name.to_string(),
        completion_index: Some(0),
        node: node.to_string(),
        phase: "Failed".to_string(),
        reason: String::new(),
        started: Some(finished - 60_000),
        finished: Some(finished),
        containers: alloc::vec![ContainerExit {
            name: "main".to_string(),
            init: false,
            exit_code,
            signal: None,
            reason: if exit_code == 137 {
                "OOMKilled"
            } else {
                "Error"
            }
            .to_string(),
            message: String::new(),
            restart_count: 0,
            started: Some(finished - 60_000),
            finished: Some(finished),
        }],
        disruption: None,
    }
}

/// The failed pods of `job`, as the host gives them (none left out).
pub fn job_pods(job: &str, pods: Vec<FailedPod>) -> JobPods {
    JobPods {
        job: job.to_string(),
        pods,
        omitted: 0,
    }
}
