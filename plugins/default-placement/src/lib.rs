//! The built-in placement policy. Exclusive Jobs
//! (`alpha.jobset.sigs.k8s.io/exclusive-topology`) get a free topology
//! domain each, assigned up front and pinned with a nodeSelector, so no pod
//! waits on a leader; with the node-selector strategy the Job gets upstream's
//! `namespaced-job` selector and `no-schedule` toleration instead. Other
//! Jobs are left alone.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
// No `std`: the component is smaller and imports nothing (see the SDK's
// `bare` feature). Tests run natively with `std`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use jobset_policy_sdk::types::{
    JobPlacement, KeyValue, PendingJob, Pin, Placement, PlacementRequest, PolicyError, Snapshot,
    Toleration, TopologyDomain,
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
    let mut board = Board::new(&request.domains);
    let mut out = Vec::new();
    for job in &request.jobs {
        let placement = if job.node_selector_strategy {
            Placement::Pin(node_selector_pin(&snapshot.jobset.namespace, &job.name))
        } else if let Some(key) = &job.exclusive_topology {
            board.exclusive(job, key)
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

/// The domains of a request and who holds them, as Jobs are placed one by
/// one. A Job keeps the domain its key already holds (the first by value),
/// else takes the first free domain by value with a ready node; a domain is
/// taken when a Job of the same priority holds it. Domains only ever fill
/// up, so the search for a free one resumes where the last one for that key
/// and priority stopped: placing n Jobs on d domains costs O(n + d), not
/// O(n * d).
struct Board<'a> {
    domains: &'a [TopologyDomain],
    /// Per topology key, its domains' indices ordered by value.
    by_key: BTreeMap<&'a str, Vec<usize>>,
    /// Per domain, the priorities of the Jobs holding it.
    priorities: Vec<Vec<Option<i32>>>,
    /// (topology key, job key) to the domain that Job holds.
    held: BTreeMap<(&'a str, &'a str), usize>,
    /// (topology key, priority) to the position in `by_key` before which
    /// no domain is free for that priority.
    cursor: BTreeMap<(&'a str, Option<i32>), usize>,
}

impl<'a> Board<'a> {
    fn new(domains: &'a [TopologyDomain]) -> Self {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, d) in domains.iter().enumerate() {
            by_key.entry(d.topology_key.as_str()).or_default().push(i);
        }
        let mut held = BTreeMap::new();
        for (key, list) in by_key.iter_mut() {
            list.sort_by(|&a, &b| domains[a].value.cmp(&domains[b].value));
            for &i in list.iter() {
                for o in &domains[i].occupied_by {
                    held.entry((*key, o.job_key.as_str())).or_insert(i);
                }
            }
        }
        Board {
            domains,
            by_key,
            priorities: domains
                .iter()
                .map(|d| d.occupied_by.iter().map(|o| o.priority).collect())
                .collect(),
            held,
            cursor: BTreeMap::new(),
        }
    }

    fn exclusive(&mut self, job: &'a PendingJob, key: &'a str) -> Placement {
        let chosen = match self.held.get(&(key, job.job_key.as_str())) {
            Some(&i) => Some(i),
            None => self.first_free(key, job.priority).inspect(|&i| {
                self.priorities[i].push(job.priority);
                self.held.insert((key, job.job_key.as_str()), i);
            }),
        };
        match chosen {
            Some(i) => Placement::Pin(Pin {
                node_selector: vec![KeyValue {
                    key: key.to_string(),
                    value: self.domains[i].value.clone(),
                }],
                tolerations: Vec::new(),
                required_node_affinity: Vec::new(),
            }),
            None => Placement::Wait(format!(
                "no free {key} domain for job {}: {} domains, none with a ready node and no other exclusive job",
                job.name,
                self.by_key.get(key).map_or(0, Vec::len)
            )),
        }
    }

    /// The first domain of `key` by value with a ready node that no Job of
    /// `priority` holds.
    fn first_free(&mut self, key: &'a str, priority: Option<i32>) -> Option<usize> {
        let list = self.by_key.get(key)?;
        let at = self.cursor.entry((key, priority)).or_insert(0);
        while let Some(&i) = list.get(*at) {
            let free = self.domains[i].ready_nodes > 0 && !self.priorities[i].contains(&priority);
            if free {
                return Some(i);
            }
            *at += 1;
        }
        None
    }
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
        with: {
            "jobset:policy/types@0.1.0": jobset_policy_sdk::types,
            "jobset:policy/regex@0.1.0": jobset_policy_sdk::regex::import,
        },
    });

    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;
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
            jobset_policy_sdk::decide_once((snapshot, request), |(s, r)| crate::decide(s, r))
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

    /// The placement rule written the obvious way (scan every domain for
    /// every Job), to check the incremental board against.
    fn reference(request: &PlacementRequest) -> Vec<String> {
        let mut domains = request.domains.clone();
        domains.sort_by(|a, b| {
            (a.topology_key.as_str(), a.value.as_str())
                .cmp(&(b.topology_key.as_str(), b.value.as_str()))
        });
        let mut out = Vec::new();
        for job in &request.jobs {
            let Some(key) = &job.exclusive_topology else {
                continue;
            };
            let mut candidates: Vec<&mut TopologyDomain> = domains
                .iter_mut()
                .filter(|d| &d.topology_key == key)
                .collect();
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
            out.push(match chosen {
                Some(i) => {
                    if held.is_none() {
                        candidates[i]
                            .occupied_by
                            .push(jobset_policy_sdk::types::Occupant {
                                job_key: job.job_key.clone(),
                                priority: job.priority,
                            });
                    }
                    format!("{}={}", key, candidates[i].value)
                }
                None => format!("wait {} of {}", job.name, candidates.len()),
            });
        }
        out
    }

    fn outcome(v: &[JobPlacement]) -> Vec<String> {
        v.iter()
            .map(|p| match &p.placement {
                Placement::Pin(pin) => format!(
                    "{}={}",
                    pin.node_selector[0].key, pin.node_selector[0].value
                ),
                Placement::Wait(why) => {
                    let total = why.split(": ").nth(1).and_then(|t| t.split(' ').next());
                    format!("wait {} of {}", p.job, total.unwrap_or("?"))
                }
                Placement::Unchanged => "unchanged".into(),
            })
            .collect()
    }

    #[test]
    fn the_board_places_exactly_as_scanning_every_domain_would() {
        // A small deterministic generator: the same cases on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let keys = ["rack", "zone"];
        let priorities = [None, Some(1), Some(5)];
        for case in 0..500 {
            let domains: Vec<TopologyDomain> = (0..next(12))
                .map(|i| TopologyDomain {
                    topology_key: keys[next(2) as usize].into(),
                    value: format!("d{}", next(8) * 10 + i),
                    nodes: 2,
                    ready_nodes: next(4) as u32 % 3,
                    occupied_by: (0..next(3))
                        .map(|_| jobset_policy_sdk::types::Occupant {
                            job_key: format!("k{}", next(10)),
                            priority: priorities[next(3) as usize],
                        })
                        .collect(),
                })
                .collect();
            let jobs: Vec<PendingJob> = (0..next(12))
                .map(|i| PendingJob {
                    exclusive_topology: (next(5) > 0).then(|| keys[next(2) as usize].to_string()),
                    job_key: format!("k{}", next(10)),
                    priority: priorities[next(3) as usize],
                    ..pending(&format!("j{i}"))
                })
                .collect();
            let request = PlacementRequest { jobs, domains };
            let s = SnapshotBuilder::new("js").build();
            let got = outcome(&decide(&s, &request).expect("decides"));
            assert_eq!(got, reference(&request), "case {case}: {request:?}");
        }
    }
}
