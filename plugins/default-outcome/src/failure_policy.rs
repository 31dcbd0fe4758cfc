//! Upstream's failure policy: the first rule (in order) with an applicable
//! failed Job wins, and within a rule the earliest failure; no failure
//! policy fails the JobSet at once; no matching rule restarts the JobSet.
//! Reasons and messages are upstream's, word for word.

use alloc::format;
use alloc::string::{String, ToString};

use jobset_policy_sdk::types::{
    Action, FailureAction, FailurePolicy, FailurePolicyRule, FinishedCondition, Job, JobRestart,
    JobsetRestart, OutcomeVerdict, PolicyError, Snapshot, Terminal,
};
use jobset_policy_sdk::view::SnapshotView;
use jobset_policy_sdk::{gates, regex};

/// `Failed` reason without a failure policy.
pub const REASON_FAILED_JOBS: &str = "FailedJobs";
/// `Failed` reason of the FailJobSet action.
pub const REASON_FAIL_JOBSET_ACTION: &str = "FailJobSetFailurePolicyAction";
/// `Failed` reason when the restart budget is spent.
pub const REASON_REACHED_MAX_RESTARTS: &str = "ReachedMaxRestarts";
/// `RestartingJobSet` reason when no rule matched.
pub const REASON_DEFAULT_FAILURE_POLICY: &str = "DefaultFailurePolicy";

/// Decides on the failed Jobs (oldest failure first, never empty).
pub fn decide(
    snapshot: &Snapshot,
    failed: &[(&Job, &FinishedCondition)],
) -> Result<OutcomeVerdict, PolicyError> {
    let Some((first, _)) = failed.first() else {
        return Err(PolicyError::Internal(
            "failure policy called without failed Jobs".to_string(),
        ));
    };
    let Some(policy) = &snapshot.jobset.failure_policy else {
        return Ok(OutcomeVerdict {
            action: fail(
                REASON_FAILED_JOBS,
                format!(
                    "jobset failed due to one or more job failures (first failed job: {})",
                    first.name
                ),
            ),
            rule: None,
        });
    };
    match find_rule_and_job(&policy.rules, failed) {
        Some((rule, job)) => apply(snapshot, policy, Some(rule), rule.action, job),
        None => apply(snapshot, policy, None, FailureAction::RestartJobSet, first),
    }
}

/// The first rule with an applicable failed Job, and the earliest such Job.
pub fn find_rule_and_job<'a>(
    rules: &'a [FailurePolicyRule],
    failed: &[(&'a Job, &FinishedCondition)],
) -> Option<(&'a FailurePolicyRule, &'a Job)> {
    rules.iter().find_map(|rule| {
        failed
            .iter()
            .find(|(job, cond)| rule_applies(rule, job, cond))
            .map(|(job, _)| (rule, *job))
    })
}

/// Whether a rule matches one failed Job: reason listed (or no reasons),
/// some pattern found in the message (or no patterns), rjob targeted (or
/// no targets). A pattern that does not compile never matches (as upstream,
/// which logs and skips it; the host logs it here).
pub fn rule_applies(rule: &FailurePolicyRule, job: &Job, cond: &FinishedCondition) -> bool {
    let reason_ok = rule.on_job_failure_reasons.is_empty()
        || rule.on_job_failure_reasons.contains(&cond.reason);
    let target_ok = rule.target_replicated_jobs.is_empty()
        || rule.target_replicated_jobs.contains(&job.replicated_job);
    let pattern_ok = rule.on_job_failure_message_patterns.is_empty()
        || rule
            .on_job_failure_message_patterns
            .iter()
            .any(|p| regex::is_match(p, &cond.message).unwrap_or(false));
    reason_ok && target_ok && pattern_ok
}

/// Restarts so far that count toward `maxRestarts`: the global counter,
/// plus every per-Job counter when the RestartJob gate is on.
pub fn restarts_toward_max(snapshot: &Snapshot) -> i64 {
    let status = &snapshot.jobset.status;
    let mut total = i64::from(status.restarts_count_towards_max);
    if snapshot.gate_enabled(gates::RESTART_JOB) {
        total += status
            .replicated_jobs
            .iter()
            .flat_map(|r| r.job_restarts_count_towards_max.iter())
            .map(|n| i64::from(*n))
            .sum::<i64>();
    }
    total
}

fn apply(
    snapshot: &Snapshot,
    policy: &FailurePolicy,
    rule: Option<&FailurePolicyRule>,
    action: FailureAction,
    job: &Job,
) -> Result<OutcomeVerdict, PolicyError> {
    let name = action_name(action);
    let message = format!(
        "applying {name} failure policy action (first failed job: {})",
        job.name
    );
    let event_reason = format!("{name}FailurePolicyAction");
    let counts = matches!(
        action,
        FailureAction::RestartJobSet | FailureAction::RestartJob
    );
    let is_job_action = matches!(
        action,
        FailureAction::RestartJob | FailureAction::RestartJobAndIgnoreMaxRestarts
    );
    // With the RestartJob gate off, a Job action is still the verdict (as
    // upstream, before any budget check); the host refuses to carry it out.
    let gated_off = is_job_action && !snapshot.gate_enabled(gates::RESTART_JOB);
    let over_budget =
        counts && !gated_off && restarts_toward_max(snapshot) >= i64::from(policy.max_restarts);
    let action = if over_budget {
        fail(
            REASON_REACHED_MAX_RESTARTS,
            format!(
                "jobset failed due to reaching max number of restarts (first failed job: {})",
                job.name
            ),
        )
    } else {
        match action {
            FailureAction::FailJobSet => fail(REASON_FAIL_JOBSET_ACTION, message),
            FailureAction::RestartJobSet | FailureAction::RestartJobSetAndIgnoreMaxRestarts => {
                Action::RestartJobset(JobsetRestart {
                    count_towards_max: counts,
                    condition_reason: rule.map_or_else(
                        || REASON_DEFAULT_FAILURE_POLICY.to_string(),
                        |r| format!("FailurePolicy_{}", r.name),
                    ),
                    message,
                    event_reason,
                    first_failed_job: job.name.clone(),
                })
            }
            FailureAction::RestartJob | FailureAction::RestartJobAndIgnoreMaxRestarts => {
                Action::RestartJob(JobRestart {
                    job: job.name.clone(),
                    count_towards_max: counts,
                    event_reason,
                    message,
                })
            }
        }
    };
    Ok(OutcomeVerdict {
        action,
        rule: rule.map(|r| r.name.clone()),
    })
}

/// The action's API spelling, as used in reasons and messages.
pub fn action_name(action: FailureAction) -> &'static str {
    match action {
        FailureAction::FailJobSet => "FailJobSet",
        FailureAction::RestartJobSet => "RestartJobSet",
        FailureAction::RestartJobSetAndIgnoreMaxRestarts => "RestartJobSetAndIgnoreMaxRestarts",
        FailureAction::RestartJob => "RestartJob",
        FailureAction::RestartJobAndIgnoreMaxRestarts => "RestartJobAndIgnoreMaxRestarts",
    }
}

fn fail(reason: &str, message: String) -> Action {
    Action::Fail(Terminal {
        reason: reason.to_string(),
        message,
    })
}
