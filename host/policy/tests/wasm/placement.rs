//! default-placement through Wasm: one free topology domain per exclusive
//! Job (DESIGN.md 8), waiting when none is free, and the node-selector
//! strategy of spec 3.2 / 5.4.

use crate::common::{placement_plugin, snap};
use jobset_policy::snapshot::{
    JobPlacement, Occupant, PendingJob, Placement, PlacementRequest, TopologyDomain,
};
use jobset_policy::{NativeDefaults, PolicyEngine};
use jobset_policy_sdk::harness::{SnapshotBuilder, Xorshift};

const RACK: &str = "example.com/rack";

fn job(name: &str, topology: Option<&str>, node_selector: bool) -> PendingJob {
    PendingJob {
        name: name.to_string(),
        replicated_job: "workers".to_string(),
        job_index: 0,
        job_key: format!("key-{name}"),
        exclusive_topology: topology.map(String::from),
        node_selector_strategy: node_selector,
        priority: None,
        pods: 2,
    }
}

fn domain(value: &str, ready: u32, occupants: &[&str]) -> TopologyDomain {
    TopologyDomain {
        topology_key: RACK.to_string(),
        value: value.to_string(),
        nodes: 2,
        ready_nodes: ready,
        occupied_by: occupants
            .iter()
            .map(|k| Occupant {
                job_key: k.to_string(),
                priority: None,
            })
            .collect(),
    }
}

fn decide(request: PlacementRequest) -> Vec<JobPlacement> {
    let s = snap(SnapshotBuilder::new("js").rjob("workers", 3));
    let wasm = placement_plugin()
        .decide_placement(&s, &request)
        .expect("decides");
    let native = NativeDefaults
        .decide_placement(&s, &request)
        .expect("decides natively");
    assert_eq!(wasm.verdict, native.verdict, "Wasm and native agree");
    wasm.verdict
}

fn pinned_value(p: &JobPlacement) -> Option<String> {
    match &p.placement {
        Placement::Pin(pin) => pin
            .node_selector
            .iter()
            .find(|kv| kv.key == RACK)
            .map(|kv| kv.value.clone()),
        _ => None,
    }
}

#[test]
fn exclusive_jobs_get_distinct_free_domains() {
    let v = decide(PlacementRequest {
        jobs: vec![
            job("js-workers-0", Some(RACK), false),
            job("js-workers-1", Some(RACK), false),
        ],
        domains: vec![
            domain("r1", 2, &["key-other"]),
            domain("r2", 2, &[]),
            domain("r3", 0, &[]),
            domain("r4", 2, &[]),
        ],
    });
    let values: Vec<Option<String>> = v.iter().map(pinned_value).collect();
    assert_eq!(values, [Some("r2".to_string()), Some("r4".to_string())]);
}

#[test]
fn a_job_that_already_holds_a_domain_keeps_it() {
    let v = decide(PlacementRequest {
        jobs: vec![job("js-workers-0", Some(RACK), false)],
        domains: vec![domain("r1", 2, &[]), domain("r2", 2, &["key-js-workers-0"])],
    });
    assert_eq!(pinned_value(&v[0]).as_deref(), Some("r2"));
}

#[test]
fn exclusive_job_with_no_free_domain_is_left_to_the_scheduler() {
    let v = decide(PlacementRequest {
        jobs: vec![
            job("js-workers-0", Some(RACK), false),
            job("js-workers-1", Some(RACK), false),
        ],
        domains: vec![domain("r1", 2, &[]), domain("r2", 2, &["key-other"])],
    });
    assert_eq!(pinned_value(&v[0]).as_deref(), Some("r1"));
    // Created unpinned (the host gives it upstream's exclusive affinities),
    // so its pods are Pending where autoscalers see them.
    assert_eq!(v[1].placement, Placement::Unchanged, "{:?}", v[1]);
}

#[test]
fn node_selector_strategy_pins_to_the_namespaced_job_label_with_a_toleration() {
    let v = decide(PlacementRequest {
        jobs: vec![job("js-workers-0", Some(RACK), true)],
        domains: vec![],
    });
    match &v[0].placement {
        Placement::Pin(pin) => {
            assert_eq!(pin.node_selector.len(), 1);
            assert_eq!(
                pin.node_selector[0].key,
                "alpha.jobset.sigs.k8s.io/namespaced-job"
            );
            assert_eq!(pin.node_selector[0].value, "default_js-workers-0");
            assert_eq!(pin.tolerations.len(), 1);
            assert_eq!(
                pin.tolerations[0].key,
                "alpha.jobset.sigs.k8s.io/no-schedule"
            );
            assert_eq!(pin.tolerations[0].operator, "Exists");
            assert_eq!(pin.tolerations[0].effect.as_deref(), Some("NoSchedule"));
        }
        other => panic!("expected pin, got {other:?}"),
    }
}

#[test]
fn non_exclusive_jobs_are_left_unchanged() {
    let v = decide(PlacementRequest {
        jobs: vec![job("js-workers-0", None, false)],
        domains: vec![domain("r1", 2, &[])],
    });
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn exclusivity_only_applies_within_one_priority() {
    let mut high = job("js-workers-0", Some(RACK), false);
    high.priority = Some(100);
    let v = decide(PlacementRequest {
        jobs: vec![high],
        domains: vec![domain("r1", 2, &["key-low"])],
    });
    assert_eq!(pinned_value(&v[0]).as_deref(), Some("r1"));
}

#[test]
fn a_request_larger_than_the_plugins_arena_is_placed_in_full() {
    // 500 Jobs whose names and keys are 250 bytes long, and 530 domains,
    // half held: about 330 KiB of strings, more than the default plugins'
    // allocation arena holds, so the rest of the request lands in the
    // ordinary heap. (Domain values are label values, at most 63 bytes.)
    let pad = "x".repeat(240);
    let jobs: Vec<PendingJob> = (0..500)
        .map(|i| job(&format!("{pad}-job-{i:05}"), Some(RACK), false))
        .collect();
    let domains: Vec<TopologyDomain> = (0..530)
        .map(|i| {
            let held = format!("key-{pad}-job-{:05}", i / 2);
            let occupants: &[&str] = if i % 2 == 1 { &[held.as_str()] } else { &[] };
            domain(&format!("rack-{i:05}"), 1, occupants)
        })
        .collect();
    let request = PlacementRequest {
        jobs: jobs.clone(),
        domains,
    };
    // A runtime of its own with a generous deadline: a debug build on a
    // busy machine is not what this test is about.
    let rt = jobset_policy::Runtime::new(jobset_policy::Limits {
        deadline: std::time::Duration::from_secs(10),
        ..Default::default()
    })
    .expect("a runtime");
    let plugin = rt
        .load(
            "default-placement",
            jobset_policy::builtin::DEFAULT_PLACEMENT,
        )
        .expect("loads");
    let s = snap(SnapshotBuilder::new("js").rjob("workers", 500));
    let placed = plugin
        .decide_placement(&s, &request)
        .expect("decides")
        .verdict;
    let native = NativeDefaults
        .decide_placement(&s, &request)
        .expect("decides natively");
    assert_eq!(placed, native.verdict, "Wasm and native agree");
    assert_eq!(placed.len(), jobs.len());
    for (i, p) in placed.iter().enumerate() {
        assert_eq!(p.job, jobs[i].name);
        // Job i already holds rack 2i+1 (the first by value with its key);
        // Jobs 265 and on hold nothing and take the free even racks in
        // order.
        let want = if i < 265 {
            format!("rack-{:05}", 2 * i + 1)
        } else {
            format!("rack-{:05}", 2 * (i - 265))
        };
        assert_eq!(pinned_value(p).as_deref(), Some(want.as_str()), "job {i}");
    }
}

#[test]
fn wasm_and_native_agree_on_requests_of_every_size() {
    // Random requests (a fixed generator: the same cases on every run),
    // from empty to larger than the plugin's 256 KiB arena, so the host's
    // writes, the plugin's work and its verdict each start, straddle and
    // pass the arena's end, and the Wait messages, grown by `format!`,
    // move out of it. Any block the allocator handed out twice would show
    // as a verdict that differs from the native one.
    let mut g = Xorshift::new(0x2545_f491_4f6c_dd1d);
    let mut next = |n: u64| g.below(n);
    let keys = [RACK, "zone"];
    let priorities = [None, Some(1), Some(7)];
    let mut largest = 0;
    for case in 0..60 {
        let pad = "p".repeat([0, 16, 120, 250][next(4) as usize]);
        let scale = [4, 40, 400][case % 3];
        let jobs: Vec<PendingJob> = (0..next(scale))
            .map(|i| {
                // The node-selector strategy's label value holds the
                // Job's name, so that Job keeps a name a label can hold.
                let node_selector = next(8) == 0;
                let name = if node_selector {
                    format!("j{i}")
                } else {
                    format!("{pad}-j{i}")
                };
                PendingJob {
                    exclusive_topology: (next(6) > 0).then(|| keys[next(2) as usize].to_string()),
                    node_selector_strategy: node_selector,
                    job_key: format!("{pad}-k{}", next(scale)),
                    priority: priorities[next(3) as usize],
                    ..job(&name, None, false)
                }
            })
            .collect();
        let domains: Vec<TopologyDomain> = (0..next(scale))
            .map(|i| TopologyDomain {
                topology_key: keys[next(2) as usize].to_string(),
                value: format!("d{:03}-{i}", next(999)),
                nodes: 2,
                ready_nodes: next(3) as u32,
                occupied_by: (0..next(3))
                    .map(|_| Occupant {
                        job_key: format!("{pad}-k{}", next(scale)),
                        priority: priorities[next(3) as usize],
                    })
                    .collect(),
            })
            .collect();
        let request = PlacementRequest { jobs, domains };
        largest = largest.max(serde_json::to_vec(&request).expect("serialises").len());
        decide(request);
    }
    assert!(
        largest > 256 << 10,
        "the largest request, {largest} bytes, fills the arena"
    );
}
