//! In-place restart end to end (gate InPlaceRestart) on the simulated
//! cluster, with the test playing the agents: each pod's agent writes its
//! attempt into the pod annotation, and the controller answers through
//! the JobSet's status as upstream's protocol says. The pods keep their
//! names throughout; nothing is recreated.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::labels::IN_PLACE_RESTART_ATTEMPT_KEY;
use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use jobset_sim::{PatchKind, Resource};
use serde_json::{Value, json};

const IN_PLACE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: ipr, namespace: default}
spec:
  failurePolicy: {maxRestarts: 2, restartStrategy: InPlaceRestart}
  replicatedJobs:
  - name: workers
    replicas: 2
    template:
      spec:
        completionMode: Indexed
        parallelism: 2
        completions: 2
        backoffLimit: 2147483647
        podReplacementPolicy: Failed
        template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}
"#;

/// The InPlaceRestart gate on, and pods that run an hour.
async fn start() -> (Env, jobset_sim::cluster::ClusterHandle) {
    Env::start_on_cluster(
        Arc::new(NativeDefaults),
        &["InPlaceRestart"],
        "default",
        "defaultDuration: 1h\n",
    )
    .await
}

async fn running_pods(env: &Env) -> Vec<String> {
    let pods = env
        .sim
        .client("e2e")
        .list(
            &Resource::pods(),
            Some("default"),
            Some("jobset.sigs.k8s.io/jobset-name=ipr"),
        )
        .await
        .expect("pods list");
    let mut names: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// What an agent does when it starts: writes its pod's attempt.
async fn report(env: &Env, pod: &str, attempt: i32) {
    env.sim
        .client("in-place-restart-agent")
        .patch(
            &Resource::pods(),
            Some("default"),
            pod,
            PatchKind::Merge,
            &json!({"metadata": {"annotations": {IN_PLACE_RESTART_ATTEMPT_KEY: attempt.to_string()}}}),
        )
        .await
        .unwrap_or_else(|e| panic!("pod {pod} annotated: {e:?}"));
}

async fn wait_status(env: &Env, what: &str, check: impl Fn(&Value) -> bool) {
    env.wait_until(what, Duration::from_secs(60), || async {
        let js = env.get("ipr").await;
        check(&serde_json::to_value(&js.status).unwrap_or_default())
    })
    .await;
}

#[test]
fn agents_at_one_attempt_lift_the_barrier_and_one_restart_brings_the_others_along() {
    runtime().block_on(async {
        let (env, _cluster) = start().await;
        env.create(IN_PLACE).await;
        env.wait_until("four pods run", Duration::from_secs(120), || async {
            running_pods(&env).await.len() == 4
        })
        .await;
        let pods = running_pods(&env).await;
        assert_eq!(env.metrics.pod_watches().0, 1, "one pod watch, for ipr");

        // First start: every agent reports 0, the barrier lifts at 0.
        for p in &pods {
            report(&env, p, 0).await;
        }
        wait_status(&env, "currentInPlaceRestartAttempt is 0", |s| {
            s["currentInPlaceRestartAttempt"] == 0
        })
        .await;

        // A worker crashes; its agent restarts and reports current + 1.
        report(&env, &pods[1], 1).await;
        wait_status(&env, "previousInPlaceRestartAttempt is 0", |s| {
            s["previousInPlaceRestartAttempt"] == 0 && s["currentInPlaceRestartAttempt"] == 0
        })
        .await;
        // The other agents see their attempt at or below the previous one,
        // restart in place and report 1 too: the barrier lifts at 1.
        for p in pods.iter().filter(|p| **p != pods[1]) {
            report(&env, p, 1).await;
        }
        wait_status(&env, "currentInPlaceRestartAttempt is 1", |s| {
            s["currentInPlaceRestartAttempt"] == 1
        })
        .await;

        // Same pods, same Jobs, no recreation.
        assert_eq!(running_pods(&env).await, pods);
        let js = env.get("ipr").await;
        assert_eq!(js.status.as_ref().map(|s| s.restarts), Some(0));
        assert_eq!(env.jobs("ipr").await.len(), 2);

        // Past maxRestarts (2): the JobSet fails in upstream's words, and its
        // pod watch ends.
        report(&env, &pods[0], 3).await;
        let failed = env.wait_condition("ipr", "Failed").await;
        let c = failed
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Failed"))
            .cloned()
            .expect("Failed");
        assert_eq!(c.reason, "ReachedMaxRestarts");
        assert_eq!(
            c.message,
            "jobset failed due to reaching max number of restarts"
        );
        env.wait_until("the pod watch ends", Duration::from_secs(60), || async {
            env.metrics.pod_watches() == (0, 0)
        })
        .await;
        env.stop().await;
    });
}

#[test]
fn without_an_in_place_jobset_no_pod_is_watched() {
    runtime().block_on(async {
        let (env, _cluster) = start().await;
        env.create(&IN_PLACE.replace(
            "restartStrategy: InPlaceRestart",
            "restartStrategy: Recreate",
        ))
        .await;
        env.wait_jobs("ipr", 2).await;
        env.settle().await;
        assert_eq!(env.metrics.pod_watches(), (0, 0));
        env.stop().await;
    });
}

#[test]
fn deleting_an_in_place_jobset_ends_its_pod_watch() {
    runtime().block_on(async {
        let (env, _cluster) = start().await;
        env.create(IN_PLACE).await;
        env.wait_until("the pods are watched", Duration::from_secs(120), || async {
            env.metrics.pod_watches() == (1, 4)
        })
        .await;
        env.jobsets()
            .delete("ipr", &Default::default())
            .await
            .expect("the JobSet is deleted");
        env.wait_until("the pod watch ends", Duration::from_secs(60), || async {
            env.metrics.pod_watches() == (0, 0)
        })
        .await;
        env.stop().await;
    });
}
