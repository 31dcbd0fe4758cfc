//! Crash-restart: 50 scripted JobSets with failures and restarts while the
//! controller is killed at seeded points (right after a Job create, so the
//! status write of that reconcile never lands; after a status write; after a
//! Job delete; after any write) and started again. Every run must end where
//! the fault-free run ends, create no Job name twice in one attempt, and
//! count every restart exactly once.
//!
//! CI runs `JOBSET_CHAOS_SEEDS` seeds (default 2); the long run is
//! `JOBSET_CHAOS_SEEDS=50 cargo test -p jobset-e2e --test reliability crash::`.

use jobset_e2e::chaos::{self, Kill, Rng, workload};
use jobset_e2e::runs::{assert_matches, expected, run, seeds};
use jobset_e2e::runtime;
use jobset_sim::SimConfig;

const JOBSETS: usize = 50;

#[test]
fn the_fault_free_run_ends_as_the_failure_policy_says() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let restarting = plans.iter().filter(|p| !p.failures.is_empty()).count();
        assert!(
            restarting > JOBSETS / 2,
            "the workload restarts most JobSets"
        );
        let run = run(&plans, SimConfig::default(), &[], &mut Rng::new(0)).await;
        assert_eq!(run.kills, 0);
        assert_matches(&run, &expected(&plans), "fault-free");
    });
}

#[test]
fn a_controller_killed_between_a_job_create_and_the_status_write_loses_nothing() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        // Every generation dies right after its first, second or third Job
        // create: the reconcile that created it never writes its status.
        let kills: Vec<Kill> = (0..24).map(|i| Kill::AfterJobCreate(1 + i % 3)).collect();
        let run = run(&plans, SimConfig::default(), &kills, &mut Rng::new(1)).await;
        assert_eq!(run.kills, kills.len(), "every kill point was reached");
        assert_matches(&run, &expected(&plans), "kills after Job creates");
    });
}

#[test]
fn a_controller_killed_at_seeded_points_ends_every_jobset_as_the_fault_free_run() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let want = expected(&plans);
        let mut total = 0;
        for seed in 0..seeds(2) {
            let mut rng = Rng::new(seed);
            let kills: Vec<Kill> = (0..1 + rng.below(6))
                .map(|_| Kill::draw(&mut rng))
                .collect();
            let run = run(&plans, SimConfig::default(), &kills, &mut rng).await;
            total += run.kills;
            assert_matches(&run, &want, &format!("seed {seed} ({kills:?})"));
        }
        assert!(
            total >= seeds(2) as usize,
            "too few kill points reached: {total}"
        );
    });
}

#[test]
fn the_workload_mixes_completions_failures_and_uncounted_restarts() {
    let plans = workload(JOBSETS);
    let want = expected(&plans);
    let failed = want
        .values()
        .filter(|o| o.terminal_state == "Failed")
        .count();
    let uncounted = want
        .values()
        .filter(|o| o.restarts > o.restarts_count_towards_max)
        .count();
    assert!(failed > 0 && failed < JOBSETS, "{failed} of {JOBSETS} fail");
    assert!(uncounted > 0, "no restart ignores maxRestarts");
    assert!(
        plans
            .iter()
            .any(|p| p.failures.iter().any(|f| f.1 == chaos::COUNTED_REASON))
    );
}
