//! Suspend and resume end to end (spec 4.7, appendix B.6-7): suspended
//! JobSets still create suspended Jobs; pod-template changes made while
//! suspended reach the resumed Jobs (maps merged, tolerations unioned)
//! after `startTime` is cleared; a JobSet can be suspended again.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

fn fixture(name: &str, suspend: bool) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  suspend: {suspend}
  failurePolicy: {{maxRestarts: 1}}
  replicatedJobs:
  - name: workers
    replicas: 2
    template:
      spec:
        template:
          metadata: {{labels: {{keep: me}}}}
          spec:
            nodeSelector: {{old: sel}}
            tolerations: [{{key: old, operator: Exists, effect: NoSchedule}}]
            containers: [{{name: c, image: busybox}}]
"#
    )
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

async fn wait_all(env: &Env, js: &str, want_suspended: bool) -> Vec<Job> {
    env.wait_until(
        &format!("every Job of {js} has suspend={want_suspended}"),
        Duration::from_secs(60),
        || async {
            let jobs = env.jobs(js).await;
            !jobs.is_empty() && jobs.iter().all(|j| suspended(j) == want_suspended)
        },
    )
    .await;
    env.jobs(js).await
}

/// Changes the pod template while suspended, as Kueue does, and resumes in
/// the same update; a conflict with a status write in between is retried
/// on the fresh object, as Kueue retries it.
async fn resume_with_kueue_changes(env: &Env, js: &str) {
    for _ in 0..10 {
        let current = env.get(js).await;
        let mut value = serde_json::to_value(&current).unwrap();
        let pod = value
            .pointer_mut("/spec/replicatedJobs/0/template/spec/template")
            .unwrap();
        pod["metadata"]["labels"]["kueue.x-k8s.io/flavor"] = json!("tpu");
        pod["spec"]["nodeSelector"]["cloud/flavor"] = json!("tpu-v5");
        pod["spec"]["tolerations"] =
            json!([{"key": "flavor", "operator": "Equal", "value": "tpu", "effect": "NoSchedule"}]);
        value["spec"]["suspend"] = json!(false);
        let updated: jobset_api::JobSet = serde_json::from_value(value).unwrap();
        match env
            .jobsets()
            .replace(js, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("the JobSet is updated: {e}"),
        }
    }
    panic!("the JobSet could not be updated in 10 tries: every one conflicted");
}

#[test]
fn a_suspended_jobset_creates_suspended_jobs_and_says_it_is_suspended() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("susp", true)).await;
        let jobs = env.wait_jobs("susp", 2).await;
        assert!(jobs.iter().all(suspended));
        env.wait_condition("susp", "Suspended").await;
        let c = env.condition("susp", "Suspended").await.unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("SuspendedJobs", "jobset is suspended")
        );
        // The counts follow within the status interval (a change of
        // counts alone is written at most once a second).
        env.wait_until(
            "both Jobs are counted suspended",
            Duration::from_secs(2),
            || async {
                let s = env.get("susp").await.status.unwrap_or_default();
                s.replicated_jobs_status.first().map(|r| r.suspended) == Some(2)
            },
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn resuming_unsuspends_every_job_and_sets_suspended_false() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("res", true)).await;
        env.wait_jobs("res", 2).await;
        env.wait_condition("res", "Suspended").await;
        env.patch_spec("res", json!({"suspend": false})).await;
        wait_all(&env, "res", false).await;
        env.wait_until("Suspended turns False", Duration::from_secs(60), || async {
            env.condition("res", "Suspended")
                .await
                .is_some_and(|c| c.status == "False")
        })
        .await;
        let c = env.condition("res", "Suspended").await.unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("ResumeJobs", "jobset is resumed")
        );
        let e = env.wait_event("res", "ResumeJobs").await;
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        env.stop().await;
    });
}

#[test]
fn template_changes_made_while_suspended_reach_the_resumed_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("kueue", true)).await;
        env.wait_jobs("kueue", 2).await;
        resume_with_kueue_changes(&env, "kueue").await;
        let jobs = wait_all(&env, "kueue", false).await;
        for job in &jobs {
            let pod = &job.spec.as_ref().unwrap().template;
            let labels = pod.metadata.as_ref().unwrap().labels.clone().unwrap();
            assert_eq!(labels["kueue.x-k8s.io/flavor"], "tpu");
            assert_eq!(labels["keep"], "me");
            assert_eq!(labels["jobset.sigs.k8s.io/jobset-name"], "kueue");
            let spec = pod.spec.as_ref().unwrap();
            let sel = spec.node_selector.clone().unwrap();
            assert_eq!(sel["cloud/flavor"], "tpu-v5");
            assert_eq!(sel["old"], "sel", "node selectors are merged");
            let keys: Vec<_> = spec
                .tolerations
                .clone()
                .unwrap()
                .into_iter()
                .filter_map(|t| t.key)
                .collect();
            assert!(keys.contains(&"flavor".to_string()), "{keys:?}");
            assert!(
                keys.contains(&"old".to_string()),
                "tolerations are unioned: {keys:?}"
            );
        }
        env.stop().await;
    });
}

#[test]
fn resuming_clears_the_start_time_of_a_job_that_had_started() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("start", true)).await;
        let jobs = env.wait_jobs("start", 2).await;
        let t = env.sim.clock().now_rfc3339();
        for j in &jobs {
            env.jobs_api()
                .patch_status(
                    j.metadata.name.as_deref().unwrap(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"startTime": t}})),
                )
                .await
                .expect("startTime set");
        }
        resume_with_kueue_changes(&env, "start").await;
        let jobs = wait_all(&env, "start", false).await;
        for j in &jobs {
            let start = j.status.as_ref().and_then(|s| s.start_time.clone());
            assert!(
                start.is_none(),
                "{:?} kept startTime {start:?}",
                j.metadata.name
            );
            let sel = j
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .node_selector
                .clone()
                .unwrap();
            assert_eq!(sel["cloud/flavor"], "tpu-v5");
        }
        env.stop().await;
    });
}

#[test]
fn suspending_a_running_jobset_suspends_its_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("run", false)).await;
        let jobs = env.wait_jobs("run", 2).await;
        assert!(jobs.iter().all(|j| !suspended(j)));
        env.patch_spec("run", json!({"suspend": true})).await;
        wait_all(&env, "run", true).await;
        env.wait_condition("run", "Suspended").await;
        env.stop().await;
    });
}

#[test]
fn a_resumed_jobset_can_be_suspended_again_and_resumed_again() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("again", true)).await;
        env.wait_jobs("again", 2).await;
        env.patch_spec("again", json!({"suspend": false})).await;
        wait_all(&env, "again", false).await;
        env.patch_spec("again", json!({"suspend": true})).await;
        wait_all(&env, "again", true).await;
        env.wait_condition("again", "Suspended").await;
        env.patch_spec("again", json!({"suspend": false})).await;
        wait_all(&env, "again", false).await;
        env.wait_until(
            "Suspended turns False again",
            Duration::from_secs(60),
            || async {
                env.condition("again", "Suspended")
                    .await
                    .is_some_and(|c| c.status == "False")
            },
        )
        .await;
        let suspended_events = env
            .events("again")
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuspendedJobs"))
            .count();
        assert!(
            suspended_events >= 1,
            "the Suspended condition events are emitted"
        );
        env.stop().await;
    });
}

#[test]
fn a_never_suspended_jobset_has_no_suspended_condition() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("never", false)).await;
        env.wait_jobs("never", 2).await;
        env.settle().await;
        assert!(
            env.condition("never", "Suspended").await.is_none(),
            "a False condition is never created from scratch"
        );
        env.stop().await;
    });
}

#[test]
fn pod_fields_newer_than_the_compiled_types_survive_creation_and_resume() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        let yaml = fixture("newer", true).replace(
            "            nodeSelector:",
            "            schedulingGroup: {podGroupName: workers}\n            nodeSelector:",
        );
        env.create(&yaml).await;
        env.wait_jobs("newer", 2).await;
        resume_with_kueue_changes(&env, "newer").await;
        let jobs = wait_all(&env, "newer", false).await;
        let raw = env.sim.client("test");
        let res = jobset_sim::Resource::new("batch", "v1", "jobs");
        for job in &jobs {
            let name = job.metadata.name.as_deref().unwrap();
            let stored = raw.get(&res, Some("default"), name).await.unwrap();
            let pod = &stored["spec"]["template"]["spec"];
            assert_eq!(
                pod["schedulingGroup"]["podGroupName"], "workers",
                "{name}: {stored}"
            );
            assert_eq!(pod["nodeSelector"]["cloud/flavor"], "tpu-v5", "{name}");
            assert_eq!(stored["spec"]["suspend"], false, "{name}");
        }
        env.stop().await;
    });
}
