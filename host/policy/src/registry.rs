//! The plugin registry: loads plugins from ConfigMaps (label
//! `policy.jobset.dev/plugin`), verifies and compiles them, swaps them in
//! atomically (the last good version stays when an update is rejected), and
//! picks the plugin of each JobSet and slot: the controller's default, then
//! the JobSet's `policy.jobset.dev/<slot>` annotation; a JobSet-namespace
//! plugin before a cluster-wide one. Failure modes and the circuit breaker
//! apply here. Call [`Registry::apply_configmap`] from the ConfigMap watch,
//! never from a reconcile: it compiles, unless
//! [`RegistryConfig::compile_on_demand`] is set. Then a ConfigMap is only
//! verified when it arrives, and its plugin is compiled on the compile
//! thread when a JobSet first selects it (or at once when it updates a
//! plugin already compiled); decisions that need it meanwhile fail with
//! [`ErrorKind::Compiling`], and [`Registry::on_compiled`] says when each
//! compile ends.

use crate::breaker::{BreakerConfig, Breakers};
use crate::builtin;
use crate::compile::{Compiler, Job};
use crate::engine::{Decision, PolicyEngine};
use crate::error::{ErrorKind, LoadError, PolicyError};
use crate::plugin::WasmPlugin;
use crate::recording::{DecisionSink, Recording};
use crate::runtime::{Runtime, sha256_hex};
use crate::shadow::{ShadowCall, ShadowReport, ShadowResult, Shadows, shadow_annotation};
use crate::snapshot::{
    InPlaceRestart, JobPlacement, JobPods, OutcomeVerdict, PlacementRequest, Slot, Snapshot,
    StartupVerdict,
};
use crate::trust::{SIGNATURE_ANNOTATION, Trust};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Label that marks a ConfigMap as a plugin; its value is the plugin name.
pub const PLUGIN_LABEL: &str = "policy.jobset.dev/plugin";
/// Optional annotation pinning the plugin's sha256 (lowercase hex).
pub const SHA256_ANNOTATION: &str = "policy.jobset.dev/sha256";
/// JobSet annotation carrying the plugin configuration (JSON).
pub const CONFIG_ANNOTATION: &str = "policy.jobset.dev/config";
/// `binaryData` key of the component.
pub const WASM_KEY: &str = "plugin.wasm";
/// `data` (or `binaryData`) key of the configuration.
pub const CONFIG_KEY: &str = "config.json";

/// The JobSet annotation that selects a slot's plugin.
pub fn slot_annotation(slot: Slot) -> String {
    format!("policy.jobset.dev/{slot}")
}

/// What to do when a slot's plugin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Return the error: the controller takes no action for this decision,
    /// sets `PolicyFailed`, and retries with backoff.
    #[default]
    Hold,
    /// Decide with the built-in default plugin instead.
    Fallback,
}

/// The controller's policy configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// ConfigMaps here are cluster-wide.
    pub controller_namespace: String,
    /// Whether ConfigMaps in a JobSet's namespace may serve it.
    pub namespace_plugins: bool,
    /// Plugin name per slot (the built-in defaults when absent).
    pub plugins: HashMap<Slot, String>,
    /// Failure mode per slot (`hold` when absent).
    pub failure_modes: HashMap<Slot, FailureMode>,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Which plugins may run (signatures, allowed digests); open by default.
    pub trust: Trust,
    /// Most plugins one JobSet namespace may put in force (namespace
    /// plugins): a tenant's flood of ConfigMaps is refused past it before
    /// anything is compiled. The controller's namespace has no limit.
    pub max_plugins_per_namespace: usize,
    /// Verify a plugin ConfigMap when it arrives, but compile its plugin
    /// only when a JobSet first selects it, on the compile thread. Off,
    /// [`Registry::apply_configmap`] compiles at once.
    pub compile_on_demand: bool,
    /// A compile on the compile thread that runs longer is abandoned and
    /// its plugin reported as failed.
    pub compile_deadline: Duration,
    /// Shadow plugin per slot for every JobSet (a JobSet's
    /// `policy.jobset.dev/<slot>-shadow` annotation comes first).
    pub shadows: HashMap<Slot, String>,
}

/// The default of [`RegistryConfig::max_plugins_per_namespace`].
pub const DEFAULT_MAX_PLUGINS_PER_NAMESPACE: usize = 16;

/// The default of [`RegistryConfig::compile_deadline`]: far above what a
/// real plugin takes (25-70 ms, 0.4 s in an unoptimised build), below what
/// a component built to be slow takes at the 1 MiB limit (9.8 s measured).
pub const DEFAULT_COMPILE_DEADLINE: Duration = Duration::from_secs(5);

impl RegistryConfig {
    /// Defaults for a controller running in `namespace`.
    pub fn new(namespace: &str) -> Self {
        RegistryConfig {
            controller_namespace: namespace.to_string(),
            namespace_plugins: true,
            plugins: HashMap::new(),
            failure_modes: HashMap::new(),
            breaker: BreakerConfig::default(),
            trust: Trust::default(),
            max_plugins_per_namespace: DEFAULT_MAX_PLUGINS_PER_NAMESPACE,
            compile_on_demand: false,
            compile_deadline: DEFAULT_COMPILE_DEADLINE,
            shadows: HashMap::new(),
        }
    }
}

/// A compiled plugin in force.
#[derive(Debug, Clone)]
struct Entry {
    plugin: WasmPlugin,
    config: String,
}

/// A verified plugin version not compiled yet (compile on demand).
#[derive(Debug, Clone)]
struct Staged {
    digest: String,
    bytes: Arc<[u8]>,
    config: String,
    /// The ConfigMap it came from, `namespace/name`.
    source: String,
    stage: Stage,
}

#[derive(Debug, Clone)]
enum Stage {
    /// Verified; compiled when a JobSet selects it.
    Verified,
    /// Waiting for the compile thread (since then).
    Queued(Instant),
    /// Being compiled (since then).
    Compiling(Instant),
    /// Could not be compiled or loaded; not tried again for these bytes.
    Failed(String),
}

/// One plugin name in one scope: the compiled version in force, and a
/// newer version waiting to be compiled.
#[derive(Debug, Default)]
struct Record {
    in_force: Option<Arc<Entry>>,
    staged: Option<Staged>,
}

/// How a compile on the compile thread ended (compile on demand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileNotice {
    /// The ConfigMap of the plugin, `namespace/name`.
    pub configmap: String,
    /// `name@sha256-prefix` of the version compiled.
    pub plugin: String,
    /// Why it is not in force, when it failed.
    pub error: Option<String>,
}

type Listener = Arc<dyn Fn(&CompileNotice) + Send + Sync>;

/// `None` is cluster-wide; `Some(ns)` serves that namespace only.
type Key = (Option<String>, String);

/// What an accepted ConfigMap put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The plugin name (label value).
    pub name: String,
    /// `name@sha256-prefix` now in force.
    pub id: String,
    /// The namespace it serves, or none for cluster-wide.
    pub scope: Option<String>,
    /// Verified but compiled only when a JobSet selects it.
    pub pending: bool,
}

/// What the plugins cost now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Plugin names from ConfigMaps, compiled or not.
    pub plugins: usize,
    /// Versions verified and not compiled yet (compile on demand).
    pub pending: usize,
    /// Versions queued for or on the compile thread.
    pub compiling: usize,
    /// Versions whose compile failed or was abandoned.
    pub failed: usize,
    /// Compiles abandoned at the deadline so far.
    pub abandoned: u64,
}

/// Plugins in force, and selection per JobSet and slot.
pub struct Registry {
    runtime: Runtime,
    config: RegistryConfig,
    plugins: Arc<RwLock<HashMap<Key, Record>>>,
    /// ConfigMap `namespace/name` to the key it provides.
    sources: RwLock<HashMap<String, Key>>,
    builtins: HashMap<Slot, WasmPlugin>,
    /// The sha256 of the built-in defaults: trusted as the binary is.
    builtin_digests: Vec<String>,
    breakers: Arc<Breakers>,
    compiler: Compiler,
    listener: Arc<RwLock<Option<Listener>>>,
    /// Where every decision is recorded, when set.
    sink: RwLock<Option<Arc<dyn DecisionSink>>>,
    shadows: Shadows,
}

impl Registry {
    /// A registry with the three built-in defaults loaded.
    pub fn new(runtime: Runtime, config: RegistryConfig) -> Result<Registry, LoadError> {
        let mut builtins = HashMap::new();
        let builtin_digests = Slot::ALL
            .iter()
            .map(|s| sha256_hex(builtin::default_bytes(*s)))
            .collect();
        for slot in Slot::ALL {
            let plugin = runtime.load(builtin::default_name(slot), builtin::default_bytes(slot))?;
            builtins.insert(slot, plugin);
        }
        Ok(Registry {
            shadows: Shadows::new(Breakers::new(config.breaker)),
            compiler: Compiler::new(runtime.clone(), config.compile_deadline),
            runtime,
            breakers: Arc::new(Breakers::new(config.breaker)),
            config,
            plugins: Arc::new(RwLock::new(HashMap::new())),
            sources: RwLock::new(HashMap::new()),
            builtins,
            builtin_digests,
            listener: Arc::new(RwLock::new(None)),
            sink: RwLock::new(None),
        })
    }

    /// The runtime the plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// How many plugins from ConfigMaps are in force.
    pub fn plugin_count(&self) -> usize {
        self.plugins.read().map(|p| p.len()).unwrap_or(0)
    }

    /// Plugins by stage, and the compiles abandoned.
    pub fn stats(&self) -> RegistryStats {
        let mut stats = RegistryStats {
            abandoned: self.compiler.abandoned(),
            ..Default::default()
        };
        if let Ok(plugins) = self.plugins.read() {
            stats.plugins = plugins.len();
            for staged in plugins.values().filter_map(|r| r.staged.as_ref()) {
                match staged.stage {
                    Stage::Verified => stats.pending += 1,
                    Stage::Queued(_) | Stage::Compiling(_) => stats.compiling += 1,
                    Stage::Failed(_) => stats.failed += 1,
                }
            }
        }
        stats
    }

    /// Calls `listener` (on the shadow thread, or at once for a shadow
    /// that cannot be resolved) with every shadow decision. Listeners of
    /// different names add up; one set again under its name replaces the
    /// old one (a controller restarted after losing leadership).
    pub fn on_shadow(&self, name: &str, listener: impl Fn(&ShadowReport) + Send + Sync + 'static) {
        self.shadows.set_listener(name, Arc::new(listener));
    }

    /// Waits (at most `limit`) until every shadow call handed out has been
    /// decided and reported; says whether they all were.
    pub fn shadows_settled(&self, limit: Duration) -> bool {
        self.shadows.settled(limit)
    }

    /// Shadow calls dropped because the shadow queue was full.
    pub fn shadow_calls_dropped(&self) -> u64 {
        self.shadows.dropped()
    }

    /// Hands the snapshot of a decision just made to the slot's shadow
    /// plugin, if the JobSet or the controller selects one.
    fn shadow<T: serde::Serialize>(
        &self,
        snapshot: &Snapshot,
        slot: Slot,
        request: Option<&PlacementRequest>,
        pods: &[JobPods],
        in_place: Option<&InPlaceRestart>,
        decided: &Decision<T>,
    ) {
        let Some(name) = self.shadow_name(snapshot, slot) else {
            return;
        };
        let active_verdict = crate::recording::to_value(&decided.verdict);
        let failed = |shadow: String, why: String| ShadowReport {
            jobset: format!("{}/{}", snapshot.jobset.namespace, snapshot.jobset.name),
            uid: snapshot.jobset.uid.clone(),
            attempt: snapshot.jobset.status.restarts,
            at_ms: snapshot.now,
            slot,
            active: decided.plugin.clone(),
            shadow,
            result: ShadowResult::ShadowFailed,
            active_verdict: active_verdict.to_string(),
            shadow_verdict: format!("failed: {why}"),
        };
        let (plugin, config) = match self.find(&snapshot.jobset.namespace, &name, slot) {
            Ok(Some(entry)) => (entry.plugin.clone(), entry.config.clone()),
            Ok(None) => match Slot::ALL
                .into_iter()
                .find(|s| builtin::default_name(*s) == name)
                .and_then(|s| self.builtins.get(&s))
            {
                Some(p) => (p.clone(), String::new()),
                None => {
                    let why = ErrorKind::UnknownPlugin { name: name.clone() }.to_string();
                    self.shadows.report(&failed(name, why));
                    return;
                }
            },
            // Compiling now; it shadows the decisions after.
            Err(e) if matches!(e.kind, ErrorKind::Compiling { .. }) => return,
            Err(e) => {
                self.shadows.report(&failed(e.plugin, e.kind.to_string()));
                return;
            }
        };
        // Nothing to compare: the same plugin, or a shadow that leaves
        // in-place restarts to the default.
        if plugin.id() == decided.plugin || (in_place.is_some() && !plugin.decides_in_place()) {
            return;
        }
        let mut input = snapshot.clone();
        input.config = config;
        self.shadows.submit(ShadowCall {
            plugin,
            input,
            request: request.cloned(),
            pods: pods.to_vec(),
            in_place: in_place.cloned(),
            slot,
            active: decided.plugin.clone(),
            active_verdict,
        });
    }

    /// The shadow plugin named for `slot`: the JobSet's annotation, else
    /// the controller's flag.
    fn shadow_name(&self, snapshot: &Snapshot, slot: Slot) -> Option<String> {
        let annotation = shadow_annotation(slot);
        snapshot
            .jobset
            .annotations
            .iter()
            .find(|kv| kv.key == annotation)
            .map(|kv| kv.value.clone())
            .or_else(|| self.config.shadows.get(&slot).cloned())
    }

    /// Records every decision from now on in `sink` (none: stop).
    pub fn record_decisions(&self, sink: Option<Arc<dyn DecisionSink>>) {
        if let Ok(mut s) = self.sink.write() {
            *s = sink;
        }
    }

    /// Calls `listener` (on the compile thread) each time a compile on
    /// demand ends; replaces any listener set before.
    pub fn on_compiled(&self, listener: impl Fn(&CompileNotice) + Send + Sync + 'static) {
        if let Ok(mut l) = self.listener.write() {
            *l = Some(Arc::new(listener));
        }
    }

    /// The built-in default for a slot.
    pub fn builtin(&self, slot: Slot) -> Option<&WasmPlugin> {
        self.builtins.get(&slot)
    }

    /// Verifies a plugin ConfigMap and puts it in force. On error nothing
    /// changes (the previous version stays) and the error says why, for an
    /// event on the ConfigMap and the log.
    pub fn apply_configmap(&self, cm: &ConfigMap) -> Result<Applied, LoadError> {
        let namespace = cm.metadata.namespace.clone().unwrap_or_default();
        let cm_name = cm.metadata.name.clone().unwrap_or_default();
        let bad = |message: String| LoadError::ConfigMap {
            namespace: namespace.clone(),
            configmap: cm_name.clone(),
            message,
        };
        let name = cm
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PLUGIN_LABEL))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("metadata.labels[{PLUGIN_LABEL}] is missing")))?
            .clone();
        let scope = if namespace == self.config.controller_namespace {
            None
        } else if self.config.namespace_plugins {
            Some(namespace.clone())
        } else {
            return Err(bad(format!(
                "namespace plugins are disabled; put plugin {name} in {}",
                self.config.controller_namespace
            )));
        };
        let bytes = cm
            .binary_data
            .as_ref()
            .and_then(|b| b.get(WASM_KEY))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| bad(format!("binaryData[{WASM_KEY}] is missing")))?;
        let config = config_text(cm).map_err(&bad)?;
        if let Some(pinned) = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SHA256_ANNOTATION))
        {
            let actual = sha256_hex(bytes);
            if !actual.eq_ignore_ascii_case(pinned.trim()) {
                return Err(LoadError::PinMismatch {
                    name,
                    pinned: pinned.clone(),
                    actual,
                });
            }
        }
        if let Some(ns) = &scope {
            let key: Key = (scope.clone(), name.clone());
            let (held, replaces) = self
                .plugins
                .read()
                .map(|p| {
                    (
                        p.keys().filter(|(s, _)| s.as_ref() == Some(ns)).count(),
                        p.contains_key(&key),
                    )
                })
                .unwrap_or((0, false));
            if !replaces && held >= self.config.max_plugins_per_namespace {
                return Err(bad(format!(
                    "namespace {ns} already has {held} plugins in force, the most allowed \
                     (--max-plugins-per-namespace); plugin {name} is not loaded"
                )));
            }
        }
        let digest = sha256_hex(bytes);
        if !self.builtin_digests.contains(&digest) {
            let signature = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .map(String::as_str);
            self.config
                .trust
                .check(&digest, signature)
                .map_err(|why| bad(format!("plugin {name} may not run here: {why}")))?;
        }
        let key: Key = (scope.clone(), name.clone());
        let source = format!("{namespace}/{cm_name}");
        // Code the runtime has compiled already (the built-in defaults
        // that deploy/ ships as ConfigMaps, a version seen before) costs
        // no compile: it is put in force at once, as it would be eagerly.
        if self.config.compile_on_demand && !self.runtime.is_compiled(bytes) {
            return self.stage(key, source, &digest, bytes, config);
        }
        let result = self.runtime.load(&name, bytes).and_then(|plugin| {
            plugin.validate_config(&config)?;
            Ok(plugin)
        });
        let plugin = match result {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(configmap = %source, error = %e,
                    "policy plugin update rejected; the previous version stays in force");
                return Err(e);
            }
        };
        let applied = Applied {
            name,
            id: plugin.id().to_string(),
            scope,
            pending: false,
        };
        if let Ok(mut plugins) = self.plugins.write() {
            let record = plugins.entry(key.clone()).or_default();
            record.in_force = Some(Arc::new(Entry { plugin, config }));
            record.staged = None;
        }
        if let Ok(mut sources) = self.sources.write() {
            sources.insert(source, key);
        }
        // A fixed configuration keeps the plugin's id (its bytes did not
        // change): without this the fix would wait out the open circuit.
        self.breakers.reset(&applied.id);
        tracing::info!(plugin = %applied.id, "policy plugin in force");
        Ok(applied)
    }

    /// Compile on demand: checks that the bytes are a valid component and
    /// keeps them to compile when a JobSet selects the plugin. An update
    /// of a plugin already compiled (one JobSets use) is compiled at once,
    /// the version in force staying until it is done. The same bytes and
    /// configuration again change nothing, and a version that failed is
    /// not tried again.
    fn stage(
        &self,
        key: Key,
        source: String,
        digest: &str,
        bytes: &[u8],
        config: String,
    ) -> Result<Applied, LoadError> {
        let (scope, name) = key.clone();
        let limit = self.runtime.limits().max_plugin_bytes;
        if bytes.len() > limit {
            return Err(LoadError::TooLarge {
                name,
                size: bytes.len(),
                limit,
            });
        }
        verify_component(&name, bytes)?;
        let applied = Applied {
            name: name.clone(),
            id: plugin_id(&name, digest),
            scope,
            pending: true,
        };
        if let Ok(mut sources) = self.sources.write() {
            sources.insert(source.clone(), key.clone());
        }
        let Ok(mut plugins) = self.plugins.write() else {
            return Ok(applied);
        };
        let record = plugins.entry(key.clone()).or_default();
        if let Some(entry) = &record.in_force
            && entry.plugin.info().sha256 == digest
            && entry.config == config
        {
            record.staged = None;
            return Ok(Applied {
                pending: false,
                ..applied
            });
        }
        if let Some(staged) = &record.staged
            && staged.digest == digest
            && staged.config == config
        {
            return match &staged.stage {
                Stage::Failed(why) => Err(LoadError::Rejected {
                    name,
                    message: why.clone(),
                }),
                _ => Ok(applied),
            };
        }
        record.staged = Some(Staged {
            digest: digest.to_string(),
            bytes: Arc::from(bytes),
            config,
            source,
            stage: Stage::Verified,
        });
        let in_use = record.in_force.is_some();
        drop(plugins);
        if in_use {
            self.start_compile(&key);
        }
        tracing::info!(plugin = %applied.id, compile_now = in_use, "policy plugin verified");
        Ok(applied)
    }

    /// Queues the staged version of `key` for the compile thread, unless
    /// it is queued, compiling or failed already.
    fn start_compile(&self, key: &Key) {
        let job = {
            let Ok(mut plugins) = self.plugins.write() else {
                return;
            };
            let Some(staged) = plugins.get_mut(key).and_then(|r| r.staged.as_mut()) else {
                return;
            };
            if !matches!(staged.stage, Stage::Verified) {
                return;
            }
            staged.stage = Stage::Queued(Instant::now());
            let version = (staged.digest.clone(), staged.config.clone());
            let source = staged.source.clone();
            let id = plugin_id(&key.1, &staged.digest);
            let started = {
                let plugins = self.plugins.clone();
                let (key, version) = (key.clone(), version.clone());
                move || {
                    if let Ok(mut plugins) = plugins.write()
                        && let Some(staged) = current(&mut plugins, &key, &version)
                    {
                        staged.stage = Stage::Compiling(Instant::now());
                    }
                }
            };
            let done = {
                let plugins = self.plugins.clone();
                let breakers = self.breakers.clone();
                let listener = self.listener.clone();
                let key = key.clone();
                move |result: Result<WasmPlugin, String>| {
                    let error = {
                        let Ok(mut guard) = plugins.write() else {
                            return;
                        };
                        if current(&mut guard, &key, &version).is_none() {
                            // Superseded or deleted meanwhile.
                            return;
                        }
                        let Some(record) = guard.get_mut(&key) else {
                            return;
                        };
                        match result {
                            Ok(plugin) => {
                                breakers.reset(plugin.id());
                                tracing::info!(plugin = %plugin.id(), "policy plugin compiled and in force");
                                record.in_force = Some(Arc::new(Entry {
                                    plugin,
                                    config: version.1.clone(),
                                }));
                                record.staged = None;
                                None
                            }
                            Err(why) => {
                                tracing::warn!(plugin = %id, configmap = %source, error = %why,
                                    "policy plugin not compiled; the previous version, if any, stays in force");
                                if let Some(staged) = record.staged.as_mut() {
                                    staged.stage = Stage::Failed(why.clone());
                                }
                                Some(why)
                            }
                        }
                    };
                    let notice = CompileNotice {
                        configmap: source,
                        plugin: id,
                        error,
                    };
                    let listener = listener.read().ok().and_then(|l| l.clone());
                    if let Some(listener) = listener {
                        listener(&notice);
                    }
                }
            };
            Job {
                name: key.1.clone(),
                bytes: staged.bytes.clone(),
                config: staged.config.clone(),
                started: Box::new(started),
                done: Box::new(done),
            }
        };
        self.compiler.submit(job);
    }

    /// Forgets the plugin a deleted ConfigMap provided.
    pub fn delete_configmap(&self, namespace: &str, name: &str) {
        let key = self
            .sources
            .write()
            .ok()
            .and_then(|mut s| s.remove(&format!("{namespace}/{name}")));
        if let (Some(key), Ok(mut plugins)) = (key, self.plugins.write()) {
            plugins.remove(&key);
        }
    }

    /// The plugin a JobSet uses for a slot, with the configuration to pass.
    pub fn resolve(
        &self,
        namespace: &str,
        annotations: &BTreeMap<String, String>,
        slot: Slot,
    ) -> Result<(WasmPlugin, String), PolicyError> {
        let name = annotations
            .get(&slot_annotation(slot))
            .or_else(|| self.config.plugins.get(&slot))
            .cloned()
            .unwrap_or_else(|| builtin::default_name(slot).to_string());
        let found = self.find(namespace, &name, slot)?;
        let (plugin, config) = match found {
            Some(entry) => (entry.plugin.clone(), entry.config.clone()),
            None => match Slot::ALL
                .into_iter()
                .find(|s| builtin::default_name(*s) == name)
                .and_then(|s| self.builtins.get(&s))
            {
                Some(p) => (p.clone(), String::new()),
                None => {
                    return Err(PolicyError {
                        plugin: name.clone(),
                        slot,
                        kind: ErrorKind::UnknownPlugin { name },
                    });
                }
            },
        };
        let config = annotations
            .get(CONFIG_ANNOTATION)
            .cloned()
            .unwrap_or(config);
        Ok((plugin, config))
    }

    /// The compiled plugin `name` serving `namespace` (its own before a
    /// cluster-wide one), or none when no ConfigMap provides it. A version
    /// not compiled yet is queued for the compile thread, and the decision
    /// waits for it ([`ErrorKind::Compiling`]); one that failed to compile
    /// fails the decision with the reason.
    fn find(
        &self,
        namespace: &str,
        name: &str,
        slot: Slot,
    ) -> Result<Option<Arc<Entry>>, PolicyError> {
        let local: Key = (Some(namespace.to_string()), name.to_string());
        let cluster: Key = (None, name.to_string());
        let (key, stage, digest) = {
            let Ok(plugins) = self.plugins.read() else {
                return Ok(None);
            };
            let found = self
                .config
                .namespace_plugins
                .then(|| plugins.get_key_value(&local))
                .flatten()
                .or_else(|| plugins.get_key_value(&cluster));
            let Some((key, record)) = found else {
                return Ok(None);
            };
            if let Some(entry) = &record.in_force {
                return Ok(Some(entry.clone()));
            }
            let Some(staged) = &record.staged else {
                return Ok(None);
            };
            (key.clone(), staged.stage.clone(), staged.digest.clone())
        };
        let plugin = plugin_id(name, &digest);
        let kind = match stage {
            Stage::Verified => {
                self.start_compile(&key);
                ErrorKind::Compiling {
                    waited: Duration::ZERO,
                }
            }
            Stage::Queued(since) | Stage::Compiling(since) => ErrorKind::Compiling {
                waited: since.elapsed(),
            },
            Stage::Failed(message) => ErrorKind::NotLoaded { message },
        };
        Err(PolicyError { plugin, slot, kind })
    }

    fn decide<T: serde::Serialize>(
        &self,
        snapshot: &Snapshot,
        slot: Slot,
        request: Option<&PlacementRequest>,
        pods: &[JobPods],
        in_place: Option<&InPlaceRestart>,
        call: impl Fn(&WasmPlugin, &Snapshot) -> Result<T, PolicyError>,
    ) -> Result<Decision<T>, PolicyError> {
        let sink = self.sink.read().ok().and_then(|s| s.clone());
        // What the deciding plugin saw and who it was, for the recording.
        let mut seen: Option<(Snapshot, String)> = None;
        let mut run = |plugin: &WasmPlugin, config: String| {
            let mut input = snapshot.clone();
            input.config = config;
            let result = call(plugin, &input);
            if sink.is_some() {
                seen = Some((input, plugin.info().sha256.clone()));
            }
            result
        };
        let annotations = annotations_of(snapshot);
        let attempt = self
            .resolve(&snapshot.jobset.namespace, &annotations, slot)
            .map(|(plugin, config)| match self.builtins.get(&slot) {
                // A plugin older than 0.3.0 has no `decide-in-place`: the
                // built-in default decides in-place restarts for it, as
                // upstream would, and is named as the decider.
                Some(default) if in_place.is_some() && !plugin.decides_in_place() => {
                    (default.clone(), String::new())
                }
                _ => (plugin, config),
            })
            .and_then(|(plugin, config)| {
                if let Err((failures, retry_in)) = self.breakers.check(plugin.id()) {
                    return Err(PolicyError {
                        plugin: plugin.id().to_string(),
                        slot,
                        kind: ErrorKind::CircuitOpen { failures, retry_in },
                    });
                }
                let result = run(&plugin, config);
                self.breakers.record(plugin.id(), result.is_ok());
                result.map(|verdict| Decision {
                    verdict,
                    plugin: plugin.id().to_string(),
                    fallback_from: None,
                })
            });
        let mode = self
            .config
            .failure_modes
            .get(&slot)
            .copied()
            .unwrap_or_default();
        let decided = match attempt {
            Ok(d) => Ok(d),
            Err(error) => match (mode, self.builtins.get(&slot)) {
                // A plugin being compiled is waited for, not replaced.
                (_, _) if matches!(error.kind, ErrorKind::Compiling { .. }) => Err(error),
                (FailureMode::Fallback, Some(default)) if error.plugin != default.id() => {
                    run(default, String::new()).map(|verdict| Decision {
                        verdict,
                        plugin: default.id().to_string(),
                        fallback_from: Some(error),
                    })
                }
                _ => Err(error),
            },
        };
        if let Ok(d) = &decided {
            self.shadow(snapshot, slot, request, pods, in_place, d);
        }
        if let (Some(sink), Some((input, sha256))) = (sink, seen) {
            let plugin = match &decided {
                Ok(d) => d.plugin.clone(),
                Err(e) => e.plugin.clone(),
            };
            sink.record(&Recording {
                contract: crate::recording::CONTRACT.to_string(),
                time: now_rfc3339(),
                jobset: format!("{}/{}", input.jobset.namespace, input.jobset.name),
                plugin,
                sha256,
                slot,
                snapshot: input,
                request: request.cloned(),
                pods: pods.to_vec(),
                in_place: in_place.cloned(),
                verdict: decided
                    .as_ref()
                    .ok()
                    .map(|d| crate::recording::to_value(&d.verdict)),
                error: decided.as_ref().err().map(|e| e.to_string()),
            });
        }
        decided
    }
}

impl PolicyEngine for Registry {
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError> {
        self.decide(snapshot, Slot::Startup, None, &[], None, |p, s| {
            p.startup(s)
        })
    }

    fn decide_outcome(
        &self,
        snapshot: &Snapshot,
        pods: &[JobPods],
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        self.decide(snapshot, Slot::Outcome, None, pods, None, |p, s| {
            p.outcome(s, pods)
        })
    }

    fn decide_in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        self.decide(snapshot, Slot::Outcome, None, &[], Some(restart), |p, s| {
            p.in_place(s, restart)
        })
    }

    fn wants(&self, snapshot: &Snapshot, slot: Slot, input: &str) -> bool {
        let annotations = annotations_of(snapshot);
        let wanted = |plugin: &WasmPlugin| plugin.exports(slot) && plugin.wants(input);
        let primary = self
            .resolve(&snapshot.jobset.namespace, &annotations, slot)
            .is_ok_and(|(p, _)| wanted(&p));
        // A shadow plugin that asks is given the facts too.
        primary
            || self
                .shadow_name(snapshot, slot)
                .and_then(|name| self.find(&snapshot.jobset.namespace, &name, slot).ok())
                .flatten()
                .is_some_and(|entry| wanted(&entry.plugin))
    }

    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError> {
        self.decide(
            snapshot,
            Slot::Placement,
            Some(request),
            &[],
            None,
            |p, s| p.placement(s, request),
        )
    }
}

/// The JobSet's annotations, as plugin selection reads them.
fn annotations_of(snapshot: &Snapshot) -> BTreeMap<String, String> {
    snapshot
        .jobset
        .annotations
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

/// `config.json` from `data` or `binaryData`; empty when absent.
fn config_text(cm: &ConfigMap) -> Result<String, String> {
    if let Some(text) = cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) {
        return Ok(text.clone());
    }
    match cm.binary_data.as_ref().and_then(|b| b.get(CONFIG_KEY)) {
        Some(bytes) => String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("binaryData[{CONFIG_KEY}] is not UTF-8")),
        None => Ok(String::new()),
    }
}

/// `name@sha256-prefix`, as [`WasmPlugin::id`] names a loaded plugin.
fn plugin_id(name: &str, digest: &str) -> String {
    format!("{name}@{}", &digest[..digest.len().min(12)])
}

/// The staged version of `key`, if it is still `version` (digest and
/// configuration) and has not failed.
fn current<'a>(
    plugins: &'a mut HashMap<Key, Record>,
    key: &Key,
    version: &(String, String),
) -> Option<&'a mut Staged> {
    plugins
        .get_mut(key)
        .and_then(|r| r.staged.as_mut())
        .filter(|s| {
            s.digest == version.0 && s.config == version.1 && !matches!(s.stage, Stage::Failed(_))
        })
}

/// That `bytes` are a valid WebAssembly component, checked without
/// compiling (linear in its size).
fn verify_component(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    use wasmtime::wasmparser::{Parser, Validator, WasmFeatures};
    let not = |message: String| LoadError::Compile {
        name: name.to_string(),
        message,
    };
    if !Parser::is_component(bytes) {
        return Err(not("not a WebAssembly component".to_string()));
    }
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| not(format!("not a valid component: {e}")))
}

/// The wall-clock time, RFC 3339 (a recording's `time`).
fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
