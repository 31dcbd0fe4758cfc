//! API faults: the scripted 50-JobSet workload while 5% of requests fail
//! (500, 429 or 409 by verb), every response is slow, watches are dropped
//! every few seconds and resuming them answers 410 Gone a third of the time.
//! Every JobSet must end as in the fault-free run, with no Job created twice
//! in one attempt.
//!
//! CI runs `JOBSET_CHAOS_SEEDS` seeds (default 1); the long run is
//! `JOBSET_CHAOS_SEEDS=50 cargo test -p jobset-e2e --test reliability api_faults::`.

use std::time::Duration;

use jobset_e2e::chaos::{Kill, Rng, workload};
use jobset_e2e::runs::{assert_matches, expected, run, seeds};
use jobset_e2e::runtime;
use jobset_sim::{Faults, SimConfig};

const JOBSETS: usize = 50;

/// 5% of requests fail, each verb with its own code.
fn faults(seed: u64) -> Faults {
    let mut f = Faults {
        seed,
        latency: Duration::from_millis(150),
        drop_watches_after: Some(Duration::from_secs(3)),
        gone_on_resume: 0.33,
        ..Faults::default()
    };
    for (verb, code) in [
        ("get", 500),
        ("list", 429),
        ("watch", 500),
        ("create", 500),
        ("update", 409),
        ("patch", 409),
        ("delete", 429),
    ] {
        f.error_rates.insert(verb.to_string(), (0.05, code));
    }
    f
}

#[test]
fn every_jobset_ends_as_without_faults_when_requests_fail_slow_down_and_watches_drop() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let want = expected(&plans);
        for seed in 0..seeds(1) {
            let config = SimConfig {
                faults: faults(seed),
                ..SimConfig::default()
            };
            let run = run(&plans, config, &[], &mut Rng::new(seed)).await;
            assert_matches(&run, &want, &format!("API faults, seed {seed}"));
        }
    });
}

#[test]
fn api_faults_and_a_crash_between_a_job_create_and_the_status_write_lose_nothing() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let config = SimConfig {
            faults: faults(99),
            ..SimConfig::default()
        };
        let kills = [Kill::AfterJobCreate(5), Kill::AfterJobCreate(1)];
        let run = run(&plans, config, &kills, &mut Rng::new(99)).await;
        assert_eq!(run.kills, 2, "both kill points were reached");
        assert_matches(&run, &expected(&plans), "API faults plus crashes");
    });
}
