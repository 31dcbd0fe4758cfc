//! The in-place restart decision as upstream makes it: fail the JobSet with
//! `ReachedMaxRestarts` once a container restarted more often than
//! `maxRestarts` allows (one that fails so fast that no barrier is ever
//! lifted), or once the highest attempt the pods report, less the restarts
//! that do not count, passes it; otherwise go on in place.

use alloc::string::ToString;

use jobset_policy_sdk::in_place::InPlaceRestart;
use jobset_policy_sdk::types::{Action, OutcomeVerdict, PolicyError, Snapshot, Terminal};

use crate::failure_policy::REASON_REACHED_MAX_RESTARTS;

/// Upstream's message for an in-place JobSet past its restart budget (the
/// reason is the failure policy's, `ReachedMaxRestarts`).
pub const REACHED_MAX_RESTARTS_MESSAGE: &str =
    "jobset failed due to reaching max number of restarts";

/// Decides an in-place restart: fail past the budget, else continue.
pub fn decide(
    snapshot: &Snapshot,
    restart: &InPlaceRestart,
) -> Result<OutcomeVerdict, PolicyError> {
    Ok(OutcomeVerdict {
        action: if past_budget(snapshot, restart) {
            reached_max_restarts()
        } else {
            Action::Continue
        },
        rule: None,
    })
}

/// Whether upstream fails the JobSet for this in-place state.
pub fn past_budget(snapshot: &Snapshot, restart: &InPlaceRestart) -> bool {
    let max_restarts = snapshot
        .jobset
        .failure_policy
        .as_ref()
        .map_or(0, |fp| fp.max_restarts);
    let status = &snapshot.jobset.status;
    let uncounted = status.restarts - status.restarts_count_towards_max;
    restart.max_container_restarts > max_restarts
        || restart.highest.unwrap_or(0) - uncounted > max_restarts
}

/// The `fail` action upstream takes past the budget.
pub fn reached_max_restarts() -> Action {
    Action::Fail(Terminal {
        reason: REASON_REACHED_MAX_RESTARTS.to_string(),
        message: REACHED_MAX_RESTARTS_MESSAGE.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::SnapshotBuilder;

    fn state(highest: Option<i32>, max_container_restarts: i32) -> InPlaceRestart {
        InPlaceRestart {
            current: Some(0),
            previous: None,
            highest,
            expected: 4,
            reporting: 4,
            agreed: false,
            max_container_restarts,
            pods: Vec::new(),
            omitted: 0,
        }
    }

    fn snapshot(restarts: i32, counted: i32) -> Snapshot {
        let mut s = SnapshotBuilder::new("js")
            .rjob("w", 2)
            .max_restarts(2)
            .build();
        s.jobset.status.restarts = restarts;
        s.jobset.status.restarts_count_towards_max = counted;
        s
    }

    fn action(s: &Snapshot, r: &InPlaceRestart) -> Action {
        decide(s, r).expect("decides").action
    }

    #[test]
    fn within_the_budget_the_restart_goes_on_in_place() {
        assert_eq!(
            action(&snapshot(0, 0), &state(Some(2), 2)),
            Action::Continue
        );
        assert_eq!(action(&snapshot(0, 0), &state(None, 0)), Action::Continue);
    }

    #[test]
    fn an_attempt_past_max_restarts_fails_in_upstreams_words() {
        let Action::Fail(t) = action(&snapshot(0, 0), &state(Some(3), 0)) else {
            panic!("fails");
        };
        assert_eq!(t.reason, "ReachedMaxRestarts");
        assert_eq!(
            t.message,
            "jobset failed due to reaching max number of restarts"
        );
    }

    #[test]
    fn restarts_that_do_not_count_are_taken_off_the_attempt() {
        // Attempt 4, of which 2 came from restarts that do not count.
        assert_eq!(
            action(&snapshot(2, 0), &state(Some(4), 0)),
            Action::Continue
        );
        assert!(matches!(
            action(&snapshot(2, 1), &state(Some(4), 0)),
            Action::Fail(_)
        ));
    }

    #[test]
    fn a_container_restarted_past_the_budget_fails_whatever_the_attempts() {
        assert!(matches!(
            action(&snapshot(0, 0), &state(Some(0), 3)),
            Action::Fail(_)
        ));
    }
}
