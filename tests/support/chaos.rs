//! Reliability harness: a scripted workload of JobSets whose Jobs fail and
//! complete by a fixed script (so the outcome cannot depend on timing), a
//! request recorder on the simulator that also freezes a "crashed"
//! controller, and controllers that can be killed and restarted. The
//! reliability suites compare every chaos run with the fault-free run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_controller::clock::Clock;
use jobset_controller::leader::{LeaderConfig, LeaderElector, run_with_leader_election};
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::{ControllerConfig, run};
use jobset_sim::{Gate, Interceptor, PatchKind, Resource, Seen, Sim};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::NS;

/// The user agent of the test's own requests (never frozen, never counted
/// as the controller's).
pub const DRIVER: &str = "driver";

/// The Job failure reason the workload's ignore rule matches.
pub const IGNORED_REASON: &str = "PodFailurePolicy";
/// The Job failure reason that counts towards maxRestarts.
pub const COUNTED_REASON: &str = "BackoffLimitExceeded";

/// One JobSet of the workload and the script its Jobs follow.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub replicas: u32,
    pub max_restarts: i32,
    /// Per attempt: the Job index that fails and its reason; an attempt
    /// past the end completes every Job.
    pub failures: Vec<(u32, &'static str)>,
}

/// What a JobSet ended as, and what the controller created on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub terminal_state: String,
    pub restarts: i32,
    pub restarts_count_towards_max: i32,
    /// Jobs created (answered 201) per attempt.
    pub jobs_per_attempt: BTreeMap<u32, usize>,
}

/// A splitmix64 generator: reproducible draws per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `n` JobSets with 1-3 Jobs, 0-3 restarts allowed, and 0-4 failing
/// attempts, some with a failure reason that does not count towards the
/// maximum: the same for every run.
pub fn workload(n: usize) -> Vec<Plan> {
    let mut rng = Rng::new(20_261_128);
    (0..n)
        .map(|i| {
            let replicas = 1 + rng.below(3) as u32;
            let max_restarts = rng.below(4) as i32;
            let failures = (0..rng.below(5))
                .map(|_| {
                    let index = rng.below(u64::from(replicas)) as u32;
                    let reason = if rng.below(3) == 0 {
                        IGNORED_REASON
                    } else {
                        COUNTED_REASON
                    };
                    (index, reason)
                })
                .collect();
            Plan {
                name: format!("chaos-{i:03}"),
                replicas,
                max_restarts,
                failures,
            }
        })
        .collect()
}

impl Plan {
    /// The JobSet, as the mutating webhook would have defaulted it.
    pub fn jobset(&self) -> Value {
        let yaml = format!(
            r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, namespace: {NS}}}
spec:
  failurePolicy:
    maxRestarts: {max}
    rules:
    - name: ignore-preemption
      action: RestartJobSetAndIgnoreMaxRestarts
      onJobFailureReasons: [{IGNORED_REASON}]
  replicatedJobs:
  - name: workers
    replicas: {replicas}
    template: {{spec: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}}}
"#,
            name = self.name,
            max = self.max_restarts,
            replicas = self.replicas,
        );
        let mut js = jobset_api::parse_jobset_yaml(&yaml).expect("the workload parses");
        jobset_api::defaulting::default_jobset(&mut js);
        serde_json::to_value(&js).expect("a JobSet serialises")
    }

    /// What the script must end in, worked out by hand from the spec's
    /// failure policy (jobs per attempt: every replica of every attempt).
    pub fn expected(&self) -> Outcome {
        let (mut restarts, mut counted) = (0, 0);
        let mut jobs = BTreeMap::new();
        let mut attempt = 0u32;
        let terminal = loop {
            jobs.insert(attempt, self.replicas as usize);
            match self.failures.get(attempt as usize) {
                None => break "Completed",
                Some((_, reason)) if *reason == IGNORED_REASON => restarts += 1,
                Some(_) if counted < self.max_restarts => {
                    restarts += 1;
                    counted += 1;
                }
                Some(_) => break "Failed",
            }
            attempt += 1;
        };
        Outcome {
            terminal_state: terminal.to_string(),
            restarts,
            restarts_count_towards_max: counted,
            jobs_per_attempt: jobs,
        }
    }
}

/// A Job create the simulator answered 201.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Created {
    pub jobset: String,
    pub attempt: u32,
    pub name: String,
}

/// A write the simulator served, with who sent it and when (virtual ms).
#[derive(Debug, Clone)]
pub struct Write {
    pub agent: String,
    pub resource: String,
    pub at_ms: u64,
}

/// What ends a controller's life in a crash run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Right after the k-th Job create (1-based) of this controller: its
    /// status write for that reconcile never lands.
    AfterJobCreate(u32),
    /// Right after the k-th JobSet status write.
    AfterStatusWrite(u32),
    /// Right after the k-th Job delete.
    AfterJobDelete(u32),
    /// Right after the k-th write of any kind.
    AfterWrite(u32),
}

impl Kill {
    fn matches(self, seen: &Seen) -> bool {
        match self {
            Kill::AfterJobCreate(_) => seen.resource == "jobs" && seen.verb == "create",
            Kill::AfterStatusWrite(_) => {
                seen.resource == "jobsets" && seen.sub.as_deref() == Some("status")
            }
            Kill::AfterJobDelete(_) => seen.resource == "jobs" && seen.verb == "delete",
            Kill::AfterWrite(_) => seen.is_write(),
        }
    }

    fn count(self) -> u32 {
        match self {
            Kill::AfterJobCreate(k)
            | Kill::AfterStatusWrite(k)
            | Kill::AfterJobDelete(k)
            | Kill::AfterWrite(k) => k,
        }
    }

    /// A kill point drawn from `rng`.
    pub fn draw(rng: &mut Rng) -> Kill {
        let k = 1 + rng.below(40) as u32;
        match rng.below(4) {
            0 => Kill::AfterJobCreate(k),
            1 => Kill::AfterStatusWrite(k),
            2 => Kill::AfterJobDelete(1 + k / 4),
            _ => Kill::AfterWrite(k),
        }
    }
}

#[derive(Default)]
struct Armed {
    kill: Option<Kill>,
    seen: u32,
}

/// Records what the simulator served and, once an armed kill point is
/// reached, holds every further request of the client that reached it (a
/// crashed process sends nothing).
#[derive(Default)]
pub struct Recorder {
    created: Mutex<Vec<Created>>,
    writes: Mutex<Vec<Write>>,
    armed: Mutex<Armed>,
    /// The user agent whose requests are held (the killed controller).
    frozen: Mutex<Option<String>>,
    /// When the last kill point was reached (virtual ms since the start).
    killed_at_ms: Mutex<Option<u64>>,
    /// Woken when a kill point is reached.
    pub killed: Notify,
    /// When the recorder was made (write times count from here).
    start: Mutex<Option<tokio::time::Instant>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        let r = Recorder::default();
        if let Ok(mut s) = r.start.lock() {
            *s = Some(tokio::time::Instant::now());
        }
        Arc::new(r)
    }

    /// Arms the next kill point (counted from now) and lets requests through.
    pub fn arm(&self, kill: Option<Kill>) {
        if let Ok(mut a) = self.armed.lock() {
            *a = Armed { kill, seen: 0 };
        }
        if let Ok(mut f) = self.frozen.lock() {
            *f = None;
        }
    }

    /// When the last kill point was reached (virtual ms since the start).
    pub fn killed_at_ms(&self) -> Option<u64> {
        self.killed_at_ms.lock().ok().and_then(|k| *k)
    }

    /// Every Job create answered 201, in order.
    pub fn created(&self) -> Vec<Created> {
        self.created.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every write served, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn now_ms(&self) -> u64 {
        self.start
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|s| s.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }
}

fn label(obj: &Value, key: &str) -> String {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Interceptor for Recorder {
    fn before(&self, req: &Seen) -> Gate {
        let frozen = self
            .frozen
            .lock()
            .is_ok_and(|f| f.as_deref() == Some(req.user_agent.as_str()));
        if frozen { Gate::Hold } else { Gate::Pass }
    }

    fn after(&self, req: &Seen, status: u16, body: Option<&Value>) {
        if req.user_agent == DRIVER || !req.is_write() || status >= 300 {
            return;
        }
        if let Ok(mut w) = self.writes.lock() {
            w.push(Write {
                agent: req.user_agent.clone(),
                resource: req.resource.clone(),
                at_ms: self.now_ms(),
            });
        }
        if req.resource == "jobs"
            && req.verb == "create"
            && let Some(obj) = body
            && let Ok(mut c) = self.created.lock()
        {
            c.push(Created {
                jobset: label(obj, jobset_api::labels::JOBSET_NAME_KEY),
                attempt: label(obj, jobset_api::labels::RESTART_ATTEMPT_KEY)
                    .parse()
                    .unwrap_or(u32::MAX),
                name: obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        let fire = match self.armed.lock() {
            Ok(mut a) => match a.kill {
                Some(k) if k.matches(req) => {
                    a.seen += 1;
                    if a.seen >= k.count() {
                        a.kill = None;
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            },
            Err(_) => false,
        };
        if fire {
            if let Ok(mut f) = self.frozen.lock() {
                *f = Some(req.user_agent.clone());
            }
            if let Ok(mut k) = self.killed_at_ms.lock() {
                *k = Some(self.now_ms());
            }
            self.killed.notify_one();
        }
    }
}

/// A JobSet's Jobs grouped by attempt, as the driver reads them.
type ByAttempt = BTreeMap<(String, u32), Vec<Value>>;

/// Drives Job status by the workload's script until every JobSet is
/// terminal: completes or fails the Jobs of an attempt once all of them
/// exist, and frees Jobs being deleted. Requests that fail (injected
/// faults) are retried on the next tick.
pub async fn drive(sim: &Sim, plans: &[Plan]) {
    let client = sim.client(DRIVER);
    let by_name: BTreeMap<&str, &Plan> = plans.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(list) = client.list(&Resource::jobsets(), Some(NS), None).await {
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let terminal = items
                .iter()
                .filter(|js| {
                    js.pointer("/status/terminalState")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                })
                .count();
            if terminal == plans.len() {
                return;
            }
        }
        let Ok(list) = client.list(&Resource::jobs(), Some(NS), None).await else {
            continue;
        };
        let mut live: ByAttempt = BTreeMap::new();
        for job in list["items"].as_array().into_iter().flatten() {
            let name = job["metadata"]["name"].as_str().unwrap_or_default();
            if job.pointer("/metadata/deletionTimestamp").is_some() {
                let _ = client
                    .patch(
                        &Resource::jobs(),
                        Some(NS),
                        name,
                        PatchKind::Merge,
                        &json!({"metadata": {"finalizers": null}}),
                    )
                    .await;
                continue;
            }
            let js = label(job, jobset_api::labels::JOBSET_NAME_KEY);
            let attempt = label(job, jobset_api::labels::RESTART_ATTEMPT_KEY)
                .parse()
                .unwrap_or(0);
            live.entry((js, attempt)).or_default().push(job.clone());
        }
        for ((js, attempt), jobs) in live {
            let Some(plan) = by_name.get(js.as_str()) else {
                continue;
            };
            if jobs.len() < plan.replicas as usize {
                continue;
            }
            let failing = plan.failures.get(attempt as usize);
            for job in &jobs {
                let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
                if done.contains(uid) {
                    continue;
                }
                let index: u32 = label(job, jobset_api::labels::JOB_INDEX_KEY)
                    .parse()
                    .unwrap_or(0);
                let status = match failing {
                    Some((i, _)) if *i != index => continue,
                    Some((_, reason)) => failed(sim, reason),
                    None => completed(sim),
                };
                let name = job["metadata"]["name"].as_str().unwrap_or_default();
                let patch = json!({ "status": status });
                if client
                    .patch_status(&Resource::jobs(), Some(NS), name, PatchKind::Merge, &patch)
                    .await
                    .is_ok()
                {
                    done.insert(uid.to_string());
                }
            }
        }
    }
}

fn completed(sim: &Sim) -> Value {
    let t = sim.clock().now_rfc3339();
    json!({
        "active": 0, "ready": 0, "succeeded": 1, "startTime": t, "completionTime": t,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "done", "lastTransitionTime": t},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "done", "lastTransitionTime": t}
        ]
    })
}

fn failed(sim: &Sim, reason: &str) -> Value {
    let t = sim.clock().now_rfc3339();
    json!({
        "active": 0, "ready": 0, "failed": 1, "startTime": t,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": reason, "message": "scripted", "lastTransitionTime": t},
            {"type": "Failed", "status": "True", "reason": reason, "message": "scripted", "lastTransitionTime": t}
        ]
    })
}

/// Creates the workload's JobSets (retrying injected faults).
pub async fn create_all(sim: &Sim, plans: &[Plan]) {
    let client = sim.client(DRIVER);
    for p in plans {
        let body = p.jobset();
        for _ in 0..50 {
            match client.create(&Resource::jobsets(), Some(NS), &body).await {
                Ok(_) => break,
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Registers the JobSet CRD (retrying injected faults).
pub async fn register_crd(sim: &Sim) {
    let client = sim.client(DRIVER);
    let crd = serde_json::to_value(jobset_api::crd::crd()).expect("the CRD serialises");
    let res = Resource::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
    for _ in 0..50 {
        match client.create(&res, None, &crd).await {
            Ok(_) => return,
            Err(e) if e.code == 409 && e.reason == "AlreadyExists" => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("the CRD never registered");
}

/// The final state of every JobSet plus the Jobs created per attempt.
pub async fn outcomes(sim: &Sim, recorder: &Recorder) -> BTreeMap<String, Outcome> {
    let client = sim.client(DRIVER);
    let mut out = BTreeMap::new();
    let list = loop {
        if let Ok(l) = client.list(&Resource::jobsets(), Some(NS), None).await {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for js in list["items"].as_array().into_iter().flatten() {
        let name = js["metadata"]["name"].as_str().unwrap_or_default();
        let status = &js["status"];
        let mut per: BTreeMap<u32, usize> = BTreeMap::new();
        for c in recorder.created().iter().filter(|c| c.jobset == name) {
            *per.entry(c.attempt).or_default() += 1;
        }
        out.insert(
            name.to_string(),
            Outcome {
                terminal_state: status["terminalState"].as_str().unwrap_or("").to_string(),
                restarts: status["restarts"].as_i64().unwrap_or(0) as i32,
                restarts_count_towards_max: status["restartsCountTowardsMax"].as_i64().unwrap_or(0)
                    as i32,
                jobs_per_attempt: per,
            },
        );
    }
    out
}

/// Job names the controller created more than once within one attempt.
pub fn duplicate_creates(recorder: &Recorder) -> Vec<Created> {
    let mut seen = BTreeSet::new();
    recorder
        .created()
        .into_iter()
        .filter(|c| !seen.insert(c.clone()))
        .collect()
}

/// The simulator's clock as the controller reads it.
fn sim_clock(sim: &Sim) -> Clock {
    let c = sim.clock().clone();
    Clock::from_fn(move || Timestamp::from_second(c.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A controller identified by its user agent, on an in-process client.
pub struct Controller {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Controller {
    /// Starts a controller whose requests carry `agent` as their user agent.
    pub fn start(
        sim: &Sim,
        agent: &str,
        engine: Arc<dyn PolicyEngine>,
        plugins: Option<Arc<dyn PluginConfigMaps>>,
    ) -> Controller {
        let client = Client::new(crate::agent::Tagged::new(sim.service(), agent), NS);
        let config = ControllerConfig {
            concurrency: 8,
            clock: sim_clock(sim),
            ..Default::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client,
            config,
            engine,
            plugins,
            Arc::new(Metrics::default()),
            async move {
                let _ = rx.await;
            },
        ));
        Controller {
            task,
            stop: Some(tx),
        }
    }

    /// Starts a candidate that runs the controller only while it holds the
    /// Lease (`identity` is both its holder identity and its user agent).
    pub fn start_elected(sim: &Sim, identity: &str, engine: Arc<dyn PolicyEngine>) -> Controller {
        let client = Client::new(crate::agent::Tagged::new(sim.service(), identity), NS);
        let config = ControllerConfig {
            concurrency: 8,
            clock: sim_clock(sim),
            ..Default::default()
        };
        let mut elector = LeaderElector::new(
            client.clone(),
            LeaderConfig::new(NS, identity),
            sim_clock(sim),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            let _ = run_with_leader_election(&mut elector, stop, move |signal| {
                run(
                    client,
                    config,
                    engine,
                    None,
                    Arc::new(Metrics::default()),
                    signal,
                )
            })
            .await;
        });
        Controller {
            task,
            stop: Some(tx),
        }
    }

    /// Kills the controller where it stands (nothing more is sent).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops the controller gracefully.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), self.task).await;
    }
}
