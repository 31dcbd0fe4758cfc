//! The nodes of the simulated cluster: a layout of node pools (from a compact
//! string, YAML, or the default that fits the upstream examples) and the Node
//! objects it becomes, with topology labels, capacity and a Ready condition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ClusterError;

pub const NODEPOOL: &str = "cloud.google.com/gke-nodepool";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
/// The rack a node sits in (one per node pool).
pub const RACK: &str = "cloud.google.com/gce-topology-subblock";
/// The block a rack sits in (one per zone).
pub const BLOCK: &str = "cloud.google.com/gce-topology-block";
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const TPU_ACCELERATOR: &str = "cloud.google.com/gke-tpu-accelerator";
pub const TPU_TOPOLOGY: &str = "cloud.google.com/gke-tpu-topology";
pub const GPU_ACCELERATOR: &str = "cloud.google.com/gke-accelerator";
pub const TPU: &str = "google.com/tpu";
pub const GPU: &str = "nvidia.com/gpu";

/// A taint on every node of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

/// Nodes that share labels and capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePool {
    pub name: String,
    pub nodes: u32,
    #[serde(default = "default_zone")]
    pub zone: String,
    /// `google.com/tpu` chips per node.
    #[serde(default)]
    pub tpu: u32,
    /// `nvidia.com/gpu` devices per node.
    #[serde(default)]
    pub gpu: u32,
    /// Value of `cloud.google.com/gke-tpu-accelerator` or `gke-accelerator`.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// Value of `cloud.google.com/gke-tpu-topology`.
    #[serde(default)]
    pub topology: Option<String>,
    #[serde(default = "default_cpu")]
    pub cpu: String,
    #[serde(default = "default_memory")]
    pub memory: String,
    #[serde(default = "default_pods")]
    pub max_pods: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

fn default_zone() -> String {
    "us-central2-b".into()
}
fn default_cpu() -> String {
    "8".into()
}
fn default_memory() -> String {
    "32Gi".into()
}
fn default_pods() -> u32 {
    110
}

impl NodePool {
    fn new(name: &str, nodes: u32) -> Self {
        NodePool {
            name: name.into(),
            nodes,
            zone: default_zone(),
            tpu: 0,
            gpu: 0,
            accelerator: None,
            topology: None,
            cpu: default_cpu(),
            memory: default_memory(),
            max_pods: default_pods(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    fn tpu_pool(name: &str, nodes: u32, accelerator: &str, topology: &str) -> Self {
        NodePool {
            tpu: 4,
            accelerator: Some(accelerator.into()),
            topology: Some(topology.into()),
            cpu: "24".into(),
            memory: "48Gi".into(),
            ..NodePool::new(name, nodes)
        }
    }
}

/// All node pools of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLayout {
    pub pools: Vec<NodePool>,
}

impl Default for NodeLayout {
    /// Fits the upstream examples: four v5e 2x4 slices (2 hosts of 4 chips),
    /// two v6e 4x4 slices (4 hosts of 4 chips), three CPU pools of 3 nodes for
    /// exclusive placement, and a GPU pool of 2 nodes with 8 GPUs each.
    fn default() -> Self {
        let mut pools = Vec::new();
        for i in 0..4 {
            pools.push(NodePool::tpu_pool(
                &format!("tpu-v5e-{i}"),
                2,
                "tpu-v5-lite-podslice",
                "2x4",
            ));
        }
        for i in 0..2 {
            pools.push(NodePool {
                zone: "us-east5-b".into(),
                ..NodePool::tpu_pool(&format!("tpu-v6e-{i}"), 4, "tpu-v6e-slice", "4x4")
            });
        }
        for i in 0..3 {
            pools.push(NodePool::new(&format!("cpu-{i}"), 3));
        }
        pools.push(NodePool {
            gpu: 8,
            accelerator: Some("nvidia-h100-80gb".into()),
            cpu: "96".into(),
            memory: "512Gi".into(),
            ..NodePool::new("gpu-0", 2)
        });
        NodeLayout { pools }
    }
}

impl NodeLayout {
    /// Parses `default`, YAML (`pools: [...]`), or a compact description:
    /// `pools=4,nodes=4,tpu=4` with optional `gpu=`, `cpu=`, `memory=`,
    /// `zones=` (pools spread over that many zones), `accelerator=`,
    /// `topology=`, `prefix=` (pool name prefix, default `pool`) and
    /// `taint=key=value:Effect`.
    pub fn parse(text: &str) -> Result<Self, ClusterError> {
        let t = text.trim();
        if t.is_empty() || t == "default" {
            return Ok(NodeLayout::default());
        }
        if t.contains(':') && (t.contains('\n') || t.starts_with("pools:")) {
            return serde_yaml::from_str(t).map_err(|e| ClusterError::Layout(format!("{e}")));
        }
        let mut count = 1u32;
        let mut zones = 1u32;
        let mut prefix = "pool".to_string();
        let mut proto = NodePool::new("", 1);
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ClusterError::Layout(format!("{part:?}: expected key=value")))?;
            let num = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| ClusterError::Layout(format!("{k}: {v:?} is not a whole number")))
            };
            match k {
                "pools" => count = num(v)?,
                "nodes" => proto.nodes = num(v)?,
                "tpu" => proto.tpu = num(v)?,
                "gpu" => proto.gpu = num(v)?,
                "zones" => zones = num(v)?.max(1),
                "cpu" => proto.cpu = v.into(),
                "memory" => proto.memory = v.into(),
                "accelerator" => proto.accelerator = Some(v.into()),
                "topology" => proto.topology = Some(v.into()),
                "prefix" => prefix = v.into(),
                "taint" => proto.taints.push(parse_taint(v)?),
                other => {
                    return Err(ClusterError::Layout(format!(
                        "{other:?}: unknown key (known: pools, nodes, tpu, gpu, zones, cpu, memory, accelerator, topology, prefix, taint)"
                    )));
                }
            }
        }
        if proto.tpu > 0 && proto.accelerator.is_none() {
            proto.accelerator = Some("tpu-v5-lite-podslice".into());
        }
        let pools = (0..count)
            .map(|i| NodePool {
                name: format!("{prefix}-{i}"),
                zone: format!("us-central2-{}", (b'a' + (i % zones) as u8) as char),
                ..proto.clone()
            })
            .collect();
        Ok(NodeLayout { pools })
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.pools.iter().map(|p| p.nodes as usize).sum()
    }

    /// The Node objects, in a fixed order.
    pub fn node_objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for pool in &self.pools {
            for i in 0..pool.nodes {
                out.push(node_object(pool, &format!("{}-n{i}", pool.name)));
            }
        }
        out
    }
}

fn parse_taint(v: &str) -> Result<Taint, ClusterError> {
    let (kv, effect) = v
        .split_once(':')
        .ok_or_else(|| ClusterError::Layout(format!("taint {v:?}: expected key=value:Effect")))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(ClusterError::Layout(format!(
            "taint {v:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        )));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Ok(Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    })
}

fn node_object(pool: &NodePool, name: &str) -> Value {
    let region = pool
        .zone
        .rsplit_once('-')
        .map_or(pool.zone.as_str(), |(r, _)| r);
    let mut labels: BTreeMap<String, String> = [
        (HOSTNAME, name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        (NODEPOOL, pool.name.as_str()),
        (ZONE, pool.zone.as_str()),
        (REGION, region),
        (RACK, pool.name.as_str()),
        (BLOCK, pool.zone.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(acc) = &pool.accelerator {
        let key = if pool.tpu > 0 {
            TPU_ACCELERATOR
        } else {
            GPU_ACCELERATOR
        };
        labels.insert(key.into(), acc.clone());
    }
    if let Some(topo) = &pool.topology {
        labels.insert(TPU_TOPOLOGY.into(), topo.clone());
    }
    labels.extend(pool.labels.clone());
    let mut resources = json!({
        "cpu": pool.cpu, "memory": pool.memory, "pods": pool.max_pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    if pool.tpu > 0 {
        resources[TPU] = json!(pool.tpu.to_string());
    }
    if pool.gpu > 0 {
        resources[GPU] = json!(pool.gpu.to_string());
    }
    let taints: Vec<Value> = pool
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
        .collect();
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": format!("sim://{}/{name}", pool.zone)},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [ready_condition(true, "")],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "sim://1.0",
                          "operatingSystem": "linux", "architecture": "amd64"},
            "addresses": [{"type": "Hostname", "address": name}],
        }
    });
    if !taints.is_empty() {
        node["spec"]["taints"] = json!(taints);
    }
    node
}

/// The node's `Ready` condition as the kubelet (or the node controller) writes it.
pub fn ready_condition(ready: bool, now: &str) -> Value {
    let mut c = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status"})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
               "message": "Kubelet stopped posting node status."})
    };
    if !now.is_empty() {
        c["lastHeartbeatTime"] = json!(now);
        c["lastTransitionTime"] = json!(now);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_description_gives_labelled_pools() {
        let l = NodeLayout::parse("pools=4,nodes=4,tpu=4").expect("parses");
        assert_eq!(l.node_count(), 16);
        let nodes = l.node_objects();
        assert_eq!(nodes[5]["metadata"]["labels"][NODEPOOL], "pool-1");
        assert_eq!(nodes[5]["status"]["allocatable"][TPU], "4");
        assert_eq!(nodes[5]["metadata"]["labels"][HOSTNAME], "pool-1-n1");
    }

    #[test]
    fn the_default_layout_has_the_labels_the_examples_select_on() {
        let nodes = NodeLayout::default().node_objects();
        let has = |k: &str, v: &str| {
            nodes
                .iter()
                .filter(|n| n["metadata"]["labels"][k] == v)
                .count()
        };
        assert_eq!(has(TPU_ACCELERATOR, "tpu-v5-lite-podslice"), 8);
        assert_eq!(has(TPU_TOPOLOGY, "4x4"), 8);
        assert_eq!(has(GPU_ACCELERATOR, "nvidia-h100-80gb"), 2);
    }

    #[test]
    fn unknown_keys_and_bad_taints_are_refused_with_the_key_named() {
        let e = NodeLayout::parse("pools=2,colour=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"colour\""), "{e}");
        let e = NodeLayout::parse("taint=a=b:Sometimes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("effect"), "{e}");
    }

    #[test]
    fn yaml_layouts_parse() {
        let l = NodeLayout::parse("pools:\n- name: a\n  nodes: 2\n  gpu: 8\n").expect("parses");
        assert_eq!(l.pools[0].gpu, 8);
        assert_eq!(l.node_count(), 2);
    }
}
