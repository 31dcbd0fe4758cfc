//! What the simulated-cluster suites share: a cluster started from a node
//! layout and a scenario, waits on watches in virtual time, and readers of
//! conditions and a Job's pods.

use std::time::Duration;

use futures::StreamExt;
use jobset_sim::cluster::{Cluster, ClusterConfig, ClusterHandle, NodeLayout, Scenario};
use jobset_sim::{Resource, Sim, SimClient, SimConfig};
use serde_json::Value;

/// A simulator with the simulated cluster on it: nodes from `layout`
/// (`pools=2,nodes=2`), workloads from `scenario` (YAML), `seed` for its
/// random choices, and the Job controller on or off.
pub(crate) async fn start_cluster(
    layout: &str,
    scenario: &str,
    seed: u64,
    job_controller: bool,
) -> (Sim, ClusterHandle) {
    let sim = Sim::new(SimConfig::default());
    let config = ClusterConfig {
        nodes: NodeLayout::parse(layout).expect("layout"),
        scenario: Scenario::from_yaml(scenario).expect("scenario"),
        seed,
        job_controller,
    };
    let cluster = Cluster::start(&sim, config).await.expect("cluster starts");
    (sim, cluster)
}

/// Waits, in virtual time and at most `limit`, until the object `name` of
/// `resource` in `default` satisfies `pred`, and returns it. A watch that
/// ends (injected faults drop watches) is opened again from the current
/// state.
pub(crate) async fn wait_for(
    client: &SimClient,
    resource: &Resource,
    name: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let fut = async {
        loop {
            let Ok(w) = client.watch(resource, Some("default"), None, None).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut w = Box::pin(w);
            while let Some(ev) = w.next().await {
                if ev.object["metadata"]["name"] == name && ev.kind != "DELETED" && pred(&ev.object)
                {
                    return ev.object;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{name} never reached the expected state within {limit:?}"))
}

/// The condition of type `kind`, or `Null`.
pub(crate) fn condition<'a>(obj: &'a Value, kind: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

/// The pods of Job `job` in `default`.
pub(crate) async fn pods_of(client: &SimClient, job: &str) -> Vec<Value> {
    client
        .list(
            &Resource::pods(),
            Some("default"),
            Some(&format!("batch.kubernetes.io/job-name={job}")),
        )
        .await
        .expect("list")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
