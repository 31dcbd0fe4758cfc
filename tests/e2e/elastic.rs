//! Elastic JobSets end to end (gate ElasticJobSet) on the simulated
//! cluster: a running JobSet's Indexed workers grow and shrink in place
//! (same Jobs, new pods for new indexes, the pods of dropped indexes
//! deleted, nothing restarted), and with the gate off the change is refused
//! at admission in upstream's words while the Jobs keep their size.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use jobset_sim::Resource;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const ELASTIC: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: elastic, namespace: default}
spec:
  replicatedJobs:
  - name: workers
    replicas: 2
    template:
      spec:
        completionMode: Indexed
        parallelism: 2
        completions: 2
        template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}
"#;

/// Pods run an hour: nothing finishes on its own during the test.
const LONG_RUNS: &str = "defaultDuration: 1h\n";

fn size(job: &Job) -> (Option<i32>, Option<i32>) {
    let spec = job.spec.as_ref();
    (
        spec.and_then(|s| s.parallelism),
        spec.and_then(|s| s.completions),
    )
}

/// The completion indexes of the running, undeleted pods of Job `job`.
async fn running_indexes(env: &Env, job: &str) -> Vec<u32> {
    let client = env.sim.client("e2e");
    let pods = client
        .list(
            &Resource::pods(),
            Some("default"),
            Some(&format!("batch.kubernetes.io/job-name={job}")),
        )
        .await
        .expect("pods list");
    let mut indexes: Vec<u32> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()?
                .parse()
                .ok()
        })
        .collect();
    indexes.sort_unstable();
    indexes
}

async fn wait_running(env: &Env, job: &str, want: &[u32]) {
    env.wait_until(
        &format!("Job {job} runs the pods of indexes {want:?}"),
        Duration::from_secs(300),
        || async { running_indexes(env, job).await == want },
    )
    .await;
}

fn resize(pods: i32) -> Patch<Value> {
    Patch::Json(
        serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/replicatedJobs/0/template/spec/parallelism", "value": pods},
            {"op": "replace", "path": "/spec/replicatedJobs/0/template/spec/completions", "value": pods},
        ]))
        .expect("a JSON patch"),
    )
}

#[test]
fn a_running_jobset_grows_and_shrinks_its_jobs_in_place() {
    runtime().block_on(async {
        let (env, _cluster) = Env::start_on_cluster(
            Arc::new(NativeDefaults),
            &["ElasticJobSet"],
            "default",
            LONG_RUNS,
        )
        .await;
        env.create(ELASTIC).await;
        let jobs = env.wait_jobs("elastic", 2).await;
        let uids: Vec<_> = jobs.iter().map(|j| j.metadata.uid.clone()).collect();
        wait_running(&env, "elastic-workers-0", &[0, 1]).await;

        env.jobsets()
            .patch("elastic", &PatchParams::default(), &resize(4))
            .await
            .expect("the ElasticJobSet gate admits the resize");
        env.wait_until(
            "both Jobs are resized to 4",
            Duration::from_secs(60),
            || async {
                env.jobs("elastic")
                    .await
                    .iter()
                    .all(|j| size(j) == (Some(4), Some(4)))
            },
        )
        .await;
        wait_running(&env, "elastic-workers-0", &[0, 1, 2, 3]).await;
        wait_running(&env, "elastic-workers-1", &[0, 1, 2, 3]).await;

        env.jobsets()
            .patch("elastic", &PatchParams::default(), &resize(1))
            .await
            .expect("the ElasticJobSet gate admits the resize");
        wait_running(&env, "elastic-workers-0", &[0]).await;
        wait_running(&env, "elastic-workers-1", &[0]).await;

        // The same Jobs throughout, no restart, and the pods of the
        // dropped indexes did not count as failures.
        let jobs = env.jobs("elastic").await;
        assert_eq!(
            jobs.iter()
                .map(|j| j.metadata.uid.clone())
                .collect::<Vec<_>>(),
            uids
        );
        for job in &jobs {
            assert_eq!(size(job), (Some(1), Some(1)));
            let failed = job.status.as_ref().and_then(|s| s.failed).unwrap_or(0);
            assert_eq!(failed, 0, "{:?}", job.status);
        }
        let js = env.get("elastic").await;
        assert_eq!(js.status.map(|s| s.restarts), Some(0));
        env.stop().await;
    });
}

#[test]
fn with_the_gate_off_a_resize_is_refused_and_the_jobs_keep_their_size() {
    runtime().block_on(async {
        let (env, _cluster) =
            Env::start_on_cluster(Arc::new(NativeDefaults), &[], "default", LONG_RUNS).await;
        env.create(ELASTIC).await;
        env.wait_jobs("elastic", 2).await;
        let err = env
            .jobsets()
            .patch("elastic", &PatchParams::default(), &resize(4))
            .await
            .expect_err("without the gate replicated jobs are immutable");
        let message = err.to_string();
        assert!(
            message.contains(
                "spec.replicatedJobs[0].template.spec.parallelism: Forbidden: field is immutable"
            ),
            "{message}"
        );
        env.settle().await;
        assert!(
            env.jobs("elastic")
                .await
                .iter()
                .all(|j| size(j) == (Some(2), Some(2)))
        );
        env.stop().await;
    });
}

#[test]
fn with_the_gate_on_unequal_sizes_are_refused_in_upstreams_words() {
    runtime().block_on(async {
        let (env, _cluster) =
            Env::start_on_cluster(Arc::new(NativeDefaults), &["ElasticJobSet"], "default", LONG_RUNS).await;
        env.create(ELASTIC).await;
        env.wait_jobs("elastic", 2).await;
        let unequal: Patch<Value> = Patch::Json(
            serde_json::from_value(json!([
                {"op": "replace", "path": "/spec/replicatedJobs/0/template/spec/parallelism", "value": 4},
            ]))
            .expect("a JSON patch"),
        );
        let err = env
            .jobsets()
            .patch("elastic", &PatchParams::default(), &unequal)
            .await
            .expect_err("parallelism alone is refused");
        assert!(
            err.to_string().contains(
                "spec.replicatedJobs[0].template.spec.completions: Invalid value: 2: completions must be equal to parallelism for Elastic Indexed Jobs"
            ),
            "{err}"
        );
        env.stop().await;
    });
}
