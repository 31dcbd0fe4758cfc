//! Real time per simulated hour of the cluster: 100 Indexed Jobs of 4 pods
//! arriving over half an hour, with pod, node, pool and API failures, on a
//! paused clock. Reports wall time per simulated hour and pod lifecycle
//! events per second. Run with `cargo bench -p jobset-sim --bench cluster`.

use std::time::{Duration, Instant};

use jobset_sim::cluster::workload::{Workload, WorkloadReport, run};

fn once(w: &Workload) -> (Duration, WorkloadReport) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let start = Instant::now();
    let report = rt.block_on(run(w)).expect("workload runs");
    (start.elapsed(), report)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cases = [
        ("100 jobs x 4 pods, failures", Workload::default()),
        (
            "100 jobs x 4 pods, no failures",
            Workload {
                failures: false,
                ..Workload::default()
            },
        ),
        (
            "300 jobs x 4 pods, failures",
            Workload {
                jobs: 300,
                ..Workload::default()
            },
        ),
    ];
    let rounds = if quick { 1 } else { 3 };
    for (label, w) in cases {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..rounds {
            let (t, r) = once(&w);
            times.push(t);
            last = Some(r);
        }
        times.sort();
        let median = times[times.len() / 2];
        let Some(r) = last else { continue };
        let hours = w.span.as_secs_f64() / 3600.0;
        println!(
            "{label}: {:.3} s real per simulated hour (median of {rounds}), {} pod events, {:.0} pod events/s, {} recorded events, {} Complete, {} Failed",
            median.as_secs_f64() / hours,
            r.pod_events,
            r.pod_events as f64 / median.as_secs_f64(),
            r.events.len(),
            r.complete,
            r.failed,
        );
    }
}
