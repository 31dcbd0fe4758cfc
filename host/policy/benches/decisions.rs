//! Decision latency of the default plugins on a 64-Job snapshot, with a
//! fresh instance per decision, their compile time, and the same policy
//! logic compiled natively. Run: `cargo bench -p jobset-policy`.
//!
//! The placement request is the worst case, a JobSet's creation: all 64
//! Jobs pending and exclusive, over 80 rack domains of which 16 are held by
//! other JobSets. A second line places one pending Job (a RestartJob).
//!
//! `DECISIONS_AB=dir1,dir2 cargo bench -p jobset-policy --bench decisions`
//! compares other builds of the default plugins (`default_<slot>.wasm` in
//! each directory) decision by decision, interleaved in one process.

use jobset_policy::snapshot::{Occupant, PendingJob, PlacementRequest, Snapshot, TopologyDomain};
use jobset_policy::{NativeDefaults, PolicyEngine, Runtime, Slot, WasmPlugin, builtin};
use jobset_policy_sdk::harness::{SnapshotBuilder, rule};
use jobset_policy_sdk::types::FailureAction;
use std::time::{Duration, Instant};

const ROUNDS: usize = 2000;

fn sdk_snapshot() -> jobset_policy_sdk::types::Snapshot {
    let mut by_message = rule(
        "preempted",
        FailureAction::RestartJobSetAndIgnoreMaxRestarts,
    );
    by_message.on_job_failure_message_patterns = vec!["preempt(ed|ion)".into()];
    let mut by_reason = rule("deadline", FailureAction::FailJobSet);
    by_reason.on_job_failure_reasons = vec!["DeadlineExceeded".into()];
    let mut b = SnapshotBuilder::new("bench")
        .rjob("driver", 1)
        .rjob("workers", 63)
        .max_restarts(3)
        .rule(by_reason)
        .rule(by_message)
        .rule(rule("rest", FailureAction::RestartJobSet))
        .ready("driver", 0);
    for i in 0..63 {
        b = match i {
            0 | 1 => b.failed(
                "workers",
                i,
                "PodFailurePolicy",
                "node was preempted",
                100 + i as i64,
            ),
            2 | 3 => b.succeeded("workers", i, 50),
            _ => b.ready("workers", i),
        };
    }
    b.build()
}

fn to_host<T: serde::de::DeserializeOwned>(v: &impl serde::Serialize) -> T {
    serde_json::from_value(serde_json::to_value(v).expect("serialises")).expect("converts")
}

fn request() -> PlacementRequest {
    PlacementRequest {
        jobs: (0..64)
            .map(|i| PendingJob {
                name: format!("bench-workers-{i}"),
                replicated_job: "workers".into(),
                job_index: i,
                job_key: format!("key-{i}"),
                exclusive_topology: Some("rack".into()),
                node_selector_strategy: false,
                priority: None,
                pods: 4,
            })
            .collect(),
        domains: (0..80)
            .map(|i| TopologyDomain {
                topology_key: "rack".into(),
                value: format!("rack-{i:03}"),
                nodes: 4,
                ready_nodes: 4,
                occupied_by: if i % 5 == 0 {
                    vec![Occupant {
                        job_key: format!("other-{i}"),
                        priority: None,
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..50 {
        f();
    }
    let samples = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// One decision of `slot`'s default plugin on the bench's inputs.
fn decide(slot: Slot, plugin: &WasmPlugin, snapshot: &Snapshot, req: &PlacementRequest) {
    match slot {
        Slot::Startup => drop(plugin.decide_startup(snapshot).expect("decides")),
        Slot::Outcome => drop(plugin.decide_outcome(snapshot, &[]).expect("decides")),
        Slot::Placement => drop(plugin.decide_placement(snapshot, req).expect("decides")),
    }
}

/// Builds of the default plugins compared decision by decision in one
/// process (`DECISIONS_AB=dir1,dir2`, each holding `default_<slot>.wasm`):
/// the machine's drift between runs is larger than most changes.
fn compare(runtime: &Runtime, dirs: &[&str], snapshot: &Snapshot, req: &PlacementRequest) {
    for slot in Slot::ALL {
        let name = builtin::default_name(slot);
        let file = format!("{}.wasm", name.replace('-', "_"));
        let plugins: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let bytes = std::fs::read(format!("{dir}/{file}")).expect("reads the component");
                runtime.load(name, &bytes).expect("loads")
            })
            .collect();
        let mut samples = vec![Vec::with_capacity(ROUNDS * 4); plugins.len()];
        for round in 0..ROUNDS * 4 + 50 {
            for (plugin, out) in plugins.iter().zip(&mut samples) {
                let t = Instant::now();
                decide(slot, plugin, snapshot, req);
                if round >= 50 {
                    out.push(t.elapsed());
                }
            }
        }
        for (dir, s) in dirs.iter().zip(samples) {
            let (p50, p99) = percentiles(s);
            println!(
                "{name:<18} {dir:<30} p50 {:>7.1}µs  p99 {:>7.1}µs",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}

fn main() {
    let runtime = Runtime::shared().expect("runtime");
    let sdk = sdk_snapshot();
    let snapshot: Snapshot = to_host(&sdk);
    let req = request();
    let sdk_req: jobset_policy_sdk::types::PlacementRequest = to_host(&req);
    if let Ok(dirs) = std::env::var("DECISIONS_AB") {
        let dirs: Vec<&str> = dirs.split(',').collect();
        compare(runtime, &dirs, &snapshot, &req);
        return;
    }
    println!("64-Job snapshot, {ROUNDS} decisions each, fresh instance per Wasm decision");
    println!(
        "{:<18} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12} {:>8}",
        "plugin", "size", "compile", "empty p50", "wasm p50", "wasm p99", "native p50", "ratio"
    );
    let mut runtime_row = None;
    let mut one_job_row = None;
    for slot in Slot::ALL {
        let bytes = builtin::default_bytes(slot);
        let compiles: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                runtime.compile_uncached(bytes).expect("compiles");
                t.elapsed()
            })
            .collect();
        let (compile, _) = percentiles(compiles);
        let plugin = runtime
            .load(builtin::default_name(slot), bytes)
            .expect("loads");
        // Instantiation plus the smallest call the plugin exports: what a
        // decision costs before any snapshot is lowered.
        let (empty50, _) = time(|| {
            plugin.validate_config("").expect("accepts an empty config");
        });
        let (wasm50, wasm99) = time(|| decide(slot, &plugin, &snapshot, &req));
        let (native50, _) = match slot {
            Slot::Startup => time(|| {
                default_startup::decide(std::hint::black_box(&sdk)).expect("decides");
            }),
            Slot::Outcome => time(|| {
                default_outcome::decide(std::hint::black_box(&sdk)).expect("decides");
            }),
            Slot::Placement => time(|| {
                default_placement::decide(std::hint::black_box(&sdk), &sdk_req).expect("decides");
            }),
        };
        if slot == Slot::Placement {
            // The steady state: one Job of the 64 recreated after a
            // RestartJob action, placed alone.
            let one = PlacementRequest {
                jobs: req.jobs[..1].to_vec(),
                domains: req.domains.clone(),
            };
            one_job_row = Some(time(|| decide(slot, &plugin, &snapshot, &one)));
        }
        if slot == Slot::Startup {
            // Called from a thread driving a tokio runtime, as the controller
            // does: the decision runs on one of the runtime's worker threads.
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a tokio runtime");
            let (on_runtime, _) =
                rt.block_on(async { time(|| decide(slot, &plugin, &snapshot, &req)) });
            runtime_row = Some(on_runtime);
        }
        // Keep the trait implementation exercised too (conversion included).
        let _ = NativeDefaults.decide_startup(&snapshot);
        println!(
            "{:<18} {:>8}K {:>8.1}ms {:>9.1}µs {:>10.1}µs {:>10.1}µs {:>10.2}µs {:>7.0}x",
            builtin::default_name(slot),
            bytes.len() / 1024,
            compile.as_secs_f64() * 1e3,
            empty50.as_secs_f64() * 1e6,
            wasm50.as_secs_f64() * 1e6,
            wasm99.as_secs_f64() * 1e6,
            native50.as_secs_f64() * 1e6,
            wasm50.as_secs_f64() / native50.as_secs_f64().max(1e-9),
        );
    }
    if let Some((p50, p99)) = one_job_row {
        println!(
            "default-placement with one pending Job (the rest running): p50 {:.1}µs, p99 {:.1}µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    if let Some(t) = runtime_row {
        println!(
            "default-startup called from a tokio runtime thread (handed to a worker thread): p50 {:.1}µs",
            t.as_secs_f64() * 1e6
        );
    }
    pod_facts(runtime, &snapshot);
    in_place(runtime, &snapshot);
}

/// What pod facts add to an outcome decision: the `exit-codes` example
/// (which asks for them) on the same snapshot, with the failed pods of its
/// two failed Jobs (16 each, the host's default bound) and without any.
fn pod_facts(runtime: &Runtime, snapshot: &Snapshot) {
    use jobset_policy_sdk::harness::{failed_pod, job_pods};
    let plugin = runtime
        .load("exit-codes", builtin::EXAMPLE_EXIT_CODES)
        .expect("loads");
    let pods: Vec<jobset_policy::snapshot::JobPods> = to_host(
        &["bench-workers-0", "bench-workers-1"]
            .map(|job| {
                job_pods(
                    job,
                    (0..16)
                        .map(|i| {
                            failed_pod(&format!("{job}-{i}-x7k2p"), &format!("node-{i}"), 1, 90)
                        })
                        .collect(),
                )
            })
            .to_vec(),
    );
    let (with50, with99) = time(|| drop(plugin.decide_outcome(snapshot, &pods).expect("decides")));
    let (without50, _) = time(|| drop(plugin.decide_outcome(snapshot, &[]).expect("decides")));
    println!(
        "exit-codes outcome, 2 failed Jobs x 16 failed pods: p50 {:.1}µs (p99 {:.1}µs); without pod facts p50 {:.1}µs",
        with50.as_secs_f64() * 1e6,
        with99.as_secs_f64() * 1e6,
        without50.as_secs_f64() * 1e6
    );
}

/// What an in-place restart decision (`decide-in-place`, made in every
/// reconcile of a JobSet that restarts in place) costs beside an outcome
/// decision: the default outcome plugin and `recreate-on-node-loss` on the
/// same snapshot, with 16 pods that moved past the current attempt (the
/// host's bound).
fn in_place(runtime: &Runtime, snapshot: &Snapshot) {
    use jobset_policy_sdk::harness::failed_pod;
    let mut restart_pods: Vec<jobset_policy_sdk::pods::FailedPod> = (0..16)
        .map(|i| {
            failed_pod(
                &format!("bench-workers-{i}-0-x7k2p"),
                &format!("node-{i}"),
                1,
                90,
            )
        })
        .collect();
    for p in &mut restart_pods {
        p.phase = "Running".to_string();
    }
    let restart: jobset_policy::snapshot::InPlaceRestart =
        to_host(&jobset_policy_sdk::in_place::InPlaceRestart {
            current: Some(0),
            previous: None,
            highest: Some(1),
            expected: 256,
            reporting: 256,
            agreed: false,
            max_container_restarts: 1,
            pods: restart_pods,
            omitted: 0,
        });
    let default = runtime
        .load("default-outcome", builtin::DEFAULT_OUTCOME)
        .expect("loads");
    let custom = runtime
        .load(
            "recreate-on-node-loss",
            builtin::EXAMPLE_RECREATE_ON_NODE_LOSS,
        )
        .expect("loads");
    let (outcome50, _) = time(|| drop(default.decide_outcome(snapshot, &[]).expect("decides")));
    let (default50, default99) = time(|| {
        drop(
            default
                .decide_in_place(snapshot, &restart)
                .expect("decides"),
        )
    });
    let (custom50, _) = time(|| drop(custom.decide_in_place(snapshot, &restart).expect("decides")));
    println!(
        "in-place decision, 16 pods moved on: default-outcome p50 {:.1}µs (p99 {:.1}µs), \
         recreate-on-node-loss p50 {:.1}µs; default-outcome's outcome decision p50 {:.1}µs",
        default50.as_secs_f64() * 1e6,
        default99.as_secs_f64() * 1e6,
        custom50.as_secs_f64() * 1e6,
        outcome50.as_secs_f64() * 1e6
    );
}
