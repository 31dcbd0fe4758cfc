//! Scale benchmark of the controller on the in-process simulator (no Job
//! controller): 1,000 JobSets of 8 Jobs each created at once, reconciled
//! by the controller with the default policies as Wasm plugins and linked
//! natively; the same 8,000 Jobs created by a plain kube-rs loop; and the
//! time to replace the Jobs of a 1,000-Job JobSet after one fails.
//!
//! Every scenario runs on a multi-thread runtime with one worker per core,
//! as the `jobset` commands do. The plain loop does the least work that
//! gets the same Jobs: it creates the JobSets as the controller run does
//! and, as each is stored, its 8 Jobs from 16 tasks; both runs are timed
//! from the first JobSet sent until the simulator holds every Job.
//!
//! Each scenario runs in a child process of its own so that its peak
//! resident memory (`VmHWM`) is its own. The controller's memory is the
//! controller run's peak minus the plain loop's peak (the plain loop
//! leaves the same JobSets, Jobs and Services in the simulator).
//!
//! `cargo bench -p jobset-controller --bench scale` (release build).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jobset_api::JobSet;
use jobset_controller::health::Health;
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::{ControllerConfig, job_builder, resources};
use jobset_policy::{NativeDefaults, Registry, RegistryConfig, Runtime};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const NS: &str = "default";
const JOBSETS: usize = 1_000;
const JOBS_PER_JOBSET: usize = 8;
const CONCURRENCY: u16 = 16;
const BIG: usize = 1_000;

fn template(name: &str, replicas: usize) -> JobSet {
    let yaml = format!(
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  failurePolicy: {{maxRestarts: 3}}\n  replicatedJobs:\n  - name: w\n    replicas: {replicas}\n    template: {{spec: {{parallelism: 4, completions: 4, template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: busybox}}]}}}}}}}}\n"
    );
    let mut js = jobset_api::parse_jobset_yaml(&yaml).expect("fixture parses");
    jobset_api::defaulting::default_jobset(&mut js);
    js
}

fn jobsets() -> Vec<JobSet> {
    (0..JOBSETS)
        .map(|i| template(&format!("js-{i}"), JOBS_PER_JOBSET))
        .collect()
}

async fn setup() -> (Sim, Client) {
    let sim = Sim::new(SimConfig::default());
    let client = Client::new(sim.service(), NS);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd::crd())
        .await
        .expect("the CRD registers");
    (sim, client)
}

/// Resolves with the moment `n` Jobs (with `attempt` as restart attempt,
/// if given) exist. Reads the simulator's store in-process every
/// millisecond: a watch decoding every Job would charge the counting to
/// the run being measured.
fn count_jobs(sim: &Sim, n: usize, attempt: Option<&str>) -> tokio::task::JoinHandle<Instant> {
    let sim = sim.clone();
    let attempt = attempt.map(str::to_string);
    tokio::spawn(async move {
        loop {
            let seen = sim.count_matching("batch", "jobs", |job| match &attempt {
                None => true,
                Some(a) => {
                    job.pointer("/metadata/labels")
                        .and_then(|l| l.get(jobset_api::labels::RESTART_ATTEMPT_KEY))
                        .and_then(|v| v.as_str())
                        == Some(a.as_str())
                }
            });
            if seen >= n {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

fn engine(wasm: bool) -> (Arc<dyn PolicyEngine>, Option<Arc<dyn PluginConfigMaps>>) {
    if wasm {
        let runtime = Runtime::new(Default::default()).expect("Wasm runtime");
        let registry = Arc::new(
            Registry::new(runtime, RegistryConfig::new("jobset-system")).expect("registry"),
        );
        (registry.clone(), Some(registry))
    } else {
        (Arc::new(NativeDefaults), None)
    }
}

/// Starts the controller and waits until its watches have synced.
async fn controller(client: &Client, wasm: bool) -> Arc<Metrics> {
    let (engine, plugins) = engine(wasm);
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let config = ControllerConfig {
        concurrency: CONCURRENCY,
        health: health.clone(),
        ..Default::default()
    };
    tokio::spawn(jobset_controller::run(
        client.clone(),
        config,
        engine,
        plugins,
        metrics.clone(),
        std::future::pending::<()>(),
    ));
    while health.ready().is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    metrics
}

/// Runs `work` on every item with `tasks` runtime tasks, each handling one
/// item at a time, so that the requests (and the simulator's work for
/// them, which in process runs in the caller's task) spread over the
/// runtime's worker threads.
async fn spread<I, F, Fut>(items: I, tasks: usize, work: F)
where
    I: Iterator + Send + 'static,
    I::Item: Send,
    F: Fn(I::Item) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let items = Arc::new(std::sync::Mutex::new(items));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (items, work) = (items.clone(), work.clone());
        set.spawn(async move {
            loop {
                let next = items.lock().expect("no panic holds the lock").next();
                let Some(item) = next else { break };
                work(item).await;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("a task of the run");
    }
}

/// Creates every item (responses decoded and dropped), `tasks` at a time.
async fn create_spread<T, I>(api: &Api<T>, items: I, tasks: usize)
where
    T: Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    I: Iterator<Item = T> + Send + 'static,
{
    let api = api.clone();
    spread(items, tasks, move |o: T| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &o)
                .await
                .expect("create");
        }
    })
    .await;
}

/// The controller creates every Job of 1,000 JobSets.
async fn fan_out(wasm: bool) -> BTreeMap<&'static str, f64> {
    let (sim, client) = setup().await;
    let metrics = controller(&client, wasm).await;
    let done = count_jobs(&sim, JOBSETS * JOBS_PER_JOBSET, None);
    let api: Api<JobSet> = Api::namespaced(client.clone(), NS);
    let start = Instant::now();
    create_spread(&api, jobsets().into_iter(), 64).await;
    let end = done.await.expect("counter");
    let secs = (end - start).as_secs_f64();
    let (decisions, decision_seconds) = decision_totals(&metrics.render());
    BTreeMap::from([
        ("seconds", secs),
        ("jobs_per_second", (JOBSETS * JOBS_PER_JOBSET) as f64 / secs),
        ("reconciles", metrics.reconcile_count() as f64),
        ("decisions", decisions),
        ("decision_seconds", decision_seconds),
    ])
}

/// How many plugin decisions the controller made and the time they took,
/// summed over plugins and slots, from its own metrics.
fn decision_totals(metrics: &str) -> (f64, f64) {
    let sum_of = |suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("jobset_policy_decision_duration_seconds_{suffix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (sum_of("count"), sum_of("sum"))
}

/// A plain kube-rs loop creates the same JobSets and Jobs, `CONCURRENCY`
/// Job requests in flight, and afterwards (untimed) the same Services, so
/// that it leaves the simulator holding what the controller run leaves.
async fn plain_loop() -> BTreeMap<&'static str, f64> {
    let (sim, client) = setup().await;
    let api: Api<JobSet> = Api::namespaced(client.clone(), NS);
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), NS);
    let done = count_jobs(&sim, JOBSETS * JOBS_PER_JOBSET, None);
    // JobSets go in as in the controller run; each created JobSet (with its
    // UID) hands its Jobs to the Job creators through a short queue, so the
    // run holds no more in this process than the simulator's store.
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(64);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (api, rx) = (jobs_api.clone(), rx.clone());
        creators.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(job) = next else { break };
                api.create(&PostParams::default(), &job)
                    .await
                    .expect("create");
            }
        });
    }
    let jobsets_api = api.clone();
    // The last sender goes with `spread`'s tasks, which closes the queue.
    spread(jobsets().into_iter(), 64, move |js| {
        let (api, tx) = (jobsets_api.clone(), tx.clone());
        async move {
            let js = api
                .create(&PostParams::default(), &js)
                .await
                .expect("create");
            for i in 0..JOBS_PER_JOBSET {
                let job = job_builder::build_job(&js, &js.spec.replicated_jobs[0], i as i32, false);
                tx.send(job).await.expect("the Job creators run");
            }
        }
    })
    .await;
    while let Some(r) = creators.join_next().await {
        r.expect("a Job creator");
    }
    let secs = (done.await.expect("counter") - start).as_secs_f64();
    let svc: Api<Service> = Api::namespaced(client.clone(), NS);
    let created = api
        .list(&Default::default())
        .await
        .expect("the JobSets list")
        .items;
    let services = created
        .into_iter()
        .map(|js| resources::headless_service(&js));
    create_spread(&svc, services, CONCURRENCY as usize).await;
    BTreeMap::from([
        ("seconds", secs),
        ("jobs_per_second", (JOBSETS * JOBS_PER_JOBSET) as f64 / secs),
    ])
}

/// Removes the foreground-deletion finalizer from Jobs being deleted, as
/// the garbage collector would once their (here absent) pods are gone.
fn release_deleted_jobs(client: &Client) -> Arc<AtomicUsize> {
    let api: Api<Job> = Api::namespaced(client.clone(), NS);
    let released = Arc::new(AtomicUsize::new(0));
    let count = released.clone();
    tokio::spawn(async move {
        let mut s = api
            .watch(&WatchParams::default().timeout(290), "0")
            .await
            .expect("watch")
            .boxed();
        while let Some(ev) = s.next().await {
            let (Ok(WatchEvent::Modified(job)) | Ok(WatchEvent::Added(job))) = ev else {
                continue;
            };
            let deleting = job.metadata.deletion_timestamp.is_some();
            let held = job
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty());
            if deleting && held {
                let name = job.metadata.name.clone().unwrap_or_default();
                let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                if api
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    released
}

/// One Job of a 1,000-Job JobSet fails: time until the last Job of the
/// next attempt exists.
async fn restart_big() -> BTreeMap<&'static str, f64> {
    let (sim, client) = setup().await;
    let _metrics = controller(&client, true).await;
    let released = release_deleted_jobs(&client);
    let first = count_jobs(&sim, BIG, Some("0"));
    let api: Api<JobSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &template("big", BIG))
        .await
        .expect("create");
    first.await.expect("counter");
    let second = count_jobs(&sim, BIG, Some("1"));
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let status = json!({"status": {
    "failed": 1, "startTime": "2026-01-01T00:00:00Z",
    "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "bench", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "bench", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]}});
    let start = Instant::now();
    jobs.patch_status("big-w-0", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("fail a Job");
    let end = second.await.expect("counter");
    BTreeMap::from([
        ("seconds", (end - start).as_secs_f64()),
        ("released", released.load(Ordering::Relaxed) as f64),
    ])
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn child(scenario: &str) {
    // One worker per core, as `jobset controller` and `jobset sim serve`
    // run by default; every scenario gets the same runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = rt.block_on(async {
        let run = async {
            match scenario {
                "wasm" => fan_out(true).await,
                "native" => fan_out(false).await,
                "plain" => plain_loop().await,
                "restart" => restart_big().await,
                other => panic!("unknown scenario {other}"),
            }
        };
        tokio::time::timeout(Duration::from_secs(900), run)
            .await
            .expect("the scenario finishes within 15 minutes")
    });
    out.insert("peak_rss_mib", peak_rss_mib());
    let line: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spawn(scenario: &str) -> BTreeMap<String, f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args(["--scenario", scenario])
        .output()
        .expect("the scenario runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        panic!(
            "scenario {scenario} failed: {}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scenario") {
        child(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let only = std::env::var("SCALE_SCENARIOS").unwrap_or_default();
    let wanted = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    let rounds: usize = std::env::var("SCALE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5);
    // Rounds of every scenario, one after the other, so that the ratios
    // compare runs made close together; the summary takes medians.
    let mut runs: BTreeMap<&str, Vec<BTreeMap<String, f64>>> = BTreeMap::new();
    for round in 1..=rounds {
        for s in ["plain", "wasm", "native", "restart"] {
            if wanted(s) {
                let r = spawn(s);
                println!("round {round} {s:8} {r:?}");
                runs.entry(s).or_default().push(r);
            }
        }
    }
    let per_round = |a: &str, b: &str| -> Vec<f64> {
        let (Some(x), Some(y)) = (runs.get(a), runs.get(b)) else {
            return Vec::new();
        };
        x.iter()
            .zip(y)
            .filter_map(|(x, y)| Some(x.get("jobs_per_second")? / y.get("jobs_per_second")?))
            .collect()
    };
    let ratios = [
        ("Wasm / native throughput", per_round("wasm", "native")),
        (
            "controller / plain-loop Job creation rate",
            per_round("wasm", "plain"),
        ),
    ];
    let results: BTreeMap<&str, BTreeMap<String, f64>> = runs
        .iter()
        .map(|(s, rs)| {
            let keys: std::collections::BTreeSet<&String> =
                rs.iter().flat_map(|r| r.keys()).collect();
            let medians = keys
                .into_iter()
                .map(|k| {
                    (
                        k.clone(),
                        median(rs.iter().filter_map(|r| r.get(k).copied()).collect()),
                    )
                })
                .collect();
            (*s, medians)
        })
        .collect();
    let get = |s: &str, k: &str| results.get(s).and_then(|r| r.get(k)).copied();
    println!();
    println!("medians of {rounds} rounds unless said otherwise");
    if let Some(t) = get("wasm", "seconds") {
        println!(
            "1,000 JobSets x 8 Jobs, Wasm policies: every Job exists after {t:.2} s ({:.0} Jobs/s)",
            8000.0 / t
        );
    }
    if let (Some(w), Some(p)) = (get("wasm", "peak_rss_mib"), get("plain", "peak_rss_mib")) {
        let shares: Vec<f64> = match (runs.get("wasm"), runs.get("plain")) {
            (Some(w), Some(p)) => w
                .iter()
                .zip(p)
                .filter_map(|(w, p)| Some(w.get("peak_rss_mib")? - p.get("peak_rss_mib")?))
                .collect(),
            _ => Vec::new(),
        };
        println!(
            "peak RSS: controller run {w:.0} MiB, plain loop {p:.0} MiB; the controller's share {:.0} MiB at most over the rounds",
            shares.iter().copied().fold(f64::NAN, f64::max)
        );
    }
    for (what, rs) in &ratios {
        if !rs.is_empty() {
            let each: Vec<String> = rs.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "{what}: median {:.2} (rounds: {})",
                median(rs.clone()),
                each.join(", ")
            );
        }
    }
    for run in ["wasm", "native"] {
        if let (Some(n), Some(t)) = (get(run, "decisions"), get(run, "decision_seconds")) {
            println!(
                "{run}: {n:.0} decisions, {:.0} µs each on average ({t:.2} s in all)",
                t / n.max(1.0) * 1e6
            );
        }
    }
    if let Some(p) = get("plain", "jobs_per_second") {
        println!("plain loop: {p:.0} Jobs/s");
    }
    if let Some(t) = get("restart", "seconds") {
        println!("1,000-Job JobSet, one Job fails: last replacement Job after {t:.2} s");
    }
}
