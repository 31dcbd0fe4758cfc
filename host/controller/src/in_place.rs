//! In-place restart (gate InPlaceRestart), the controller's side of
//! upstream's protocol with the in-place restart agent in every pod: each
//! agent writes its pod's attempt into the annotation
//! `jobset.sigs.k8s.io/in-place-restart-attempt`; when every pod of the
//! JobSet reports the same attempt, `status.currentInPlaceRestartAttempt`
//! takes it and the agents lift their barrier; when they differ, the
//! highest less one becomes `status.previousInPlaceRestartAttempt`, and the
//! agents at or below it restart their pod in place.
//!
//! Whether a restart goes on in place, the JobSet is recreated instead, or
//! it fails is the outcome plugin's decision (`decide-in-place`, contract
//! 0.3.0): the default decides as upstream, failing a JobSet whose pods
//! went past `maxRestarts` with upstream's reason and message. Pure: the
//! pods come as [`PodFacts`] from the pod watch of in-place JobSets.

use std::sync::Arc;

use jobset_api::labels::{IN_PLACE_RESTART_ATTEMPT_KEY, RESTART_ATTEMPT_KEY};
use jobset_api::{IN_PLACE_RESTART_GATE, JobSet, RestartStrategy};
use k8s_openapi::api::core::v1::Pod;

use crate::error::ControllerError;
use crate::plan::Planner;
use crate::policy::{PolicyEngine, Slot, invalid_verdict, records as p};

/// Pods of an in-place restart given to the plugin at most.
pub const IN_PLACE_PODS_BOUND: usize = 16;

/// What the controller keeps of one pod of an in-place JobSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    pub name: String,
    /// Phase Failed: a pod whose replacement may already exist.
    pub failed: bool,
    /// The agent's annotation, as written (absent until the agent starts).
    pub attempt: Option<String>,
    /// The highest restart count of its containers and init containers.
    pub max_restart_count: i32,
    /// Its `jobset.sigs.k8s.io/restart-attempt` label: the JobSet attempt
    /// whose Job made it.
    pub jobset_attempt: Option<i32>,
    /// How it ended or restarted (containers' last termination, node,
    /// DisruptionTarget), for the outcome plugin: kept only for a pod that
    /// failed, restarted a container or is a disruption target.
    pub detail: Option<Arc<p::FailedPod>>,
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
        let failed = status.and_then(|s| s.phase.as_deref()) == Some("Failed");
        let disrupted = status.is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        });
        PodFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            failed,
            attempt: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(IN_PLACE_RESTART_ATTEMPT_KEY))
                .cloned(),
            max_restart_count,
            jobset_attempt: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RESTART_ATTEMPT_KEY))
                .and_then(|v| v.parse().ok()),
            detail: (failed || disrupted || max_restart_count > 0)
                .then(|| Arc::new(crate::failed_pods::failed_pod(pod))),
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

/// What the outcome plugin is told of the in-place state of `planner`'s
/// JobSet: the attempts reported, and the pods of the current JobSet
/// attempt that began a restart (reporting above the current attempt) or
/// failed, by name, bounded.
fn in_place_state(
    planner: &Planner<'_>,
    pods: &[PodFacts],
    attempts: &[i32],
    expected: i64,
) -> p::InPlaceRestart {
    let current = planner.status.current_in_place_restart_attempt;
    let above = current.unwrap_or(0);
    let this_attempt = planner.status.restarts;
    let mut chosen: Vec<&PodFacts> = pods
        .iter()
        .filter(|p| p.jobset_attempt.is_none_or(|a| a == this_attempt))
        .filter(|p| {
            p.failed
                || p.attempt
                    .as_deref()
                    .and_then(|a| a.parse::<i32>().ok())
                    .is_some_and(|a| a > above)
        })
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    let omitted = chosen.len().saturating_sub(IN_PLACE_PODS_BOUND);
    chosen.truncate(IN_PLACE_PODS_BOUND);
    p::InPlaceRestart {
        current,
        previous: planner.status.previous_in_place_restart_attempt,
        highest: attempts.iter().copied().max(),
        expected: u32::try_from(expected).unwrap_or(u32::MAX),
        reporting: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
        agreed: !attempts.is_empty() && attempts.windows(2).all(|w| w[0] == w[1]),
        max_container_restarts: pods.iter().map(|p| p.max_restart_count).max().unwrap_or(0),
        pods: chosen
            .into_iter()
            .map(|p| {
                p.detail
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| p::FailedPod {
                        name: p.name.clone(),
                        completion_index: None,
                        node: String::new(),
                        phase: if p.failed { "Failed" } else { "Running" }.to_string(),
                        reason: String::new(),
                        started: None,
                        finished: None,
                        containers: Vec::new(),
                        disruption: None,
                    })
            })
            .collect(),
        omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
    }
}

/// Moves the in-place restart of `planner`'s JobSet on from what its pods
/// report (`None`: the pod watch has not listed them yet, so nothing is
/// decided). The outcome plugin decides first: go on in place, recreate
/// the JobSet, or fail it; a plugin that fails holds the JobSet
/// (`PolicyFailed`) and never fails it.
pub(crate) fn plan_in_place(
    planner: &mut Planner<'_>,
    pods: Option<&[PodFacts]>,
    snap: &p::Snapshot,
    policies: &dyn PolicyEngine,
) -> Result<(), ControllerError> {
    let js = planner.inputs.jobset;
    let Some(pods) = pods else { return Ok(()) };
    // An annotation that does not parse, or sizes that do not allow
    // in-place restart, are errors, as upstream's; but upstream fails a
    // JobSet past the budget before it meets either, so the plugin is
    // asked first.
    let (attempts, unreadable) = match reported_attempts(pods) {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let expected = pods_expected(js);
    let state = in_place_state(
        planner,
        pods,
        &attempts,
        expected.as_ref().map_or(0, |e| *e),
    );
    let decided = match policies.decide_in_place(snap, &state) {
        Ok(d) => d,
        Err(f) => {
            planner.policy_failed(&f);
            return Ok(());
        }
    };
    let plugin = decided.plugin.clone();
    let expected = if matches!(decided.verdict.action, p::Action::Fail(_)) {
        expected.unwrap_or(0)
    } else {
        if let Some(e) = unreadable {
            return Err(e);
        }
        expected?
    };
    match &decided.verdict.action {
        p::Action::Continue => {}
        p::Action::Fail(t) => {
            planner.plan.decisions.push(format!(
                "in-place restart by {plugin}: fail ({}: {})",
                t.reason,
                why_past_budget(&state)
            ));
            crate::outcome::say_words(planner, &plugin, &t.message);
            planner.fail(
                t.reason.clone(),
                crate::outcome::attributed(&t.message, &plugin),
            );
            return Ok(());
        }
        p::Action::RestartJobset(_) => {
            planner.plan.decisions.push(format!(
                "in-place restart by {plugin}: recreate the JobSet instead"
            ));
            crate::outcome::apply_outcome(planner, snap, &decided);
            return Ok(());
        }
        p::Action::Complete(_) | p::Action::RestartJob(_) => {
            planner.policy_failed(&invalid_verdict(
                Slot::Outcome,
                &plugin,
                "decide-in-place answered neither continue, restart-jobset nor fail".to_string(),
            ));
            return Ok(());
        }
    }

    if state.agreed && i64::from(state.reporting) == expected {
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
    let highest = state.highest.unwrap_or(0);
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
            "in-place restart by {plugin}: pods at attempt {previous} or below restart in place"
        ));
    }
    Ok(())
}

/// What the in-place state says of the budget, for the decision line.
fn why_past_budget(state: &p::InPlaceRestart) -> String {
    format!(
        "pods at attempt {}, a container restarted {} times",
        state.highest.map_or("none".to_string(), |h| h.to_string()),
        state.max_container_restarts
    )
}
