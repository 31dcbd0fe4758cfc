//! In-place restart (gate InPlaceRestart), the controller's side of
//! upstream's protocol with the in-place restart agent in every pod: each
//! agent writes its pod's attempt into the annotation
//! `jobset.sigs.k8s.io/in-place-restart-attempt`; when every pod of the
//! JobSet reports the same attempt, `status.currentInPlaceRestartAttempt`
//! takes it and the agents lift their barrier; when they differ, the
//! highest less one becomes `status.previousInPlaceRestartAttempt`, and the
//! agents at or below it restart their pod in place. A JobSet whose pods
//! went past `maxRestarts` fails with upstream's reason and message. Pure:
//! the pods come as [`PodFacts`] from the pod watch of in-place JobSets.

use jobset_api::labels::IN_PLACE_RESTART_ATTEMPT_KEY;
use jobset_api::{IN_PLACE_RESTART_GATE, JobSet, RestartStrategy};
use k8s_openapi::api::core::v1::Pod;

use crate::error::ControllerError;
use crate::plan::Planner;

/// Upstream's reason and message for a JobSet past its restart budget.
pub const REACHED_MAX_RESTARTS_REASON: &str = "ReachedMaxRestarts";
pub const REACHED_MAX_RESTARTS_MESSAGE: &str =
    "jobset failed due to reaching max number of restarts";

/// What the controller keeps of one pod of an in-place JobSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    /// Phase Failed: a pod whose replacement may already exist.
    pub failed: bool,
    /// The agent's annotation, as written (absent until the agent starts).
    pub attempt: Option<String>,
    /// The highest restart count of its containers and init containers.
    pub max_restart_count: i32,
}

impl PodFacts {
    /// The facts of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let max_restart_count = status
            .into_iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0);
        PodFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            failed: status.and_then(|s| s.phase.as_deref()) == Some("Failed"),
            attempt: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(IN_PLACE_RESTART_ATTEMPT_KEY))
                .cloned(),
            max_restart_count,
        }
    }
}

/// Whether `js` restarts in place with the gate on: then its pods are
/// watched and [`plan_in_place`] acts.
pub fn uses_in_place_restart(js: &JobSet, gates: &[String]) -> bool {
    gates.iter().any(|g| g == IN_PLACE_RESTART_GATE)
        && js
            .spec
            .failure_policy
            .as_ref()
            .is_some_and(|fp| fp.restart_strategy() == RestartStrategy::InPlaceRestart)
}

/// Whether the controller watches the pods of `js`: it restarts in place,
/// is managed here, and neither finished nor is being deleted.
pub fn wants_pod_watch(js: &JobSet, gates: &[String]) -> bool {
    uses_in_place_restart(js, gates) && crate::plan::acts_on(js) && !crate::plan::is_finished(js)
}

/// The attempts the agents of the pods that have not failed report.
fn reported_attempts(pods: &[PodFacts]) -> Result<Vec<i32>, ControllerError> {
    pods.iter()
        .filter(|p| !p.failed)
        .filter_map(|p| p.attempt.as_ref().map(|raw| (p, raw)))
        .map(|(p, raw)| {
            raw.parse::<i32>().ok().filter(|a| *a >= 0).ok_or_else(|| {
                ControllerError::BadPodAnnotation {
                    pod: p.name.clone(),
                    annotation: IN_PLACE_RESTART_ATTEMPT_KEY.to_string(),
                    detail: format!("{raw:?}; it must be a non-negative integer"),
                }
            })
        })
        .collect()
}

/// How many pods the JobSet runs: replicas times parallelism, which
/// in-place restart needs equal to completions (admission sees to it).
fn pods_expected(js: &JobSet) -> Result<i64, ControllerError> {
    js.spec.replicated_jobs.iter().try_fold(0i64, |sum, rjob| {
        let spec = rjob.template.spec.as_ref();
        match (
            spec.and_then(|s| s.parallelism),
            spec.and_then(|s| s.completions),
        ) {
            (Some(p), Some(c)) if p == c => Ok(sum + i64::from(rjob.replicas()) * i64::from(p)),
            _ => Err(ControllerError::InPlaceSizes {
                jobset: js.metadata.name.clone().unwrap_or_default(),
                replicated_job: rjob.name.clone(),
            }),
        }
    })
}

/// Moves the in-place restart of `planner`'s JobSet on from what its pods
/// report (`None`: the pod watch has not listed them yet, so nothing is
/// decided). Fails the JobSet past `maxRestarts`.
pub(crate) fn plan_in_place(
    planner: &mut Planner<'_>,
    pods: Option<&[PodFacts]>,
) -> Result<(), ControllerError> {
    let js = planner.inputs.jobset;
    let Some(pods) = pods else { return Ok(()) };
    let max_restarts = js
        .spec
        .failure_policy
        .as_ref()
        .map_or(0, |fp| fp.max_restarts());

    // A container that fails so fast that the barrier is never lifted.
    let most_restarted = pods.iter().map(|p| p.max_restart_count).max().unwrap_or(0);
    if most_restarted > max_restarts {
        fail(
            planner,
            &format!("a container restarted {most_restarted} times"),
        );
        return Ok(());
    }
    let attempts = reported_attempts(pods)?;
    let highest = attempts.iter().copied().max().unwrap_or(0);
    let uncounted = planner.status.restarts - planner.status.restarts_count_towards_max;
    if highest - uncounted > max_restarts {
        fail(
            planner,
            &format!("the pods reached in-place restart attempt {highest}"),
        );
        return Ok(());
    }
    let expected = pods_expected(js)?;
    let all_equal = attempts.windows(2).all(|w| w[0] == w[1]);
    if !attempts.is_empty() && attempts.len() as i64 == expected && all_equal {
        // Every agent is at one attempt: they lift their barriers.
        if planner.status.current_in_place_restart_attempt != Some(attempts[0]) {
            planner.status.current_in_place_restart_attempt = Some(attempts[0]);
            planner
                .plan
                .decisions
                .push(format!("in-place restart: attempt {} runs", attempts[0]));
        }
        return Ok(());
    }
    if attempts.is_empty() || highest == 0 {
        // Starting for the first time.
        return Ok(());
    }
    // Some pods moved on: those at or below the previous attempt restart
    // in place to join them. Never moved back while pods are replaced.
    let previous = highest - 1;
    if planner
        .status
        .previous_in_place_restart_attempt
        .is_none_or(|p| p < previous)
    {
        planner.status.previous_in_place_restart_attempt = Some(previous);
        planner.plan.decisions.push(format!(
            "in-place restart: pods at attempt {previous} or below restart in place"
        ));
    }
    Ok(())
}

fn fail(planner: &mut Planner<'_>, why: &str) {
    planner.plan.decisions.push(format!(
        "in-place restart: fail ({REACHED_MAX_RESTARTS_REASON}: {why})"
    ));
    planner.fail(REACHED_MAX_RESTARTS_REASON, REACHED_MAX_RESTARTS_MESSAGE);
}
