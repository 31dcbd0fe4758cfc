//! Leader failover: two controllers with Lease leader election on one
//! simulator run the scripted 50-JobSet workload; the leader is killed
//! mid-run (right after one of its Job creates). The standby must take
//! over within the Lease duration (virtual time), the two must never write
//! JobSets, Jobs or Services in overlapping windows, and every JobSet must
//! end as in the fault-free run.

use std::sync::Arc;
use std::time::Duration;

use jobset_controller::LeaderConfig;
use jobset_e2e::chaos::{
    Controller, Kill, Recorder, create_all, drive, outcomes, register_crd, workload,
};
use jobset_e2e::runs::{assert_matches, expected};
use jobset_e2e::{NS, runtime};
use jobset_policy::NativeDefaults;
use jobset_sim::{SharedInterceptor, Sim, SimConfig};

const JOBSETS: usize = 50;

#[test]
fn the_standby_takes_over_a_killed_leader_within_the_lease_and_never_writes_alongside_it() {
    runtime().block_on(async {
        let plans = workload(JOBSETS);
        let recorder = Recorder::new();
        let sim = Sim::new(SimConfig {
            interceptor: Some(SharedInterceptor(recorder.clone())),
            ..SimConfig::default()
        });
        register_crd(&sim).await;
        create_all(&sim, &plans).await;
        let driver_sim = sim.clone();
        let driver_plans = plans.clone();
        let driver = tokio::spawn(async move { drive(&driver_sim, &driver_plans).await });
        recorder.arm(Some(Kill::AfterJobCreate(40)));
        let first = Controller::start_elected(&sim, "controller-a", Arc::new(NativeDefaults));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = Controller::start_elected(&sim, "controller-b", Arc::new(NativeDefaults));
        tokio::time::timeout(Duration::from_secs(3600), recorder.killed.notified())
            .await
            .expect("the leader reached its kill point");
        first.kill().await;
        tokio::time::timeout(Duration::from_secs(4 * 3600), driver)
            .await
            .expect("the workload finishes after the failover")
            .expect("the driver ends when every JobSet is terminal");
        second.stop().await;

        let run = jobset_e2e::runs::Run {
            outcomes: outcomes(&sim, &recorder).await,
            recorder: recorder.clone(),
            kills: 1,
            took: Duration::ZERO,
        };
        assert_matches(&run, &expected(&plans), "leader failover");

        let writes: Vec<_> = recorder
            .writes()
            .into_iter()
            .filter(|w| matches!(w.resource.as_str(), "jobs" | "jobsets" | "services"))
            .collect();
        let agents: Vec<&str> = writes.iter().map(|w| w.agent.as_str()).collect();
        assert_eq!(
            agents.first(),
            Some(&"controller-a"),
            "the first candidate led"
        );
        let switch = agents
            .iter()
            .position(|a| *a == "controller-b")
            .expect("the standby wrote after taking over");
        assert!(
            agents[switch..].iter().all(|a| *a == "controller-b"),
            "both controllers wrote in overlapping windows: {agents:?}"
        );
        let killed = recorder.killed_at_ms().expect("the kill time is known");
        let last_leader = writes[switch - 1].at_ms;
        let takeover = writes[switch].at_ms - killed;
        let lease = LeaderConfig::new(NS, "x");
        let bound = (lease.lease_duration + lease.retry_period).as_millis() as u64;
        assert!(
            last_leader <= killed,
            "the killed leader wrote after its kill"
        );
        assert!(
            takeover <= bound,
            "the standby took {takeover} ms to write after the kill (bound {bound} ms)"
        );
        assert!(
            takeover >= lease.renew_deadline.as_millis() as u64,
            "the standby wrote {takeover} ms after the kill, before the Lease could expire"
        );
    });
}
