//! The preemption-aware example through Wasm.

use crate::common::{preemption_plugin, snap};
use jobset_policy::PolicyEngine;
use jobset_policy::snapshot::Action;
use jobset_policy_sdk::harness::SnapshotBuilder;

fn failed(message: &str, spent: i32, config: &str) -> SnapshotBuilder {
    SnapshotBuilder::new("js")
        .rjob("workers", 2)
        .restarts(spent + 4, spent)
        .failed("workers", 1, "PodFailurePolicy", message, 10)
        .config(config)
}

#[test]
fn preemption_restarts_without_spending_the_budget() {
    let d = preemption_plugin()
        .decide_outcome(
            &snap(failed("node was preempted by a higher priority pod", 3, "")),
            &[],
        )
        .expect("decides");
    match d.verdict.action {
        Action::RestartJobset(r) => {
            assert!(!r.count_towards_max);
            assert_eq!(r.condition_reason, "Preempted");
            assert_eq!(r.first_failed_job, "js-workers-1");
        }
        other => panic!("expected a restart, got {other:?}"),
    }
}

#[test]
fn application_failures_fail_fast_after_the_configured_number() {
    let config = r#"{"maxApplicationFailures": 2}"#;
    let d = preemption_plugin()
        .decide_outcome(&snap(failed("exit code 1", 1, config)), &[])
        .expect("decides");
    assert!(matches!(d.verdict.action, Action::RestartJobset(ref r) if r.count_towards_max));
    let d = preemption_plugin()
        .decide_outcome(&snap(failed("exit code 1", 2, config)), &[])
        .expect("decides");
    assert!(
        matches!(d.verdict.action, Action::Fail(ref t) if t.reason == "ApplicationFailures"),
        "{:?}",
        d.verdict
    );
    assert_eq!(d.verdict.rule.as_deref(), Some("application-failure"));
}

#[test]
fn a_bad_configuration_is_declined() {
    let err = preemption_plugin()
        .decide_outcome(&snap(failed("x", 0, "{\"bogus\": 1}")), &[])
        .expect_err("declined");
    assert!(err.to_string().contains("bogus"), "{err}");
}
