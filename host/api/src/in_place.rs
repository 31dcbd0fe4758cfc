//! The in-place restart agent's side of upstream's protocol (gate
//! InPlaceRestart), as pure decisions: what an agent in a pod does when it
//! sees its JobSet. Shared by `jobset agent` (the agent in a real pod) and
//! the simulated cluster's kubelet (which plays the agent of simulated
//! pods), so both behave as upstream's agent does.
//!
//! An agent starts with no attempt of its own and its barrier up (the
//! worker does not run yet). Seeing the JobSet, it reports an attempt in
//! its pod's annotation: 0 on a JobSet that never ran, otherwise one past
//! the JobSet's current attempt. It restarts its pod in place (exits with
//! the restart exit code) once its attempt is at or below the JobSet's
//! previous attempt, and lifts its barrier once its attempt is the JobSet's
//! current one. A JobSet annotated `jobset.sigs.k8s.io/disable-in-place-
//! restart`, or not restarting in place, lets every agent run its worker
//! at once.

/// What an agent reads of its JobSet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobSetView {
    /// `status.currentInPlaceRestartAttempt`.
    pub current: Option<i32>,
    /// `status.previousInPlaceRestartAttempt`.
    pub previous: Option<i32>,
    /// The JobSet does not restart in place, or disables it by annotation.
    pub bypass: bool,
}

impl JobSetView {
    /// The view of a JobSet given as JSON (the simulator's objects).
    pub fn of_json(js: &serde_json::Value) -> Self {
        let int = |p: &str| {
            js.pointer(p)
                .and_then(serde_json::Value::as_i64)
                .and_then(|v| i32::try_from(v).ok())
        };
        let disabled = js
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::labels::DISABLE_IN_PLACE_RESTART_KEY))
            .is_some();
        let in_place = js
            .pointer("/spec/failurePolicy/restartStrategy")
            .and_then(serde_json::Value::as_str)
            == Some("InPlaceRestart");
        JobSetView {
            current: int("/status/currentInPlaceRestartAttempt"),
            previous: int("/status/previousInPlaceRestartAttempt"),
            bypass: disabled || !in_place,
        }
    }

    /// The view of a typed JobSet.
    pub fn of(js: &crate::JobSet) -> Self {
        let status = js.status.as_ref();
        let disabled = js
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(crate::labels::DISABLE_IN_PLACE_RESTART_KEY));
        let in_place = js
            .spec
            .failure_policy
            .as_ref()
            .is_some_and(|fp| fp.restart_strategy() == crate::RestartStrategy::InPlaceRestart);
        JobSetView {
            current: status.and_then(|s| s.current_in_place_restart_attempt),
            previous: status.and_then(|s| s.previous_in_place_restart_attempt),
            bypass: disabled || !in_place,
        }
    }
}

/// An agent's state between looks at its JobSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The attempt it reported, once it has.
    pub attempt: Option<i32>,
    /// Whether the worker still waits.
    pub barrier_up: bool,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            attempt: None,
            barrier_up: true,
        }
    }
}

/// What an agent does next, after reporting `report` (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Nothing until the JobSet changes.
    Wait,
    /// Start the worker (main container mode) or answer the startup probe
    /// (sidecar mode).
    LiftBarrier,
    /// Exit with the in-place restart exit code: the pod restarts in place.
    RestartInPlace,
}

/// One look at the JobSet: the attempt to write into the pod's annotation
/// first (its write must succeed before anything else is done), then the
/// step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The attempt to report, on the agent's first look.
    pub report: Option<i32>,
    /// What to do once reported.
    pub then: Then,
}

impl Agent {
    /// What the agent does on seeing `js`. The caller applies the step:
    /// on a successful report it sets `attempt`, on `LiftBarrier` it clears
    /// `barrier_up`.
    pub fn step(&self, js: JobSetView) -> Step {
        if js.bypass {
            let then = if self.barrier_up {
                Then::LiftBarrier
            } else {
                Then::Wait
            };
            return Step { report: None, then };
        }
        let report = match self.attempt {
            Some(_) => None,
            None => Some(js.current.map_or(0, |c| c.saturating_add(1))),
        };
        let attempt = self.attempt.or(report);
        let then = match (attempt, js.previous, js.current) {
            (Some(a), Some(p), _) if a <= p => Then::RestartInPlace,
            (Some(a), _, Some(c)) if self.barrier_up && a == c => Then::LiftBarrier,
            _ => Then::Wait,
        };
        Step { report, then }
    }

    /// The state after `step` was carried out.
    pub fn after(&self, step: Step) -> Agent {
        Agent {
            attempt: self.attempt.or(step.report),
            barrier_up: self.barrier_up && step.then != Then::LiftBarrier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(current: Option<i32>, previous: Option<i32>) -> JobSetView {
        JobSetView {
            current,
            previous,
            bypass: false,
        }
    }

    #[test]
    fn a_first_start_reports_zero_and_waits_for_the_others() {
        let agent = Agent::default();
        let step = agent.step(view(None, None));
        assert_eq!(
            step,
            Step {
                report: Some(0),
                then: Then::Wait
            }
        );
        let agent = agent.after(step);
        // Every pod reported 0: the controller sets current, the barrier lifts.
        let step = agent.step(view(Some(0), None));
        assert_eq!(
            step,
            Step {
                report: None,
                then: Then::LiftBarrier
            }
        );
        assert!(!agent.after(step).barrier_up);
    }

    #[test]
    fn a_restarted_agent_reports_one_past_the_current_attempt() {
        let step = Agent::default().step(view(Some(3), Some(2)));
        assert_eq!(
            step,
            Step {
                report: Some(4),
                then: Then::Wait
            }
        );
    }

    #[test]
    fn an_agent_at_or_below_the_previous_attempt_restarts_its_pod() {
        let running = Agent {
            attempt: Some(0),
            barrier_up: false,
        };
        assert_eq!(
            running.step(view(Some(0), Some(0))).then,
            Then::RestartInPlace
        );
        assert_eq!(running.step(view(Some(0), None)).then, Then::Wait);
    }

    #[test]
    fn a_jobset_that_does_not_restart_in_place_lets_the_worker_run_at_once() {
        let js = JobSetView {
            bypass: true,
            ..view(None, Some(9))
        };
        assert_eq!(
            Agent::default().step(js),
            Step {
                report: None,
                then: Then::LiftBarrier
            }
        );
        let lifted = Agent {
            attempt: None,
            barrier_up: false,
        };
        assert_eq!(lifted.step(js).then, Then::Wait);
    }

    #[test]
    fn the_view_reads_the_status_the_strategy_and_the_disable_annotation() {
        let js = serde_json::json!({
            "metadata": {"annotations": {"jobset.sigs.k8s.io/disable-in-place-restart": ""}},
            "spec": {"failurePolicy": {"restartStrategy": "InPlaceRestart"}},
            "status": {"currentInPlaceRestartAttempt": 2, "previousInPlaceRestartAttempt": 1}
        });
        assert_eq!(
            JobSetView::of_json(&js),
            JobSetView {
                current: Some(2),
                previous: Some(1),
                bypass: true
            }
        );
        let plain = serde_json::json!({"spec": {"failurePolicy": {"restartStrategy": "Recreate"}}});
        assert!(JobSetView::of_json(&plain).bypass);
    }
}
