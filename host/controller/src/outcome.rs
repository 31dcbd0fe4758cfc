//! Carrying out an outcome verdict (spec 4.2, 4.3): the plugin chose the
//! action and its words; the host applies the mechanics: terminal
//! conditions and state, restart counters, per-index restart arrays, the
//! Restarting condition and the action events.

use crate::actions::{EventSpec, Terminal};
use crate::conditions::{DesiredCondition, EventType, types};
use crate::plan::Planner;
use crate::policy::{Decision, PolicyError, Slot, invalid_verdict, records as p};
use jobset_api::status::{TERMINAL_STATE_COMPLETED, TERMINAL_STATE_FAILED};

/// Appends which plugin decided to a condition or event message.
pub fn attributed(message: &str, plugin: &str) -> String {
    format!("{message} (policy {plugin})")
}

/// Applies the verdict; returns true when the reconcile must stop here
/// (the JobSet finished or restarts).
pub(crate) fn apply_outcome(
    planner: &mut Planner<'_>,
    snap: &p::Snapshot,
    decided: &Decision<p::OutcomeVerdict>,
) -> bool {
    let plugin = decided.plugin.as_str();
    let rule = decided.verdict.rule.as_deref().unwrap_or("-");
    match &decided.verdict.action {
        p::Action::Continue => false,
        p::Action::Complete(t) => {
            planner
                .plan
                .decisions
                .push(format!("outcome by {plugin}: complete ({})", t.reason));
            planner.condition(DesiredCondition::true_(
                types::COMPLETED,
                t.reason.clone(),
                attributed(&t.message, plugin),
                EventType::Normal,
            ));
            planner.condition(DesiredCondition::false_(
                types::RESTARTING,
                "JobSetCompleted",
                "jobset completed successfully",
            ));
            planner.finish(TERMINAL_STATE_COMPLETED, Terminal::Completed);
            true
        }
        p::Action::Fail(t) => {
            planner.plan.decisions.push(format!(
                "outcome by {plugin}: fail ({}, rule {rule})",
                t.reason
            ));
            planner.condition(DesiredCondition::true_(
                types::FAILED,
                t.reason.clone(),
                attributed(&t.message, plugin),
                EventType::Warning,
            ));
            planner.condition(DesiredCondition::false_(
                types::RESTARTING,
                "JobSetFailed",
                "jobset failed",
            ));
            planner.finish(TERMINAL_STATE_FAILED, Terminal::Failed);
            true
        }
        p::Action::RestartJobset(r) => {
            if !snap.jobs.iter().any(|j| j.name == r.first_failed_job) {
                planner.policy_failed(&invalid(
                    plugin,
                    &format!(
                        "restart-jobset names Job {:?}, which is not a Job of this attempt",
                        r.first_failed_job
                    ),
                ));
                return true;
            }
            planner.plan.decisions.push(format!(
                "outcome by {plugin}: restart jobset ({}, rule {rule}, first failed job {})",
                r.condition_reason, r.first_failed_job
            ));
            planner.status.restarts += 1;
            if r.count_towards_max {
                planner.status.restarts_count_towards_max += 1;
            }
            let message = attributed(&r.message, plugin);
            planner
                .plan
                .events
                .push(EventSpec::warning(r.event_reason.clone(), message.clone()));
            planner.condition(DesiredCondition::true_(
                types::RESTARTING,
                r.condition_reason.clone(),
                message,
                EventType::Warning,
            ));
            true
        }
        p::Action::RestartJob(r) => {
            let Some(job) = snap.jobs.iter().find(|j| j.name == r.job) else {
                planner.policy_failed(&invalid(
                    plugin,
                    &format!(
                        "restart-job names Job {:?}, which is not a Job of this attempt",
                        r.job
                    ),
                ));
                return true;
            };
            let replicas = snap
                .jobset
                .replicated_jobs
                .iter()
                .find(|rj| rj.name == job.replicated_job)
                .map(|rj| rj.replicas)
                .unwrap_or(0);
            let Ok(index) = usize::try_from(job.job_index) else {
                return true;
            };
            if job.job_index >= replicas {
                planner.policy_failed(&invalid(
                    plugin,
                    &format!(
                        "restart-job names Job {:?} with index {} beyond {} replicas",
                        r.job, job.job_index, replicas
                    ),
                ));
                return true;
            }
            planner.plan.decisions.push(format!(
                "outcome by {plugin}: restart job {} (rule {rule})",
                r.job
            ));
            let len = usize::try_from(replicas).unwrap_or(0);
            let entry = match planner
                .status
                .replicated_jobs_status
                .iter_mut()
                .find(|s| s.name == job.replicated_job)
            {
                Some(e) => e,
                None => {
                    planner
                        .status
                        .replicated_jobs_status
                        .push(jobset_api::ReplicatedJobStatus {
                            name: job.replicated_job.clone(),
                            ..Default::default()
                        });
                    let last = planner.status.replicated_jobs_status.len() - 1;
                    &mut planner.status.replicated_jobs_status[last]
                }
            };
            for arr in [
                &mut entry.job_restarts,
                &mut entry.job_restarts_count_towards_max,
            ] {
                if arr.len() < len {
                    arr.resize(len, 0);
                }
            }
            entry.job_restarts[index] += 1;
            if r.count_towards_max {
                entry.job_restarts_count_towards_max[index] += 1;
            }
            planner.plan.events.push(EventSpec::warning(
                r.event_reason.clone(),
                attributed(&r.message, plugin),
            ));
            true
        }
    }
}

fn invalid(plugin: &str, message: &str) -> PolicyError {
    invalid_verdict(Slot::Outcome, plugin, message.to_string())
}
