//! What the pod watch of a JobSet that restarts in place costs: the
//! controller keeps, per pod, what the protocol reads (name, failed, the
//! agent's attempt, the highest restart count, the JobSet attempt) and, for
//! a pod that restarted or failed, what the outcome plugin's in-place
//! decision is told of it (node, containers' last termination,
//! DisruptionTarget). This bench lists and watches 10,000 realistic pods of
//! one JobSet, each restarted in place once, on the in-process simulator
//! and counts the bytes the controller's process holds once the watch has
//! synced, minus what it held before (a counting allocator; the simulator
//! holds the same pods either way), divided by the pods.
//!
//! `cargo bench -p jobset-controller --bench pod_watch`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jobset_controller::index::Index;
use jobset_controller::metrics::Metrics;
use jobset_controller::pod_watch::PodWatches;
use jobset_sim::{PatchKind, Resource, Sim, SimConfig};
use serde_json::json;

#[path = "support/counting.rs"]
mod counting;
use counting::live;

const PODS: usize = 10_000;

fn pod(i: usize) -> serde_json::Value {
    let job = i / 4;
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("big-workers-{job}-{}-abcde", i % 4),
            "namespace": "default",
            "labels": {
                "jobset.sigs.k8s.io/jobset-name": "big",
                "jobset.sigs.k8s.io/replicatedjob-name": "workers",
                "jobset.sigs.k8s.io/job-index": job.to_string(),
                "jobset.sigs.k8s.io/restart-attempt": "0",
                "batch.kubernetes.io/job-name": format!("big-workers-{job}"),
                "batch.kubernetes.io/job-completion-index": (i % 4).to_string(),
            },
            "annotations": {
                "jobset.sigs.k8s.io/jobset-name": "big",
                "jobset.sigs.k8s.io/in-place-restart-attempt": "0",
                "batch.kubernetes.io/job-completion-index": (i % 4).to_string(),
            },
        },
        "spec": {
            "nodeName": format!("node-{}", i % 500),
            "restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "ghcr.io/jobset-wasm/jobset:latest",
                            "command": ["jobset", "agent"],
                            "env": [{"name": "WORKER_COMMAND", "value": "python train.py --steps 100000"}],
                            "resources": {"limits": {"google.com/tpu": "4"}}}],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 1,
                                   "image": "ghcr.io/jobset-wasm/jobset:latest",
                                   "state": {"running": {"startedAt": "2026-12-05T10:00:00Z"}},
                                   "lastState": {"terminated": {
                                       "exitCode": 1, "reason": "Error",
                                       "startedAt": "2026-12-05T09:00:00Z",
                                       "finishedAt": "2026-12-05T09:59:50Z"}}}],
        },
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = Sim::new(SimConfig::default());
        let admin = sim.client("bench");
        for i in 0..PODS {
            let p = pod(i);
            let status = p["status"].clone();
            let created = admin
                .create(&Resource::pods(), Some("default"), &p)
                .await
                .expect("pod created");
            let name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
            admin
                .patch_status(&Resource::pods(), Some("default"), &name, PatchKind::Merge, &json!({"status": status}))
                .await
                .expect("pod status");
        }
        let client = kube::Client::new(sim.service(), "default");
        let index = Index::default();
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let drain = tokio::spawn(async move { while rx.next().await.is_some() {} });
        let watches = Arc::new(PodWatches::new(client, index.clone(), Arc::new(Metrics::default()), tx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = live();
        let started = Instant::now();
        watches.ensure(&("default".to_string(), "big".to_string()));
        while index.pod_count() < PODS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let synced = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = live();
        let per_pod = (after - before) as f64 / PODS as f64;
        println!(
            "pod watch of one in-place JobSet: {PODS} pods listed in {:.0} ms; the controller keeps {:.0} bytes per watched pod ({:.1} MiB in all)",
            synced.as_secs_f64() * 1000.0,
            per_pod,
            (after - before) as f64 / (1024.0 * 1024.0)
        );
        watches.release(&("default".to_string(), "big".to_string()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!(
            "after the watch ends: {:.0} bytes per pod still held",
            (live() - before) as f64 / PODS as f64
        );
        drain.abort();
    });
}
