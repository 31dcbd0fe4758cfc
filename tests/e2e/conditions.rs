//! Condition semantics end to end (spec 4.10, appendix B.5-6): a reason or
//! message change keeps lastTransitionTime, and a suspended JobSet still
//! gets its headless Service.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

const TEMPLATE: &str =
    "template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}";

fn fixture(name: &str, suspend: bool) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  suspend: {suspend}
  failurePolicy: {{maxRestarts: 3}}
  replicatedJobs:
  - {{name: leader, replicas: 1, {TEMPLATE}}}
  - {{name: workers, replicas: 2, {TEMPLATE}}}
"#
    )
}

#[test]
fn a_second_restart_updates_the_message_but_keeps_the_transition_time() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("ltt", false)).await;
        let jobs = env.wait_jobs("ltt", 3).await;
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "one").await;
        let jobs = env.wait_attempt("ltt", 1, 3).await;
        let first = env.condition("ltt", "RestartingJobSet").await.unwrap();
        assert!(first.message.contains("ltt-leader-0"), "{}", first.message);
        tokio::time::sleep(Duration::from_secs(90)).await;
        env.fail_job(&jobs[2], "BackoffLimitExceeded", "two").await;
        env.wait_attempt("ltt", 2, 3).await;
        let second = env.condition("ltt", "RestartingJobSet").await.unwrap();
        assert_eq!(second.status, "True");
        assert!(
            second.message.contains("ltt-workers-1"),
            "{}",
            second.message
        );
        assert_eq!(
            second.last_transition_time, first.last_transition_time,
            "a message change keeps lastTransitionTime"
        );
        // As upstream's recorder: each restart's events name the JobSet at
        // the version its status write made, so two restarts are two
        // Events, not one series.
        let actions: Vec<_> = env
            .events("ltt")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RestartJobSetFailurePolicyAction"))
            .collect();
        assert_eq!(
            actions.len(),
            2,
            "one action event per restart: {actions:?}"
        );
        assert!(actions.iter().all(|e| e.series.is_none()), "{actions:?}");
        let versions: std::collections::BTreeSet<_> = actions
            .iter()
            .map(|e| {
                e.regarding
                    .as_ref()
                    .and_then(|r| r.resource_version.clone())
            })
            .collect();
        assert_eq!(versions.len(), 2, "two versions: {versions:?}");
        assert!(versions.iter().all(Option::is_some), "{versions:?}");
        env.stop().await;
    });
}

#[test]
fn a_suspended_jobset_still_gets_its_headless_service() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("suspsvc", true)).await;
        env.wait_jobs("suspsvc", 3).await;
        let svcs: Api<Service> = Api::namespaced(env.client.clone(), "default");
        env.wait_until("the Service exists", Duration::from_secs(60), || async {
            svcs.get_opt("suspsvc").await.ok().flatten().is_some()
        })
        .await;
        env.stop().await;
    });
}

#[test]
fn a_failed_jobset_sets_restarting_false_with_jobset_failed() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("rf", false).replace("maxRestarts: 3", "maxRestarts: 1"))
            .await;
        let jobs = env.wait_jobs("rf", 3).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "one").await;
        let jobs = env.wait_attempt("rf", 1, 3).await;
        env.fail_job(&jobs[1], "BackoffLimitExceeded", "two").await;
        env.wait_condition("rf", "Failed").await;
        let r = env.condition("rf", "RestartingJobSet").await.unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.message.as_str()),
            ("False", "JobSetFailed", "jobset failed")
        );
        env.stop().await;
    });
}
