//! Startup order end to end (spec 4.5, 4.7, appendix B.6): InOrder creates
//! and resumes replicated jobs one by one as each becomes ready; dependsOn
//! waits for Ready or Complete, even while the JobSet is suspended.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, names, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::batch::v1::Job;

const TEMPLATE: &str =
    "template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}";

fn in_order(name: &str, suspend: bool) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  suspend: {suspend}
  startupPolicy: {{startupPolicyOrder: InOrder}}
  failurePolicy: {{maxRestarts: 2}}
  replicatedJobs:
  - {{name: a, replicas: 1, {TEMPLATE}}}
  - {{name: b, replicas: 2, {TEMPLATE}}}
  - {{name: c, replicas: 1, {TEMPLATE}}}
"#
    )
}

/// `b` depends on `a` with `b_status`; `c` depends on `b` with `c_status`.
fn depends(name: &str, b_status: &str, c_status: &str, suspend: bool) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  suspend: {suspend}
  replicatedJobs:
  - {{name: a, replicas: 1, {TEMPLATE}}}
  - {{name: b, replicas: 2, dependsOn: [{{name: a, status: {b_status}}}], {TEMPLATE}}}
  - {{name: c, replicas: 1, dependsOn: [{{name: b, status: {c_status}}}], {TEMPLATE}}}
"#
    )
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// Lets time pass, then asserts the JobSet's Jobs are exactly `expected`.
async fn assert_jobs_stay(env: &Env, js: &str, expected: &[&str]) -> Vec<Job> {
    tokio::time::sleep(Duration::from_secs(20)).await;
    let jobs = env.jobs(js).await;
    assert_eq!(names(&jobs), expected);
    jobs
}

#[test]
fn in_order_creates_each_replicated_job_after_the_previous_one_is_ready() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ord", false)).await;
        let a = assert_jobs_stay(&env, "ord", &["ord-a-0"]).await;
        let c = env
            .condition("ord", "StartupPolicyInProgress")
            .await
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            (
                "True",
                "InOrderStartupPolicyInProgress",
                "in order startup policy is in progress"
            )
        );
        env.ready_job(&a[0]).await;
        let jobs = env.wait_jobs("ord", 3).await;
        assert_eq!(names(&jobs), ["ord-a-0", "ord-b-0", "ord-b-1"]);
        // One of b's two Jobs ready is not enough for c.
        env.ready_job(&jobs[1]).await;
        let jobs = assert_jobs_stay(&env, "ord", &["ord-a-0", "ord-b-0", "ord-b-1"]).await;
        env.ready_job(&jobs[2]).await;
        let jobs = env.wait_jobs("ord", 4).await;
        env.ready_job(&jobs[3]).await;
        env.wait_condition("ord", "StartupPolicyCompleted").await;
        let done = env
            .condition("ord", "StartupPolicyCompleted")
            .await
            .unwrap();
        assert_eq!(done.reason, "InOrderStartupPolicyCompleted");
        assert_eq!(done.message, "in order startup policy has completed");
        let ip = env
            .condition("ord", "StartupPolicyInProgress")
            .await
            .unwrap();
        assert_eq!(ip.status, "False", "InProgress and Completed are exclusive");
        env.stop().await;
    });
}

#[test]
fn in_order_counts_a_completed_job_as_started() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ordc", false)).await;
        let a = env.wait_jobs("ordc", 1).await;
        env.complete_job(&a[0]).await;
        let jobs = env.wait_jobs("ordc", 3).await;
        assert_eq!(names(&jobs), ["ordc-a-0", "ordc-b-0", "ordc-b-1"]);
        env.stop().await;
    });
}

#[test]
fn in_order_emits_its_progress_condition_event() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ordev", false)).await;
        let e = env
            .wait_event("ordev", "InOrderStartupPolicyInProgress")
            .await;
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(
            e.note.as_deref(),
            Some("in order startup policy is in progress")
        );
        env.stop().await;
    });
}

#[test]
fn a_suspended_in_order_jobset_creates_every_job_suspended() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ords", true)).await;
        let jobs = env.wait_jobs("ords", 4).await;
        assert!(jobs.iter().all(suspended), "all created suspended");
        assert!(
            env.condition("ords", "StartupPolicyInProgress")
                .await
                .is_none()
        );
        env.stop().await;
    });
}

#[test]
fn resuming_an_in_order_jobset_resumes_replicated_jobs_one_by_one() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ordr", true)).await;
        env.wait_jobs("ordr", 4).await;
        env.patch_spec("ordr", serde_json::json!({"suspend": false}))
            .await;
        env.wait_until("a is resumed", Duration::from_secs(60), || async {
            !suspended(&env.jobs("ordr").await[0])
        })
        .await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let jobs = env.jobs("ordr").await;
        assert!(jobs[1..].iter().all(suspended), "b and c wait for a");
        env.ready_job(&jobs[0]).await;
        env.wait_until("b is resumed", Duration::from_secs(60), || async {
            let jobs = env.jobs("ordr").await;
            !suspended(&jobs[1]) && !suspended(&jobs[2])
        })
        .await;
        assert!(suspended(&env.jobs("ordr").await[3]), "c waits for b");
        env.stop().await;
    });
}

#[test]
fn in_order_starts_over_from_the_first_replicated_job_after_a_restart() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&in_order("ordre", false)).await;
        let a = env.wait_jobs("ordre", 1).await;
        env.ready_job(&a[0]).await;
        let jobs = env.wait_jobs("ordre", 3).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "boom").await;
        env.wait_attempt("ordre", 1, 1).await;
        assert_jobs_stay(&env, "ordre", &["ordre-a-0"]).await;
        env.stop().await;
    });
}

#[test]
fn depends_on_ready_creates_the_dependent_once_its_dependency_is_ready() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&depends("dr", "Ready", "Ready", false)).await;
        let a = assert_jobs_stay(&env, "dr", &["dr-a-0"]).await;
        env.ready_job(&a[0]).await;
        let jobs = env.wait_jobs("dr", 3).await;
        assert_eq!(names(&jobs), ["dr-a-0", "dr-b-0", "dr-b-1"]);
        env.ready_job(&jobs[1]).await;
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "x").await;
        // A failed Job has no failure policy here: the JobSet fails, and c is
        // never created.
        env.wait_condition("dr", "Failed").await;
        assert!(
            env.jobs("dr")
                .await
                .iter()
                .all(|j| j.metadata.name.as_deref() != Some("dr-c-0"))
        );
        env.stop().await;
    });
}

#[test]
fn depends_on_complete_is_not_met_by_a_ready_dependency() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&depends("dc", "Complete", "Ready", false)).await;
        let a = env.wait_jobs("dc", 1).await;
        env.ready_job(&a[0]).await;
        let a = assert_jobs_stay(&env, "dc", &["dc-a-0"]).await;
        env.complete_job(&a[0]).await;
        let jobs = env.wait_jobs("dc", 3).await;
        assert_eq!(names(&jobs), ["dc-a-0", "dc-b-0", "dc-b-1"]);
        env.stop().await;
    });
}

#[test]
fn a_depends_on_chain_creates_replicated_jobs_link_by_link() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&depends("chain", "Ready", "Complete", false))
            .await;
        let a = env.wait_jobs("chain", 1).await;
        env.ready_job(&a[0]).await;
        let jobs = env.wait_jobs("chain", 3).await;
        env.ready_job(&jobs[1]).await;
        env.ready_job(&jobs[2]).await;
        assert_jobs_stay(&env, "chain", &["chain-a-0", "chain-b-0", "chain-b-1"]).await;
        env.complete_job(&jobs[1]).await;
        env.complete_job(&jobs[2]).await;
        let jobs = env.wait_jobs("chain", 4).await;
        assert_eq!(names(&jobs)[3], "chain-c-0");
        env.stop().await;
    });
}

#[test]
fn a_suspended_jobset_with_depends_on_only_creates_jobs_whose_dependencies_are_met() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&depends("ds", "Ready", "Ready", true)).await;
        let jobs = assert_jobs_stay(&env, "ds", &["ds-a-0"]).await;
        assert!(suspended(&jobs[0]));
        env.patch_spec("ds", serde_json::json!({"suspend": false}))
            .await;
        env.wait_until("a is resumed", Duration::from_secs(60), || async {
            !suspended(&env.jobs("ds").await[0])
        })
        .await;
        let a = env.jobs("ds").await;
        env.ready_job(&a[0]).await;
        let jobs = env.wait_jobs("ds", 3).await;
        assert!(
            jobs[1..].iter().all(|j| !suspended(j)),
            "b is created running"
        );
        env.stop().await;
    });
}
