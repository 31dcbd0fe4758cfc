//! The scheduler through the API: anti-affinity across node pools, node
//! selectors that match nothing, taints, resource fit and scheduling gates,
//! with the PodScheduled condition kube-scheduler writes.

use std::time::Duration;

use jobset_sim::cluster::ClusterHandle;
use jobset_sim::{PatchKind, Resource, Sim, SimClient};
use serde_json::{Value, json};

use crate::cluster_support::{condition, start_cluster, wait_for};

async fn start(layout: &str) -> (Sim, ClusterHandle) {
    start_cluster(layout, "defaultDuration: 1h", 1, true).await
}

fn pod(name: &str, spec: Value) -> Value {
    let mut s =
        json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]});
    if let (Some(m), Some(add)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in add {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": "x"}}, "spec": s})
}

/// Waits in virtual time until the pod satisfies `pred`.
async fn wait_pod(client: &SimClient, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        client,
        &Resource::pods(),
        name,
        Duration::from_secs(600),
        pred,
    )
    .await
}

fn scheduled(p: &Value) -> Option<&Value> {
    Some(condition(p, "PodScheduled")).filter(|c| !c.is_null())
}

fn unschedulable(p: &Value) -> bool {
    scheduled(p).is_some_and(|c| c["status"] == "False")
}

async fn node_pool(client: &SimClient, node: &str) -> String {
    let n = client
        .get(&Resource::nodes(), None, node)
        .await
        .expect("node");
    n["metadata"]["labels"]["cloud.google.com/gke-nodepool"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn pods_with_anti_affinity_across_node_pools_land_in_distinct_pools_and_a_fifth_waits() {
    let (sim, _cluster) = start("pools=4,nodes=2,tpu=4").await;
    let client = sim.client("test");
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "x"}},
        "topologyKey": "cloud.google.com/gke-nodepool", "namespaceSelector": {}}]}});
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "slices", "namespace": "default"},
        "spec": {"parallelism": 4, "completions": 4, "completionMode": "Indexed",
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"restartPolicy": "Never", "affinity": anti,
                                       "containers": [{"name": "main", "image": "jax"}]}}}});
    client
        .create(&Resource::jobs(), Some("default"), &job)
        .await
        .expect("create job");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let pods = client
        .list(
            &Resource::pods(),
            Some("default"),
            Some("batch.kubernetes.io/job-name=slices"),
        )
        .await
        .expect("list");
    let mut pools = Vec::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let node = p["spec"]["nodeName"].as_str().expect("every pod is bound");
        pools.push(node_pool(&client, node).await);
    }
    pools.sort();
    assert_eq!(pools, ["pool-0", "pool-1", "pool-2", "pool-3"]);

    client
        .create(
            &Resource::pods(),
            Some("default"),
            &pod("fifth", json!({"affinity": anti})),
        )
        .await
        .expect("create pod");
    let p = wait_pod(&client, "fifth", unschedulable).await;
    assert_eq!(
        scheduled(&p).map(|c| c["reason"].clone()),
        Some(json!("Unschedulable"))
    );
    assert_eq!(
        scheduled(&p).map(|c| c["message"].clone()),
        Some(json!(
            "0/8 nodes are available: 8 node(s) didn't satisfy existing pods anti-affinity rules."
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_node_selector_matches_no_node_stays_pending_with_pod_scheduled_false() {
    let (sim, _cluster) = start("default").await;
    let client = sim.client("test");
    let spec =
        json!({"nodeSelector": {"cloud.google.com/gke-tpu-accelerator": "tpu-v9-imaginary"}});
    client
        .create(&Resource::pods(), Some("default"), &pod("lost", spec))
        .await
        .expect("create");
    let p = wait_pod(&client, "lost", unschedulable).await;
    let c = scheduled(&p).cloned().unwrap_or_default();
    assert_eq!(c["reason"], "Unschedulable");
    assert_eq!(
        c["message"],
        "0/27 nodes are available: 27 node(s) didn't match Pod's node affinity/selector."
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let later = client
        .get(&Resource::pods(), Some("default"), "lost")
        .await
        .expect("get");
    assert_eq!(later["status"]["phase"], "Pending");
    assert!(later["spec"]["nodeName"].is_null());
}

#[tokio::test(start_paused = true)]
async fn tpu_requests_fit_only_free_tpu_nodes_and_the_message_counts_each_reason() {
    let (sim, _cluster) = start("default").await;
    let client = sim.client("test");
    let tpu = |name: &str| {
        pod(
            name,
            json!({
            "nodeSelector": {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"},
            "containers": [{"name": "main", "image": "jax", "resources": {"limits": {"google.com/tpu": 4}}}]}),
        )
    };
    for i in 0..8 {
        client
            .create(&Resource::pods(), Some("default"), &tpu(&format!("t{i}")))
            .await
            .expect("create");
    }
    for i in 0..8 {
        let p = wait_pod(&client, &format!("t{i}"), |p| {
            p["spec"]["nodeName"].is_string()
        })
        .await;
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("tpu-v5e-"))
        );
    }
    client
        .create(&Resource::pods(), Some("default"), &tpu("t8"))
        .await
        .expect("create");
    let p = wait_pod(&client, "t8", unschedulable).await;
    assert_eq!(
        scheduled(&p).map(|c| c["message"].clone()),
        Some(json!(
            "0/27 nodes are available: 19 node(s) didn't match Pod's node affinity/selector, 8 Insufficient google.com/tpu."
        ))
    );
    // A TPU pod finishing frees its node, and the waiting pod gets it.
    client
        .delete(&Resource::pods(), Some("default"), "t3", None)
        .await
        .expect("delete");
    let p = wait_pod(&client, "t8", |p| p["spec"]["nodeName"].is_string()).await;
    assert!(
        p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("tpu-v5e-"))
    );
}

#[tokio::test(start_paused = true)]
async fn taints_keep_pods_away_unless_tolerated_and_gates_hold_pods_until_removed() {
    let (sim, cluster) = start("pools=1,nodes=1,taint=dedicated=ml:NoSchedule").await;
    let client = sim.client("test");
    client
        .create(&Resource::pods(), Some("default"), &pod("plain", json!({})))
        .await
        .expect("create");
    let p = wait_pod(&client, "plain", unschedulable).await;
    assert_eq!(
        scheduled(&p).map(|c| c["message"].clone()),
        Some(json!(
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: ml}."
        ))
    );
    let tolerant = json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
                          "schedulingGates": [{"name": "example.com/quota"}]});
    client
        .create(&Resource::pods(), Some("default"), &pod("gated", tolerant))
        .await
        .expect("create");
    let p = wait_pod(&client, "gated", unschedulable).await;
    assert_eq!(
        scheduled(&p).map(|c| c["reason"].clone()),
        Some(json!("SchedulingGated"))
    );
    client
        .patch(
            &Resource::pods(),
            Some("default"),
            "gated",
            PatchKind::Merge,
            &json!({"spec": {"schedulingGates": null}}),
        )
        .await
        .expect("ungate");
    let p = wait_pod(&client, "gated", |p| p["status"]["phase"] == "Running").await;
    assert_eq!(p["spec"]["nodeName"], "pool-0-n0");
    assert!(
        cluster
            .events()
            .iter()
            .any(|e| e.action == "Started" && e.object == "default/gated")
    );
}
