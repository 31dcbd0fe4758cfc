//! `jobset controller`: the controller against a real cluster (a kubeconfig
//! or the in-cluster service account), with the default plugins built in
//! and plugin ConfigMaps from the plugin namespace, `/metrics`, `/healthz`,
//! `/readyz`, optional leader election, and a clean stop on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobset_controller::health::Health;
use jobset_controller::http_server::{self, Endpoints};
use jobset_controller::leader::{self, LeaderConfig, LeaderElector};
use jobset_controller::metrics::Metrics;
use jobset_controller::policy::{PluginConfigMaps, PolicyEngine};
use jobset_controller::{ControllerConfig, run as run_controller, run_with_leader_election};
use jobset_policy::{Registry, RegistryConfig, Runtime};
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::outcome::{Failure, bad_input};

fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| crate::run::CONTROLLER_NAMESPACE.to_string())
}

/// Options of `jobset controller`. Further groups of flags (webhooks, ...)
/// join as `#[command(flatten)]` fields of their own struct.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig to use; without it, `KUBECONFIG`, `~/.kube/config`, or the
    /// in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// JobSets reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Milliseconds between two status writes of one JobSet that change
    /// only its Job counts (conditions and the outcome are written at
    /// once); 0 writes every change.
    #[arg(long, default_value_t = jobset_controller::controller::DEFAULT_STATUS_INTERVAL.as_millis() as u64, value_name = "MS")]
    pub status_interval_ms: u64,
    /// Failed pods kept per failed Job for an outcome plugin that asks for
    /// pod facts (the most recently finished; the rest are counted).
    #[arg(long, default_value_t = jobset_controller::failed_pods::DEFAULT_PODS_PER_JOB, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub failed_pods_per_job: usize,
    /// Async worker threads (watches, reconciles, HTTP); 0 means one per
    /// CPU core. Plugin decisions run on threads of their own either way.
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Seconds between two hand-backs of freed heap memory to the
    /// operating system (glibc builds; see `memory_trim`); 0 never.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub memory_trim_interval_s: u64,
    /// Where `/metrics` is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Where `/healthz` and `/readyz` are served (may equal --metrics-addr).
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Act only while holding the leader Lease (run several replicas).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE or jobset-system).
    #[arg(long, default_value_t = default_namespace())]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = leader::DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Namespace whose plugin ConfigMaps serve every JobSet.
    #[arg(long, default_value_t = default_namespace())]
    pub plugin_namespace: String,
    /// Let plugin ConfigMaps in a JobSet's own namespace serve it. Off, the
    /// controller reads ConfigMaps only in --plugin-namespace (a Role
    /// there suffices); on, it watches them cluster-wide (see
    /// deploy/components/namespace-plugins).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub namespace_plugins: bool,
    /// Run only plugins signed by one of these ed25519 public keys (as
    /// `jobset policy keygen` prints them); none: no signature needed.
    #[arg(long, value_delimiter = ',', value_name = "KEY,...")]
    pub trusted_plugin_keys: Vec<String>,
    /// Run only plugins with one of these sha256 digests; none: any.
    #[arg(long, value_delimiter = ',', value_name = "SHA256,...")]
    pub allowed_plugin_digests: Vec<String>,
    /// Most plugins one JobSet namespace may put in force (with
    /// --namespace-plugins); ConfigMaps past it are refused uncompiled.
    #[arg(long, default_value_t = jobset_policy::registry::DEFAULT_MAX_PLUGINS_PER_NAMESPACE)]
    pub max_plugins_per_namespace: usize,
    /// Verify plugin ConfigMaps when they arrive but compile a plugin only
    /// when a JobSet first selects it, off the reconcile path (the JobSet
    /// shows PolicyFailed=False, reason PluginCompiling, meanwhile). Off,
    /// every plugin ConfigMap is compiled when it arrives.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub compile_plugins_on_demand: bool,
    /// Milliseconds one plugin compile may take before it is abandoned and
    /// the plugin reported as not loaded (compile on demand).
    #[arg(long, default_value_t = jobset_policy::registry::DEFAULT_COMPILE_DEADLINE.as_millis() as u64, value_name = "MS")]
    pub plugin_compile_deadline_ms: u64,
    /// Compiled plugin components kept for reuse (least recently used go
    /// first; a plugin in force keeps its own).
    #[arg(long, default_value_t = jobset_policy::Limits::default().max_compiled)]
    pub max_compiled_plugins: usize,
    /// Mebibytes of machine code that cache may hold.
    #[arg(long, default_value_t = jobset_policy::Limits::default().max_compiled_bytes >> 20, value_name = "MIB")]
    pub max_compiled_plugin_mib: usize,
    /// Shadow plugins for every JobSet, `SLOT=NAME,...`: each gets the same
    /// snapshots as the slot's active plugin and its verdicts are only
    /// compared (a JobSet's `policy.jobset.dev/<slot>-shadow` annotation
    /// comes first).
    #[arg(
        long = "shadow-plugin",
        value_delimiter = ',',
        value_name = "SLOT=NAME,..."
    )]
    pub shadow_plugins: Vec<String>,
    /// Record every policy decision (inputs, verdict, plugin, JobSet,
    /// time) for `jobset policy replay`: as YAML files in this folder, or
    /// `log` for one JSON line each in the log (target jobset::decision).
    #[arg(long, value_name = "DIR|log")]
    pub record_decisions: Option<String>,
    /// Feature gates: `Name=true|false,...` (upstream names).
    #[arg(long, value_delimiter = ',')]
    pub feature_gates: Vec<String>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub webhook: crate::webhook_args::WebhookArgs,
}

/// The default plugins from the builtins, plus whatever ConfigMaps in
/// `namespace` (and, with `namespace_plugins`, JobSet namespaces) add;
/// shared with `jobset sim serve`.
pub fn plugin_registry(
    namespace: &str,
    namespace_plugins: bool,
    trust: jobset_policy::trust::Trust,
) -> Result<Arc<Registry>, Failure> {
    let mut config = RegistryConfig::new(namespace);
    config.namespace_plugins = namespace_plugins;
    config.trust = trust;
    registry_with(config, Default::default())
}

/// The registry of `config`, with the default plugins built in, in a
/// runtime with `limits`.
pub fn registry_with(
    config: RegistryConfig,
    limits: jobset_policy::Limits,
) -> Result<Arc<Registry>, Failure> {
    let runtime = Runtime::new(limits)
        .map_err(|e| Failure::Internal(format!("starting the Wasm runtime: {e}")))?;
    let registry = Registry::new(runtime, config)
        .map_err(|e| Failure::Internal(format!("loading the default plugins: {e}")))?;
    Ok(Arc::new(registry))
}

/// Applies `Name=true|false` switches to the default gates (all off).
/// Names are upstream's; an unknown name is refused, as upstream does.
pub fn feature_gates(switches: &[String]) -> Result<Vec<String>, Failure> {
    let mut gates = ControllerConfig::default().feature_gates;
    for s in switches.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, value) = s.split_once('=').unwrap_or((s, "true"));
        let name = name.trim();
        // The spellings Go's strconv.ParseBool takes, as upstream's flag does.
        let on = match value.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            v => {
                return Err(bad_input(format!(
                    "--feature-gates {s:?}: value {v:?} is not true or false"
                )));
            }
        };
        if !jobset_api::KNOWN_GATES.contains(&name) {
            return Err(bad_input(format!(
                "--feature-gates {s:?}: unknown gate {name:?}; known gates are {}",
                jobset_api::KNOWN_GATES.join(", ")
            )));
        }
        gates.retain(|g| g != name);
        if on {
            gates.push(name.to_string());
        }
    }
    Ok(gates)
}

/// Runs the controller with the default plugins and the plugin registry
/// on `client` until `shutdown`; shared by `jobset controller` and
/// `jobset sim serve --controller`.
pub async fn run_wired(
    client: Client,
    config: ControllerConfig,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let engine: Arc<dyn PolicyEngine> = registry.clone();
    let plugins: Arc<dyn PluginConfigMaps> = registry;
    run_controller(client, config, engine, Some(plugins), metrics, shutdown).await;
}

pub(crate) async fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => {
            let shown = p.display();
            let kc = Kubeconfig::read_from(p)
                .map_err(|e| bad_input(format!("--kubeconfig {shown}: {e}")))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| bad_input(format!("--kubeconfig {shown}: {e}")))
        }
        None => Config::infer().await.map_err(|e| {
            bad_input(format!(
                "no cluster to talk to (KUBECONFIG, ~/.kube/config, in-cluster): {e}"
            ))
        }),
    }
}

/// Waits until the API server answers, retrying with backoff (1 s doubling
/// to 30 s) and logging each failure; `false` if told to stop first.
async fn wait_for_api(
    client: &Client,
    url: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut pause = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return false;
        }
        match client.apiserver_version().await {
            Ok(v) => {
                tracing::info!(server = %url, version = %v.git_version, "API server reachable");
                return true;
            }
            Err(e) => {
                tracing::warn!(server = %url, error = %e, retry_in = ?pause, "API server unreachable; retrying");
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|v| *v) => return false,
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; ctrl-c only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop requested");
}

/// Runs `jobset controller`.
pub fn run(args: ControllerArgs) -> Result<(), Failure> {
    let gates = feature_gates(&args.feature_gates)?;
    let trust =
        crate::policy_cmd::trust_from(&args.trusted_plugin_keys, &args.allowed_plugin_digests)?;
    if args.concurrency == 0 {
        return Err(bad_input("--concurrency must be at least 1".to_string()));
    }
    let rt = crate::threads::server_runtime(args.worker_threads)?;
    rt.block_on(async move {
        let config = load_config(&args.kubeconfig).await?;
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| bad_input(format!("cannot build a client for {url}: {e}")))?;
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::default());
        if args.metrics_addr == args.health_addr {
            let both = Endpoints {
                metrics: Some(metrics.clone()),
                health: Some(health.clone()),
            };
            bind(args.metrics_addr, "--metrics-addr", both).await?;
        } else {
            let m = Endpoints {
                metrics: Some(metrics.clone()),
                health: None,
            };
            let h = Endpoints {
                metrics: None,
                health: Some(health.clone()),
            };
            bind(args.metrics_addr, "--metrics-addr", m).await?;
            bind(args.health_addr, "--health-addr", h).await?;
        }
        // Compiling the default plugins takes a moment: after the
        // endpoints are up, so that /healthz answers meanwhile.
        let mut registry_config = RegistryConfig::new(&args.plugin_namespace);
        registry_config.namespace_plugins = args.namespace_plugins;
        registry_config.trust = trust;
        registry_config.max_plugins_per_namespace = args.max_plugins_per_namespace;
        registry_config.compile_on_demand = args.compile_plugins_on_demand;
        for spec in args.shadow_plugins.iter().filter(|s| !s.trim().is_empty()) {
            let (slot, name) = spec
                .split_once('=')
                .and_then(|(slot, name)| Some((jobset_policy::Slot::parse(slot.trim())?, name.trim())))
                .filter(|(_, name)| !name.is_empty())
                .ok_or_else(|| {
                    bad_input(format!(
                        "--shadow-plugin {spec:?}: expected SLOT=NAME with SLOT startup, outcome or placement"
                    ))
                })?;
            registry_config.shadows.insert(slot, name.to_string());
        }
        registry_config.compile_deadline = Duration::from_millis(args.plugin_compile_deadline_ms);
        let limits = jobset_policy::Limits {
            max_compiled: args.max_compiled_plugins,
            max_compiled_bytes: args.max_compiled_plugin_mib << 20,
            ..Default::default()
        };
        let registry = registry_with(registry_config, limits)?;
        match args.record_decisions.as_deref() {
            None => {}
            Some("log") => registry
                .record_decisions(Some(Arc::new(jobset_policy::recording::LogSink))),
            Some(dir) => {
                let sink = jobset_policy::recording::DirectorySink::new(dir)
                    .map_err(|e| bad_input(format!("--record-decisions: {e}")))?;
                registry.record_decisions(Some(Arc::new(sink)));
            }
        }
        if args.memory_trim_interval_s > 0 {
            let interval = Duration::from_secs(args.memory_trim_interval_s);
            tokio::spawn(crate::memory_trim::every(interval));
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            stop_tx.send_replace(true);
        });
        let rx = stop_rx.clone();
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        if !wait_for_api(&client, &url, &stop_rx).await {
            return Ok(());
        }
        // Every replica serves the webhooks, leader or not.
        if let Some(hooks) = args.webhook.config(&gates) {
            let hook_client = client.clone();
            let stop = stopped();
            tokio::spawn(async move {
                if let Err(e) = jobset_controller::webhook::serve(hooks, hook_client, stop).await {
                    tracing::error!(error = %e, "admission webhooks not served");
                }
            });
        }
        let controller_config = ControllerConfig {
            concurrency: args.concurrency,
            feature_gates: gates,
            health: health.clone(),
            // Without namespace plugins, ConfigMaps are read in one
            // namespace only, so the ClusterRole needs no ConfigMap rule.
            plugin_watch_namespace: (!args.namespace_plugins).then(|| args.plugin_namespace.clone()),
            status_interval: Duration::from_millis(args.status_interval_ms),
            failed_pods_per_job: args.failed_pods_per_job.max(1),
            ..Default::default()
        };
        if !args.leader_elect {
            run_wired(client, controller_config, registry, metrics, stopped()).await;
            tracing::info!("controller stopped");
            return Ok(());
        }
        let identity = leader::default_identity();
        let mut lc = LeaderConfig::new(&args.lease_namespace, &identity);
        lc.lease_name = args.lease_name.clone();
        let mut elector = LeaderElector::new(client.clone(), lc, controller_config.clock.clone())
            .with_health(health);
        tracing::info!(%identity, lease = %args.lease_name, namespace = %args.lease_namespace, "waiting for the leader Lease");
        run_with_leader_election(&mut elector, stopped(), move |stop| {
            run_wired(client, controller_config, registry, metrics, stop)
        })
        .await
        .map_err(|e| Failure::Internal(format!("{e}; exiting so that a fresh process stands again")))?;
        tracing::info!("controller stopped");
        Ok(())
    })
}

async fn bind(addr: SocketAddr, flag: &str, endpoints: Endpoints) -> Result<(), Failure> {
    let bound = http_server::serve(addr, endpoints)
        .await
        .map_err(|e| bad_input(format!("{flag} {addr}: {e}")))?;
    tracing::info!(address = %bound, "{} listening", flag.trim_start_matches("--"));
    Ok(())
}
