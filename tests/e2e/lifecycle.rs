//! Ownership and deletion end to end (spec 3.1, 4.1 steps 1 and 3,
//! appendix B.10): a JobSet being deleted is left alone, Jobs are matched
//! by owner UID rather than name, and template metadata is kept.

use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::{Env, label, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
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
  replicatedJobs:
  - {{name: w, replicas: 2, {TEMPLATE}}}
"#
    )
}

#[test]
fn a_jobset_being_deleted_does_not_recreate_its_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&fixture("going")).await;
        env.wait_jobs("going", 2).await;
        env.jobsets()
            .patch(
                "going",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold"]}})),
            )
            .await
            .expect("the JobSet is held");
        env.jobsets()
            .delete("going", &DeleteParams::background())
            .await
            .expect("the JobSet is deleted");
        // As on a cluster, where the garbage collector deletes the Jobs of a
        // JobSet only after its deletion is visible, the controller sees the
        // deletion before the Job goes; the two watches deliver in no
        // particular order between them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.jobs_api()
            .delete("going-w-0", &DeleteParams::background())
            .await
            .expect("a Job is deleted");
        tokio::time::sleep(Duration::from_secs(30)).await;
        env.release_deleted_jobs("going").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let js = env.get("going").await;
        assert!(js.metadata.deletion_timestamp.is_some());
        let left: Vec<_> = env
            .jobs("going")
            .await
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        assert!(
            left.contains(&"going-w-1".to_string()),
            "the other Job stays: {left:?}"
        );
        assert!(
            env.jobs("going")
                .await
                .iter()
                .all(|j| j.metadata.name.as_deref() != Some("going-w-0")),
            "the deleted Job is not recreated"
        );
        env.stop().await;
    });
}

#[test]
fn a_foreign_job_with_a_child_name_is_neither_adopted_nor_counted() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        let foreign: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "owned-w-0", "namespace": "default",
                         "labels": {"jobset.sigs.k8s.io/jobset-name": "owned"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        let foreign = env
            .jobs_api()
            .create(&PostParams::default(), &foreign)
            .await
            .expect("the foreign Job is created");
        env.create(&fixture("owned")).await;
        env.wait_jobs("owned", 2).await;
        env.complete_job(&foreign).await;
        let jobs = env.jobs("owned").await;
        env.complete_job(&jobs[1]).await;
        env.settle().await;
        // As upstream: creating the Job whose name is taken fails on every
        // reconcile, which then writes no status, so nothing completes.
        let e = env.wait_event("owned", "JobCreationFailed").await;
        assert!(
            e.note
                .as_deref()
                .is_some_and(|n| n.starts_with(r#"job "owned-w-0" creation failed"#)),
            "{e:?}"
        );
        let js = env.get("owned").await;
        let conditions = js.status.map(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().all(|c| c.type_ != "Completed"),
            "the foreign Job's success does not count: {conditions:?}"
        );
        let after = env.jobs_api().get("owned-w-0").await.unwrap();
        assert_eq!(after.metadata.uid, foreign.metadata.uid);
        assert!(after.metadata.owner_references.is_none(), "not adopted");
        env.stop().await;
    });
}

#[test]
fn template_labels_stay_on_the_job_and_pod_labels_on_the_pod() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: meta, namespace: default}
spec:
  replicatedJobs:
  - name: w
    replicas: 1
    template:
      metadata: {labels: {team: a, jobset.sigs.k8s.io/jobset-name: spoofed}, annotations: {note: kept}}
      spec:
        template:
          metadata: {labels: {pod: p}}
          spec: {containers: [{name: c, image: busybox}]}
"#,
        )
        .await;
        let jobs = env.wait_jobs("meta", 1).await;
        let job = &jobs[0];
        assert_eq!(label(job, "team"), "a");
        assert_eq!(label(job, "pod"), "");
        assert_eq!(
            label(job, "jobset.sigs.k8s.io/jobset-name"),
            "meta",
            "the JobSet keys overwrite the template's"
        );
        assert_eq!(job.metadata.annotations.as_ref().unwrap()["note"], "kept");
        let pod_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .clone()
            .unwrap()
            .labels
            .unwrap();
        assert_eq!(pod_labels["pod"], "p");
        assert!(!pod_labels.contains_key("team"));
        env.stop().await;
    });
}
