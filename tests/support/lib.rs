//! Shared harness of the end-to-end tests: a simulated API server and the
//! JobSet controller in one process on tokio's paused clock, plus helpers
//! that drive Job status by hand the way upstream's integration suites do
//! (no Job controller: complete, fail, ready).

pub mod agent;
pub mod chaos;
pub mod runs;
pub mod slow_compile;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_api::JobSet;
use jobset_controller::clock::Clock;
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::reconcile::Report;
use jobset_controller::webhook::{Target, configurations, server};
use jobset_controller::{ControllerConfig, run};
use jobset_sim::cluster::{Cluster, ClusterConfig, ClusterHandle, NodeLayout, Scenario};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// A running simulator plus controller.
pub struct Env {
    pub sim: Sim,
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub reports: Arc<Mutex<Vec<Report>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Namespace the tests use.
pub const NS: &str = "default";

impl Env {
    /// Starts the simulator, registers the CRD, and runs the controller
    /// with `engine` deciding. Call inside a current-thread runtime with a
    /// paused clock.
    pub async fn start(engine: Arc<dyn PolicyEngine>) -> Env {
        Env::start_with_plugins(engine, None).await
    }

    /// As [`Env::start`], with the controller's plugin ConfigMap watch
    /// handing ConfigMaps to `plugins` (usually the same registry as `engine`).
    pub async fn start_with_plugins(
        engine: Arc<dyn PolicyEngine>,
        plugins: Option<Arc<dyn PluginConfigMaps>>,
    ) -> Env {
        let sim = Sim::new(SimConfig::default());
        let client = Client::new(sim.service(), NS);
        Env::start_on(sim, client.clone(), client, engine, plugins).await
    }

    /// As [`Env::start`], with upstream's alpha feature `gates` turned on
    /// (all are off by default, as upstream ships them).
    pub async fn start_with_gates(engine: Arc<dyn PolicyEngine>, gates: &[&str]) -> Env {
        let sim = Sim::new(SimConfig::default());
        let client = Client::new(sim.service(), NS);
        let gates = gates.iter().map(|g| g.to_string()).collect();
        Env::launch(sim, client.clone(), client, engine, None, gates, None).await
    }

    /// As [`Env::start_with_gates`], on a simulated cluster (`layout` as
    /// `jobset run --nodes` takes it; the Job controller, scheduler and
    /// kubelets run, pods follow `scenario`), with the JobSet admission
    /// webhooks answering in this process under the same gates. The
    /// cluster stops when the handle is dropped.
    pub async fn start_on_cluster(
        engine: Arc<dyn PolicyEngine>,
        gates: &[&str],
        layout: &str,
        scenario: &str,
    ) -> (Env, ClusterHandle) {
        let sim = Sim::new(SimConfig {
            graceful_pod_deletion: true,
            ..Default::default()
        });
        let client = Client::new(sim.service(), NS);
        let gates: Vec<String> = gates.iter().map(|g| g.to_string()).collect();
        let admission = jobset_api::FeatureGates::from_enabled(&gates);
        let base = "http://e2e.in-process";
        for (url, answer) in server::in_process_endpoints(base, admission) {
            sim.serve_webhook_locally(&url, answer);
        }
        configurations::register(&client, &Target::Url(base.into()), None)
            .await
            .expect("the webhooks register");
        let cluster = Cluster::start(
            &sim,
            ClusterConfig {
                nodes: NodeLayout::parse(layout).expect("a node layout"),
                scenario: Scenario::from_yaml(scenario).expect("a scenario"),
                seed: 1,
                job_controller: true,
            },
        )
        .await
        .expect("the cluster starts");
        let env = Env::launch(sim, client.clone(), client, engine, None, gates, None).await;
        (env, cluster)
    }

    /// Like [`Env::start`] on a given simulator: `client` registers the CRD
    /// and drives the test, the controller talks through
    /// `controller_client` (e.g. as a ServiceAccount under RBAC) and
    /// watches plugin ConfigMaps when `plugins` is given.
    pub async fn start_on(
        sim: Sim,
        client: Client,
        controller_client: Client,
        engine: Arc<dyn PolicyEngine>,
        plugins: Option<Arc<dyn PluginConfigMaps>>,
    ) -> Env {
        Env::launch(
            sim,
            client,
            controller_client,
            engine,
            plugins,
            Vec::new(),
            None,
        )
        .await
    }

    /// As [`Env::start_on`], with upstream's alpha feature `gates` on and
    /// plugin ConfigMaps watched in `plugin_namespace` only (`None`: in
    /// every namespace).
    pub async fn start_on_with_gates(
        sim: Sim,
        client: Client,
        controller_client: Client,
        engine: Arc<dyn PolicyEngine>,
        plugins: Option<Arc<dyn PluginConfigMaps>>,
        gates: &[&str],
        plugin_namespace: Option<&str>,
    ) -> Env {
        let gates = gates.iter().map(|g| g.to_string()).collect();
        Env::launch(
            sim,
            client,
            controller_client,
            engine,
            plugins,
            gates,
            plugin_namespace.map(str::to_string),
        )
        .await
    }

    async fn launch(
        sim: Sim,
        client: Client,
        controller_client: Client,
        engine: Arc<dyn PolicyEngine>,
        plugins: Option<Arc<dyn PluginConfigMaps>>,
        feature_gates: Vec<String>,
        plugin_watch_namespace: Option<String>,
    ) -> Env {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &jobset_api::crd::crd())
            .await
            .expect("the CRD registers");
        let sim_clock = sim.clock().clone();
        let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
        let sink = reports.clone();
        let config = ControllerConfig {
            concurrency: 8,
            clock: Clock::from_fn(move || {
                Timestamp::from_second(sim_clock.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH)
            }),
            observer: Some(Arc::new(move |r: &Report| {
                if let Ok(mut v) = sink.lock() {
                    v.push(r.clone());
                }
            })),
            feature_gates,
            plugin_watch_namespace,
            ..Default::default()
        };
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            controller_client,
            config,
            engine,
            plugins,
            metrics.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Env {
            sim,
            client,
            metrics,
            reports,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the controller and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
    }

    pub fn jobsets(&self) -> Api<JobSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn jobs_api(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates a JobSet from YAML, defaulted as the mutating webhook would.
    pub async fn create(&self, yaml: &str) -> JobSet {
        let mut js = jobset_api::parse_jobset_yaml(yaml).expect("fixture parses");
        jobset_api::defaulting::default_jobset(&mut js);
        self.jobsets()
            .create(&PostParams::default(), &js)
            .await
            .expect("the JobSet is created")
    }

    pub async fn get(&self, name: &str) -> JobSet {
        self.jobsets().get(name).await.expect("the JobSet exists")
    }

    /// The Jobs of a JobSet, sorted by name.
    pub async fn jobs(&self, jobset: &str) -> Vec<Job> {
        let lp = ListParams::default()
            .labels(&format!("{}={jobset}", jobset_api::labels::JOBSET_NAME_KEY));
        let mut jobs = self.jobs_api().list(&lp).await.expect("Jobs list").items;
        jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        jobs
    }

    /// Waits (in virtual time, up to `limit`) until `check` holds.
    pub async fn wait_until<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = tokio::time::Instant::now();
        loop {
            if check().await {
                return;
            }
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the JobSet has `n` Jobs that are not being deleted.
    pub async fn wait_jobs(&self, jobset: &str, n: usize) -> Vec<Job> {
        let start = tokio::time::Instant::now();
        loop {
            let live: Vec<Job> = self
                .jobs(jobset)
                .await
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .collect();
            if live.len() == n {
                return live;
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!(
                    "timed out waiting until {jobset} has {n} live Jobs (has {})",
                    live.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the JobSet's condition `type_` has status True.
    pub async fn wait_condition(&self, jobset: &str, type_: &str) -> JobSet {
        let start = tokio::time::Instant::now();
        loop {
            let js = self.get(jobset).await;
            let ok = js.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True")
            });
            if ok {
                return js;
            }
            if start.elapsed() > Duration::from_secs(300) {
                panic!(
                    "timed out waiting until {jobset} has {type_}=True; status: {:?}",
                    js.status
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn patch_job_status(&self, name: &str, status: serde_json::Value) {
        self.jobs_api()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap_or_else(|e| panic!("status of Job {name} patched: {e}"));
    }

    /// Marks a Job ready: all its pods active and ready.
    pub async fn ready_job(&self, job: &Job) {
        let p = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        let name = job.metadata.name.as_deref().unwrap_or("");
        self.patch_job_status(
            name,
            json!({"active": p, "ready": p, "startTime": now(self)}),
        )
        .await;
    }

    /// Completes a Job: SuccessCriteriaMet then Complete.
    pub async fn complete_job(&self, job: &Job) {
        let p = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        let name = job.metadata.name.as_deref().unwrap_or("");
        let t = now(self);
        self.patch_job_status(
            name,
            json!({
                "active": 0, "ready": 0, "succeeded": p, "startTime": t, "completionTime": t,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": t},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": t}
                ]
            }),
        )
        .await;
    }

    /// Fails a Job: FailureTarget then Failed, with a reason and message.
    pub async fn fail_job(&self, job: &Job, reason: &str, message: &str) {
        let name = job.metadata.name.as_deref().unwrap_or("");
        let t = now(self);
        self.patch_job_status(
            name,
            json!({
                "active": 0, "ready": 0, "failed": 1, "startTime": t,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": reason, "message": message, "lastTransitionTime": t},
                    {"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": t}
                ]
            }),
        )
        .await;
    }

    /// With no garbage collector for pods in this mode, removes the
    /// foreground finalizer of Jobs being deleted so they go away (as
    /// upstream's integration tests do by hand). Returns how many it freed.
    pub async fn release_deleted_jobs(&self, jobset: &str) -> usize {
        let mut n = 0;
        for job in self.jobs(jobset).await {
            if job.metadata.deletion_timestamp.is_some() {
                let name = job.metadata.name.clone().unwrap_or_default();
                let _ = self
                    .jobs_api()
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
                n += 1;
            }
        }
        n
    }
}

/// More helpers: conditions, events, holding finalizers and plan reports.
impl Env {
    /// The JobSet's condition of `type_`, if any.
    pub async fn condition(&self, jobset: &str, type_: &str) -> Option<Condition> {
        self.get(jobset)
            .await
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == type_))
    }

    /// The events.k8s.io/v1 Events about `jobset` (any kind), oldest first.
    pub async fn events(&self, jobset: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), NS);
        let mut events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .expect("Events list")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(jobset))
            })
            .collect();
        events.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        events
    }

    /// Waits until an Event with `reason` about `jobset` exists; returns it.
    pub async fn wait_event(&self, jobset: &str, reason: &str) -> Event {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(e) = self
                .events(jobset)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
            {
                return e;
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!("timed out waiting for event {reason} about {jobset}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Adds a finalizer of the test's own (`test/hold`) to a Job, so it
    /// stays after its foreground finalizer is removed.
    pub async fn hold_job(&self, name: &str) {
        self.jobs_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": [HOLD_FINALIZER]}})),
            )
            .await
            .unwrap_or_else(|e| panic!("Job {name} held: {e}"));
    }

    /// Removes every finalizer but `test/hold` from Jobs being deleted.
    pub async fn release_foreground_only(&self, jobset: &str) {
        for job in self.jobs(jobset).await {
            if job.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let keep: Vec<String> = job
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f == HOLD_FINALIZER)
                .collect();
            let name = job.metadata.name.clone().unwrap_or_default();
            let _ = self
                .jobs_api()
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": keep}})),
                )
                .await;
        }
    }

    /// Removes every finalizer from a Job (it goes if it is being deleted).
    pub async fn release_job(&self, name: &str) {
        let _ = self
            .jobs_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }

    /// Marks a Job active (pods running, none ready yet).
    pub async fn active_job(&self, job: &Job) {
        let p = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        let name = job.metadata.name.as_deref().unwrap_or("");
        self.patch_job_status(name, json!({"active": p, "startTime": now(self)}))
            .await;
    }

    /// Lets virtual time pass so the controller settles.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    /// Merge-patches the JobSet's spec.
    pub async fn patch_spec(&self, jobset: &str, spec: serde_json::Value) {
        self.jobsets()
            .patch(
                jobset,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("JobSet {jobset} patched: {e}"));
    }

    /// The decisions of every reconcile of `jobset` so far.
    pub fn decisions(&self, jobset: &str) -> Vec<String> {
        self.reports
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|r| r.name == jobset)
                    .flat_map(|r| r.plan.decisions.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Env {
    /// Frees old-attempt Jobs as they are deleted and waits until the
    /// JobSet has `n` live Jobs, all labelled `restart-attempt=attempt`.
    pub async fn wait_attempt(&self, jobset: &str, attempt: i32, n: usize) -> Vec<Job> {
        let want = attempt.to_string();
        self.wait_until(
            &format!("{jobset} has {n} Jobs of attempt {attempt}"),
            Duration::from_secs(120),
            || async {
                self.release_deleted_jobs(jobset).await;
                let jobs = self.jobs(jobset).await;
                jobs.len() == n
                    && jobs
                        .iter()
                        .all(|j| label(j, jobset_api::labels::RESTART_ATTEMPT_KEY) == want)
            },
        )
        .await;
        self.jobs(jobset).await
    }
}

/// The finalizer tests put on Jobs to hold them past their deletion.
pub const HOLD_FINALIZER: &str = "test/hold";

/// The label of a Job (or "" when absent).
pub fn label(job: &Job, key: &str) -> String {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_default()
}

/// The names of Jobs.
pub fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

fn now(env: &Env) -> String {
    env.sim.clock().now_rfc3339()
}

/// A current-thread runtime with a paused clock, as the controller runs
/// in-process with the simulator.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}
