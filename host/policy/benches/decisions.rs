//! Decision latency of the default plugins on a 64-Job snapshot, with a
//! fresh instance per decision, their compile time, and the same policy
//! logic compiled natively. Run: `cargo bench -p jobset-policy`.

use jobset_policy::snapshot::{Occupant, PendingJob, PlacementRequest, Snapshot, TopologyDomain};
use jobset_policy::{NativeDefaults, PolicyEngine, Runtime, Slot, builtin};
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

fn main() {
    let runtime = Runtime::shared().expect("runtime");
    let sdk = sdk_snapshot();
    let snapshot: Snapshot = to_host(&sdk);
    let req = request();
    let sdk_req: jobset_policy_sdk::types::PlacementRequest = to_host(&req);
    println!("64-Job snapshot, {ROUNDS} decisions each, fresh instance per Wasm decision");
    println!(
        "{:<18} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12} {:>8}",
        "plugin", "size", "compile", "empty p50", "wasm p50", "wasm p99", "native p50", "ratio"
    );
    let mut runtime_row = None;
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
        let (wasm50, wasm99, native50) = match slot {
            Slot::Startup => {
                let (a, b) = time(|| {
                    plugin.decide_startup(&snapshot).expect("decides");
                });
                let (c, _) = time(|| {
                    default_startup::decide(std::hint::black_box(&sdk)).expect("decides");
                });
                (a, b, c)
            }
            Slot::Outcome => {
                let (a, b) = time(|| {
                    plugin.decide_outcome(&snapshot).expect("decides");
                });
                let (c, _) = time(|| {
                    default_outcome::decide(std::hint::black_box(&sdk)).expect("decides");
                });
                (a, b, c)
            }
            Slot::Placement => {
                let (a, b) = time(|| {
                    plugin.decide_placement(&snapshot, &req).expect("decides");
                });
                let (c, _) = time(|| {
                    default_placement::decide(std::hint::black_box(&sdk), &sdk_req)
                        .expect("decides");
                });
                (a, b, c)
            }
        };
        if slot == Slot::Startup {
            // Called from a thread driving a tokio runtime, as the controller
            // does: the decision runs on one of the runtime's worker threads.
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a tokio runtime");
            let (on_runtime, _) = rt.block_on(async {
                time(|| {
                    plugin.decide_startup(&snapshot).expect("decides");
                })
            });
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
    if let Some(t) = runtime_row {
        println!(
            "default-startup called from a tokio runtime thread (handed to a worker thread): p50 {:.1}µs",
            t.as_secs_f64() * 1e6
        );
    }
}
