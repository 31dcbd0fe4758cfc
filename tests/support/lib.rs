//! Shared harness of the end-to-end tests: a simulated API server and the
//! JobSet controller in one process on tokio's paused clock, plus helpers
//! that drive Job status by hand the way upstream's integration suites do
//! (no Job controller: complete, fail, ready).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_api::JobSet;
use jobset_controller::clock::Clock;
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::PolicyEngine;
use jobset_controller::reconcile::Report;
use jobset_controller::{ControllerConfig, run};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
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
        let sim = Sim::new(SimConfig::default());
        let client = Client::new(sim.service(), NS);
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
            ..Default::default()
        };
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client.clone(),
            config,
            engine,
            None,
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
