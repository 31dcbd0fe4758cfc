//! An hour of simulated time with 100 Jobs and injected failures (pod exits,
//! a node, a whole pool, API errors) on a paused clock, and the same seed
//! giving the same recorded event sequence twice.

use jobset_sim::cluster::workload::{Workload, run};

/// One run on a fresh paused runtime, as a separate process would have it.
fn run_fresh(w: &Workload) -> jobset_sim::cluster::workload::WorkloadReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run(w)).expect("run")
}

#[test]
fn an_hour_of_one_hundred_jobs_with_failures_repeats_exactly_for_one_seed() {
    let w = Workload::default();
    let real = std::time::Instant::now();
    let first = run_fresh(&w);
    let took = real.elapsed();
    let second = run_fresh(&w);
    eprintln!(
        "one simulated hour, {} Jobs: {:.2?} real, {} recorded events, {} pod events, {} Complete, {} Failed",
        w.jobs,
        took,
        first.events.len(),
        first.pod_events,
        first.complete,
        first.failed
    );
    assert_eq!(first.events.len(), second.events.len());
    for (i, (a, b)) in first.events.iter().zip(&second.events).enumerate() {
        assert_eq!(a, b, "runs diverge at event {i}");
    }
    // The failures really happened, and the workload still finished.
    let count = |action: &str| first.events.iter().filter(|e| e.action == action).count();
    assert!(
        count("Failed") > 10,
        "scripted pod failures and the pool failure fail pods"
    );
    assert_eq!(count("FailDomain"), 1);
    assert!(
        count("NodeNotReady") >= 9,
        "one node plus the eight of pool-5"
    );
    assert_eq!(
        first.complete + first.failed,
        w.jobs,
        "every Job finished within the hour"
    );
    assert!(
        first.complete >= 90,
        "{} of {} Jobs complete",
        first.complete,
        w.jobs
    );
    assert!(first.events.last().is_some_and(|e| e.at_ms <= 3_600_000));
}

#[test]
fn a_different_seed_gives_a_different_run() {
    let small = Workload {
        jobs: 20,
        span: std::time::Duration::from_secs(1800),
        ..Workload::default()
    };
    let a = run_fresh(&small);
    let b = run_fresh(&Workload {
        seed: 43,
        ..small.clone()
    });
    assert_ne!(a.events, b.events);
}
