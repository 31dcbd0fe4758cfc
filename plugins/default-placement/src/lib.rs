//! The built-in placement policy. Exclusive Jobs
//! (`alpha.jobset.sigs.k8s.io/exclusive-topology`) get a free topology
//! domain each, assigned up front and pinned with a nodeSelector, so no pod
//! waits on a leader; with the node-selector strategy the Job gets upstream's
//! `namespaced-job` selector and `no-schedule` toleration instead. Other
//! Jobs are left alone.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

use jobset_policy_sdk::types::{
    JobPlacement, KeyValue, Occupant, PendingJob, Pin, Placement, PlacementRequest, PolicyError,
    Snapshot, Toleration, TopologyDomain,
};

/// The plugin's name in `meta.info`.
pub const NAME: &str = "default-placement";
/// Node label (and pod nodeSelector key) of the node-selector strategy.
pub const NAMESPACED_JOB_KEY: &str = "alpha.jobset.sigs.k8s.io/namespaced-job";
/// Taint key tolerated under the node-selector strategy.
pub const NO_SCHEDULE_KEY: &str = "alpha.jobset.sigs.k8s.io/no-schedule";

/// Places the pending Jobs, in request order.
pub fn decide(
    snapshot: &Snapshot,
    request: &PlacementRequest,
) -> Result<Vec<JobPlacement>, PolicyError> {
    // Sorted once by key then value, so each Job takes the first free
    // domain in a predictable order.
    let mut domains: Vec<TopologyDomain> = request.domains.clone();
    domains.sort_by(|a, b| {
        (a.topology_key.as_str(), a.value.as_str())
            .cmp(&(b.topology_key.as_str(), b.value.as_str()))
    });
    let mut out = Vec::new();
    for job in &request.jobs {
        let placement = if job.node_selector_strategy {
            Placement::Pin(node_selector_pin(&snapshot.jobset.namespace, &job.name))
        } else if let Some(key) = &job.exclusive_topology {
            exclusive(job, key, &mut domains)
        } else {
            continue;
        };
        out.push(JobPlacement {
            job: job.name.clone(),
            placement,
        });
    }
    Ok(out)
}

/// Upstream's node-selector strategy: `namespaced-job=<ns>_<job>` plus a
/// toleration of the `no-schedule` taint.
pub fn node_selector_pin(namespace: &str, job: &str) -> Pin {
    Pin {
        node_selector: vec![KeyValue {
            key: NAMESPACED_JOB_KEY.to_string(),
            value: format!("{namespace}_{job}"),
        }],
        tolerations: vec![Toleration {
            key: NO_SCHEDULE_KEY.to_string(),
            operator: "Exists".to_string(),
            value: None,
            effect: Some("NoSchedule".to_string()),
        }],
        required_node_affinity: Vec::new(),
    }
}

/// One domain per Job: the domain this Job's key already holds, else the
/// first free domain (by value; `domains` is sorted) with a ready node. A
/// domain is taken when another Job of the same priority holds it.
fn exclusive(job: &PendingJob, key: &str, domains: &mut [TopologyDomain]) -> Placement {
    let mut candidates: Vec<&mut TopologyDomain> = domains
        .iter_mut()
        .filter(|d| d.topology_key == key)
        .collect();
    let total = candidates.len();
    let held = candidates
        .iter()
        .position(|d| d.occupied_by.iter().any(|o| o.job_key == job.job_key));
    let chosen = held.or_else(|| {
        candidates.iter().position(|d| {
            d.ready_nodes > 0
                && !d
                    .occupied_by
                    .iter()
                    .any(|o| o.job_key != job.job_key && o.priority == job.priority)
        })
    });
    match chosen {
        Some(i) => {
            let domain = &mut candidates[i];
            if held.is_none() {
                domain.occupied_by.push(Occupant {
                    job_key: job.job_key.clone(),
                    priority: job.priority,
                });
            }
            Placement::Pin(Pin {
                node_selector: vec![KeyValue {
                    key: key.to_string(),
                    value: domain.value.clone(),
                }],
                tolerations: Vec::new(),
                required_node_affinity: Vec::new(),
            })
        }
        None => Placement::Wait(format!(
            "no free {key} domain for job {}: {total} domains, none with a ready node and no other exclusive job",
            job.name
        )),
    }
}

/// Accepts no configuration other than an empty one.
pub fn validate_config(config: &str) -> Result<(), String> {
    match config.trim() {
        "" | "{}" | "null" => Ok(()),
        other => Err(format!(
            "{NAME} takes no configuration, got {} bytes",
            other.len()
        )),
    }
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component {
    wit_bindgen::generate!({
        world: "placement-plugin",
        path: "../../wit",
        with: { "jobset:policy/types@0.1.0": jobset_policy_sdk::types },
    });

    use exports::jobset::policy::{meta, placement};
    use jobset_policy_sdk::types::{JobPlacement, PlacementRequest, PolicyError, Snapshot};

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["placement".to_string()],
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            crate::validate_config(&config)
        }
    }

    impl placement::Guest for Plugin {
        fn decide(
            snapshot: Snapshot,
            request: PlacementRequest,
        ) -> Result<Vec<JobPlacement>, PolicyError> {
            crate::decide(&snapshot, &request)
        }
    }

    export!(Plugin);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::SnapshotBuilder;

    fn pending(name: &str) -> PendingJob {
        PendingJob {
            name: name.into(),
            replicated_job: "w".into(),
            job_index: 0,
            job_key: name.into(),
            exclusive_topology: Some("zone".into()),
            node_selector_strategy: false,
            priority: None,
            pods: 1,
        }
    }

    fn zone(value: &str) -> TopologyDomain {
        TopologyDomain {
            topology_key: "zone".into(),
            value: value.into(),
            nodes: 1,
            ready_nodes: 1,
            occupied_by: Vec::new(),
        }
    }

    #[test]
    fn two_jobs_never_share_a_domain() {
        let s = SnapshotBuilder::new("js").build();
        let request = PlacementRequest {
            jobs: vec![pending("a"), pending("b"), pending("c")],
            domains: vec![zone("z2"), zone("z1")],
        };
        let v = decide(&s, &request).expect("decides");
        let pins: Vec<String> = v
            .iter()
            .map(|p| match &p.placement {
                Placement::Pin(pin) => pin.node_selector[0].value.clone(),
                Placement::Wait(_) => "wait".into(),
                Placement::Unchanged => "unchanged".into(),
            })
            .collect();
        assert_eq!(pins, ["z1", "z2", "wait"]);
    }

    #[test]
    fn node_selector_value_is_namespace_underscore_job() {
        let pin = node_selector_pin("ns", "js-w-0");
        assert_eq!(pin.node_selector[0].value, "ns_js-w-0");
    }
}
