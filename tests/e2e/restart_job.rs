//! Per-Job restarts end to end (spec 4.3, RestartJob gate on): the
//! jobRestarts arrays, the job-restart-attempt label of the replacement,
//! the other Jobs left alone, and how they count toward maxRestarts.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::labels::{JOB_RESTART_ATTEMPT_KEY, RESTART_ATTEMPT_KEY};
use jobset_e2e::{Env, label, names, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::batch::v1::Job;

fn fixture(name: &str, max: i32, action: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  failurePolicy:
    maxRestarts: {max}
    rules: [{{name: perjob, action: {action}, targetReplicatedJobs: [workers]}}]
  replicatedJobs:
  - name: leader
    replicas: 1
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
  - name: workers
    replicas: 3
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    )
}

fn workers_status(js: &jobset_api::JobSet) -> jobset_api::ReplicatedJobStatus {
    js.status
        .as_ref()
        .and_then(|s| {
            s.replicated_jobs_status
                .iter()
                .find(|r| r.name == "workers")
        })
        .cloned()
        .unwrap_or_default()
}

/// Waits until the Job `name` is replaced by one with `job-restart-attempt`
/// = `attempt`, freeing the deleted one.
async fn wait_replaced(env: &Env, js: &str, name: &str, attempt: &str) -> Job {
    env.wait_until(
        &format!("{name} is recreated with job-restart-attempt {attempt}"),
        Duration::from_secs(120),
        || async {
            env.release_deleted_jobs(js).await;
            env.jobs(js).await.iter().any(|j| {
                j.metadata.name.as_deref() == Some(name)
                    && j.metadata.deletion_timestamp.is_none()
                    && label(j, JOB_RESTART_ATTEMPT_KEY) == attempt
            })
        },
    )
    .await;
    env.jobs(js)
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(name))
        .expect("the replacement exists")
}

#[test]
fn restart_job_recreates_only_the_failed_job_with_its_job_restart_attempt() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("rj", 3, "RestartJob")).await;
        let jobs = env.wait_jobs("rj", 4).await;
        assert_eq!(
            names(&jobs),
            [
                "rj-leader-0",
                "rj-workers-0",
                "rj-workers-1",
                "rj-workers-2"
            ]
        );
        assert!(
            jobs.iter()
                .all(|j| label(j, JOB_RESTART_ATTEMPT_KEY) == "0")
        );
        let uids: Vec<_> = jobs.iter().map(|j| j.metadata.uid.clone()).collect();
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "boom").await;
        let replaced = wait_replaced(&env, "rj", "rj-workers-1", "1").await;
        assert_eq!(label(&replaced, RESTART_ATTEMPT_KEY), "0");
        let pod_labels = replaced
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        assert_eq!(
            pod_labels.labels.as_ref().unwrap()[JOB_RESTART_ATTEMPT_KEY],
            "1"
        );
        let now = env.jobs("rj").await;
        for (i, j) in now.iter().enumerate() {
            if i != 2 {
                assert_eq!(j.metadata.uid, uids[i], "{:?} kept", j.metadata.name);
            }
        }
        let js = env.get("rj").await;
        let w = workers_status(&js);
        assert_eq!(w.job_restarts, [0, 1, 0]);
        assert_eq!(w.job_restarts_count_towards_max, [0, 1, 0]);
        let s = js.status.unwrap();
        assert_eq!(s.restarts, 0);
        assert!(
            s.conditions.iter().all(|c| c.type_ != "RestartingJobSet"),
            "RestartJob sets no Restarting condition: {:?}",
            s.conditions
        );
        env.stop().await;
    });
}

#[test]
fn restart_job_emits_its_action_event_naming_the_job_and_plugin() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("rjev", 3, "RestartJob")).await;
        let jobs = env.wait_jobs("rjev", 4).await;
        env.fail_job(&jobs[3], "BackoffLimitExceeded", "boom").await;
        let e = env
            .wait_event("rjev", "RestartJobFailurePolicyAction")
            .await;
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            e.note.as_deref(),
            Some("applying RestartJob failure policy action (first failed job: rjev-workers-2)")
        );
        env.stop().await;
    });
}

#[test]
fn restart_job_counts_toward_max_restarts() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("rjmax", 1, "RestartJob")).await;
        let jobs = env.wait_jobs("rjmax", 4).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "one").await;
        let again = wait_replaced(&env, "rjmax", "rjmax-workers-0", "1").await;
        env.fail_job(&again, "BackoffLimitExceeded", "two").await;
        env.wait_condition("rjmax", "Failed").await;
        let c = env.condition("rjmax", "Failed").await.unwrap();
        assert_eq!(c.reason, "ReachedMaxRestarts");
        assert!(c.message.contains("rjmax-workers-0"), "{}", c.message);
        env.stop().await;
    });
}

#[test]
fn per_job_restarts_add_to_jobset_restarts_when_checking_max() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        // One per-Job restart of a worker, then a leader failure that takes
        // the default RestartJobSet: 1 + 0 restarts already reach max 1.
        env.create(&fixture("mixed", 1, "RestartJob")).await;
        let jobs = env.wait_jobs("mixed", 4).await;
        env.fail_job(&jobs[3], "BackoffLimitExceeded", "worker")
            .await;
        wait_replaced(&env, "mixed", "mixed-workers-2", "1").await;
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "leader")
            .await;
        env.wait_condition("mixed", "Failed").await;
        let c = env.condition("mixed", "Failed").await.unwrap();
        assert_eq!(c.reason, "ReachedMaxRestarts");
        assert!(c.message.contains("mixed-leader-0"), "{}", c.message);
        env.stop().await;
    });
}

#[test]
fn restart_job_and_ignore_max_restarts_restarts_past_max_without_counting() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("rjfree", 0, "RestartJobAndIgnoreMaxRestarts"))
            .await;
        let jobs = env.wait_jobs("rjfree", 4).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "one").await;
        let again = wait_replaced(&env, "rjfree", "rjfree-workers-0", "1").await;
        env.fail_job(&again, "BackoffLimitExceeded", "two").await;
        wait_replaced(&env, "rjfree", "rjfree-workers-0", "2").await;
        let js = env.get("rjfree").await;
        let w = workers_status(&js);
        assert_eq!(w.job_restarts, [2, 0, 0]);
        assert_eq!(w.job_restarts_count_towards_max, [0, 0, 0]);
        assert!(env.condition("rjfree", "Failed").await.is_none());
        env.wait_event(
            "rjfree",
            "RestartJobAndIgnoreMaxRestartsFailurePolicyAction",
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn two_failed_jobs_are_restarted_one_action_per_reconcile() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("both", 5, "RestartJob")).await;
        let jobs = env.wait_jobs("both", 4).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "a").await;
        env.fail_job(&jobs[3], "BackoffLimitExceeded", "b").await;
        wait_replaced(&env, "both", "both-workers-0", "1").await;
        wait_replaced(&env, "both", "both-workers-2", "1").await;
        let w = workers_status(&env.get("both").await);
        assert_eq!(w.job_restarts, [1, 0, 1]);
        let reports = env.reports.lock().unwrap().clone();
        for r in reports.iter().filter(|r| r.name == "both") {
            let restarts = r
                .plan
                .decisions
                .iter()
                .filter(|d| d.contains("restart job"))
                .count();
            assert!(
                restarts <= 1,
                "one action per reconcile: {:?}",
                r.plan.decisions
            );
        }
        env.stop().await;
    });
}

#[test]
fn with_the_gate_off_a_restart_job_rule_changes_nothing_and_is_retried() {
    // The JobSet got in while the gate was on (the simulated API server
    // here has no admission webhook); the controller now runs without it.
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("gated", 3, "RestartJob")).await;
        let jobs = env.wait_jobs("gated", 4).await;
        for j in &jobs {
            assert_eq!(label(j, RESTART_ATTEMPT_KEY), "0");
            assert!(
                !j.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(JOB_RESTART_ATTEMPT_KEY)),
                "no per-Job attempt without the gate: {:?}",
                j.metadata.labels
            );
        }
        let uids: Vec<_> = jobs.iter().map(|j| j.metadata.uid.clone()).collect();
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "boom").await;
        let refused = "RestartJob failure policy action cannot be used when the feature gate \
                       RestartJob is disabled";
        env.wait_until(
            "the restart is refused twice (retried)",
            Duration::from_secs(60),
            || async {
                env.decisions("gated")
                    .iter()
                    .filter(|d| d.contains(refused))
                    .count()
                    >= 2
            },
        )
        .await;
        let now = env.jobs("gated").await;
        assert_eq!(
            now.iter()
                .map(|j| j.metadata.uid.clone())
                .collect::<Vec<_>>(),
            uids,
            "no Job was deleted or recreated"
        );
        let js = env.get("gated").await;
        let s = js.status.unwrap();
        assert_eq!((s.restarts, s.restarts_count_towards_max), (0, 0));
        assert!(s.conditions.is_empty(), "{:?}", s.conditions);
        let w = s
            .replicated_jobs_status
            .iter()
            .find(|r| r.name == "workers")
            .expect("workers status");
        assert_eq!(w.failed, 1);
        assert!(w.job_restarts.is_empty());
        assert!(env.events("gated").await.is_empty());
        env.stop().await;
    });
}
