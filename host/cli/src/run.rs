//! `jobset run`: the simulated cluster and the controller in one process on
//! a virtual clock; applies the manifests, runs to the end, prints progress,
//! a summary and the decisions each plugin made. Exit 0 when every JobSet
//! completed, 1 when one failed or got stuck, 2 on bad input.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_api::{JobSet, ValidationContext};
use jobset_controller::clock::Clock;
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::reconcile::Report;
use jobset_controller::{ControllerConfig, run as run_controller};
use jobset_policy::{Registry, RegistryConfig, Runtime, Slot};
use jobset_sim::cluster::{Cluster, ClusterConfig, NodeLayout, Scenario};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, discovery};

use crate::outcome::{Failure, bad_input};

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

/// Manifests a workflow object creates in its steps (an Argo Workflow's
/// `spec.templates[].resource.manifest`), so a JobSet launched from a
/// workflow can be run on its own.
fn embedded_manifests(doc: &serde_json::Value) -> Vec<String> {
    if doc.get("kind").and_then(|k| k.as_str()) != Some("Workflow") {
        return Vec::new();
    }
    doc.pointer("/spec/templates")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/resource/manifest").and_then(|m| m.as_str()))
        .map(str::to_string)
        .collect()
}

/// A manifest read from the command line.
struct Manifest {
    source: String,
    value: serde_json::Value,
}

fn read_manifests(files: &[PathBuf]) -> Result<(Vec<JobSet>, Vec<Manifest>), Failure> {
    let mut jobsets = Vec::new();
    let mut others = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let docs = jobset_api::split_documents(&text)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let mut expanded = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let source = format!("{} (document {})", file.display(), i + 1);
            let embedded = embedded_manifests(&doc);
            if embedded.is_empty() {
                expanded.push((source, doc));
            } else {
                println!("note: {source}: running the manifests its workflow steps create");
                for (j, text) in embedded.iter().enumerate() {
                    let inner = jobset_api::split_documents(text).map_err(|e| {
                        bad_input(format!("{source}, step manifest {}: {e}", j + 1))
                    })?;
                    for d in inner {
                        expanded.push((format!("{source}, step manifest {}", j + 1), d));
                    }
                }
            }
        }
        for (source, doc) in expanded {
            if doc.get("kind").and_then(|k| k.as_str()) == Some("JobSet") {
                let text =
                    serde_json::to_string(&doc).map_err(|e| bad_input(format!("{source}: {e}")))?;
                let mut js = jobset_api::parse_jobset_json(&text)
                    .map_err(|e| bad_input(format!("{source}: {e}")))?;
                if js.metadata.namespace.is_none() {
                    js.metadata.namespace = Some("default".to_string());
                }
                jobset_api::default_jobset(&mut js);
                jobset_api::validate_create(&js, &ValidationContext::default()).map_err(|e| {
                    bad_input(format!(
                        "{source}: JobSet {} is invalid:\n{e}",
                        jobset_api::naming::effective_name(&js)
                    ))
                })?;
                jobsets.push(js);
            } else {
                others.push(Manifest { source, value: doc });
            }
        }
    }
    if jobsets.is_empty() {
        return Err(bad_input("no JobSet in the given files".to_string()));
    }
    Ok((jobsets, others))
}

/// Example plugins shipped inside the binary, usable by name.
const EMBEDDED_EXAMPLES: [&str; 1] = ["preemption-aware"];

fn embedded_example(name: &str) -> Option<&'static [u8]> {
    match name {
        "preemption-aware" => Some(jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE),
        _ => None,
    }
}

fn registry(args: &RunArgs) -> Result<Arc<Registry>, Failure> {
    let runtime = Runtime::new(Default::default()).map_err(|e| Failure::Internal(e.to_string()))?;
    let mut config = RegistryConfig::new(CONTROLLER_NAMESPACE);
    let mut packed = Vec::new();
    for spec in &args.plugins {
        let (slot, path) = spec
            .split_once('=')
            .ok_or_else(|| bad_input(format!("--plugin {spec:?}: expected SLOT=PATH.wasm")))?;
        let slot = match slot {
            "startup" => Slot::Startup,
            "outcome" => Slot::Outcome,
            "placement" => Slot::Placement,
            other => {
                return Err(bad_input(format!(
                    "--plugin {spec:?}: unknown slot {other:?} (startup, outcome or placement)"
                )));
            }
        };
        let bytes = match (std::fs::read(path), embedded_example(path)) {
            (Ok(bytes), _) => bytes,
            (Err(_), Some(bytes)) => bytes.to_vec(),
            (Err(e), None) => {
                return Err(bad_input(format!(
                    "--plugin {spec:?}: {path}: {e} (embedded examples: {})",
                    EMBEDDED_EXAMPLES.join(", ")
                )));
            }
        };
        let name = std::path::Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_lowercase()
            .replace('_', "-");
        let yaml = jobset_policy::tools::pack(&bytes, &name, CONTROLLER_NAMESPACE)
            .map_err(|e| bad_input(format!("--plugin {spec:?}: {e}")))?;
        config.plugins.insert(slot, name);
        packed.push((spec.clone(), yaml));
    }
    let registry = Registry::new(runtime, config).map_err(|e| Failure::Internal(e.to_string()))?;
    for (spec, yaml) in packed {
        let cm = serde_yaml::from_str(&yaml).map_err(|e| Failure::Internal(e.to_string()))?;
        registry
            .apply_configmap(&cm)
            .map_err(|e| bad_input(format!("--plugin {spec:?}: {e}")))?;
    }
    Ok(Arc::new(registry))
}

async fn create_other(client: &Client, m: &Manifest) -> Result<(), Failure> {
    let api_version = m
        .value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = m.value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = match discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_) => {
            println!(
                "note: {}: {api_version} {kind} is not served by the simulated cluster; skipped",
                m.source
            );
            return Ok(());
        }
    };
    let obj: DynamicObject = serde_json::from_value(m.value.clone())
        .map_err(|e| bad_input(format!("{}: {e}", m.source)))?;
    let api: Api<DynamicObject> = match caps.scope {
        discovery::Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
        discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(bad_input(format!("{}: {kind} rejected: {e}", m.source))),
    }
}

/// The state of one JobSet at the end.
struct Row {
    name: String,
    state: String,
    restarts: i32,
    duration: Duration,
    succeeded: i32,
    failed: i32,
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Runs the command; the error carries the exit code.
pub fn run(args: RunArgs) -> Result<(), Failure> {
    let until = parse_duration(&args.until)?;
    let (jobsets, others) = read_manifests(&args.files)?;
    let nodes = match std::fs::read_to_string(&args.nodes) {
        Ok(text) => NodeLayout::parse(&text),
        Err(_) => NodeLayout::parse(&args.nodes),
    }
    .map_err(|e| bad_input(format!("--nodes: {e}")))?;
    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad_input(format!("--scenario {}: {e}", path.display())))?;
            Scenario::from_yaml(&text)
                .map_err(|e| bad_input(format!("--scenario {}: {e}", path.display())))?
        }
        None => Scenario::default(),
    };
    let registry = registry(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    rt.block_on(simulate(
        jobsets, others, nodes, scenario, args.seed, until, registry,
    ))
}

async fn simulate(
    jobsets: Vec<JobSet>,
    others: Vec<Manifest>,
    nodes: NodeLayout,
    scenario: Scenario,
    seed: u64,
    until: Duration,
    registry: Arc<Registry>,
) -> Result<(), Failure> {
    let internal = |e: String| Failure::Internal(e);
    let sim = Sim::new(SimConfig {
        graceful_pod_deletion: true,
        ..Default::default()
    });
    let client = Client::new(sim.service(), "default");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd())
        .await
        .map_err(|e| internal(format!("registering the JobSet CRD: {e}")))?;
    let _cluster = Cluster::start(
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

    let start = tokio::time::Instant::now();
    let decisions: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let sink = decisions.clone();
    let sim_clock = sim.clock().clone();
    let config = ControllerConfig {
        clock: Clock::from_fn(move || {
            Timestamp::from_second(sim_clock.now_secs()).unwrap_or(Timestamp::UNIX_EPOCH)
        }),
        observer: Some(Arc::new(move |r: &Report| {
            let at = fmt_duration(start.elapsed());
            for d in &r.plan.decisions {
                println!("[{at}] {}/{}: {d}", r.namespace, r.name);
                if let Ok(mut m) = sink.lock() {
                    m.entry(format!("{}/{}", r.namespace, r.name))
                        .or_default()
                        .push(format!("[{at}] {d}"));
                }
            }
        })),
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

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                serde_json::json!({"metadata": {"name": CONTROLLER_NAMESPACE}}),
            )
            .map_err(|e| internal(e.to_string()))?,
        )
        .await;
    // The simulated cluster is a sandbox: namespaces the manifests use exist.
    let mut wanted: std::collections::BTreeSet<String> = jobsets
        .iter()
        .filter_map(|j| j.metadata.namespace.clone())
        .collect();
    for m in &others {
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
            .map_err(|e| internal(e.to_string()))?;
        let _ = namespaces.create(&PostParams::default(), &body).await;
    }
    for m in &others {
        create_other(&client, m).await?;
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
        println!(
            "[{}] {ns}/{}: created",
            fmt_duration(start.elapsed()),
            created.metadata.name.clone().unwrap_or_default()
        );
    }

    // Wait, in virtual time, until every JobSet finished or time runs out.
    let api: Api<JobSet> = Api::all(client.clone());
    let mut finished_at: BTreeMap<String, Duration> = BTreeMap::new();
    let mut current: Vec<JobSet>;
    let mut last_rv = sim.resource_version();
    let mut last_change = start.elapsed();
    loop {
        current = api
            .list(&ListParams::default())
            .await
            .map_err(|e| internal(e.to_string()))?
            .items;
        for js in &current {
            let key = format!(
                "{}/{}",
                js.metadata.namespace.clone().unwrap_or_default(),
                js.metadata.name.clone().unwrap_or_default()
            );
            let state = js
                .status
                .as_ref()
                .map(|s| s.terminal_state.clone())
                .unwrap_or_default();
            if !state.is_empty() && !finished_at.contains_key(&key) {
                finished_at.insert(key.clone(), start.elapsed());
                println!("[{}] {key}: {state}", fmt_duration(start.elapsed()));
            }
        }
        if !current.is_empty() && finished_at.len() >= current.len() {
            break;
        }
        if start.elapsed() >= until {
            break;
        }
        // Nothing written to the cluster for a long while: nothing will.
        let rv = sim.resource_version();
        if rv != last_rv {
            last_rv = rv;
            last_change = start.elapsed();
        } else if start.elapsed() - last_change >= IDLE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), controller).await;

    let jobs_api: Api<k8s_openapi::api::batch::v1::Job> = Api::all(client.clone());
    let all_jobs = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(|e| internal(e.to_string()))?
        .items;
    let mut rows = Vec::new();
    for js in &current {
        let name = js.metadata.name.clone().unwrap_or_default();
        let ns = js.metadata.namespace.clone().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let status = js.status.clone().unwrap_or_default();
        let mine = all_jobs.iter().filter(|j| {
            j.metadata.namespace.as_deref() == Some(ns.as_str())
                && j.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(jobset_api::labels::JOBSET_NAME_KEY))
                    .map(String::as_str)
                    == Some(name.as_str())
        });
        let (mut ok, mut bad) = (0, 0);
        for j in mine {
            for c in j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
            {
                if c.status == "True" && c.type_ == "Complete" {
                    ok += 1;
                } else if c.status == "True" && c.type_ == "Failed" {
                    bad += 1;
                }
            }
        }
        rows.push(Row {
            state: if status.terminal_state.is_empty() {
                "Stuck".to_string()
            } else {
                status.terminal_state.clone()
            },
            restarts: status.restarts,
            duration: finished_at.get(&key).copied().unwrap_or(start.elapsed()),
            succeeded: ok,
            failed: bad,
            name: key,
        });
    }
    println!();
    println!(
        "{:<40} {:<10} {:>8} {:>10} {:>9} {:>6}",
        "JOBSET", "STATE", "RESTARTS", "DURATION", "SUCCEEDED", "FAILED"
    );
    for r in &rows {
        println!(
            "{:<40} {:<10} {:>8} {:>10} {:>9} {:>6}",
            r.name,
            r.state,
            r.restarts,
            fmt_duration(r.duration),
            r.succeeded,
            r.failed
        );
    }
    if let Ok(d) = decisions.lock()
        && !d.is_empty()
    {
        println!("\nPolicy decisions:");
        for (js, lines) in d.iter() {
            println!("  {js}:");
            for l in lines {
                println!("    {l}");
            }
        }
    }
    let stuck: Vec<&Row> = rows.iter().filter(|r| r.state == "Stuck").collect();
    if !stuck.is_empty() {
        println!("\nStuck after {} (virtual):", fmt_duration(start.elapsed()));
        let pods: Api<Pod> = Api::all(client.clone());
        let pods = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| internal(e.to_string()))?
            .items;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for p in &pods {
            for c in p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
            {
                if c.type_ == "PodScheduled" && c.status == "False" {
                    *reasons
                        .entry(
                            c.message
                                .clone()
                                .unwrap_or_else(|| c.reason.clone().unwrap_or_default()),
                        )
                        .or_default() += 1;
                }
            }
        }
        for r in &stuck {
            println!("  {}", r.name);
        }
        if reasons.is_empty() {
            println!("  no pod is waiting for a node; the JobSets are waiting on their Jobs");
        }
        for (why, n) in reasons {
            println!("  {n} pod(s) unschedulable: {why}");
        }
        return Err(Failure::Outcome("some JobSets did not finish".to_string()));
    }
    if rows.iter().any(|r| r.state != "Completed") {
        return Err(Failure::Outcome("some JobSets failed".to_string()));
    }
    Ok(())
}
