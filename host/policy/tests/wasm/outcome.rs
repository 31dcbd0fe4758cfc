//! default-outcome through Wasm: spec 4.2 and 4.3, appendix B 1, 3 and 4.

use crate::common::{outcome_plugin, snap};
use jobset_policy::snapshot::{Action, OutcomeVerdict};
use jobset_policy::{NativeDefaults, PolicyEngine};
use jobset_policy_sdk::gates;
use jobset_policy_sdk::harness::{SnapshotBuilder, rule};
use jobset_policy_sdk::types::{FailureAction as FA, SuccessOperator};

fn decide(b: SnapshotBuilder) -> OutcomeVerdict {
    let s = snap(b);
    let wasm = outcome_plugin().decide_outcome(&s, &[]).expect("decides");
    let native = NativeDefaults
        .decide_outcome(&s, &[])
        .expect("decides natively");
    assert_eq!(wasm.verdict, native.verdict, "Wasm and native agree");
    assert!(
        wasm.plugin.starts_with("default-outcome@"),
        "{}",
        wasm.plugin
    );
    wasm.verdict
}

fn fail_of(v: &OutcomeVerdict) -> (String, String) {
    match &v.action {
        Action::Fail(t) => (t.reason.clone(), t.message.clone()),
        other => panic!("expected fail, got {other:?}"),
    }
}

fn base() -> SnapshotBuilder {
    SnapshotBuilder::new("js")
        .rjob("leader", 1)
        .rjob("workers", 3)
}

#[test]
fn no_finished_jobs_continue() {
    let v = decide(base().ready("leader", 0).ready("workers", 0));
    assert_eq!(v.action, Action::Continue);
}

#[test]
fn failed_job_without_failure_policy_fails_the_jobset_naming_the_oldest_failure() {
    let v = decide(
        base()
            .failed("workers", 2, "BackoffLimitExceeded", "boom", 300)
            .failed("workers", 1, "BackoffLimitExceeded", "boom", 100),
    );
    assert_eq!(
        fail_of(&v),
        (
            "FailedJobs".to_string(),
            "jobset failed due to one or more job failures (first failed job: js-workers-1)"
                .to_string()
        )
    );
    assert_eq!(v.rule, None);
}

#[test]
fn failures_win_over_success_even_with_any() {
    let v = decide(
        base()
            .success(SuccessOperator::Any, &[])
            .succeeded("leader", 0, 50)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 60),
    );
    assert_eq!(fail_of(&v).0, "FailedJobs");
}

#[test]
fn all_success_needs_every_job_of_every_replicated_job() {
    let partial = decide(
        base()
            .succeeded("leader", 0, 1)
            .succeeded("workers", 0, 1)
            .ready("workers", 1)
            .ready("workers", 2),
    );
    assert_eq!(partial.action, Action::Continue);
    let all = decide(
        base()
            .succeeded("leader", 0, 1)
            .succeeded("workers", 0, 1)
            .succeeded("workers", 1, 1)
            .succeeded("workers", 2, 1),
    );
    match all.action {
        Action::Complete(t) => {
            assert_eq!(t.reason, "AllJobsCompleted");
            assert_eq!(t.message, "jobset completed successfully");
        }
        other => panic!("expected complete, got {other:?}"),
    }
}

#[test]
fn success_with_targets_counts_only_the_targets() {
    let all_leader = decide(
        base()
            .success(SuccessOperator::All, &["leader"])
            .succeeded("leader", 0, 1),
    );
    assert!(matches!(all_leader.action, Action::Complete(_)));
    let any_workers_but_leader_done = decide(
        base()
            .success(SuccessOperator::Any, &["workers"])
            .succeeded("leader", 0, 1),
    );
    assert_eq!(any_workers_but_leader_done.action, Action::Continue);
    let any_worker = decide(
        base()
            .success(SuccessOperator::Any, &["workers"])
            .succeeded("workers", 2, 1),
    );
    assert!(matches!(any_worker.action, Action::Complete(_)));
}

#[test]
fn no_matching_rule_restarts_with_the_default_failure_policy_reason() {
    let mut only_leader = rule("onlyLeader", FA::FailJobSet);
    only_leader.target_replicated_jobs = vec!["leader".into()];
    let v = decide(base().max_restarts(2).rule(only_leader).failed(
        "workers",
        1,
        "BackoffLimitExceeded",
        "x",
        10,
    ));
    match v.action {
        Action::RestartJobset(r) => {
            assert!(r.count_towards_max);
            assert_eq!(r.condition_reason, "DefaultFailurePolicy");
            assert_eq!(r.event_reason, "RestartJobSetFailurePolicyAction");
            assert_eq!(
                r.message,
                "applying RestartJobSet failure policy action (first failed job: js-workers-1)"
            );
            assert_eq!(r.first_failed_job, "js-workers-1");
        }
        other => panic!("expected restart, got {other:?}"),
    }
    assert_eq!(v.rule, None);
}

#[test]
fn the_first_rule_in_order_wins_and_within_it_the_earliest_failure() {
    let mut by_reason = rule("byReason", FA::FailJobSet);
    by_reason.on_job_failure_reasons = vec!["DeadlineExceeded".into()];
    let restart_all = rule("restartAll", FA::RestartJobSet);
    let v = decide(
        base()
            .max_restarts(5)
            .rule(by_reason)
            .rule(restart_all)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 10)
            .failed("workers", 2, "DeadlineExceeded", "late", 30)
            .failed("workers", 1, "DeadlineExceeded", "late", 20),
    );
    assert_eq!(
        fail_of(&v),
        (
            "FailJobSetFailurePolicyAction".to_string(),
            "applying FailJobSet failure policy action (first failed job: js-workers-1)"
                .to_string()
        )
    );
    assert_eq!(v.rule.as_deref(), Some("byReason"));
}

#[test]
fn message_patterns_are_searched_not_fully_matched() {
    let mut by_message = rule("oom", FA::RestartJobSetAndIgnoreMaxRestarts);
    by_message.on_job_failure_message_patterns = vec!["OOM[Kk]illed".into()];
    let v = decide(base().rule(by_message).failed(
        "workers",
        0,
        "PodFailurePolicy",
        "container was OOMKilled at 3am",
        10,
    ));
    match v.action {
        Action::RestartJobset(r) => {
            assert!(!r.count_towards_max);
            assert_eq!(r.condition_reason, "FailurePolicy_oom");
            assert_eq!(
                r.event_reason,
                "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction"
            );
        }
        other => panic!("expected restart, got {other:?}"),
    }
}

#[test]
fn an_invalid_pattern_never_matches() {
    let mut broken = rule("broken", FA::FailJobSet);
    broken.on_job_failure_message_patterns = vec!["([unclosed".into()];
    let v = decide(base().max_restarts(1).rule(broken).failed(
        "workers",
        0,
        "PodFailurePolicy",
        "([unclosed",
        10,
    ));
    assert!(matches!(v.action, Action::RestartJobset(_)));
}

#[test]
fn restart_jobset_at_max_restarts_fails_with_reached_max_restarts() {
    let v = decide(base().max_restarts(2).restarts(3, 2).failed(
        "leader",
        0,
        "BackoffLimitExceeded",
        "x",
        10,
    ));
    assert_eq!(
        fail_of(&v),
        (
            "ReachedMaxRestarts".to_string(),
            "jobset failed due to reaching max number of restarts (first failed job: js-leader-0)"
                .to_string()
        )
    );
}

#[test]
fn ignore_max_restarts_restarts_past_the_budget() {
    let v = decide(
        base()
            .max_restarts(1)
            .restarts(4, 1)
            .rule(rule("always", FA::RestartJobSetAndIgnoreMaxRestarts))
            .failed("leader", 0, "BackoffLimitExceeded", "x", 10),
    );
    assert!(matches!(v.action, Action::RestartJobset(ref r) if !r.count_towards_max));
}

#[test]
fn restart_job_recreates_only_the_failed_job() {
    let v = decide(
        base()
            .gate(gates::RESTART_JOB)
            .max_restarts(3)
            .rule(rule("one", FA::RestartJob))
            .failed("workers", 2, "BackoffLimitExceeded", "x", 10),
    );
    match v.action {
        Action::RestartJob(r) => {
            assert_eq!(r.job, "js-workers-2");
            assert!(r.count_towards_max);
            assert_eq!(r.event_reason, "RestartJobFailurePolicyAction");
            assert_eq!(
                r.message,
                "applying RestartJob failure policy action (first failed job: js-workers-2)"
            );
        }
        other => panic!("expected restart-job, got {other:?}"),
    }
}

#[test]
fn restart_job_counts_per_job_restarts_toward_max_when_the_gate_is_on() {
    let v = decide(
        base()
            .gate(gates::RESTART_JOB)
            .max_restarts(3)
            .restarts(1, 1)
            .job_restarts("workers", &[1, 1, 0], &[1, 1, 0])
            .rule(rule("one", FA::RestartJob))
            .failed("workers", 2, "BackoffLimitExceeded", "x", 10),
    );
    assert_eq!(fail_of(&v).0, "ReachedMaxRestarts");
}

#[test]
fn restart_job_and_ignore_max_restarts_is_not_counted() {
    let v = decide(
        base()
            .gate(gates::RESTART_JOB)
            .max_restarts(0)
            .rule(rule("free", FA::RestartJobAndIgnoreMaxRestarts))
            .failed("workers", 0, "BackoffLimitExceeded", "x", 10),
    );
    match v.action {
        Action::RestartJob(r) => {
            assert!(!r.count_towards_max);
            assert_eq!(
                r.event_reason,
                "RestartJobAndIgnoreMaxRestartsFailurePolicyAction"
            );
        }
        other => panic!("expected restart-job, got {other:?}"),
    }
}

#[test]
fn restart_job_without_the_gate_is_still_the_verdict_even_over_budget() {
    // Upstream checks the gate before the restart budget; the host refuses
    // the action when the gate is off, so the plugin does not fail the JobSet.
    let v = decide(
        base()
            .max_restarts(0)
            .rule(rule("one", FA::RestartJob))
            .failed("workers", 0, "BackoffLimitExceeded", "x", 10),
    );
    match v.action {
        Action::RestartJob(r) => assert_eq!(r.event_reason, "RestartJobFailurePolicyAction"),
        other => panic!("expected restart-job, got {other:?}"),
    }
}
