//! `jobset run`: the simulated cluster and the controller in one process on
//! a virtual clock; applies the manifests, runs to the end, prints progress,
//! a summary and the decisions each plugin made. Exit 0 when every JobSet
//! completed, 1 when one failed or got stuck, 2 on bad input.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobset_api::JobSet;
use jobset_controller::clock::Clock;
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::reconcile::Report;
use jobset_controller::{ControllerConfig, run as run_controller};
use jobset_policy::{Registry, RegistryConfig, Runtime, Slot};
use jobset_sim::cluster::{Cluster, ClusterConfig, ClusterHandle, NodeLayout, Scenario};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use crate::history::History;
use crate::manifests::{Manifest, create_other, read_manifests};
use crate::outcome::{Failure, bad_input};
use crate::output::Output;
use crate::report::{Row, fmt_duration, key, print_summary, row, stuck_reasons};

/// The namespace plugin ConfigMaps in it serve every JobSet.
pub const CONTROLLER_NAMESPACE: &str = "jobset-system";

/// A run in which nothing changes for this long (virtual) is stuck.
const IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Options of `jobset run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Manifests to apply: JobSets, plugin ConfigMaps, anything else.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// What the simulated workloads do (YAML; see the README).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Use a plugin for a slot: `outcome=my-policy.wasm`, or an example
    /// shipped in the binary: `outcome=preemption-aware`.
    #[arg(long = "plugin", value_name = "SLOT=PATH.wasm")]
    pub plugins: Vec<String>,
    /// Node layout: `default`, a compact spec like `pools=4,nodes=4,tpu=4`,
    /// or a YAML file.
    #[arg(long, default_value = "default")]
    pub nodes: String,
    /// Stop after this much virtual time (e.g. `90m`, `24h`).
    #[arg(long, default_value = "24h")]
    pub until: String,
    /// Seed for pod names and injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a picture of the run (one row per Job, over virtual time) here.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
    /// Run this plugin beside the one deciding a slot, on the same
    /// snapshots, and show where it would have decided otherwise; its
    /// verdicts are never applied.
    #[arg(long = "shadow", value_name = "SLOT=PATH.wasm")]
    pub shadows: Vec<String>,
    /// Record every policy decision (its inputs and verdict) as a YAML
    /// file in this folder, for `jobset policy replay`.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Feature gates, as `jobset controller --feature-gates` takes them
    /// (`RestartJob=true,...`); upstream's alpha gates are off by default.
    #[arg(long, value_delimiter = ',')]
    pub feature_gates: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num.parse().map_err(|_| {
        bad_input(format!(
            "--until {text:?}: expected a duration such as 90m or 24h"
        ))
    })?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(bad_input(format!(
                "--until {text:?}: unknown unit {unit:?} (use s, m, h or d)"
            )));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Example plugins shipped inside the binary, usable by name.
pub(crate) const EMBEDDED_EXAMPLES: [&str; 4] = [
    "preemption-aware",
    "exit-codes",
    "bad-node",
    "recreate-on-node-loss",
];

pub(crate) fn embedded_example(name: &str) -> Option<&'static [u8]> {
    match name {
        "preemption-aware" => Some(jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE),
        "exit-codes" => Some(jobset_policy::builtin::EXAMPLE_EXIT_CODES),
        "bad-node" => Some(jobset_policy::builtin::EXAMPLE_BAD_NODE),
        "recreate-on-node-loss" => Some(jobset_policy::builtin::EXAMPLE_RECREATE_ON_NODE_LOSS),
        _ => None,
    }
}

/// The node layout of `--nodes`: a YAML file if `spec` names one, else a
/// named layout or compact spec.
pub fn load_nodes(spec: &str) -> Result<NodeLayout, Failure> {
    match std::fs::read_to_string(spec) {
        Ok(text) => NodeLayout::parse(&text),
        Err(_) => NodeLayout::parse(spec),
    }
    .map_err(|e| bad_input(format!("--nodes: {e}")))
}

/// The scenario of `--scenario`, or the default (pods run and succeed).
pub fn load_scenario(path: Option<&std::path::Path>) -> Result<Scenario, Failure> {
    let Some(path) = path else {
        return Ok(Scenario::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("--scenario {}: {e}", path.display())))?;
    Scenario::from_yaml(&text).map_err(|e| bad_input(format!("--scenario {}: {e}", path.display())))
}

fn registry(args: &RunArgs) -> Result<Arc<Registry>, Failure> {
    // One runtime per process: its compile cache serves every run in it.
    let runtime = Runtime::shared()
        .map_err(|e| Failure::Internal(e.to_string()))?
        .clone();
    let mut config = RegistryConfig::new(CONTROLLER_NAMESPACE);
    let mut packed = Vec::new();
    for (flag, spec) in args
        .plugins
        .iter()
        .map(|s| ("--plugin", s))
        .chain(args.shadows.iter().map(|s| ("--shadow", s)))
    {
        let (slot, path) = spec
            .split_once('=')
            .ok_or_else(|| bad_input(format!("{flag} {spec:?}: expected SLOT=PATH.wasm")))?;
        let slot = Slot::parse(slot).ok_or_else(|| {
            bad_input(format!(
                "{flag} {spec:?}: unknown slot {slot:?} (startup, outcome or placement)"
            ))
        })?;
        let bytes = match (std::fs::read(path), embedded_example(path)) {
            (Ok(bytes), _) => bytes,
            (Err(_), Some(bytes)) => bytes.to_vec(),
            (Err(e), None) => {
                return Err(bad_input(format!(
                    "{flag} {spec:?}: {path}: {e} (embedded examples: {})",
                    EMBEDDED_EXAMPLES.join(", ")
                )));
            }
        };
        let stem = std::path::Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_lowercase()
            .replace('_', "-");
        // A shadow is its own plugin, even when the same file decides.
        let name = if flag == "--shadow" {
            format!("shadow-{stem}")
        } else {
            stem
        };
        crate::policy_cmd::check_name(&format!("{flag} {spec:?}: the plugin name"), &name)?;
        let yaml = jobset_policy::tools::pack(&bytes, &name, CONTROLLER_NAMESPACE)
            .map_err(|e| bad_input(format!("{flag} {spec:?}: {e}")))?;
        if flag == "--shadow" {
            config.shadows.insert(slot, name);
        } else {
            config.plugins.insert(slot, name);
        }
        packed.push((format!("{flag} {spec:?}"), yaml));
    }
    let registry = Registry::new(runtime, config).map_err(|e| Failure::Internal(e.to_string()))?;
    if let Some(dir) = &args.record {
        let sink = jobset_policy::recording::DirectorySink::new(dir)
            .map_err(|e| bad_input(format!("--record: {e}")))?;
        registry.record_decisions(Some(Arc::new(sink)));
    }
    for (spec, yaml) in packed {
        let cm = serde_yaml::from_str(&yaml).map_err(|e| Failure::Internal(e.to_string()))?;
        registry
            .apply_configmap(&cm)
            .map_err(|e| bad_input(format!("{spec}: {e}")))?;
    }
    Ok(Arc::new(registry))
}

/// How the wait for the JobSets ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ended {
    /// Every JobSet reached a terminal state.
    AllFinished,
    /// Nothing was written to the cluster for [`IDLE_LIMIT`].
    Idle,
    /// `--until` came first.
    TimeLimit,
}

/// Everything a run needs, read from the command line.
struct Inputs {
    jobsets: Vec<JobSet>,
    others: Vec<Manifest>,
    nodes: NodeLayout,
    scenario: Scenario,
    seed: u64,
    until: Duration,
    registry: Arc<Registry>,
    timeline: Option<PathBuf>,
    feature_gates: Vec<String>,
    /// The shadow decisions reported so far (`--shadow`).
    shadows: Option<Arc<std::sync::Mutex<Vec<jobset_policy::shadow::ShadowReport>>>>,
}

/// Runs the command, writing to `out`; the error carries the exit code.
pub fn run(args: RunArgs, out: &Output) -> Result<(), Failure> {
    let until = parse_duration(&args.until)?;
    let feature_gates = crate::controller_cmd::feature_gates(&args.feature_gates)?;
    let (jobsets, others) = read_manifests(
        &args.files,
        jobset_api::FeatureGates::from_enabled(&feature_gates),
        out,
    )?;
    let nodes = load_nodes(&args.nodes)?;
    let scenario = load_scenario(args.scenario.as_deref())?;
    let registry = registry(&args)?;
    let shadows = Arc::new(std::sync::Mutex::new(Vec::new()));
    if !args.shadows.is_empty() {
        let seen = shadows.clone();
        registry.on_shadow("run", move |r| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(r.clone())
        });
    }
    let shadowing = (!args.shadows.is_empty()).then(|| registry.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let inputs = Inputs {
        jobsets,
        others,
        nodes,
        scenario,
        seed: args.seed,
        until,
        registry,
        timeline: args.timeline,
        feature_gates,
        shadows: shadowing.is_some().then(|| shadows.clone()),
    };
    let result = rt.block_on(simulate(inputs, out));
    if let Some(registry) = shadowing {
        registry.shadows_settled(Duration::from_secs(60));
        let reports = shadows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        crate::report::print_shadows(out, &reports, registry.shadow_calls_dropped());
    }
    result
}

async fn create_namespaces(
    client: &Client,
    jobsets: &[JobSet],
    others: &[Manifest],
) -> Result<(), Failure> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The simulated cluster is a sandbox: namespaces the manifests use exist.
    let mut wanted: std::collections::BTreeSet<String> = jobsets
        .iter()
        .filter_map(|j| j.metadata.namespace.clone())
        .collect();
    wanted.insert(CONTROLLER_NAMESPACE.to_string());
    for m in others {
        if let Some(ns) = m
            .value
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
        {
            wanted.insert(ns.to_string());
        }
    }
    for ns in wanted {
        let body = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .map_err(|e| Failure::Internal(e.to_string()))?;
        let _ = namespaces.create(&PostParams::default(), &body).await;
    }
    Ok(())
}

/// The live progress line of a JobSet.
fn progress_line(js: &JobSet, at: Duration) -> String {
    let status = js.status.clone().unwrap_or_default();
    let total: i32 = js
        .spec
        .replicated_jobs
        .iter()
        .map(|r| r.replicas.unwrap_or(1))
        .sum();
    let (mut ok, mut active, mut failed) = (0, 0, 0);
    for r in &status.replicated_jobs_status {
        ok += r.succeeded;
        active += r.active;
        failed += r.failed;
    }
    let state = if status.terminal_state.is_empty() {
        "Running"
    } else {
        status.terminal_state.as_str()
    };
    format!(
        "[{}] {:<40} {:<9} restarts {:<3} jobs {ok}/{total} succeeded, {active} active, {failed} failed",
        fmt_duration(at),
        key(js.metadata.namespace.as_ref(), js.metadata.name.as_ref()),
        state,
        status.restarts,
    )
}

/// Where the simulator finds the JobSet webhooks of this process.
const IN_PROCESS_WEBHOOKS: &str = "http://jobset-run.in-process";

/// Registers the JobSet admission webhooks with the simulator, answered in
/// this process, so that a change a scenario makes to a JobSet is admitted
/// or refused as a cluster would (the gates included).
async fn serve_admission_in_process(
    sim: &Sim,
    client: &Client,
    feature_gates: &[String],
) -> Result<(), Failure> {
    use jobset_controller::webhook::{Target, configurations, server};
    let gates = jobset_api::FeatureGates::from_enabled(feature_gates);
    for (url, answer) in server::in_process_endpoints(IN_PROCESS_WEBHOOKS, gates) {
        sim.serve_webhook_locally(&url, answer);
    }
    let target = Target::Url(IN_PROCESS_WEBHOOKS.to_string());
    configurations::register(client, &target, None)
        .await
        .map_err(|e| Failure::Internal(format!("registering the JobSet webhooks: {e}")))
}

/// Prints the scenario's timed changes made since the first `shown` of
/// them (what was changed, or why the API server refused it); returns how
/// many it printed.
fn show_changes(cluster: &ClusterHandle, shown: usize, out: &Output) -> usize {
    let changes: Vec<_> = cluster
        .events()
        .into_iter()
        .filter(|e| e.component == jobset_sim::cluster::changes::COMPONENT)
        .skip(shown)
        .collect();
    for c in &changes {
        let at = fmt_duration(Duration::from_millis(c.at_ms));
        let what = match c.action.as_str() {
            "Resized" => format!("resized {}", c.detail),
            "ResizeRefused" => format!("resize refused: {}", c.detail),
            other => format!("{other} {}", c.detail),
        };
        out.line(&format!("[{at}] {}: {what}", c.object));
    }
    changes.len()
}

async fn simulate(inputs: Inputs, out: &Output) -> Result<(), Failure> {
    let internal = |e: String| Failure::Internal(e);
    let Inputs {
        jobsets,
        others,
        nodes,
        scenario,
        seed,
        until,
        registry,
        timeline,
        feature_gates,
        shadows,
    } = inputs;
    let shadowing = shadows.as_ref().map(|s| (s.clone(), registry.clone()));
    let sim = Sim::new(SimConfig {
        graceful_pod_deletion: true,
        ..Default::default()
    });
    let client = Client::new(sim.service(), "default");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd())
        .await
        .map_err(|e| internal(format!("registering the JobSet CRD: {e}")))?;
    serve_admission_in_process(&sim, &client, &feature_gates).await?;
    let cluster = Cluster::start(
        &sim,
        ClusterConfig {
            nodes,
            scenario,
            seed,
            job_controller: true,
        },
    )
    .await
    .map_err(|e| internal(format!("starting the simulated cluster: {e}")))?;

    let history = History::new(tokio::time::Instant::now(), out.clone());
    let start_ms = sim.clock().now_secs() * 1000;
    history.watch(&client).await;
    let sink = history.clone();
    let log = out.clone();
    let sim_clock = sim.clock().clone();
    let config = ControllerConfig {
        clock: Clock::from_fn(move || {
            Timestamp::from_second(sim_clock.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH)
        }),
        observer: Some(Arc::new(move |r: &Report| {
            let at = fmt_duration(sink.now());
            let js = format!("{}/{}", r.namespace, r.name);
            for d in &r.plan.decisions {
                log.line(&format!("[{at}] {js}: {d}"));
                sink.decision(&js, d);
            }
            sink.waiting(
                &js,
                r.plan
                    .waiting
                    .iter()
                    .map(|w| format!("{}: {}", w.job, w.reason))
                    .collect(),
            );
        })),
        feature_gates,
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine: Arc<dyn PolicyEngine> = registry.clone();
    let plugins: Arc<dyn PluginConfigMaps> = registry;
    let controller = tokio::spawn(run_controller(
        client.clone(),
        config,
        engine,
        Some(plugins),
        Arc::new(Metrics::default()),
        async move {
            let _ = stop_rx.await;
        },
    ));

    create_namespaces(&client, &jobsets, &others).await?;
    for m in &others {
        create_other(&client, m, out).await?;
    }
    for js in &jobsets {
        let ns = js
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let api: Api<JobSet> = Api::namespaced(client.clone(), &ns);
        let created = api.create(&PostParams::default(), js).await.map_err(|e| {
            bad_input(format!(
                "JobSet {}: {e}",
                jobset_api::naming::effective_name(js)
            ))
        })?;
        out.line(&format!(
            "[{}] {ns}/{}: created",
            fmt_duration(history.now()),
            created.metadata.name.clone().unwrap_or_default()
        ));
    }

    // Wait, in virtual time, until every JobSet finished or time runs out.
    let api: Api<JobSet> = Api::all(client.clone());
    let mut finished_at: std::collections::BTreeMap<String, Duration> = Default::default();
    let mut current: Vec<JobSet>;
    let mut last_rv = sim.resource_version();
    let mut last_change = history.now();
    let mut changes_shown = 0;
    let ended = loop {
        changes_shown += show_changes(&cluster, changes_shown, out);
        current = api
            .list(&ListParams::default())
            .await
            .map_err(|e| internal(e.to_string()))?
            .items;
        let now = history.now();
        for js in &current {
            let key = key(js.metadata.namespace.as_ref(), js.metadata.name.as_ref());
            let state = js
                .status
                .as_ref()
                .map(|s| s.terminal_state.clone())
                .unwrap_or_default();
            if !state.is_empty() && !finished_at.contains_key(&key) {
                finished_at.insert(key.clone(), now);
                out.line(&format!("[{}] {key}: {state}", fmt_duration(now)));
            }
        }
        let lines: Vec<String> = current.iter().map(|js| progress_line(js, now)).collect();
        let all_finished = !current.is_empty() && finished_at.len() >= current.len();
        out.progress(&lines, all_finished || now >= until);
        if all_finished {
            break Ended::AllFinished;
        }
        if now >= until {
            break Ended::TimeLimit;
        }
        // Nothing written to the cluster for a long while: nothing will.
        let rv = sim.resource_version();
        if rv != last_rv {
            last_rv = rv;
            last_change = now;
        } else if now - last_change >= IDLE_LIMIT {
            out.progress(&lines, true);
            break Ended::Idle;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    out.end_progress();
    let end = history.now();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), controller).await;

    let jobs_api: Api<Job> = Api::all(client.clone());
    let all_jobs = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(|e| internal(e.to_string()))?
        .items;
    let unfinished = if ended == Ended::TimeLimit {
        "Running"
    } else {
        "Stuck"
    };
    let rows: Vec<Row> = current
        .iter()
        .map(|js| {
            let k = key(js.metadata.namespace.as_ref(), js.metadata.name.as_ref());
            let duration = finished_at.get(&k).copied().unwrap_or(end);
            row(js, &all_jobs, unfinished, duration)
        })
        .collect();
    let pods: Api<Pod> = Api::all(client.clone());
    let pods = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| internal(e.to_string()))?
        .items;
    let mut record = history
        .record
        .lock()
        .map_err(|_| internal("the run's record is unreadable".into()))?;
    if let Some((reports, registry)) = &shadowing {
        // The shadow thread runs in real time: let it finish first.
        registry.shadows_settled(Duration::from_secs(60));
        let reports = reports.lock().unwrap_or_else(|e| e.into_inner());
        record.divergences = crate::report::divergences(&reports, start_ms);
    }
    print_summary(out, &rows, &record);
    if let Some(path) = &timeline {
        let svg = crate::timeline::render(&record, end);
        std::fs::write(path, svg)
            .map_err(|e| bad_input(format!("--timeline {}: {e}", path.display())))?;
        out.line(&format!("\nTimeline written to {}", path.display()));
    }
    let not_done: Vec<&Row> = rows
        .iter()
        .filter(|r| r.state == "Stuck" || r.state == "Running")
        .collect();
    if !not_done.is_empty() {
        if ended == Ended::TimeLimit {
            out.line(&format!(
                "\nStill running at the --until limit ({} virtual):",
                fmt_duration(end)
            ));
            for r in &not_done {
                out.line(&format!("  {}", r.name));
            }
            return Err(Failure::Outcome(
                "some JobSets did not finish in time".to_string(),
            ));
        }
        out.line(&format!("\nStuck after {} (virtual):", fmt_duration(end)));
        for l in stuck_reasons(&not_done, &pods, &record) {
            out.line(&l);
        }
        return Err(Failure::Outcome("some JobSets did not finish".to_string()));
    }
    if rows.iter().any(|r| r.state != "Completed") {
        return Err(Failure::Outcome("some JobSets failed".to_string()));
    }
    Ok(())
}
