//! An outcome policy for JobSets that restart in place (gate
//! InPlaceRestart): a worker that crashed restarts in place, with every
//! other pod joining it, as upstream does; but when a pod of the JobSet was
//! lost as a whole (its node went away, it was evicted or preempted: phase
//! `Failed`, or a `DisruptionTarget` condition), the JobSet is recreated
//! instead, so that every Job gets fresh pods placed together, rather than
//! one replacement pod landing wherever there is room.
//!
//! Finished Jobs, and the restart budget, are decided as upstream decides
//! them (`default-outcome`). See `plugins/examples/README.md`.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

use jobset_policy_sdk::in_place::InPlaceRestart;
use jobset_policy_sdk::pods::FailedPod;
use jobset_policy_sdk::types::{Action, JobsetRestart, OutcomeVerdict, PolicyError, Snapshot};
use jobset_policy_sdk::view::SnapshotView;

/// The plugin's name in `meta.info`.
pub const NAME: &str = "recreate-on-node-loss";

/// Reason of the `RestartingJobSet` condition when a lost pod recreates the
/// JobSet.
pub const CONDITION_REASON: &str = "PodLostDuringInPlaceRestart";
/// Reason of the Warning event.
pub const EVENT_REASON: &str = "RecreateAfterPodLoss";

/// Whether the pod was lost as a whole rather than restarted in place.
fn lost(pod: &FailedPod) -> bool {
    pod.phase == "Failed" || pod.disruption.is_some()
}

/// Decides an in-place restart: fail past upstream's budget, recreate the
/// JobSet when a pod was lost, else go on in place.
pub fn decide_in_place(
    snapshot: &Snapshot,
    restart: &InPlaceRestart,
) -> Result<OutcomeVerdict, PolicyError> {
    if default_outcome::in_place::past_budget(snapshot, restart) {
        return default_outcome::in_place::decide(snapshot, restart);
    }
    let Some(pod) = restart.pods.iter().find(|p| lost(p)) else {
        return Ok(OutcomeVerdict {
            action: Action::Continue,
            rule: None,
        });
    };
    let job = snapshot.job_of_pod(&pod.name).ok_or_else(|| {
        PolicyError::Internal(format!(
            "pod {} belongs to no Job of the current attempt",
            pod.name
        ))
    })?;
    let how = match &pod.disruption {
        Some(d) => format!("{}: {}", d.reason, d.message),
        None if !pod.reason.is_empty() => pod.reason.clone(),
        None => "phase Failed".to_string(),
    };
    let node = if pod.node.is_empty() {
        String::new()
    } else {
        format!(" on node {}", pod.node)
    };
    Ok(OutcomeVerdict {
        action: Action::RestartJobset(JobsetRestart {
            count_towards_max: true,
            condition_reason: CONDITION_REASON.to_string(),
            message: format!(
                "pod {} of Job {}{node} was lost ({how}): recreating the JobSet instead of \
                 restarting it in place",
                pod.name, job.name
            ),
            event_reason: EVENT_REASON.to_string(),
            first_failed_job: job.name.clone(),
        }),
        rule: Some("podLost".to_string()),
    })
}

/// Accepts no configuration other than an empty one.
pub fn validate_config(config: &str) -> Result<(), String> {
    jobset_policy_sdk::no_config(NAME, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::{SnapshotBuilder, failed_pod};
    use jobset_policy_sdk::pods::Disruption;

    fn snapshot() -> Snapshot {
        SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .max_restarts(3)
            .ready("workers", 0)
            .ready("workers", 1)
            .build()
    }

    fn restart(pods: Vec<FailedPod>, highest: i32) -> InPlaceRestart {
        InPlaceRestart {
            current: Some(0),
            previous: None,
            highest: Some(highest),
            expected: 4,
            reporting: 4,
            agreed: false,
            max_container_restarts: 1,
            pods,
            omitted: 0,
        }
    }

    /// A running pod whose worker crashed and restarted in place.
    fn crashed(name: &str) -> FailedPod {
        let mut p = failed_pod(name, "n1", 1, 1_000);
        p.phase = "Running".to_string();
        p
    }

    #[test]
    fn a_crash_restarts_in_place() {
        let v = decide_in_place(
            &snapshot(),
            &restart(vec![crashed("js-workers-1-0-abcde")], 1),
        )
        .expect("decides");
        assert_eq!(v.action, Action::Continue);
    }

    #[test]
    fn a_pod_lost_with_its_node_recreates_the_jobset_naming_pod_job_and_node() {
        let mut gone = failed_pod("js-workers-1-1-xyz12", "n7", 137, 2_000);
        gone.disruption = Some(Disruption {
            reason: "DeletionByTaintManager".to_string(),
            message: "Taint manager: deleting due to NoExecute taint".to_string(),
        });
        let v = decide_in_place(
            &snapshot(),
            &restart(vec![crashed("js-workers-0-0-abcde"), gone], 1),
        )
        .expect("decides");
        let Action::RestartJobset(r) = v.action else {
            panic!("recreates: {:?}", v.action);
        };
        assert_eq!(r.first_failed_job, "js-workers-1");
        assert_eq!(r.condition_reason, CONDITION_REASON);
        assert!(r.count_towards_max);
        assert_eq!(
            r.message,
            "pod js-workers-1-1-xyz12 of Job js-workers-1 on node n7 was lost \
             (DeletionByTaintManager: Taint manager: deleting due to NoExecute taint): \
             recreating the JobSet instead of restarting it in place"
        );
    }

    #[test]
    fn past_the_budget_it_fails_as_upstream_even_with_a_pod_lost() {
        let gone = failed_pod("js-workers-1-1-xyz12", "n7", 137, 2_000);
        let v = decide_in_place(&snapshot(), &restart(vec![gone], 4)).expect("decides");
        assert!(matches!(v.action, Action::Fail(ref t) if t.reason == "ReachedMaxRestarts"));
    }

    #[test]
    fn a_lost_pod_of_no_known_job_is_an_error_not_a_guess() {
        let gone = failed_pod("other-0-x", "n7", 137, 2_000);
        assert!(decide_in_place(&snapshot(), &restart(vec![gone], 1)).is_err());
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "outcome-plugin",
        path: "../../../wit",
        with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/pods@0.3.0": jobset_policy_sdk::pods,
            "jobset:policy/in-place@0.3.0": jobset_policy_sdk::in_place,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
        },
    });

    use exports::jobset::policy::{meta, outcome};
    use jobset_policy_sdk::in_place::InPlaceRestart;
    use jobset_policy_sdk::pods::JobPods;
    use jobset_policy_sdk::types::{OutcomeVerdict, PolicyError, Snapshot};

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["outcome".to_string()],
                inputs: Vec::new(),
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            crate::validate_config(&config)
        }
    }

    impl outcome::Guest for Plugin {
        /// Finished Jobs are decided by the manifest's own rules.
        fn decide(snapshot: Snapshot, _pods: Vec<JobPods>) -> Result<OutcomeVerdict, PolicyError> {
            default_outcome::decide(&snapshot)
        }

        fn decide_in_place(
            snapshot: Snapshot,
            restart: InPlaceRestart,
        ) -> Result<OutcomeVerdict, PolicyError> {
            crate::decide_in_place(&snapshot, &restart)
        }
    }

    export!(Plugin);
}
