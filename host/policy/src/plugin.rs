//! One loaded plugin: its prepared instance template and export indices,
//! and the typed calls. Every call gets a fresh Store (no state survives a
//! decision), the epoch deadline and the memory cap; a failure comes back
//! as a [`PolicyError`] naming the plugin and slot.

use crate::bindings::{v0_1_0, v0_2_0, v0_3_0};
use crate::error::{ErrorKind, LoadError, PolicyError};
use crate::lower::Fast;
use crate::runtime::RuntimeInner;
use crate::sandbox::{HostState, Limiter};
use crate::snapshot::{
    InPlaceRestart, JobPlacement, JobPods, OutcomeVerdict, PlacementRequest, PluginError, Slot,
    Snapshot, StartupVerdict,
};
use crate::{offload, validate};
use std::sync::Arc;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};
use wasmtime::{Store, Trap};

/// `meta`, at the contract version the plugin speaks.
pub(crate) enum Meta {
    V0_1(v0_1_0::exports::jobset::policy::meta::GuestIndices),
    V0_2(v0_2_0::exports::jobset::policy::meta::GuestIndices),
    V0_3(v0_3_0::exports::jobset::policy::meta::GuestIndices),
}

/// The optional inputs (`meta.plugin-info.inputs`) this host collects.
pub const KNOWN_INPUTS: &[&str] = &[POD_FACTS];

/// The input that gives the outcome slot the failed pods of failed Jobs.
pub const POD_FACTS: &str = "pod-facts";

/// What `meta.info()` returned, whatever the version.
struct Identity {
    name: String,
    version: String,
    interfaces: Vec<String>,
    inputs: Vec<String>,
}

impl Meta {
    /// The contract version of `meta`, and so of every slot exported.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Meta::V0_1(_) => "0.1.0",
            Meta::V0_2(_) => "0.2.0",
            Meta::V0_3(_) => "0.3.0",
        }
    }

    fn info(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<Identity> {
        Ok(match self {
            Meta::V0_1(m) => {
                let i = m.load(&mut *store, instance)?.call_info(&mut *store)?;
                Identity {
                    name: i.name,
                    version: i.version,
                    interfaces: i.interfaces,
                    inputs: Vec::new(),
                }
            }
            Meta::V0_2(m) => {
                let i = m.load(&mut *store, instance)?.call_info(&mut *store)?;
                Identity {
                    name: i.name,
                    version: i.version,
                    interfaces: i.interfaces,
                    inputs: i.inputs,
                }
            }
            Meta::V0_3(m) => {
                let i = m.load(&mut *store, instance)?.call_info(&mut *store)?;
                Identity {
                    name: i.name,
                    version: i.version,
                    interfaces: i.interfaces,
                    inputs: i.inputs,
                }
            }
        })
    }

    fn validate_config(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Meta::V0_1(m) => m
                .load(&mut *store, instance)?
                .call_validate_config(&mut *store, config),
            Meta::V0_2(m) => m
                .load(&mut *store, instance)?
                .call_validate_config(&mut *store, config),
            Meta::V0_3(m) => m
                .load(&mut *store, instance)?
                .call_validate_config(&mut *store, config),
        }
    }
}

pub(crate) struct Exports {
    pub(crate) meta: Meta,
    /// Each slot's `decide`, when the plugin exports the slot.
    pub(crate) startup: Option<ComponentExportIndex>,
    pub(crate) outcome: Option<ComponentExportIndex>,
    /// The outcome slot's `decide-in-place` (since 0.3.0).
    pub(crate) in_place: Option<ComponentExportIndex>,
    pub(crate) placement: Option<ComponentExportIndex>,
}

// The Rust types of each slot's `decide`, the ones the host bindings
// generate from the WIT (the inputs written by `lower::Fast`, which
// type-checks as the record it wraps). `WasmPlugin::prepare` checks the
// component's exports against exactly these, and `call_decide` relies on
// that check.
type StartupParams<'a> = (Fast<'a, Snapshot>,);
type StartupResults = (Result<StartupVerdict, PluginError>,);
type OutcomeParams<'a> = (Fast<'a, Snapshot>, &'a [JobPods]);
/// The 0.1.0 outcome slot: no pod facts.
type OutcomeParamsV0_1<'a> = (Fast<'a, Snapshot>,);
type OutcomeResults = (Result<OutcomeVerdict, PluginError>,);
type InPlaceParams<'a> = (Fast<'a, Snapshot>, &'a InPlaceRestart);
type PlacementParams<'a> = (Fast<'a, Snapshot>, Fast<'a, PlacementRequest>);
type PlacementResults = (Result<Vec<JobPlacement>, PluginError>,);

/// Type-checks a slot's `decide` against `P -> R`, as `call_decide` will
/// call it.
fn check_decide<P, R>(
    store: &mut Store<HostState>,
    instance: &Instance,
    decide: Option<ComponentExportIndex>,
) -> wasmtime::Result<()>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    if let Some(decide) = decide {
        instance.get_typed_func::<P, R>(&mut *store, decide)?;
    }
    Ok(())
}

/// Calls a slot's `decide` (an error when the plugin does not export it).
///
/// Checking a function's type walks the whole snapshot record tree, about
/// 5% of a decision; it was done when the plugin was loaded, and every
/// instance comes from the same component, so it is not done again.
#[allow(unsafe_code)]
fn call_decide<P, R>(
    store: &mut Store<HostState>,
    instance: &Instance,
    decide: Option<ComponentExportIndex>,
    params: P,
) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let func = decide
        .and_then(|decide| instance.get_func(&mut *store, decide))
        .ok_or_else(|| wasmtime::Error::new(NotExported))?;
    // SAFETY: `new_unchecked` requires `func` to have the type `P -> R`.
    // Every caller passes a slot's `*Params` and `*Results` aliases above,
    // and `WasmPlugin::prepare` checked the same export with the same
    // aliases (`check_decide`) on an instance of the same component, so
    // its type is `P -> R` in every instance.
    let typed = unsafe { TypedFunc::<P, R>::new_unchecked(func) };
    typed.call(&mut *store, params)
}

/// What `meta.info()` said, plus what the host measured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Slots it claims in `info()`.
    pub interfaces: Vec<String>,
    /// Slots it actually exports.
    pub exported: Vec<Slot>,
    /// The version of the `jobset:policy` contract it speaks.
    pub contract: String,
    /// The optional inputs it asks for (`pod-facts`); none before 0.2.0.
    pub inputs: Vec<String>,
    /// Size of the component in bytes.
    pub size: usize,
    /// Lowercase hex sha256 of the component.
    pub sha256: String,
}

struct PluginInner {
    runtime: Arc<RuntimeInner>,
    id: String,
    info: PluginInfo,
    pre: InstancePre<HostState>,
    exports: Exports,
}

/// A verified, compiled plugin, ready to decide. Cheap to clone.
#[derive(Clone)]
pub struct WasmPlugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl WasmPlugin {
    pub(crate) fn prepare(
        runtime: Arc<RuntimeInner>,
        name: &str,
        sha256: String,
        size: usize,
        pre: InstancePre<HostState>,
        exports: Exports,
    ) -> Result<WasmPlugin, LoadError> {
        let id = format!("{name}@{}", &sha256[..12]);
        let mut exported = Vec::new();
        for (slot, present) in [
            (Slot::Startup, exports.startup.is_some()),
            (Slot::Outcome, exports.outcome.is_some()),
            (Slot::Placement, exports.placement.is_some()),
        ] {
            if present {
                exported.push(slot);
            }
        }
        let mut plugin = PluginInner {
            runtime,
            id,
            info: PluginInfo {
                name: name.to_string(),
                version: String::new(),
                interfaces: Vec::new(),
                exported,
                contract: exports.meta.version().to_string(),
                inputs: Vec::new(),
                size,
                sha256,
            },
            pre,
            exports,
        };
        // One instance to type-check every slot's `decide` and call info().
        let reject = |message: String| LoadError::Rejected {
            name: name.to_string(),
            message,
        };
        let info = run(
            &plugin,
            Slot::Outcome,
            Budget::Load,
            |store, instance, exports| {
                check_decide::<StartupParams<'_>, StartupResults>(
                    store,
                    instance,
                    exports.startup,
                )?;
                if matches!(exports.meta, Meta::V0_1(_)) {
                    check_decide::<OutcomeParamsV0_1<'_>, OutcomeResults>(
                        store,
                        instance,
                        exports.outcome,
                    )?;
                } else {
                    check_decide::<OutcomeParams<'_>, OutcomeResults>(
                        store,
                        instance,
                        exports.outcome,
                    )?;
                }
                check_decide::<InPlaceParams<'_>, OutcomeResults>(
                    store,
                    instance,
                    exports.in_place,
                )?;
                check_decide::<PlacementParams<'_>, PlacementResults>(
                    store,
                    instance,
                    exports.placement,
                )?;
                exports.meta.info(store, instance)
            },
        )
        .map_err(|e| reject(format!("meta.info() failed: {}", e.kind)))?;
        if let Some(unknown) = info
            .inputs
            .iter()
            .find(|i| !KNOWN_INPUTS.contains(&i.as_str()))
        {
            return Err(reject(format!(
                "meta.info() asks for the input {unknown:?}, which this host does not know \
                 (it knows: {})",
                KNOWN_INPUTS.join(", ")
            )));
        }
        plugin.info.name = info.name;
        plugin.info.version = info.version;
        plugin.info.interfaces = info.interfaces;
        plugin.info.inputs = info.inputs;
        Ok(WasmPlugin {
            inner: Arc::new(plugin),
        })
    }

    /// `name@sha256-prefix`, the identity recorded with every decision.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// What the plugin is.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// Whether the plugin exports this slot's interface.
    pub fn exports(&self, slot: Slot) -> bool {
        self.inner.info.exported.contains(&slot)
    }

    /// Runs `meta.validate-config`.
    pub fn validate_config(&self, config: &str) -> Result<(), LoadError> {
        let outcome = run(
            &self.inner,
            Slot::Outcome,
            Budget::Load,
            |store, instance, exports| exports.meta.validate_config(store, instance, config),
        );
        let reject = |message: String| LoadError::Rejected {
            name: self.inner.info.name.clone(),
            message,
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(reject(format!("configuration rejected: {message}"))),
            Err(e) => Err(reject(format!("validate-config failed: {}", e.kind))),
        }
    }

    /// The startup decision.
    pub fn startup(&self, snapshot: &Snapshot) -> Result<StartupVerdict, PolicyError> {
        self.decide(
            Slot::Startup,
            |store, instance, exports| {
                call_decide::<StartupParams<'_>, StartupResults>(
                    store,
                    instance,
                    exports.startup,
                    (Fast(snapshot),),
                )
            },
            |verdict| validate::startup(snapshot, verdict),
        )
    }

    /// Makes one decision: `call` in a fresh instance, then the plugin's
    /// own error or the host's `check` of the verdict, as the slot's error.
    fn decide<T: Send>(
        &self,
        slot: Slot,
        call: impl FnOnce(
            &mut Store<HostState>,
            &Instance,
            &Exports,
        ) -> wasmtime::Result<(Result<T, PluginError>,)>
        + Send,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Result<T, PolicyError> {
        let (verdict,) = run(&self.inner, slot, Budget::Decision, call)?;
        let verdict = verdict.map_err(|e| self.error(slot, rejected(e)))?;
        check(&verdict).map_err(|detail| self.invalid(slot, detail))?;
        Ok(verdict)
    }

    /// Whether the plugin asked for this optional input.
    pub fn wants(&self, input: &str) -> bool {
        self.inner.info.inputs.iter().any(|i| i == input)
    }

    /// The outcome decision. `pods` goes to a plugin that asked for
    /// [`POD_FACTS`] (a 0.1.0 plugin gets the snapshot alone).
    pub fn outcome(
        &self,
        snapshot: &Snapshot,
        pods: &[JobPods],
    ) -> Result<OutcomeVerdict, PolicyError> {
        let pods = if self.wants(POD_FACTS) { pods } else { &[] };
        self.decide(
            Slot::Outcome,
            |store, instance, exports| {
                if matches!(exports.meta, Meta::V0_1(_)) {
                    call_decide::<OutcomeParamsV0_1<'_>, OutcomeResults>(
                        store,
                        instance,
                        exports.outcome,
                        (Fast(snapshot),),
                    )
                } else {
                    call_decide::<OutcomeParams<'_>, OutcomeResults>(
                        store,
                        instance,
                        exports.outcome,
                        (Fast(snapshot), pods),
                    )
                }
            },
            |verdict| validate::outcome(snapshot, verdict),
        )
    }

    /// Whether the plugin decides in-place restarts (`decide-in-place`,
    /// contract 0.3.0 on). Older outcome plugins leave them to the
    /// built-in default.
    pub fn decides_in_place(&self) -> bool {
        self.inner.exports.in_place.is_some()
    }

    /// The in-place restart decision (`decide-in-place`). Only `continue`,
    /// `restart-jobset` and `fail` are answers here.
    pub fn in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<OutcomeVerdict, PolicyError> {
        self.decide(
            Slot::Outcome,
            |store, instance, exports| {
                call_decide::<InPlaceParams<'_>, OutcomeResults>(
                    store,
                    instance,
                    exports.in_place,
                    (Fast(snapshot), restart),
                )
            },
            |verdict| validate::in_place(snapshot, verdict),
        )
    }

    /// The placement decision.
    pub fn placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Vec<JobPlacement>, PolicyError> {
        self.decide(
            Slot::Placement,
            |store, instance, exports| {
                call_decide::<PlacementParams<'_>, PlacementResults>(
                    store,
                    instance,
                    exports.placement,
                    (Fast(snapshot), Fast(request)),
                )
            },
            |verdict| validate::placement(request, verdict),
        )
    }

    fn error(&self, slot: Slot, kind: ErrorKind) -> PolicyError {
        PolicyError {
            plugin: self.inner.id.clone(),
            slot,
            kind,
        }
    }

    fn invalid(&self, slot: Slot, detail: String) -> PolicyError {
        self.error(slot, ErrorKind::InvalidVerdict { detail })
    }
}

fn rejected(e: crate::snapshot::PluginError) -> ErrorKind {
    ErrorKind::Rejected {
        message: e.to_string(),
    }
}

/// The slot's interface is not exported.
#[derive(Debug, thiserror::Error)]
#[error("interface not exported")]
struct NotExported;

fn host_thread_failed(plugin: &PluginInner, slot: Slot) -> PolicyError {
    PolicyError {
        plugin: plugin.id.clone(),
        slot,
        kind: ErrorKind::Trap {
            message: "the host thread running the plugin failed".to_string(),
        },
    }
}

/// Runs a call via [`run_here`]: in place where that is safe (see
/// [`crate::offload`]), else on one of the kept threads outside the
/// runtime, which borrow the caller's inputs, so a decision pays neither
/// for a new thread nor for copies.
/// Which wall-clock budget a call gets.
#[derive(Clone, Copy)]
enum Budget {
    /// A decision: `Limits::deadline`.
    Decision,
    /// A call made when the plugin is loaded: `Limits::load_deadline`.
    Load,
}

fn run<R: Send>(
    plugin: &PluginInner,
    slot: Slot,
    budget: Budget,
    call: impl FnOnce(&mut Store<HostState>, &Instance, &Exports) -> wasmtime::Result<R> + Send,
) -> Result<R, PolicyError> {
    if offload::in_place() {
        return run_here(plugin, slot, budget, call);
    }
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let span = tracing::Span::current();
    let job = || {
        // A panic in the host (never in the guest: that is a trap) fails
        // this call only.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                span.in_scope(|| run_here(plugin, slot, budget, call))
            })
        }))
        .unwrap_or_else(|_| Err(host_thread_failed(plugin, slot)))
    };
    match offload::pool() {
        Some(pool) => pool.install(job),
        None => std::thread::scope(|s| {
            s.spawn(job)
                .join()
                .unwrap_or_else(|_| Err(host_thread_failed(plugin, slot)))
        }),
    }
}

/// Instantiates the plugin in a fresh Store, runs `call`, logs what the
/// plugin printed, and turns any failure into a [`PolicyError`].
fn run_here<R>(
    plugin: &PluginInner,
    slot: Slot,
    budget: Budget,
    call: impl FnOnce(&mut Store<HostState>, &Instance, &Exports) -> wasmtime::Result<R>,
) -> Result<R, PolicyError> {
    let rt = &plugin.runtime;
    let limits = &rt.limits;
    // No more decisions at once than the instance pool has slots.
    let _permit = rt.permits.acquire();
    let state = HostState::new(
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            max_instances: 16,
            hit_memory_cap: false,
        },
        limits.output_bytes,
    );
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limiter);
    let (ticks, deadline) = match budget {
        Budget::Decision => (rt.deadline_ticks, limits.deadline),
        Budget::Load => (
            rt.load_deadline_ticks,
            limits.load_deadline.max(limits.deadline),
        ),
    };
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let result = match plugin.pre.instantiate(&mut store) {
        Ok(instance) => call(&mut store, &instance, &plugin.exports),
        Err(e) => Err(e),
    };
    let (stdout, stdout_dropped) = store.data().stdout.take();
    let (stderr, stderr_dropped) = store.data().stderr.take();
    if !stdout.is_empty() || !stderr.is_empty() {
        tracing::info!(
            plugin = %plugin.id, %slot, %stdout, %stderr, stdout_dropped, stderr_dropped,
            "policy plugin output"
        );
    }
    result.map_err(|e| {
        let kind = classify(&e, store.data(), limits, deadline, &stderr, slot);
        let error = PolicyError {
            plugin: plugin.id.clone(),
            slot,
            kind,
        };
        tracing::warn!(error = %error, "policy plugin failed");
        error
    })
}

fn classify(
    e: &wasmtime::Error,
    state: &HostState,
    limits: &crate::runtime::Limits,
    deadline: std::time::Duration,
    stderr: &str,
    slot: Slot,
) -> ErrorKind {
    if state.limiter.hit_memory_cap {
        return ErrorKind::OutOfMemory {
            limit_bytes: limits.memory_bytes,
        };
    }
    if e.downcast_ref::<NotExported>().is_some() {
        return ErrorKind::MissingExport {
            interface: format!("jobset:policy/{slot}"),
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ErrorKind::Timeout { deadline },
        Some(trap) => {
            let said = last_line(stderr);
            ErrorKind::Trap {
                message: if said.is_empty() {
                    trap.to_string()
                } else {
                    format!("{trap}; the plugin said: {said}")
                },
            }
        }
        None if e.to_string().contains("concurrent") => ErrorKind::Instantiate {
            message: format!("{e:#}"),
        },
        None => ErrorKind::Trap {
            message: format!("{e:#}"),
        },
    }
}

/// The last non-empty lines of what the plugin wrote to stderr (a Rust
/// panic message spans two lines), bounded.
fn last_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" ");
    tail.chars().take(512).collect()
}
