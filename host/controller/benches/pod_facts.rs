//! What pod facts cost while an outcome plugin that asked for them has not
//! decided yet: the controller holds, per failed Job, the facts of its
//! failed pods (bounded per Job), made from the pods one LIST returned. This
//! bench makes the facts of 1,000 failed Jobs of 16 realistic failed pods
//! each (an OOM-killed trainer with a termination message and a
//! DisruptionTarget condition on every other pod), holds them as the
//! controller does, and counts the heap bytes held per pod (a counting
//! allocator), then releases them and checks that nothing is left.
//!
//! `cargo bench -p jobset-controller --bench pod_facts`

use jobset_controller::failed_pods::{FailedPods, JobFacts, job_pods};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::sync::Arc;

#[path = "support/counting.rs"]
mod counting;
use counting::live;

const JOBS: usize = 1_000;
const PODS_PER_JOB: usize = 16;

fn pod(job: usize, i: usize) -> Pod {
    let mut conditions = vec![json!({"type": "Ready", "status": "False"})];
    if i.is_multiple_of(2) {
        conditions.push(json!({"type": "DisruptionTarget", "status": "True",
            "reason": "TerminationByKubelet",
            "message": "Pod was terminated in response to imminent node shutdown."}));
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("train-workers-{job}-{i}-x7k2p"),
            "namespace": "default",
            "annotations": {"batch.kubernetes.io/job-completion-index": (i % 4).to_string()},
        },
        "spec": {"nodeName": format!("gke-tpu-pool-{}-node-{}", job % 50, i), "containers": []},
        "status": {
            "phase": "Failed",
            "startTime": "2026-12-05T10:00:00Z",
            "conditions": conditions,
            "containerStatuses": [{
                "name": "trainer", "image": "trainer:v1", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "message": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.3 GiB total capacity)",
                    "startedAt": "2026-12-05T10:00:05Z", "finishedAt": "2026-12-05T11:12:00Z"}}
            }]
        }
    }))
    .expect("a pod")
}

fn main() {
    // The listed pods are built first; their facts are what is held.
    let listed: Vec<Vec<Pod>> = (0..JOBS)
        .map(|j| (0..PODS_PER_JOB).map(|i| pod(j, i)).collect())
        .collect();
    let held = FailedPods::new(PODS_PER_JOB);
    let before = live();
    for (j, pods) in listed.iter().enumerate() {
        let facts = job_pods(&format!("train-workers-{j}"), pods, PODS_PER_JOB);
        held.store(
            &format!("jobset-{}", j % 100),
            vec![(format!("uid-{j}"), JobFacts::Listed(Arc::new(facts)))],
        );
    }
    let during = live() - before;
    let pods = held.pods_held();
    assert_eq!(pods, JOBS * PODS_PER_JOB);
    for js in 0..100 {
        held.forget(&format!("jobset-{js}"));
    }
    let after = live() - before;
    println!(
        "pod facts of {JOBS} failed Jobs x {PODS_PER_JOB} failed pods held: {} bytes, {} bytes per pod; left after release: {after} bytes",
        during,
        during / pods as isize
    );
    assert!(
        after <= 16 * 1024,
        "facts left behind after release: {after} bytes"
    );
}
