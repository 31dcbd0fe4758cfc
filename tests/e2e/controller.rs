//! The controller against the simulated API server with no Job controller:
//! Job status is driven by hand, as upstream's integration suites do.

use std::sync::Arc;

use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;

const SIMPLE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: simple, namespace: default}
spec:
  failurePolicy: {maxRestarts: 1}
  replicatedJobs:
  - name: workers
    replicas: 2
    template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}
"#;

#[test]
fn a_jobset_whose_jobs_complete_is_completed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(SIMPLE).await;
        let jobs = env.wait_jobs("simple", 2).await;
        assert_eq!(
            jobs.iter()
                .map(|j| j.metadata.name.clone().unwrap())
                .collect::<Vec<_>>(),
            ["simple-workers-0", "simple-workers-1"]
        );
        for job in &jobs {
            env.complete_job(job).await;
        }
        let js = env.wait_condition("simple", "Completed").await;
        let status = js.status.unwrap();
        assert_eq!(status.terminal_state, "Completed");
        assert_eq!(status.replicated_jobs_status[0].succeeded, 2);
        assert!(
            env.metrics
                .render()
                .contains("jobset_completed_total{jobset_name=\"simple\",namespace=\"default\"} 1")
        );
        env.stop().await;
    });
}

#[test]
fn a_failed_job_restarts_the_jobset_then_the_second_failure_fails_it() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(SIMPLE).await;
        let jobs = env.wait_jobs("simple", 2).await;
        env.fail_job(
            &jobs[1],
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
        .await;
        let js = env.wait_condition("simple", "RestartingJobSet").await;
        assert_eq!(js.status.as_ref().unwrap().restarts, 1);
        // The old attempt is deleted in the foreground (freed by hand where a
        // finalizer holds it); the new attempt's Jobs follow.
        env.wait_until(
            "the Jobs of attempt 1 exist",
            std::time::Duration::from_secs(120),
            || async {
                env.release_deleted_jobs("simple").await;
                let jobs = env.jobs("simple").await;
                jobs.len() == 2
                    && jobs.iter().all(|j| {
                        j.metadata.labels.as_ref().unwrap()["jobset.sigs.k8s.io/restart-attempt"]
                            == "1"
                    })
            },
        )
        .await;
        let jobs = env.wait_jobs("simple", 2).await;
        for j in &jobs {
            assert_eq!(
                j.metadata.labels.as_ref().unwrap()["jobset.sigs.k8s.io/restart-attempt"],
                "1"
            );
        }
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "again")
            .await;
        let js = env.wait_condition("simple", "Failed").await;
        let failed = js
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .unwrap()
            .clone();
        assert_eq!(failed.reason, "ReachedMaxRestarts");
        assert!(
            failed
                .message
                .contains("first failed job: simple-workers-0"),
            "{}",
            failed.message
        );
        env.stop().await;
    });
}
