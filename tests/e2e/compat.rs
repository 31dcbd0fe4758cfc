//! Migration from and back to the upstream controller: a JobSet with the
//! child Jobs and Service the upstream controller leaves (its labels,
//! annotations and owner references) is adopted without deleting or
//! recreating anything, runs to completion, and afterwards carries nothing
//! upstream would not write itself.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::JobSet;
use jobset_controller::clock::Clock;
use jobset_controller::metrics::Metrics;
use jobset_controller::{ControllerConfig, run};
use jobset_e2e::runtime;
use jobset_policy::NativeDefaults;
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const NS: &str = "default";

/// A child Job exactly as the upstream controller builds it (spec 3.1).
fn upstream_job(js: &JobSet, index: i64) -> Job {
    let name = format!("legacy-w-{index}");
    let uid = js.metadata.uid.clone().unwrap_or_default();
    let keys = json!({
        "jobset.sigs.k8s.io/jobset-name": "legacy",
        "jobset.sigs.k8s.io/jobset-uid": uid,
        "jobset.sigs.k8s.io/replicatedjob-name": "w",
        "jobset.sigs.k8s.io/replicatedjob-replicas": "2",
        "jobset.sigs.k8s.io/global-replicas": "2",
        "jobset.sigs.k8s.io/job-index": index.to_string(),
        "jobset.sigs.k8s.io/job-global-index": index.to_string(),
        "jobset.sigs.k8s.io/job-key": jobset_api::naming::job_key(NS, &name),
        "jobset.sigs.k8s.io/group-name": "default",
        "jobset.sigs.k8s.io/group-replicas": "2",
        "jobset.sigs.k8s.io/job-group-index": index.to_string(),
        "jobset.sigs.k8s.io/restart-attempt": "0",
        "jobset.sigs.k8s.io/job-restart-attempt": "0"
    });
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": NS, "labels": keys, "annotations": keys,
            "ownerReferences": [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                "name": "legacy", "uid": uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "completionMode": "Indexed", "completions": 1, "parallelism": 1, "backoffLimit": 0,
            "suspend": false,
            "template": {
                "metadata": {"labels": keys, "annotations": keys},
                "spec": {"restartPolicy": "OnFailure", "subdomain": "legacy",
                         "containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .expect("an upstream Job")
}

fn upstream_service(js: &JobSet) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "legacy", "namespace": NS,
            "ownerReferences": [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                "name": "legacy", "uid": js.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                 "selector": {"jobset.sigs.k8s.io/jobset-name": "legacy"}}
    }))
    .expect("an upstream Service")
}

const FIXTURE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: legacy
  namespace: default
  labels: {team: ml}
  annotations: {note: from-upstream}
spec:
  replicatedJobs:
  - name: w
    replicas: 2
    template:
      spec:
        completions: 1
        parallelism: 1
        backoffLimit: 0
        template:
          spec:
            containers: [{name: c, image: busybox}]
"#;

fn metadata_of(job: &Job) -> Value {
    json!({
        "uid": job.metadata.uid,
        "labels": job.metadata.labels,
        "annotations": job.metadata.annotations,
        "ownerReferences": job.metadata.owner_references,
        "finalizers": job.metadata.finalizers,
        "suspend": job.spec.as_ref().and_then(|s| s.suspend),
    })
}

async fn jobs(client: &Client) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), NS);
    let mut items = api.list(&ListParams::default()).await.expect("Jobs").items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    items
}

#[test]
fn jobs_left_by_the_upstream_controller_are_adopted_and_switching_back_is_clean() {
    runtime().block_on(async {
        let sim = Sim::new(SimConfig::default());
        let client = Client::new(sim.service(), NS);
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &jobset_api::crd())
            .await
            .expect("CRD");
        // What the upstream controller left behind: the JobSet, its
        // Service and both Jobs running.
        let mut js = jobset_api::parse_jobset_yaml(FIXTURE).expect("fixture");
        jobset_api::default_jobset(&mut js);
        let jobsets: Api<JobSet> = Api::namespaced(client.clone(), NS);
        let js = jobsets
            .create(&PostParams::default(), &js)
            .await
            .expect("JobSet");
        let services: Api<Service> = Api::namespaced(client.clone(), NS);
        let svc = services
            .create(&PostParams::default(), &upstream_service(&js))
            .await
            .expect("Service");
        let job_api: Api<Job> = Api::namespaced(client.clone(), NS);
        for i in 0..2 {
            let job = job_api
                .create(&PostParams::default(), &upstream_job(&js, i))
                .await
                .expect("Job");
            job_api
                .patch_status(
                    job.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"active": 1, "ready": 1,
                        "startTime": sim.clock().now_rfc3339()}})),
                )
                .await
                .expect("status");
        }
        let before: Vec<Value> = jobs(&client).await.iter().map(metadata_of).collect();

        // Our controller takes over.
        let sim_clock = sim.clock().clone();
        let config = ControllerConfig {
            clock: Clock::from_fn(move || {
                Timestamp::from_second(sim_clock.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH)
            }),
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client.clone(),
            config,
            Arc::new(NativeDefaults),
            None,
            Arc::new(Metrics::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let adopted: Vec<Value> = jobs(&client).await.iter().map(metadata_of).collect();
        assert_eq!(adopted, before, "no Job is deleted, recreated or relabelled");
        let status = jobsets.get("legacy").await.expect("JobSet").status.unwrap_or_default();
        let rjs = status
            .replicated_jobs_status
            .iter()
            .find(|r| r.name == "w")
            .expect("status of w");
        assert_eq!((rjs.active, rjs.ready), (2, 2), "the running Jobs are counted");
        assert_eq!(
            services.get("legacy").await.expect("Service").metadata.uid,
            svc.metadata.uid,
            "the Service is kept"
        );

        for job in jobs(&client).await {
            let t = sim.clock().now_rfc3339();
            job_api
                .patch_status(
                    job.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"active": 0, "ready": 0, "succeeded": 1,
                        "completionTime": t, "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": t},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": t}]}})),
                )
                .await
                .expect("complete");
        }
        let mut done = None;
        for _ in 0..120 {
            let js = jobsets.get("legacy").await.expect("JobSet");
            if js
                .status
                .as_ref()
                .is_some_and(|s| s.terminal_state == "Completed")
            {
                done = Some(js);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let done = done.expect("the adopted JobSet completes");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;

        // Switching back: nothing of ours stays on the objects that the
        // upstream controller would trip over.
        assert_eq!(done.metadata.finalizers, None, "no finalizer to remove");
        assert_eq!(done.metadata.labels, js.metadata.labels);
        assert_eq!(done.metadata.annotations, js.metadata.annotations);
        assert_eq!(done.spec, js.spec, "the spec is untouched");
        let conditions: Vec<&str> = done
            .status
            .as_ref()
            .map(|s| s.conditions.iter().map(|c| c.type_.as_str()).collect())
            .unwrap_or_default();
        for c in &conditions {
            assert!(
                ["Completed", "Failed", "Suspended", "StartupPolicyInProgress", "StartupPolicyCompleted", "Restarting"].contains(c),
                "condition {c} is one upstream knows"
            );
        }
        let after: Vec<Value> = jobs(&client)
            .await
            .iter()
            .map(metadata_of)
            .collect();
        assert_eq!(after, before, "Job metadata is as upstream wrote it");
        // The status we wrote reads back under the CRD's schema, so the
        // upstream controller can read it too.
        let raw: Value = serde_json::to_value(&done).expect("JSON");
        assert!(jobset_api::parse_jobset_value(&raw).is_ok());
    });
}
