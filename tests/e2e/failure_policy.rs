//! Failure policy end to end (spec 4.3): no policy, maxRestarts, the
//! JobSet-wide rule actions, rule order, reasons, message patterns and
//! target replicated jobs, with the exact condition reasons and messages.

use std::sync::Arc;

use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;

/// What the default plugin adds to upstream's messages: nothing (the
/// words of a custom plugin name it; see outcome::attributed).
const PLUGIN: &str = "";

/// A JobSet `name` with rjobs `leader` (1) and `workers` (2) and the given
/// `failurePolicy` block (YAML flow mapping, or "" for none).
fn fixture(name: &str, failure_policy: &str) -> String {
    let fp = if failure_policy.is_empty() {
        String::new()
    } else {
        format!("  failurePolicy: {failure_policy}\n")
    };
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
{fp}  replicatedJobs:
  - name: leader
    replicas: 1
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
  - name: workers
    replicas: 2
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    )
}

/// Fails Job `index` (0 leader, 1-2 workers) of the JobSet's first attempt.
async fn fail(env: &Env, js: &str, index: usize, reason: &str, message: &str) {
    let jobs = env.wait_jobs(js, 3).await;
    env.fail_job(&jobs[index], reason, message).await;
}

#[test]
fn without_a_failure_policy_the_first_failed_job_fails_the_jobset() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("nofp", "")).await;
        fail(&env, "nofp", 2, "BackoffLimitExceeded", "boom").await;
        let js = env.wait_condition("nofp", "Failed").await;
        let c = env.condition("nofp", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailedJobs");
        assert_eq!(
            c.message,
            format!(
                "jobset failed due to one or more job failures (first failed job: nofp-workers-1){PLUGIN}"
            )
        );
        let status = js.status.unwrap();
        assert_eq!(status.terminal_state, "Failed");
        assert_eq!(status.restarts, 0);
        env.stop().await;
    });
}

#[test]
fn a_failure_counts_once_in_the_failed_metric() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("fmetric", "")).await;
        fail(&env, "fmetric", 0, "BackoffLimitExceeded", "boom").await;
        env.wait_condition("fmetric", "Failed").await;
        env.settle().await;
        let text = env.metrics.render();
        assert!(
            text.contains("jobset_failed_total{jobset_name=\"fmetric\",namespace=\"default\"} 1"),
            "{text}"
        );
        env.stop().await;
    });
}

#[test]
fn max_restarts_zero_fails_at_the_first_failure_with_reached_max_restarts() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("max0", "{maxRestarts: 0}")).await;
        fail(&env, "max0", 1, "BackoffLimitExceeded", "boom").await;
        env.wait_condition("max0", "Failed").await;
        let c = env.condition("max0", "Failed").await.unwrap();
        assert_eq!(c.reason, "ReachedMaxRestarts");
        assert_eq!(
            c.message,
            format!(
                "jobset failed due to reaching max number of restarts (first failed job: max0-workers-0){PLUGIN}"
            )
        );
        env.stop().await;
    });
}

#[test]
fn restarts_are_counted_towards_max_until_max_restarts_is_reached() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("max2", "{maxRestarts: 2}")).await;
        fail(&env, "max2", 0, "BackoffLimitExceeded", "one").await;
        let jobs = env.wait_attempt("max2", 1, 3).await;
        let s = env.get("max2").await.status.unwrap();
        assert_eq!((s.restarts, s.restarts_count_towards_max), (1, 1));
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "two").await;
        let jobs = env.wait_attempt("max2", 2, 3).await;
        let s = env.get("max2").await.status.unwrap();
        assert_eq!((s.restarts, s.restarts_count_towards_max), (2, 2));
        assert!(s.conditions.iter().all(|c| c.type_ != "Failed"));
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "three")
            .await;
        env.wait_condition("max2", "Failed").await;
        let c = env.condition("max2", "Failed").await.unwrap();
        assert_eq!(c.reason, "ReachedMaxRestarts");
        assert!(
            c.message.contains("first failed job: max2-workers-0"),
            "{}",
            c.message
        );
        env.stop().await;
    });
}

#[test]
fn a_restart_with_no_matching_rule_uses_the_default_failure_policy_reason() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "dflt",
            "{maxRestarts: 3, rules: [{name: onlyPFP, action: FailJobSet, onJobFailureReasons: [PodFailurePolicy]}]}",
        ))
        .await;
        fail(&env, "dflt", 0, "BackoffLimitExceeded", "boom").await;
        env.wait_condition("dflt", "RestartingJobSet").await;
        let c = env.condition("dflt", "RestartingJobSet").await.unwrap();
        assert_eq!(c.reason, "DefaultFailurePolicy");
        assert_eq!(
            c.message,
            format!("applying RestartJobSet failure policy action (first failed job: dflt-leader-0){PLUGIN}")
        );
        env.stop().await;
    });
}

#[test]
fn a_fail_jobset_rule_fails_the_jobset_with_its_action_reason() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "failjs",
            "{maxRestarts: 5, rules: [{name: stop, action: FailJobSet}]}",
        ))
        .await;
        fail(&env, "failjs", 2, "BackoffLimitExceeded", "boom").await;
        let js = env.wait_condition("failjs", "Failed").await;
        let c = env.condition("failjs", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
        assert_eq!(
            c.message,
            format!("applying FailJobSet failure policy action (first failed job: failjs-workers-1){PLUGIN}")
        );
        assert_eq!(js.status.unwrap().restarts, 0);
        env.stop().await;
    });
}

#[test]
fn a_restart_jobset_rule_names_itself_in_the_restarting_reason() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "named",
            "{maxRestarts: 5, rules: [{name: again, action: RestartJobSet}]}",
        ))
        .await;
        fail(&env, "named", 1, "BackoffLimitExceeded", "boom").await;
        env.wait_condition("named", "RestartingJobSet").await;
        let c = env.condition("named", "RestartingJobSet").await.unwrap();
        assert_eq!(c.reason, "FailurePolicy_again");
        assert!(
            c.message.starts_with(
                "applying RestartJobSet failure policy action (first failed job: named-"
            ) && !c.message.contains("(policy"),
            "upstream's message, unsigned: {}",
            c.message
        );
        env.wait_attempt("named", 1, 3).await;
        env.stop().await;
    });
}

#[test]
fn restart_jobset_and_ignore_max_restarts_restarts_beyond_max_without_counting() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "ignore",
            "{maxRestarts: 0, rules: [{name: free, action: RestartJobSetAndIgnoreMaxRestarts}]}",
        ))
        .await;
        fail(&env, "ignore", 0, "BackoffLimitExceeded", "boom").await;
        let jobs = env.wait_attempt("ignore", 1, 3).await;
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "again").await;
        env.wait_attempt("ignore", 2, 3).await;
        let s = env.get("ignore").await.status.unwrap();
        assert_eq!(s.restarts, 2);
        assert_eq!(s.restarts_count_towards_max, 0);
        assert!(s.conditions.iter().all(|c| c.type_ != "Failed"));
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "RestartingJobSet")
            .unwrap();
        assert!(
            c.message
                .starts_with("applying RestartJobSetAndIgnoreMaxRestarts failure policy action (first failed job: ignore-workers-1)"),
            "{}",
            c.message
        );
        env.wait_event("ignore", "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction")
            .await;
        env.stop().await;
    });
}

#[test]
fn the_first_applicable_rule_wins_over_later_ones() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "order",
            "{maxRestarts: 5, rules: [{name: first, action: RestartJobSet}, {name: second, action: FailJobSet}]}",
        ))
        .await;
        fail(&env, "order", 0, "BackoffLimitExceeded", "boom").await;
        env.wait_condition("order", "RestartingJobSet").await;
        let c = env.condition("order", "RestartingJobSet").await.unwrap();
        assert_eq!(c.reason, "FailurePolicy_first");
        assert!(env.condition("order", "Failed").await.is_none());
        env.stop().await;
    });
}

#[test]
fn a_rule_that_does_not_apply_is_skipped_for_the_next_one() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "skip",
            "{maxRestarts: 5, rules: [{name: pfp, action: RestartJobSet, onJobFailureReasons: [PodFailurePolicy]}, {name: fatal, action: FailJobSet}]}",
        ))
        .await;
        fail(&env, "skip", 0, "DeadlineExceeded", "too slow").await;
        env.wait_condition("skip", "Failed").await;
        let c = env.condition("skip", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
        env.stop().await;
    });
}

#[test]
fn a_rule_applies_when_the_failure_reason_is_listed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "reason",
            "{maxRestarts: 5, rules: [{name: pfp, action: FailJobSet, onJobFailureReasons: [BackoffLimitExceeded, PodFailurePolicy]}]}",
        ))
        .await;
        fail(&env, "reason", 1, "PodFailurePolicy", "disrupted").await;
        env.wait_condition("reason", "Failed").await;
        let c = env.condition("reason", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
        env.stop().await;
    });
}

#[test]
fn message_patterns_are_searched_anywhere_in_the_failure_message() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "pattern",
            "{maxRestarts: 5, rules: [{name: oom, action: FailJobSet, onJobFailureMessagePatterns: ['exit code [0-9]+']}]}",
        ))
        .await;
        fail(
            &env,
            "pattern",
            2,
            "PodFailurePolicy",
            "Container main for pod x failed with exit code 137 matching rule",
        )
        .await;
        env.wait_condition("pattern", "Failed").await;
        let c = env.condition("pattern", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
        env.stop().await;
    });
}

#[test]
fn a_message_pattern_that_does_not_match_leaves_the_default_restart() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "nomatch",
            "{maxRestarts: 5, rules: [{name: anchored, action: FailJobSet, onJobFailureMessagePatterns: ['^exit code']}]}",
        ))
        .await;
        fail(
            &env,
            "nomatch",
            2,
            "PodFailurePolicy",
            "failed with exit code 137",
        )
        .await;
        env.wait_condition("nomatch", "RestartingJobSet").await;
        let c = env.condition("nomatch", "RestartingJobSet").await.unwrap();
        assert_eq!(c.reason, "DefaultFailurePolicy");
        assert!(env.condition("nomatch", "Failed").await.is_none());
        env.stop().await;
    });
}

#[test]
fn a_rule_targeting_other_replicated_jobs_does_not_apply() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture(
            "target",
            "{maxRestarts: 5, rules: [{name: workersFatal, action: FailJobSet, targetReplicatedJobs: [workers]}]}",
        ))
        .await;
        fail(&env, "target", 0, "BackoffLimitExceeded", "leader died").await;
        env.wait_condition("target", "RestartingJobSet").await;
        assert!(env.condition("target", "Failed").await.is_none());
        let jobs = env.wait_attempt("target", 1, 3).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "worker died")
            .await;
        env.wait_condition("target", "Failed").await;
        let c = env.condition("target", "Failed").await.unwrap();
        assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
        assert!(c.message.contains("target-workers-0"), "{}", c.message);
        env.stop().await;
    });
}

#[test]
fn a_restart_jobset_emits_the_action_event_and_the_condition_event() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("events", "{maxRestarts: 3}")).await;
        fail(&env, "events", 0, "BackoffLimitExceeded", "boom").await;
        let action = env
            .wait_event("events", "RestartJobSetFailurePolicyAction")
            .await;
        assert_eq!(action.type_.as_deref(), Some("Warning"));
        assert_eq!(
            action.note.as_deref(),
            Some(
                format!("applying RestartJobSet failure policy action (first failed job: events-leader-0){PLUGIN}")
                    .as_str()
            )
        );
        let cond = env.wait_event("events", "DefaultFailurePolicy").await;
        assert_eq!(cond.type_.as_deref(), Some("Warning"));
        env.stop().await;
    });
}

#[test]
fn a_failed_jobset_emits_a_warning_event_with_its_reason() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("fevent", "{maxRestarts: 0}")).await;
        fail(&env, "fevent", 1, "BackoffLimitExceeded", "boom").await;
        let e = env.wait_event("fevent", "ReachedMaxRestarts").await;
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        let note = e.note.as_deref().unwrap_or("");
        assert!(
            note.starts_with(
                "jobset failed due to reaching max number of restarts (first failed job: fevent-"
            ) && note.ends_with(')')
                && !note.contains("(policy"),
            "upstream's message, unsigned: {note}"
        );
        env.stop().await;
    });
}
