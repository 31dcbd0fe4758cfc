//! Crash-restart: 50 scripted JobSets with failures and restarts while the
//! controller is killed at seeded points (right after a Job create, so the
//! status write of that reconcile never lands; after a status write; after a
//! Job delete; after any write) and started again. Every run must end where
//! the fault-free run ends, create no Job name twice in one attempt, and
//! count every restart exactly once.
//!
//! CI runs `JOBSET_CHAOS_SEEDS` seeds (default 8); the long run is
//! `JOBSET_CHAOS_SEEDS=50 cargo test -p jobset-e2e --test crash`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobset_e2e::chaos::{
    self, Controller, Kill, Outcome, Plan, Recorder, Rng, create_all, drive, duplicate_creates,
    outcomes, register_crd, workload,
};
use jobset_e2e::runtime;
use jobset_policy::NativeDefaults;
use jobset_sim::{SharedInterceptor, Sim, SimConfig};

const JOBSETS: usize = 50;

fn seeds() -> u64 {
    std::env::var("JOBSET_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// What one run left behind.
struct Run {
    outcomes: BTreeMap<String, Outcome>,
    recorder: Arc<Recorder>,
    kills: usize,
}

/// Runs the workload to the end, killing the controller at each of `kills`
/// in turn (each counted from the restart before it) and restarting it
/// after a pause drawn from `rng`.
async fn run(plans: &[Plan], kills: &[Kill], rng: &mut Rng) -> Run {
    let recorder = Recorder::new();
    let sim = Sim::new(SimConfig {
        interceptor: Some(SharedInterceptor(recorder.clone())),
        ..SimConfig::default()
    });
    register_crd(&sim).await;
    create_all(&sim, plans).await;
    let driver_sim = sim.clone();
    let driver_plans = plans.to_vec();
    let mut driver = tokio::spawn(async move { drive(&driver_sim, &driver_plans).await });
    let mut pending = kills.iter().copied();
    let mut generation = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4 * 3600);
    loop {
        recorder.arm(pending.next());
        let ctl = Controller::start(
            &sim,
            &format!("jobset-controller-{generation}"),
            Arc::new(NativeDefaults),
            None,
        );
        tokio::select! {
            _ = recorder.killed.notified() => {
                ctl.kill().await;
                generation += 1;
                tokio::time::sleep(Duration::from_millis(rng.below(3000))).await;
            }
            r = &mut driver => {
                r.expect("the driver ends when every JobSet is terminal");
                ctl.stop().await;
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                panic!("the workload did not finish in 4 virtual hours (after {generation} kills)");
            }
        }
    }
    Run {
        outcomes: outcomes(&sim, &recorder).await,
        recorder,
        kills: generation,
    }
}

fn expected(plans: &[Plan]) -> BTreeMap<String, Outcome> {
    plans
        .iter()
        .map(|p| (p.name.clone(), p.expected()))
        .collect()
}

/// Writes of a killed controller never land after its successor's first.
fn assert_generations_never_overlap(recorder: &Recorder) {
    let gens: Vec<u32> = recorder
        .writes()
        .iter()
        .filter_map(|w| w.agent.strip_prefix("jobset-controller-")?.parse().ok())
        .collect();
    assert!(
        gens.windows(2).all(|w| w[0] <= w[1]),
        "a killed controller wrote after its successor started: {gens:?}"
    );
}

fn assert_matches(run: &Run, want: &BTreeMap<String, Outcome>, what: &str) {
    for (name, w) in want {
        assert_eq!(
            run.outcomes.get(name),
            Some(w),
            "{what}: {name} ended differently from the fault-free run"
        );
    }
    assert_eq!(
        run.outcomes.len(),
        want.len(),
        "{what}: JobSets lost or added"
    );
    let dups = duplicate_creates(&run.recorder);
    assert!(
        dups.is_empty(),
        "{what}: Job names created twice in one attempt: {dups:?}"
    );
    assert_generations_never_overlap(&run.recorder);
}

#[test]
fn the_fault_free_run_ends_as_the_failure_policy_says() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let restarting = plans.iter().filter(|p| !p.failures.is_empty()).count();
        assert!(
            restarting > JOBSETS / 2,
            "the workload restarts most JobSets"
        );
        let run = run(&plans, &[], &mut Rng::new(0)).await;
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
        let run = run(&plans, &kills, &mut Rng::new(1)).await;
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
        for seed in 0..seeds() {
            let mut rng = Rng::new(seed);
            let kills: Vec<Kill> = (0..1 + rng.below(6))
                .map(|_| Kill::draw(&mut rng))
                .collect();
            let run = run(&plans, &kills, &mut rng).await;
            total += run.kills;
            assert_matches(&run, &want, &format!("seed {seed} ({kills:?})"));
        }
        assert!(
            total >= seeds() as usize,
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
