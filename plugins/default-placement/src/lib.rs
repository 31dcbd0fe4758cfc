//! The built-in placement policy. Exclusive Jobs
//! (`alpha.jobset.sigs.k8s.io/exclusive-topology`) get a free topology
//! domain each, assigned up front and pinned with a nodeSelector, so no pod
//! waits on a leader; with no free domain a Job is left unchanged, and the
//! host creates it with upstream's exclusive pod affinities for the
//! scheduler to place; with the node-selector strategy the Job gets upstream's
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
    let mut board = Board::new(request);
    let mut out = Vec::with_capacity(request.jobs.len());
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
/// O(n * d). Topology keys are numbered once, and who holds what is a hash
/// table, so placing a Job compares a handful of strings, not dozens, and
/// allocates nothing but its verdict.
struct Board<'a> {
    domains: &'a [TopologyDomain],
    /// Topology key to its number, an index into `keys`.
    key_numbers: BTreeMap<&'a str, u32>,
    keys: Vec<KeyDomains>,
    /// (topology key number, job key) to the domain that Job holds.
    held: Holders<'a>,
}

/// The domains of one topology key.
struct KeyDomains {
    /// Indices into the request's domains, ordered by value.
    by_value: Vec<usize>,
    /// Per priority, the position in `by_value` before which no domain is
    /// free for that priority. Jobs of a JobSet share a handful of
    /// priorities, so a list is the quickest map.
    cursors: Vec<(Option<i32>, usize)>,
}

impl<'a> Board<'a> {
    fn new(request: &'a PlacementRequest) -> Self {
        let domains = request.domains.as_slice();
        let mut key_numbers: BTreeMap<&str, u32> = BTreeMap::new();
        let mut keys: Vec<KeyDomains> = Vec::new();
        let mut occupants = 0;
        for (i, d) in domains.iter().enumerate() {
            let next = keys.len() as u32;
            let n = *key_numbers.entry(d.topology_key.as_str()).or_insert(next);
            if n == next {
                keys.push(KeyDomains {
                    by_value: Vec::new(),
                    cursors: Vec::new(),
                });
            }
            keys[n as usize].by_value.push(i);
            occupants += d.occupied_by.len();
        }
        // Every pending Job may add one holder, never more.
        let mut held = Holders::with_capacity(occupants + request.jobs.len());
        for (n, k) in keys.iter_mut().enumerate() {
            let by_value = |a: &usize, b: &usize| domains[*a].value.cmp(&domains[*b].value);
            // The controller sends domains sorted; checking is cheaper than sorting.
            if !k.by_value.is_sorted_by(|a, b| by_value(a, b).is_le()) {
                k.by_value.sort_by(by_value);
            }
            for &i in &k.by_value {
                for o in &domains[i].occupied_by {
                    held.insert_first(n as u32, &o.job_key, i);
                }
            }
        }
        Board {
            domains,
            key_numbers,
            keys,
            held,
        }
    }

    fn exclusive(&mut self, job: &'a PendingJob, key: &'a str) -> Placement {
        let chosen =
            self.key_numbers
                .get(key)
                .copied()
                .and_then(|n| match self.held.get(n, &job.job_key) {
                    Some(i) => Some(i),
                    None => self.take_free(n, job.priority).inspect(|&i| {
                        self.held.insert_first(n, &job.job_key, i);
                    }),
                });
        match chosen {
            Some(i) => Placement::Pin(Pin {
                node_selector: vec![KeyValue {
                    key: key.to_string(),
                    value: self.domains[i].value.clone(),
                }],
                tolerations: Vec::new(),
                required_node_affinity: Vec::new(),
            }),
            // No free domain (all held, none ready yet, or none at all
            // before an autoscaler makes one): the Job is created anyway,
            // unpinned, and the host gives its pods upstream's exclusive
            // affinities, so they wait Pending where the scheduler and
            // autoscalers see them and take the first domain that frees.
            None => Placement::Unchanged,
        }
    }

    /// Takes, for a Job of `priority`, the first domain of key number `n`
    /// by value with a ready node that no Job of that priority holds. The
    /// cursor moves past it: the taker is never written down, as only Jobs
    /// of its own priority would see it, and they start after it.
    fn take_free(&mut self, n: u32, priority: Option<i32>) -> Option<usize> {
        let k = &mut self.keys[n as usize];
        let slot = match k.cursors.iter().position(|(p, _)| *p == priority) {
            Some(slot) => slot,
            None => {
                k.cursors.push((priority, 0));
                k.cursors.len() - 1
            }
        };
        let at = &mut k.cursors[slot].1;
        while let Some(&i) = k.by_value.get(*at) {
            *at += 1;
            let d = &self.domains[i];
            if d.ready_nodes > 0 && !d.occupied_by.iter().any(|o| o.priority == priority) {
                return Some(i);
            }
        }
        None
    }
}

/// Who holds which domain: (topology key number, job key) to a domain
/// index, in an open-addressing hash table sized up front for every holder
/// the request can produce. The first holder recorded for a key wins.
struct Holders<'a> {
    /// 0 for an empty slot, else an index into `entries` plus one.
    slots: Vec<u32>,
    entries: Vec<(u32, &'a str, usize)>,
}

impl<'a> Holders<'a> {
    fn with_capacity(holders: usize) -> Self {
        // At most half full: every probe sequence meets an empty slot soon.
        let size = (holders * 2).next_power_of_two().max(8);
        Holders {
            slots: vec![0; size],
            entries: Vec::with_capacity(holders),
        }
    }

    /// FNV-1a over the key number and the job key's bytes.
    fn hash(key: u32, job: &str) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.to_le_bytes().iter().chain(job.as_bytes()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h as usize
    }

    /// The slot holding (key, job), or the empty slot where it belongs.
    fn find(&self, key: u32, job: &str) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(key, job) & mask;
        loop {
            match self.slots[at] {
                0 => return at,
                e => {
                    let (k, j, _) = self.entries[e as usize - 1];
                    if k == key && j == job {
                        return at;
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    fn get(&self, key: u32, job: &str) -> Option<usize> {
        match self.slots[self.find(key, job)] {
            0 => None,
            e => Some(self.entries[e as usize - 1].2),
        }
    }

    /// Records that `job` holds `domain` unless it already holds one.
    fn insert_first(&mut self, key: u32, job: &'a str, domain: usize) {
        // Sized for every holder up front, so the table never fills; a
        // caller that broke that promise still gets a correct table.
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let at = self.find(key, job);
        if self.slots[at] == 0 {
            self.entries.push((key, job, domain));
            self.slots[at] = self.entries.len() as u32;
        }
    }

    fn grow(&mut self) {
        let mut slots = vec![0; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (e, (key, job, _)) in self.entries.iter().enumerate() {
            let mut at = Self::hash(*key, job) & mask;
            while slots[at] != 0 {
                at = (at + 1) & mask;
            }
            slots[at] = e as u32 + 1;
        }
        self.slots = slots;
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
    jobset_policy_sdk::no_config(NAME, config)
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component {
    wit_bindgen::generate!({
        world: "placement-plugin",
        path: "../../wit",
        with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
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
                inputs: Vec::new(),
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
        assert_eq!(
            pins,
            ["z1", "z2", "unchanged"],
            "the third is left to the scheduler"
        );
    }

    #[test]
    fn holders_keep_the_first_domain_per_key_and_grow_past_their_size() {
        let jobs: Vec<String> = (0..100).map(|i| format!("job-{i}")).collect();
        // Sized for none: every insert past the first few grows the table.
        let mut held = Holders::with_capacity(0);
        for (i, job) in jobs.iter().enumerate() {
            held.insert_first(0, job, i);
            held.insert_first(1, job, 1000 + i);
            held.insert_first(0, job, 5000 + i);
        }
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(held.get(0, job), Some(i), "{job} under key 0");
            assert_eq!(held.get(1, job), Some(1000 + i), "{job} under key 1");
        }
        assert_eq!(held.get(2, "job-1"), None);
        assert_eq!(held.get(0, "job-100"), None);
        assert_eq!(held.entries.len(), 200);
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
                None => "unchanged".into(),
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
                Placement::Wait(why) => format!("wait {}: {why}", p.job),
                Placement::Unchanged => "unchanged".into(),
            })
            .collect()
    }

    #[test]
    fn the_board_places_exactly_as_scanning_every_domain_would() {
        // The same cases on every run.
        let mut g = jobset_policy_sdk::harness::Xorshift::new(0x9e37_79b9_7f4a_7c15);
        let mut next = |n: u64| g.below(n);
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
