//! What the controller writes besides status (spec 3.1, 3.3, 4.8, 4.9,
//! appendix B.9-10): labels of Jobs and pod templates, the coordinator,
//! the headless Service and its recreation, PVCs, TTL after finished, and
//! the total no-op for a foreign managedBy.

use std::sync::Arc;
use std::time::Duration;

use jobset_api::labels::*;
use jobset_e2e::{Env, label, names, runtime};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams};

const TEMPLATE: &str =
    "template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}";

fn two_groups(name: &str) -> String {
    format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: default}}
spec:
  coordinator: {{replicatedJob: workers, jobIndex: 1, podIndex: 0}}
  replicatedJobs:
  - {{name: driver, replicas: 1, groupName: ctl, {TEMPLATE}}}
  - {{name: workers, replicas: 2, groupName: pool, {TEMPLATE}}}
  - {{name: extra, replicas: 2, groupName: pool, {TEMPLATE}}}
"#
    )
}

fn services(env: &Env) -> Api<Service> {
    Api::namespaced(env.client.clone(), jobset_e2e::NS)
}

async fn wait_service(env: &Env, name: &str) -> Service {
    env.wait_until(
        &format!("Service {name} exists"),
        Duration::from_secs(60),
        || async { services(env).get_opt(name).await.ok().flatten().is_some() },
    )
    .await;
    services(env).get(name).await.expect("the Service exists")
}

#[test]
fn every_job_and_its_pod_template_carry_the_jobset_labels() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        let js = env.create(&two_groups("lbl")).await;
        let jobs = env.wait_jobs("lbl", 5).await;
        let uid = js.metadata.uid.clone().unwrap();
        // Sorted by name: driver-0, extra-0, extra-1, workers-0, workers-1.
        let expect = [
            ("driver", "0", "0", "ctl", "1", "0", "1"),
            ("extra", "0", "3", "pool", "4", "2", "2"),
            ("extra", "1", "4", "pool", "4", "3", "2"),
            ("workers", "0", "1", "pool", "4", "0", "2"),
            ("workers", "1", "2", "pool", "4", "1", "2"),
        ];
        for (job, (rjob, idx, global, group, group_replicas, group_idx, replicas)) in
            jobs.iter().zip(expect)
        {
            let pod = job
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .clone()
                .unwrap();
            let pod_labels = pod.labels.unwrap();
            let annotations = job.metadata.annotations.clone().unwrap();
            for (key, want) in [
                (JOBSET_NAME_KEY, "lbl"),
                (JOBSET_UID_KEY, uid.as_str()),
                (REPLICATED_JOB_NAME_KEY, rjob),
                (REPLICATED_JOB_REPLICAS_KEY, replicas),
                (GLOBAL_REPLICAS_KEY, "5"),
                (JOB_INDEX_KEY, idx),
                (JOB_GLOBAL_INDEX_KEY, global),
                (GROUP_NAME_KEY, group),
                (GROUP_REPLICAS_KEY, group_replicas),
                (JOB_GROUP_INDEX_KEY, group_idx),
                (RESTART_ATTEMPT_KEY, "0"),
            ] {
                assert_eq!(label(job, key), want, "{key} on {:?}", job.metadata.name);
                assert_eq!(pod_labels[key], want, "{key} on the pod template");
                assert_eq!(annotations[key], want, "{key} as an annotation");
            }
            let key = label(job, JOB_KEY);
            assert_eq!(key.len(), 40, "SHA-1 hex: {key}");
            assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
            let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("JobSet", Some(true))
            );
            assert_eq!(owner.uid, uid);
        }
        let keys: std::collections::BTreeSet<_> = jobs.iter().map(|j| label(j, JOB_KEY)).collect();
        assert_eq!(keys.len(), 5, "job-key differs per Job");
        env.stop().await;
    });
}

#[test]
fn the_coordinator_label_names_the_chosen_pod_on_every_job_and_pod() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_groups("coord")).await;
        let jobs = env.wait_jobs("coord", 5).await;
        for job in &jobs {
            assert_eq!(label(job, COORDINATOR_KEY), "coord-workers-1-0.coord");
            let pod = job
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .clone()
                .unwrap();
            assert_eq!(
                pod.labels.unwrap()[COORDINATOR_KEY],
                "coord-workers-1-0.coord"
            );
        }
        env.stop().await;
    });
}

#[test]
fn the_headless_service_is_created_with_the_jobset_selector() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_groups("svc")).await;
        let svc = wait_service(&env, "svc").await;
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector.unwrap()[JOBSET_NAME_KEY], "svc");
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let owner = &svc.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("JobSet", Some(true))
        );
        let jobs = env.wait_jobs("svc", 5).await;
        let pod = jobs[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        assert_eq!(pod.subdomain.as_deref(), Some("svc"));
        env.stop().await;
    });
}

#[test]
fn a_deleted_headless_service_is_recreated() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_groups("resvc")).await;
        let first = wait_service(&env, "resvc").await;
        services(&env)
            .delete("resvc", &DeleteParams::default())
            .await
            .expect("the Service is deleted");
        env.wait_until(
            "the Service is recreated",
            Duration::from_secs(60),
            || async {
                services(&env)
                    .get_opt("resvc")
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.metadata.uid != first.metadata.uid)
            },
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn a_custom_subdomain_names_the_service_and_the_pods_subdomain() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: sub, namespace: default}}
spec:
  network: {{enableDNSHostnames: true, subdomain: mesh, publishNotReadyAddresses: false}}
  replicatedJobs:
  - {{name: w, replicas: 1, {TEMPLATE}}}
"#
        ))
        .await;
        let svc = wait_service(&env, "mesh").await;
        assert_eq!(svc.spec.unwrap().publish_not_ready_addresses, Some(false));
        let jobs = env.wait_jobs("sub", 1).await;
        let pod = jobs[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        assert_eq!(pod.subdomain.as_deref(), Some("mesh"));
        assert!(services(&env).get_opt("sub").await.unwrap().is_none());
        env.stop().await;
    });
}

#[test]
fn no_service_is_created_when_dns_hostnames_are_off() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: nodns, namespace: default}}
spec:
  network: {{enableDNSHostnames: false}}
  replicatedJobs:
  - {{name: w, replicas: 1, {TEMPLATE}}}
"#
        ))
        .await;
        let jobs = env.wait_jobs("nodns", 1).await;
        env.settle().await;
        assert!(services(&env).get_opt("nodns").await.unwrap().is_none());
        let pod = jobs[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        assert_eq!(pod.subdomain, None);
        env.stop().await;
    });
}

#[test]
fn volume_claim_policies_create_the_claims_and_mount_them_in_the_jobs() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: vol, namespace: default}
spec:
  volumeClaimPolicies:
  - templates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  replicatedJobs:
  - name: w
    replicas: 2
    template:
      spec:
        template:
          spec:
            containers: [{name: c, image: busybox, volumeMounts: [{name: data, mountPath: /data}]}]
"#,
        )
        .await;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
        env.wait_until("the PVC exists", Duration::from_secs(60), || async {
            pvcs.get_opt("data-vol").await.ok().flatten().is_some()
        })
        .await;
        let pvc = pvcs.get("data-vol").await.expect("the PVC exists");
        assert_eq!(pvc.metadata.labels.unwrap()[JOBSET_NAME_KEY], "vol");
        let jobs = env.wait_jobs("vol", 2).await;
        for job in &jobs {
            let pod = job.spec.as_ref().unwrap().template.spec.clone().unwrap();
            let vol = pod
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "data")
                .expect("the claim is mounted");
            assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "data-vol");
        }
        env.stop().await;
    });
}

#[test]
fn a_finished_jobset_is_deleted_after_its_ttl_in_virtual_time() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: ttl, namespace: default}}
spec:
  ttlSecondsAfterFinished: 120
  replicatedJobs:
  - {{name: w, replicas: 1, {TEMPLATE}}}
"#
        ))
        .await;
        let jobs = env.wait_jobs("ttl", 1).await;
        env.complete_job(&jobs[0]).await;
        env.wait_condition("ttl", "Completed").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let js = env.get("ttl").await;
        assert!(
            js.metadata.deletion_timestamp.is_none(),
            "kept before the TTL"
        );
        env.wait_until(
            "the JobSet is deleted",
            Duration::from_secs(180),
            || async {
                match env.jobsets().get_opt("ttl").await {
                    Ok(Some(js)) => js.metadata.deletion_timestamp.is_some(),
                    Ok(None) => true,
                    Err(_) => false,
                }
            },
        )
        .await;
        env.stop().await;
    });
}

#[test]
fn a_jobset_managed_by_another_controller_is_left_alone() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: foreign, namespace: default}}
spec:
  managedBy: example.com/other-controller
  replicatedJobs:
  - {{name: w, replicas: 2, {TEMPLATE}}}
"#
        ))
        .await;
        // The controller does reconcile other JobSets meanwhile.
        env.create(&two_groups("mine")).await;
        env.wait_jobs("mine", 5).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let js = env.get("foreign").await;
        assert!(
            js.status.is_none() || js.status == Some(Default::default()),
            "{:?}",
            js.status
        );
        assert!(env.jobs("foreign").await.is_empty());
        assert!(services(&env).get_opt("foreign").await.unwrap().is_none());
        assert!(env.events("foreign").await.is_empty());
        env.stop().await;
    });
}

#[test]
fn a_job_deleted_by_hand_is_recreated() {
    runtime().block_on(async {
        let env = Env::start(Arc::new(NativeDefaults)).await;
        env.create(&two_groups("hand")).await;
        let jobs = env.wait_jobs("hand", 5).await;
        let old = jobs[3].metadata.uid.clone();
        env.jobs_api()
            .delete("hand-workers-0", &DeleteParams::background())
            .await
            .expect("the Job is deleted");
        env.wait_until(
            "hand-workers-0 is recreated",
            Duration::from_secs(60),
            || async {
                env.release_deleted_jobs("hand").await;
                env.jobs("hand").await.iter().any(|j| {
                    j.metadata.name.as_deref() == Some("hand-workers-0") && j.metadata.uid != old
                })
            },
        )
        .await;
        assert_eq!(names(&env.wait_jobs("hand", 5).await).len(), 5);
        env.stop().await;
    });
}
