//! Restart mechanics end to end (spec 4.4): old attempts are deleted in
//! the foreground; Recreate replaces a Job as soon as its namesake is gone,
//! BlockingRecreate only once every old Job is gone. Old Jobs are held by a
//! finalizer of the test's own to see the difference.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::labels::RESTART_ATTEMPT_KEY;
use jobset_e2e::{Env, label, names, runtime};
use jobset_policy::NativeDefaults;

fn fixture(name: &str, strategy: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  failurePolicy: {{maxRestarts: 3, restartStrategy: {strategy}}}
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

/// Holds every Job of the first attempt, fails the leader, and waits until
/// all old Jobs are being deleted; then drops their foreground finalizers
/// (the test's hold keeps them).
async fn restart_with_held_jobs(env: &Env, js: &str) {
    let jobs = env.wait_jobs(js, 3).await;
    for j in &jobs {
        env.hold_job(j.metadata.name.as_deref().unwrap()).await;
    }
    env.fail_job(&jobs[0], "BackoffLimitExceeded", "boom").await;
    env.wait_until(
        "every old Job is being deleted",
        Duration::from_secs(60),
        || async {
            env.jobs(js)
                .await
                .iter()
                .all(|j| j.metadata.deletion_timestamp.is_some())
        },
    )
    .await;
    env.release_foreground_only(js).await;
    env.settle().await;
}

fn attempt_one(jobs: &[k8s_openapi::api::batch::v1::Job]) -> Vec<String> {
    let new: Vec<_> = jobs
        .iter()
        .filter(|j| label(j, RESTART_ATTEMPT_KEY) == "1")
        .cloned()
        .collect();
    names(&new)
}

#[test]
fn every_job_of_the_previous_attempt_is_deleted_after_a_restart() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("fg", "Recreate")).await;
        let jobs = env.wait_jobs("fg", 3).await;
        for j in &jobs {
            env.hold_job(j.metadata.name.as_deref().unwrap()).await;
        }
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "boom").await;
        env.wait_until(
            "the old Jobs are being deleted",
            Duration::from_secs(60),
            || async {
                let jobs = env.jobs("fg").await;
                jobs.len() == 3 && jobs.iter().all(|j| j.metadata.deletion_timestamp.is_some())
            },
        )
        .await;
        for j in env.jobs("fg").await {
            assert_eq!(label(&j, RESTART_ATTEMPT_KEY), "0", "{:?}", j.metadata.name);
        }
        env.stop().await;
    });
}

#[test]
fn recreate_waits_while_every_old_job_still_exists() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("held", "Recreate")).await;
        restart_with_held_jobs(&env, "held").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let jobs = env.jobs("held").await;
        assert_eq!(jobs.len(), 3);
        assert!(attempt_one(&jobs).is_empty(), "{:?}", names(&jobs));
        env.stop().await;
    });
}

#[test]
fn recreate_replaces_each_job_as_soon_as_its_namesake_is_gone() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("rec", "Recreate")).await;
        restart_with_held_jobs(&env, "rec").await;
        env.release_job("rec-workers-1").await;
        env.wait_until(
            "rec-workers-1 is recreated",
            Duration::from_secs(60),
            || async { attempt_one(&env.jobs("rec").await) == ["rec-workers-1"] },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let jobs = env.jobs("rec").await;
        assert_eq!(
            attempt_one(&jobs),
            ["rec-workers-1"],
            "only the released name"
        );
        env.release_job("rec-leader-0").await;
        env.release_job("rec-workers-0").await;
        env.wait_attempt("rec", 1, 3).await;
        env.stop().await;
    });
}

#[test]
fn blocking_recreate_creates_nothing_until_every_old_job_is_gone() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("blk", "BlockingRecreate")).await;
        restart_with_held_jobs(&env, "blk").await;
        env.release_job("blk-workers-1").await;
        env.release_job("blk-leader-0").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let jobs = env.jobs("blk").await;
        assert_eq!(
            names(&jobs),
            ["blk-workers-0"],
            "no Job of any rjob is created"
        );
        env.release_job("blk-workers-0").await;
        let jobs = env.wait_attempt("blk", 1, 3).await;
        assert_eq!(
            names(&jobs),
            ["blk-leader-0", "blk-workers-0", "blk-workers-1"]
        );
        env.stop().await;
    });
}

#[test]
fn after_a_restart_the_new_attempt_can_complete_the_jobset() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("recov", "BlockingRecreate")).await;
        let jobs = env.wait_jobs("recov", 3).await;
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "boom").await;
        let jobs = env.wait_attempt("recov", 1, 3).await;
        for j in &jobs {
            env.complete_job(j).await;
        }
        let js = env.wait_condition("recov", "Completed").await;
        let s = js.status.unwrap();
        assert_eq!(s.restarts, 1);
        let r = s
            .conditions
            .iter()
            .find(|c| c.type_ == "RestartingJobSet")
            .unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "JobSetCompleted")
        );
        env.stop().await;
    });
}

#[test]
fn the_restarting_condition_turns_false_once_the_new_jobs_are_ready() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("ready", "Recreate")).await;
        let jobs = env.wait_jobs("ready", 3).await;
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "boom").await;
        let jobs = env.wait_attempt("ready", 1, 3).await;
        for j in &jobs {
            env.ready_job(j).await;
        }
        env.wait_until(
            "Restarting turns False",
            Duration::from_secs(60),
            || async {
                env.condition("ready", "RestartingJobSet")
                    .await
                    .is_some_and(|c| c.status == "False")
            },
        )
        .await;
        let c = env.condition("ready", "RestartingJobSet").await.unwrap();
        assert_eq!(c.reason, "JobsReady");
        assert_eq!(c.message, "all jobs are ready");
        env.stop().await;
    });
}
