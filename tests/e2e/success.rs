//! Success policy end to end (spec 4.2): All and Any, with and without
//! targetReplicatedJobs, failures taking priority, the completed metric
//! and what happens to the Jobs left running.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, names, runtime};
use jobset_policy::NativeDefaults;

fn two_rjobs(name: &str, operator: &str, targets: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  successPolicy: {{operator: {operator}, targetReplicatedJobs: {targets}}}
  failurePolicy: {{maxRestarts: 2}}
  replicatedJobs:
  - name: leader
    replicas: 1
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
  - name: workers
    replicas: 2
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    )
}

fn is_true(js: &jobset_api::JobSet, type_: &str) -> bool {
    js.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

#[test]
fn success_all_waits_for_every_job_of_every_replicated_job() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("all", "All", "[]")).await;
        let jobs = env.wait_jobs("all", 3).await;
        env.complete_job(&jobs[0]).await;
        env.complete_job(&jobs[1]).await;
        env.settle().await;
        assert!(!is_true(&env.get("all").await, "Completed"));
        env.complete_job(&jobs[2]).await;
        let js = env.wait_condition("all", "Completed").await;
        let c = env.condition("all", "Completed").await.unwrap();
        assert_eq!(c.reason, "AllJobsCompleted");
        assert_eq!(
            c.message, "jobset completed successfully",
            "upstream's message, not signed by the default plugin"
        );
        assert_eq!(js.status.unwrap().terminal_state, "Completed");
        env.stop().await;
    });
}

#[test]
fn success_all_with_a_target_ignores_the_other_replicated_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("target", "All", "[workers]")).await;
        let jobs = env.wait_jobs("target", 3).await;
        // The leader never finishes; both workers do.
        assert_eq!(
            names(&jobs),
            ["target-leader-0", "target-workers-0", "target-workers-1"]
        );
        env.complete_job(&jobs[1]).await;
        env.settle().await;
        assert!(!is_true(&env.get("target").await, "Completed"));
        env.complete_job(&jobs[2]).await;
        env.wait_condition("target", "Completed").await;
        env.stop().await;
    });
}

#[test]
fn success_any_completes_the_jobset_on_the_first_successful_job() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("any", "Any", "[]")).await;
        let jobs = env.wait_jobs("any", 3).await;
        env.complete_job(&jobs[2]).await;
        let js = env.wait_condition("any", "Completed").await;
        assert_eq!(js.status.unwrap().terminal_state, "Completed");
        env.stop().await;
    });
}

#[test]
fn success_any_with_a_target_ignores_success_of_other_replicated_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("anyt", "Any", "[leader]")).await;
        let jobs = env.wait_jobs("anyt", 3).await;
        env.complete_job(&jobs[1]).await;
        env.complete_job(&jobs[2]).await;
        env.settle().await;
        assert!(!is_true(&env.get("anyt").await, "Completed"));
        env.complete_job(&jobs[0]).await;
        env.wait_condition("anyt", "Completed").await;
        env.stop().await;
    });
}

#[test]
fn active_jobs_are_deleted_once_the_jobset_completes_but_finished_ones_stay() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("cleanup", "Any", "[]")).await;
        let jobs = env.wait_jobs("cleanup", 3).await;
        env.complete_job(&jobs[0]).await;
        env.wait_condition("cleanup", "Completed").await;
        env.wait_until(
            "the active Jobs are deleted",
            Duration::from_secs(60),
            || async {
                env.jobs("cleanup")
                    .await
                    .iter()
                    .filter(|j| j.metadata.name.as_deref() != Some("cleanup-leader-0"))
                    .all(|j| j.metadata.deletion_timestamp.is_some())
            },
        )
        .await;
        let leader = env
            .jobs("cleanup")
            .await
            .into_iter()
            .find(|j| j.metadata.name.as_deref() == Some("cleanup-leader-0"))
            .expect("the completed Job is kept");
        assert!(leader.metadata.deletion_timestamp.is_none());
        env.stop().await;
    });
}

#[test]
fn a_failure_in_the_same_attempt_takes_priority_over_success_any() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("prio", "Any", "[]")).await;
        let jobs = env.wait_jobs("prio", 3).await;
        // Held, so the completion below always lands on the attempt-0 Job,
        // whether the controller saw the failure before it or with it.
        for j in &jobs {
            env.hold_job(j.metadata.name.as_deref().unwrap()).await;
        }
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "leader died")
            .await;
        env.complete_job(&jobs[1]).await;
        env.wait_condition("prio", "RestartingJobSet").await;
        env.settle().await;
        let js = env.get("prio").await;
        assert!(!is_true(&js, "Completed"), "{:?}", js.status);
        assert_eq!(js.status.unwrap().restarts, 1);
        env.stop().await;
    });
}

#[test]
fn completion_counts_once_in_the_completed_metric_and_never_in_failed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_rjobs("metric", "Any", "[]")).await;
        let jobs = env.wait_jobs("metric", 3).await;
        env.complete_job(&jobs[0]).await;
        env.wait_condition("metric", "Completed").await;
        // Later reconciles do not count the completion again.
        env.jobsets()
            .patch(
                "metric",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": {"poke": "1"}}}),
                ),
            )
            .await
            .expect("the JobSet is annotated");
        env.settle().await;
        let text = env.metrics.render();
        assert!(
            text.contains("jobset_completed_total{jobset_name=\"metric\",namespace=\"default\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("jobset_failed_total{jobset_name=\"metric\""),
            "{text}"
        );
        env.stop().await;
    });
}
