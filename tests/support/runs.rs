//! One reliability run of the scripted workload: the simulator (with the
//! faults asked for), the driver, and a controller killed and restarted at
//! the kill points given; plus the checks every run must pass against the
//! fault-free outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobset_policy::NativeDefaults;
use jobset_sim::{SharedInterceptor, Sim, SimConfig};

use crate::chaos::{
    Controller, Kill, Outcome, Plan, Recorder, Rng, create_all, drive, duplicate_creates, outcomes,
    register_crd,
};

/// The number of seeds a chaos suite runs: `JOBSET_CHAOS_SEEDS`, else `ci`.
pub fn seeds(ci: u64) -> u64 {
    std::env::var("JOBSET_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ci)
}

/// What one run left behind.
pub struct Run {
    pub outcomes: BTreeMap<String, Outcome>,
    pub recorder: Arc<Recorder>,
    /// Kill points reached (controllers killed).
    pub kills: usize,
    /// Virtual time the workload took.
    pub took: Duration,
}

/// Runs the workload to the end on a simulator set up by `config` (its
/// interceptor is replaced by the run's recorder), killing the controller at
/// each of `kills` in turn (each counted from the restart before it) and
/// restarting it after a pause drawn from `rng`.
pub async fn run(plans: &[Plan], config: SimConfig, kills: &[Kill], rng: &mut Rng) -> Run {
    let recorder = Recorder::new();
    let started = tokio::time::Instant::now();
    let sim = Sim::new(SimConfig {
        interceptor: Some(SharedInterceptor(recorder.clone())),
        ..config
    });
    register_crd(&sim).await;
    create_all(&sim, plans).await;
    let driver_sim = sim.clone();
    let driver_plans = plans.to_vec();
    let mut driver = tokio::spawn(async move { drive(&driver_sim, &driver_plans).await });
    let mut pending = kills.iter().copied();
    let mut generation = 0;
    let deadline = started + Duration::from_secs(4 * 3600);
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
    let took = started.elapsed();
    // Injected faults end with the run, so the final reads are exact.
    sim.set_faults(jobset_sim::Faults::default());
    Run {
        outcomes: outcomes(&sim, &recorder).await,
        recorder,
        kills: generation,
        took,
    }
}

/// What every JobSet of `plans` must end as.
pub fn expected(plans: &[Plan]) -> BTreeMap<String, Outcome> {
    plans
        .iter()
        .map(|p| (p.name.clone(), p.expected()))
        .collect()
}

/// Writes of a killed controller never land after its successor's first.
pub fn assert_generations_never_overlap(recorder: &Recorder) {
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

/// The run ended every JobSet as `want` says, created no Job name twice
/// in one attempt, and no killed controller wrote after its successor.
pub fn assert_matches(run: &Run, want: &BTreeMap<String, Outcome>, what: &str) {
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
