//! Leader election on the simulator under tokio's paused clock: one leader
//! of several candidates, takeover after the leader dies, stepping down
//! when renewals fail, and never two leaders at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_sim::{Faults, Sim, SimConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::*;

const NS: &str = "default";

/// When each candidate believed it led: (identity, from, until).
type Log = Arc<Mutex<Vec<(String, Instant, Option<Instant>)>>>;

fn sim_and_client() -> (Sim, Client) {
    let sim = Sim::new(SimConfig::default());
    let client = Client::new(sim.service(), NS);
    (sim, client)
}

fn clock(sim: &Sim) -> Clock {
    let c = sim.clock().clone();
    Clock::from_fn(move || Timestamp::from_second(c.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn elector(sim: &Sim, client: &Client, id: &str) -> LeaderElector {
    LeaderElector::new(client.clone(), LeaderConfig::new(NS, id), clock(sim))
}

/// Records the span of a lead future's life in `log`.
struct Span {
    log: Log,
    at: usize,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Ok(mut l) = self.log.lock() {
            l[self.at].2 = Some(Instant::now());
        }
    }
}

/// A candidate whose work, while leading, only records that it leads.
fn candidate(
    sim: &Sim,
    client: &Client,
    id: &str,
    log: &Log,
) -> tokio::task::JoinHandle<Result<(), ControllerError>> {
    let mut e = elector(sim, client, id);
    let log = log.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        run_with_leader_election(&mut e, std::future::pending::<()>(), move |stop| {
            let at = {
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                l.push((id, Instant::now(), None));
                l.len() - 1
            };
            let span = Span { log, at };
            async move {
                let _span = span;
                stop.await;
                std::future::pending::<()>().await;
            }
        })
        .await
    })
}

fn leading_now(log: &Log) -> Vec<String> {
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    l.iter()
        .filter(|(_, _, end)| end.is_none())
        .map(|(id, _, _)| id.clone())
        .collect()
}

fn assert_never_two_leaders(log: &Log) {
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    let far = Instant::now() + Duration::from_secs(1);
    for (i, a) in l.iter().enumerate() {
        for b in l.iter().skip(i + 1) {
            let (a_end, b_end) = (a.2.unwrap_or(far), b.2.unwrap_or(far));
            assert!(
                a_end <= b.1 || b_end <= a.1,
                "{} and {} led at the same time: {l:?}",
                a.0,
                b.0
            );
        }
    }
}

/// The Lease's holder (retrying reads that hit an injected fault).
async fn holder(client: &Client) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    for _ in 0..20 {
        if let Ok(l) = api.get_opt(DEFAULT_LEASE_NAME).await {
            return l.and_then(|l| l.spec?.holder_identity);
        }
    }
    panic!("the Lease could not be read 20 times in a row")
}

#[tokio::test(start_paused = true)]
async fn of_two_candidates_exactly_one_leads_and_holds_the_lease() {
    let (sim, client) = sim_and_client();
    let log: Log = Arc::default();
    let _a = candidate(&sim, &client, "a", &log);
    let _b = candidate(&sim, &client, "b", &log);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = leading_now(&log);
        assert!(now.len() <= 1, "two leaders: {now:?}");
    }
    let now = leading_now(&log);
    assert_eq!(now.len(), 1, "one leader after 30 s: {now:?}");
    assert_eq!(holder(&client).await.as_deref(), Some(now[0].as_str()));
    let lease: Api<Lease> = Api::namespaced(client.clone(), NS);
    let spec = lease
        .get(DEFAULT_LEASE_NAME)
        .await
        .expect("the Lease exists")
        .spec
        .expect("spec");
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    assert_eq!(spec.lease_transitions, Some(0));
}

#[tokio::test(start_paused = true)]
async fn when_the_leader_dies_the_standby_takes_over_once_the_lease_expires() {
    let (sim, client) = sim_and_client();
    let log: Log = Arc::default();
    let a = candidate(&sim, &client, "a", &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _b = candidate(&sim, &client, "b", &log);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(leading_now(&log), vec!["a".to_string()]);
    a.abort();
    let died = Instant::now();
    let mut took_over = None;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if leading_now(&log) == vec!["b".to_string()] {
            took_over = Some(Instant::now());
            break;
        }
    }
    let took_over = took_over.expect("b leads eventually");
    let waited = took_over - died;
    // The standby saw the last renewal at most one retry period late and
    // tries once per retry period: lease duration plus two retry periods.
    assert!(
        waited <= Duration::from_secs(15 + 2 * 2),
        "took {waited:?} to take over"
    );
    assert!(
        waited >= Duration::from_secs(15 - 2 - 2),
        "took over after {waited:?}, before the Lease could have expired"
    );
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
    let lease: Api<Lease> = Api::namespaced(client.clone(), NS);
    let spec = lease.get(DEFAULT_LEASE_NAME).await.expect("Lease").spec;
    assert_eq!(spec.and_then(|s| s.lease_transitions), Some(1));
    assert_never_two_leaders(&log);
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_stops_before_its_lease_could_expire() {
    let (sim, client) = sim_and_client();
    let log: Log = Arc::default();
    let a = candidate(&sim, &client, "a", &log);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(leading_now(&log), vec!["a".to_string()]);
    let mut faults = Faults::default();
    faults.error_rates.insert("update".into(), (1.0, 500));
    sim.set_faults(faults);
    let broke = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .expect("the leader gives up")
        .expect("task");
    let err = result.expect_err("leadership lost");
    assert!(
        matches!(err, ControllerError::LeadershipLost { .. }),
        "{err}"
    );
    let l = log.lock().expect("log").clone();
    let ended = l[0].2.expect("the lead work was stopped");
    // Its last good renewal was at most one retry period before the break.
    assert!(
        ended - broke <= Duration::from_secs(10),
        "stopped {:?} after renewals began failing",
        ended - broke
    );
    assert!(leading_now(&log).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_over_at_the_next_attempt() {
    let (sim, client) = sim_and_client();
    let mut a = elector(&sim, &client, "a");
    a.acquire().await;
    assert_eq!(holder(&client).await.as_deref(), Some("a"));
    let mut b = elector(&sim, &client, "b");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let standby = tokio::spawn(async move {
        b.acquire().await;
        let _ = tx.send(());
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.release().await.expect("released");
    assert_eq!(holder(&client).await, None);
    let released = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("b acquires within a retry period or so")
        .expect("sent");
    assert!(Instant::now() - released <= Duration::from_secs(3));
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
    standby.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn shutting_down_stops_the_work_then_releases_the_lease() {
    let (sim, client) = sim_and_client();
    let mut a = elector(&sim, &client, "a");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = Arc::new(Mutex::new(false));
    let seen = stopped.clone();
    let task = tokio::spawn(async move {
        run_with_leader_election(
            &mut a,
            async move {
                let _ = rx.await;
            },
            move |stop| async move {
                stop.await;
                if let Ok(mut s) = seen.lock() {
                    *s = true;
                }
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(holder(&client).await.as_deref(), Some("a"));
    tx.send(()).expect("signal");
    task.await.expect("task").expect("clean shutdown");
    assert!(
        *stopped.lock().expect("flag"),
        "the work saw the stop signal"
    );
    assert_eq!(holder(&client).await, None, "the Lease was released");
}

#[tokio::test(start_paused = true)]
async fn a_lease_write_based_on_a_stale_version_is_refused() {
    let (_sim, client) = sim_and_client();
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("l".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    };
    let first = api
        .create(&PostParams::default(), &lease)
        .await
        .expect("created");
    let mut newer = first.clone();
    newer.spec = Some(LeaseSpec {
        holder_identity: Some("x".into()),
        ..Default::default()
    });
    api.replace("l", &PostParams::default(), &newer)
        .await
        .expect("first write");
    let mut stale = first;
    stale.spec = Some(LeaseSpec {
        holder_identity: Some("y".into()),
        ..Default::default()
    });
    let err = api
        .replace("l", &PostParams::default(), &stale)
        .await
        .expect_err("stale write refused");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}

#[tokio::test(start_paused = true)]
async fn candidates_dying_and_restarting_never_lead_at_the_same_time() {
    let (sim, client) = sim_and_client();
    let log: Log = Arc::default();
    let mut faults = Faults {
        seed: 3,
        ..Faults::default()
    };
    faults.error_rates.insert("update".into(), (0.3, 500));
    faults.error_rates.insert("get".into(), (0.1, 500));
    sim.set_faults(faults);
    let mut ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let mut tasks: Vec<_> = ids
        .iter()
        .map(|id| candidate(&sim, &client, id, &log))
        .collect();
    let mut led_at_all = 0;
    for round in 0..12usize {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = leading_now(&log);
            assert!(now.len() <= 1, "round {round}: {now:?}");
            if let Some(id) = now.first() {
                led_at_all += 1;
                assert_eq!(holder(&client).await.as_deref(), Some(id.as_str()));
            }
        }
        // Mostly kill the leader, sometimes a standby; a restarted process
        // is a new candidate with a new identity.
        let leader = leading_now(&log).first().cloned();
        let victim = match leader.and_then(|l| ids.iter().position(|i| *i == l)) {
            Some(i) if round % 3 != 2 => i,
            _ => round % ids.len(),
        };
        tasks[victim].abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        ids[victim] = format!("{}{round}", &ids[victim][..1]);
        tasks[victim] = candidate(&sim, &client, &ids[victim], &log);
    }
    assert_never_two_leaders(&log);
    // The leader dies every 20 s and its Lease needs 15 s to expire.
    assert!(
        led_at_all >= 40,
        "someone led a good part of the time ({led_at_all}/120)"
    );
    let leaders: std::collections::BTreeSet<String> = log
        .lock()
        .expect("log")
        .iter()
        .map(|(id, _, _)| id.clone())
        .collect();
    assert!(leaders.len() >= 2, "leadership moved: {leaders:?}");
}

fn jobset(name: &str) -> jobset_api::JobSet {
    let yaml = format!(
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  replicatedJobs:\n  - name: w\n    replicas: 2\n    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}\n"
    );
    let mut js = jobset_api::parse_jobset_yaml(&yaml).expect("fixture parses");
    jobset_api::defaulting::default_jobset(&mut js);
    js
}

async fn jobs_of(client: &Client, name: &str) -> usize {
    let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    let lp = kube::api::ListParams::default()
        .labels(&format!("{}={name}", jobset_api::labels::JOBSET_NAME_KEY));
    api.list(&lp).await.map(|l| l.items.len()).unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_lost_its_lease_creates_no_more_jobs() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let (sim, client) = sim_and_client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd::crd())
        .await
        .expect("the CRD registers");
    let mut e = elector(&sim, &client, "a");
    let c = client.clone();
    let config = crate::ControllerConfig {
        clock: clock(&sim),
        ..Default::default()
    };
    let task = tokio::spawn(async move {
        run_with_leader_election(&mut e, std::future::pending::<()>(), move |stop| {
            crate::run(
                c,
                config,
                Arc::new(jobset_policy::NativeDefaults),
                None,
                Arc::new(crate::metrics::Metrics::default()),
                stop,
            )
        })
        .await
    });
    let jobsets: Api<jobset_api::JobSet> = Api::namespaced(client.clone(), NS);
    jobsets
        .create(&PostParams::default(), &jobset("first"))
        .await
        .expect("created");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(jobs_of(&client, "first").await, 2, "the leader acts");
    let mut faults = Faults::default();
    faults.error_rates.insert("update".into(), (1.0, 500));
    sim.set_faults(faults);
    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the leader steps down")
        .expect("task");
    assert!(matches!(
        result,
        Err(ControllerError::LeadershipLost { .. })
    ));
    jobsets
        .create(&PostParams::default(), &jobset("second"))
        .await
        .expect("created");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        jobs_of(&client, "second").await,
        0,
        "a process that lost the Lease must not create Jobs"
    );
}
