//! Carrying out an outcome verdict (spec 4.2, 4.3): the plugin chose the
//! action and its words; the host applies the mechanics: terminal
//! conditions and state, restart counters, per-index restart arrays, the
//! Restarting condition and the action events.

use crate::actions::EventSpec;
use crate::conditions::{DesiredCondition, EventType, types};
use crate::plan::{POLICY_RETRY, Planner};
use crate::policy::{Decision, PolicyError, Slot, invalid_verdict, records as p};
use jobset_api::RESTART_JOB_GATE;

/// A condition or event message as written: a custom plugin's words name
/// the plugin that decided (`name@sha`); the default plugins' words are
/// upstream's to the byte, since tools (Kueue, Kubeflow Trainer,
/// dashboards) compare them. Which plugin decided stays in the controller's
/// log, its metrics and `jobset run`'s output either way.
pub fn attributed(message: &str, plugin: &str) -> String {
    if is_default_plugin(plugin) {
        message.to_string()
    } else {
        format!("{message} (policy {plugin})")
    }
}

/// Whether `plugin` (`name@version`) is one of the default plugins: a
/// default's name with the built-in bytes (the version is their sha256
/// prefix, also when a ConfigMap ships them) or the same code linked
/// natively (`@native`). Other code under a default's name signs its
/// messages like any other plugin.
pub fn is_default_plugin(plugin: &str) -> bool {
    let (name, version) = plugin.split_once('@').unwrap_or((plugin, ""));
    jobset_policy::Slot::ALL.iter().any(|slot| {
        jobset_policy::builtin::default_name(*slot) == name
            && (version == "native"
                || (!version.is_empty()
                    && jobset_policy::sha256_hex(jobset_policy::builtin::default_bytes(*slot))
                        .starts_with(version)))
    })
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
            planner.complete(t.reason.clone(), attributed(&t.message, plugin));
            true
        }
        p::Action::Fail(t) => {
            planner.plan.decisions.push(format!(
                "outcome by {plugin}: fail ({}, rule {rule})",
                t.reason
            ));
            say_words(planner, plugin, &t.message);
            planner.fail(t.reason.clone(), attributed(&t.message, plugin));
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
            say_words(planner, plugin, &r.message);
            planner.status.restarts += 1;
            if r.count_towards_max {
                planner.status.restarts_count_towards_max += 1;
            }
            let message = attributed(&r.message, plugin);
            // Upstream's order: the condition's event, then the action's.
            planner.condition(DesiredCondition::true_(
                types::RESTARTING,
                r.condition_reason.clone(),
                message.clone(),
                EventType::Warning,
            ));
            planner
                .plan
                .events
                .push(EventSpec::warning(r.event_reason.clone(), message));
            true
        }
        p::Action::RestartJob(r) => {
            if !planner.inputs.gate_on(RESTART_JOB_GATE) {
                refuse_gated_restart_job(planner, plugin, r);
                return true;
            }
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

/// A custom plugin's words, as a decision line of their own (the log and
/// `jobset run` show them): they may say what the reason cannot, such as
/// which node to cordon. The default plugins' words are upstream's and go
/// unrepeated.
pub(crate) fn say_words(planner: &mut Planner<'_>, plugin: &str, message: &str) {
    if !is_default_plugin(plugin) {
        planner
            .plan
            .decisions
            .push(format!("outcome by {plugin} says: {message}"));
    }
}

/// A Job restart while the RestartJob gate is off: as upstream, nothing
/// changes (no condition, no event, no counter), the error is logged and
/// the JobSet is looked at again later, when the gate may be on.
fn refuse_gated_restart_job(planner: &mut Planner<'_>, plugin: &str, r: &p::JobRestart) {
    let action = if r.count_towards_max {
        "RestartJob"
    } else {
        "RestartJobAndIgnoreMaxRestarts"
    };
    let why = format!(
        "{action} failure policy action cannot be used when the feature gate {RESTART_JOB_GATE} is disabled"
    );
    tracing::error!(plugin, job = %r.job, "{why}");
    planner.plan.decisions.push(format!(
        "outcome by {plugin}: restart job {} refused: {why}",
        r.job
    ));
    planner.requeue(POLICY_RETRY);
}

fn invalid(plugin: &str, message: &str) -> PolicyError {
    invalid_verdict(Slot::Outcome, plugin, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plugins_write_upstreams_words_and_others_sign_theirs() {
        let m = "jobset completed successfully";
        let builtin = format!(
            "default-outcome@{}",
            &jobset_policy::sha256_hex(jobset_policy::builtin::DEFAULT_OUTCOME)[..12]
        );
        assert_eq!(attributed(m, &builtin), m);
        assert_eq!(attributed(m, "default-outcome@native"), m);
        // Other code under the default's name (a ConfigMap named so).
        assert_eq!(
            attributed(m, "default-outcome@c16c21682681"),
            "jobset completed successfully (policy default-outcome@c16c21682681)"
        );
        assert_eq!(
            attributed(m, "preemption-aware@2083d44ffec0"),
            "jobset completed successfully (policy preemption-aware@2083d44ffec0)"
        );
        assert_eq!(
            attributed(m, "default-outcomes@1"),
            "jobset completed successfully (policy default-outcomes@1)"
        );
    }
}
