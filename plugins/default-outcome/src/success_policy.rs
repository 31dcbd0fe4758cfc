//! Upstream's success policy: `All` needs every Job of the target
//! replicated jobs to succeed, `Any` needs one; only evaluated once some
//! current-attempt Job has succeeded.

use alloc::string::ToString;

use jobset_policy_sdk::types::{Action, OutcomeVerdict, Snapshot, SuccessOperator, Terminal};
use jobset_policy_sdk::view::SnapshotView;

/// Condition reason of `Completed=True`.
pub const REASON_ALL_JOBS_COMPLETED: &str = "AllJobsCompleted";
/// Condition message of `Completed=True`.
pub const MESSAGE_COMPLETED: &str = "jobset completed successfully";

/// `Some(complete)` when the success policy is met, `None` otherwise.
pub fn decide(snapshot: &Snapshot) -> Option<OutcomeVerdict> {
    let succeeded = snapshot.succeeded_jobs();
    if succeeded.is_empty() {
        return None;
    }
    let policy = &snapshot.jobset.success_policy;
    let selected = |rjob: &str| {
        policy.target_replicated_jobs.is_empty()
            || policy.target_replicated_jobs.iter().any(|t| t == rjob)
    };
    let expected: i64 = match policy.operator {
        SuccessOperator::Any => 1,
        SuccessOperator::All => snapshot
            .jobset
            .replicated_jobs
            .iter()
            .filter(|r| selected(&r.name))
            .map(|r| i64::from(r.replicas))
            .sum(),
    };
    let matched = succeeded
        .iter()
        .filter(|job| selected(&job.replicated_job))
        .count() as i64;
    (matched >= expected).then(|| OutcomeVerdict {
        action: Action::Complete(Terminal {
            reason: REASON_ALL_JOBS_COMPLETED.to_string(),
            message: MESSAGE_COMPLETED.to_string(),
        }),
        rule: None,
    })
}
