//! Status and observability end to end (spec 2.6, 4.10, 4.11, 6): the
//! replicatedJobsStatus counters, condition events, the reconcile and
//! per-plugin metrics, the plan reports naming the deciding plugin, and a
//! Job template the API rejects.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::ReplicatedJobStatus;
use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const TEMPLATE: &str =
    "template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}";

fn fixture(name: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  failurePolicy: {{maxRestarts: 1, rules: [{{name: perjob, action: RestartJobAndIgnoreMaxRestarts}}]}}
  replicatedJobs:
  - {{name: w, replicas: 4, {TEMPLATE}}}
  - {{name: later, replicas: 1, dependsOn: [{{name: w, status: Complete}}], {TEMPLATE}}}
"#
    )
}

async fn counts(env: &Env, js: &str, rjob: &str) -> ReplicatedJobStatus {
    env.get(js)
        .await
        .status
        .and_then(|s| {
            s.replicated_jobs_status
                .into_iter()
                .find(|r| r.name == rjob)
        })
        .unwrap_or_default()
}

/// The value of a metric line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn replicated_jobs_status_counts_ready_active_and_succeeded_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("counts")).await;
        let jobs = env.wait_jobs("counts", 4).await;
        env.ready_job(&jobs[0]).await;
        env.active_job(&jobs[1]).await;
        env.complete_job(&jobs[2]).await;
        env.wait_until(
            "the counters are written",
            Duration::from_secs(60),
            || async {
                let c = counts(&env, "counts", "w").await;
                (c.ready, c.active, c.succeeded, c.failed, c.suspended) == (1, 2, 1, 0, 0)
            },
        )
        .await;
        let later = counts(&env, "counts", "later").await;
        assert_eq!(
            (later.ready, later.active, later.succeeded, later.failed),
            (0, 0, 0, 0),
            "an rjob with no Jobs still has an entry"
        );
        assert_eq!(
            env.get("counts")
                .await
                .status
                .unwrap()
                .replicated_jobs_status
                .len(),
            2
        );
        env.stop().await;
    });
}

#[test]
fn a_job_with_only_failure_target_counts_as_active_not_failed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("target")).await;
        let jobs = env.wait_jobs("target", 4).await;
        let t = env.sim.clock().now_rfc3339();
        env.jobs_api()
            .patch_status(
                "target-w-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"active": 1, "startTime": t, "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "dying", "lastTransitionTime": t}
                ]}})),
            )
            .await
            .expect("FailureTarget written");
        env.wait_until("the Job counts as active", Duration::from_secs(60), || async {
            counts(&env, "target", "w").await.active == 1
        })
        .await;
        env.settle().await;
        let c = counts(&env, "target", "w").await;
        assert_eq!(c.failed, 0);
        assert!(c.job_restarts.iter().all(|r| *r == 0), "no failure action ran");
        assert_eq!(env.jobs("target").await[0].metadata.uid, jobs[0].metadata.uid);
        env.stop().await;
    });
}

#[test]
fn a_failed_job_stops_counting_once_a_per_job_restart_makes_it_previous() {
    runtime().block_on(async {
        let env = Env::start_with_gates(Arc::new(NativeDefaults), &["RestartJob"]).await;
        env.create(&fixture("failed")).await;
        let jobs = env.wait_jobs("failed", 4).await;
        env.hold_job("failed-w-3").await;
        env.fail_job(&jobs[3], "BackoffLimitExceeded", "boom").await;
        env.wait_until(
            "the restart is recorded",
            Duration::from_secs(60),
            || async { counts(&env, "failed", "w").await.job_restarts == [0, 0, 0, 1] },
        )
        .await;
        // The failed Job now belongs to a previous per-Job attempt: it no
        // longer counts.
        env.wait_until(
            "the old Job stops counting",
            Duration::from_secs(60),
            || async { counts(&env, "failed", "w").await.failed == 0 },
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn the_completed_condition_emits_a_normal_event_naming_the_plugin() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: done, namespace: default}}
spec:
  replicatedJobs:
  - {{name: w, replicas: 1, {TEMPLATE}}}
"#
        ))
        .await;
        let jobs = env.wait_jobs("done", 1).await;
        env.complete_job(&jobs[0]).await;
        let e = env.wait_event("done", "AllJobsCompleted").await;
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.note.as_deref(), Some("jobset completed successfully"));
        assert_eq!(e.action.as_deref(), Some("Reconciling"));
        env.stop().await;
    });
}

#[test]
fn the_plan_reports_name_the_plugin_that_decided_the_outcome() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("reports")).await;
        let jobs = env.wait_jobs("reports", 4).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "boom").await;
        env.wait_until(
            "a restart decision is reported",
            Duration::from_secs(60),
            || async {
                env.decisions("reports").iter().any(|d| {
                    d.starts_with("outcome by default-outcome@native: restart job reports-w-1")
                })
            },
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn reconciles_and_plugin_decisions_are_counted_in_the_metrics() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("metrics")).await;
        let jobs = env.wait_jobs("metrics", 4).await;
        env.complete_job(&jobs[0]).await;
        env.settle().await;
        let text = env.metrics.render();
        let reconciles = metric(&text, "jobset_reconcile_total ").unwrap_or(0.0);
        assert!(reconciles >= 2.0, "{text}");
        let startup = metric(
            &text,
            "jobset_policy_decision_duration_seconds_count{plugin=\"default-startup@native\",slot=\"startup\"}",
        )
        .unwrap_or(0.0);
        assert!(startup >= 1.0, "{text}");
        let outcome = metric(
            &text,
            "jobset_policy_decision_duration_seconds_count{plugin=\"default-outcome@native\",slot=\"outcome\"}",
        )
        .unwrap_or(0.0);
        assert!(outcome >= 1.0, "{text}");
        env.stop().await;
    });
}

#[test]
fn a_job_template_the_api_rejects_gives_job_creation_failed_and_other_jobsets_run() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: bad, namespace: default}
spec:
  replicatedJobs:
  - name: w
    replicas: 1
    template:
      metadata: {labels: {"bad key!": x}}
      spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}
"#,
        )
        .await;
        env.create(&fixture("good")).await;
        let e = env.wait_event("bad", "JobCreationFailed").await;
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert!(env.jobs("bad").await.is_empty());
        env.wait_jobs("good", 4).await;
        env.stop().await;
    });
}

#[test]
fn a_job_of_the_same_name_that_is_not_ours_gives_upstreams_job_creation_failed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        // Someone else's Job holds the name of the JobSet's Job "squat-w-1".
        let squatter: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
            "metadata": {"name": "squat-w-1", "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("a Job");
        env.jobs_api()
            .create(&Default::default(), &squatter)
            .await
            .expect("the other Job is created");
        env.create(&format!(
            "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: squat, namespace: default}}\nspec:\n  replicatedJobs:\n  - {{name: w, replicas: 2, {TEMPLATE}}}\n"
        ))
        .await;
        let e = env.wait_event("squat", "JobCreationFailed").await;
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.action.as_deref(), Some("Reconciling"));
        assert_eq!(
            e.note.as_deref(),
            Some(r#"job "squat-w-1" creation failed with error: jobs.batch "squat-w-1" already exists"#)
        );
        // Its own Job was made; the other one is left alone.
        let ours = env.jobs("squat").await;
        assert_eq!(
            ours.iter().filter_map(|j| j.metadata.name.clone()).collect::<Vec<_>>(),
            ["squat-w-0"]
        );
        let other = env.jobs_api().get("squat-w-1").await.expect("still there");
        assert!(other.metadata.owner_references.is_none());
        env.stop().await;
    });
}

#[test]
fn a_namespaced_job_selector_over_63_characters_is_the_api_servers_refusal_as_upstream() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        // "default_" and a 58-character Job name: 66 characters, over the
        // 63 a label value (and so a nodeSelector value) may have.
        let name = format!("long{}", "n".repeat(50));
        env.create(&format!(
            "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{alpha.jobset.sigs.k8s.io/exclusive-topology: pool, alpha.jobset.sigs.k8s.io/node-selector: 'true'}}\nspec:\n  replicatedJobs:\n  - {{name: w, replicas: 1, {TEMPLATE}}}\n"
        ))
        .await;
        let e = env.wait_event(&name, "JobCreationFailed").await;
        let job = format!("{name}-w-0");
        let value = format!("default_{job}");
        assert_eq!(
            e.note.as_deref(),
            Some(
                format!(
                    "job \"{job}\" creation failed with error: Job.batch \"{job}\" is invalid: spec.template.spec.nodeSelector: Invalid value: \"{value}\": must be no more than 63 bytes"
                )
                .as_str()
            )
        );
        assert!(env.jobs(&name).await.is_empty(), "no Job was made");
        // Not the placement plugin's failure: upstream has no such condition.
        let js = env.get(&name).await;
        let conditions = js.status.map(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().all(|c| c.reason != "PolicyFailed"),
            "{conditions:?}"
        );
        env.stop().await;
    });
}
