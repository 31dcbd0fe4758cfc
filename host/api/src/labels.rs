//! Label, annotation and taint keys of spec 3.1 and 3.2, and the constants
//! of Appendix A. Exact strings: other controllers (Kueue, Trainer) and the
//! pod webhooks match on them.

/// Label and annotation: the JobSet's `metadata.name`.
pub const JOBSET_NAME_KEY: &str = "jobset.sigs.k8s.io/jobset-name";
/// Label and annotation: the JobSet's UID.
pub const JOBSET_UID_KEY: &str = "jobset.sigs.k8s.io/jobset-uid";
/// Label and annotation: the replicated job name.
pub const REPLICATED_JOB_NAME_KEY: &str = "jobset.sigs.k8s.io/replicatedjob-name";
/// Label and annotation: the replicated job's `replicas`.
pub const REPLICATED_JOB_REPLICAS_KEY: &str = "jobset.sigs.k8s.io/replicatedjob-replicas";
/// Label and annotation: the sum of `replicas` over all replicated jobs.
pub const GLOBAL_REPLICAS_KEY: &str = "jobset.sigs.k8s.io/global-replicas";
/// Label and annotation: the Job's index within its replicated job.
pub const JOB_INDEX_KEY: &str = "jobset.sigs.k8s.io/job-index";
/// Label and annotation: the Job's index across all replicated jobs.
pub const JOB_GLOBAL_INDEX_KEY: &str = "jobset.sigs.k8s.io/job-global-index";
/// Label and annotation: SHA-1 hex of `<namespace>/<jobName>`.
pub const JOB_KEY: &str = "jobset.sigs.k8s.io/job-key";
/// Label and annotation: the replicated job's group name.
pub const GROUP_NAME_KEY: &str = "jobset.sigs.k8s.io/group-name";
/// Label and annotation: the sum of `replicas` over the group.
pub const GROUP_REPLICAS_KEY: &str = "jobset.sigs.k8s.io/group-replicas";
/// Label and annotation: the Job's index within its group.
pub const JOB_GROUP_INDEX_KEY: &str = "jobset.sigs.k8s.io/job-group-index";
/// Label and annotation: `status.restarts` when the Job was built.
pub const RESTART_ATTEMPT_KEY: &str = "jobset.sigs.k8s.io/restart-attempt";
/// Label and annotation (RestartJob gate): the Job index's individual restarts.
pub const JOB_RESTART_ATTEMPT_KEY: &str = "jobset.sigs.k8s.io/job-restart-attempt";
/// Label and annotation: the coordinator endpoint.
pub const COORDINATOR_KEY: &str = "jobset.sigs.k8s.io/coordinator";
/// Annotation: the topology key of exclusive placement.
pub const EXCLUSIVE_KEY: &str = "alpha.jobset.sigs.k8s.io/exclusive-topology";
/// Annotation: exclusive placement uses the node-selector strategy.
pub const NODE_SELECTOR_STRATEGY_KEY: &str = "alpha.jobset.sigs.k8s.io/node-selector";
/// Pod annotation set by the Job controller; `"0"` marks the leader pod.
pub const JOB_COMPLETION_INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Pod label set by the pod webhook: the pod's priority.
pub const PRIORITY_KEY: &str = "jobset.sigs.k8s.io/priority";
/// Node label / pod nodeSelector key of the node-selector strategy.
pub const NAMESPACED_JOB_KEY: &str = "alpha.jobset.sigs.k8s.io/namespaced-job";
/// Taint key tolerated by pods of the node-selector strategy.
pub const NO_SCHEDULE_TAINT_KEY: &str = "alpha.jobset.sigs.k8s.io/no-schedule";
/// Pod annotation written by the in-place-restart agent.
pub const IN_PLACE_RESTART_ATTEMPT_KEY: &str = "jobset.sigs.k8s.io/in-place-restart-attempt";
/// JobSet annotation: the in-place-restart agent bypasses its barrier.
pub const DISABLE_IN_PLACE_RESTART_KEY: &str = "jobset.sigs.k8s.io/disable-in-place-restart";

/// The `spec.managedBy` value of the built-in controller.
pub const JOBSET_CONTROLLER_NAME: &str = "jobset.sigs.k8s.io/jobset-controller";

/// Jobs created or deleted at once by the controller.
pub const MAX_PARALLELISM: usize = 50;
/// Largest `replicas` allowed when a rule uses a RestartJob action.
pub const MAX_REPLICAS_FOR_RESTART_JOB: i32 = 1024;
/// Longest allowed `spec.managedBy`.
pub const MAX_MANAGED_BY_LENGTH: usize = 63;
/// Longest allowed generated PVC name.
pub const MAX_VOLUME_CLAIM_NAME_LENGTH: usize = 63;
/// Shortest allowed failure-rule name.
pub const MIN_RULE_NAME_LENGTH: usize = 1;
/// Longest allowed failure-rule name.
pub const MAX_RULE_NAME_LENGTH: usize = 128;
/// Most `dependsOn` items per replicated job.
pub const MAX_DEPENDS_ON: usize = 5;
/// Most volume claim policies, and most templates per policy.
pub const MAX_VOLUME_CLAIM_POLICIES: usize = 50;
/// Most entries of `jobRestarts` and `jobRestartsCountTowardsMax`.
pub const MAX_JOB_RESTARTS_ITEMS: usize = 1024;
/// Regex failure-rule names must match.
pub const RULE_NAME_PATTERN: &str = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";

/// The Job failure reasons `onJobFailureReasons` may list.
pub const ALLOWED_JOB_FAILURE_REASONS: [&str; 5] = [
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "FailedIndexes",
    "MaxFailedIndexesExceeded",
    "PodFailurePolicy",
];

/// The name given to an unnamed failure rule at `index`.
pub fn default_rule_name(index: usize) -> String {
    format!("failurePolicyRule{index}")
}

/// The Restarting condition reason for a matched failure rule.
pub fn restarting_reason(rule_name: &str) -> String {
    format!("FailurePolicy_{rule_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_names_follow_the_upstream_patterns() {
        assert_eq!(default_rule_name(3), "failurePolicyRule3");
        assert_eq!(restarting_reason("oom"), "FailurePolicy_oom");
    }

    #[test]
    fn every_key_sits_under_a_jobset_or_batch_domain() {
        for key in [
            JOBSET_NAME_KEY,
            JOB_KEY,
            COORDINATOR_KEY,
            EXCLUSIVE_KEY,
            NAMESPACED_JOB_KEY,
            JOB_COMPLETION_INDEX_KEY,
        ] {
            let (prefix, name) = key.split_once('/').unwrap();
            assert!(prefix.ends_with("jobset.sigs.k8s.io") || prefix == "batch.kubernetes.io");
            assert!(!name.is_empty());
        }
    }
}
