//! The plugin registry: loads plugins from ConfigMaps (label
//! `policy.jobset.dev/plugin`), verifies and compiles them, swaps them in
//! atomically (the last good version stays when an update is rejected), and
//! picks the plugin of each JobSet and slot: the controller's default, then
//! the JobSet's `policy.jobset.dev/<slot>` annotation; a JobSet-namespace
//! plugin before a cluster-wide one. Failure modes and the circuit breaker
//! apply here. Call [`Registry::apply_configmap`] from the ConfigMap watch,
//! never from a reconcile: it compiles.

use crate::breaker::{BreakerConfig, Breakers};
use crate::builtin;
use crate::engine::{Decision, PolicyEngine};
use crate::error::{ErrorKind, LoadError, PolicyError};
use crate::plugin::WasmPlugin;
use crate::runtime::{Runtime, sha256_hex};
use crate::snapshot::{
    JobPlacement, OutcomeVerdict, PlacementRequest, Slot, Snapshot, StartupVerdict,
};
use crate::trust::{SIGNATURE_ANNOTATION, Trust};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

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
}

/// The default of [`RegistryConfig::max_plugins_per_namespace`].
pub const DEFAULT_MAX_PLUGINS_PER_NAMESPACE: usize = 16;

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
        }
    }
}

/// A plugin in force.
#[derive(Debug, Clone)]
struct Entry {
    plugin: WasmPlugin,
    config: String,
}

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
}

/// Plugins in force, and selection per JobSet and slot.
pub struct Registry {
    runtime: Runtime,
    config: RegistryConfig,
    plugins: RwLock<HashMap<Key, Arc<Entry>>>,
    /// ConfigMap `namespace/name` to the key it provides.
    sources: RwLock<HashMap<String, Key>>,
    builtins: HashMap<Slot, WasmPlugin>,
    /// The sha256 of the built-in defaults: trusted as the binary is.
    builtin_digests: Vec<String>,
    breakers: Breakers,
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
            runtime,
            breakers: Breakers::new(config.breaker),
            config,
            plugins: RwLock::new(HashMap::new()),
            sources: RwLock::new(HashMap::new()),
            builtins,
            builtin_digests,
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
        let result = self.runtime.load(&name, bytes).and_then(|plugin| {
            plugin.validate_config(&config)?;
            Ok(plugin)
        });
        let plugin = match result {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(configmap = %format!("{namespace}/{cm_name}"), error = %e,
                    "policy plugin update rejected; the previous version stays in force");
                return Err(e);
            }
        };
        let key: Key = (scope.clone(), name.clone());
        let applied = Applied {
            name,
            id: plugin.id().to_string(),
            scope,
        };
        if let Ok(mut plugins) = self.plugins.write() {
            plugins.insert(key.clone(), Arc::new(Entry { plugin, config }));
        }
        if let Ok(mut sources) = self.sources.write() {
            sources.insert(format!("{namespace}/{cm_name}"), key);
        }
        // A fixed configuration keeps the plugin's id (its bytes did not
        // change): without this the fix would wait out the open circuit.
        self.breakers.reset(&applied.id);
        tracing::info!(plugin = %applied.id, "policy plugin in force");
        Ok(applied)
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
        let plugins = self.plugins.read().ok();
        let found = plugins.as_ref().and_then(|p| {
            let local = self
                .config
                .namespace_plugins
                .then(|| p.get(&(Some(namespace.to_string()), name.clone())))
                .flatten();
            local.or_else(|| p.get(&(None, name.clone()))).cloned()
        });
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

    fn decide<T>(
        &self,
        snapshot: &Snapshot,
        slot: Slot,
        call: impl Fn(&WasmPlugin, &Snapshot) -> Result<T, PolicyError>,
    ) -> Result<Decision<T>, PolicyError> {
        let annotations: BTreeMap<String, String> = snapshot
            .jobset
            .annotations
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let attempt = self
            .resolve(&snapshot.jobset.namespace, &annotations, slot)
            .and_then(|(plugin, config)| {
                if let Err((failures, retry_in)) = self.breakers.check(plugin.id()) {
                    return Err(PolicyError {
                        plugin: plugin.id().to_string(),
                        slot,
                        kind: ErrorKind::CircuitOpen { failures, retry_in },
                    });
                }
                let mut input = snapshot.clone();
                input.config = config;
                let result = call(&plugin, &input);
                self.breakers.record(plugin.id(), result.is_ok());
                result.map(|verdict| Decision {
                    verdict,
                    plugin: plugin.id().to_string(),
                    fallback_from: None,
                })
            });
        let error = match attempt {
            Ok(d) => return Ok(d),
            Err(e) => e,
        };
        let mode = self
            .config
            .failure_modes
            .get(&slot)
            .copied()
            .unwrap_or_default();
        match (mode, self.builtins.get(&slot)) {
            (FailureMode::Fallback, Some(default)) if error.plugin != default.id() => {
                let mut input = snapshot.clone();
                input.config = String::new();
                let verdict = call(default, &input)?;
                Ok(Decision {
                    verdict,
                    plugin: default.id().to_string(),
                    fallback_from: Some(error),
                })
            }
            _ => Err(error),
        }
    }
}

impl PolicyEngine for Registry {
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError> {
        self.decide(snapshot, Slot::Startup, |p, s| p.startup(s))
    }

    fn decide_outcome(&self, snapshot: &Snapshot) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        self.decide(snapshot, Slot::Outcome, |p, s| p.outcome(s))
    }

    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError> {
        self.decide(snapshot, Slot::Placement, |p, s| p.placement(s, request))
    }
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
