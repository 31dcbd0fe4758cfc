//! The built-in outcome policy: upstream JobSet's failure policy (rules in
//! order, first failed Job by time, maxRestarts) and success policy
//! (All / Any over target replicated jobs), and upstream's in-place restart
//! budget ([`in_place`]), with upstream's exact reasons and messages. The logic is plain Rust in [`failure_policy`] and
//! [`success_policy`]; the component glue only forwards to [`decide`].

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
// No `std`: the component is smaller and imports only the host's regex
// matcher (see the SDK's `bare` feature). Tests run natively with `std`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod failure_policy;
pub mod in_place;
pub mod success_policy;

use alloc::string::String;

use jobset_policy_sdk::types::{Action, OutcomeVerdict, PolicyError, Snapshot};
use jobset_policy_sdk::view::SnapshotView;

/// The plugin's name in `meta.info`.
pub const NAME: &str = "default-outcome";

/// Decides the outcome: failures first (at most one action), then success.
pub fn decide(snapshot: &Snapshot) -> Result<OutcomeVerdict, PolicyError> {
    let failed = snapshot.failed_jobs();
    if !failed.is_empty() {
        return failure_policy::decide(snapshot, &failed);
    }
    if let Some(verdict) = success_policy::decide(snapshot) {
        return Ok(verdict);
    }
    Ok(OutcomeVerdict {
        action: Action::Continue,
        rule: None,
    })
}

/// Accepts no configuration other than an empty one.
pub fn validate_config(config: &str) -> Result<(), String> {
    jobset_policy_sdk::no_config(NAME, config)
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::{SnapshotBuilder, rule};
    use jobset_policy_sdk::types::FailureAction;

    #[test]
    fn target_replicated_jobs_limit_which_failures_a_rule_sees() {
        let mut leader_only = rule("leaderOnly", FailureAction::FailJobSet);
        leader_only.target_replicated_jobs = vec!["leader".into()];
        let s = SnapshotBuilder::new("js")
            .rjob("leader", 1)
            .rjob("workers", 2)
            .max_restarts(1)
            .rule(leader_only)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 1)
            .failed("leader", 0, "BackoffLimitExceeded", "x", 2)
            .build();
        let v = decide(&s).expect("decides");
        assert_eq!(v.rule.as_deref(), Some("leaderOnly"));
        assert!(
            matches!(v.action, Action::Fail(ref t) if t.message.ends_with("(first failed job: js-leader-0)"))
        );
    }

    #[test]
    fn nothing_finished_means_continue() {
        let s = SnapshotBuilder::new("js")
            .rjob("a", 1)
            .ready("a", 0)
            .build();
        assert_eq!(decide(&s).expect("decides").action, Action::Continue);
    }
}
