//! The errors of this crate: a plugin's failure to decide ([`PolicyError`],
//! always naming the plugin and slot) and a plugin that cannot be loaded
//! ([`LoadError`]).

use crate::snapshot::Slot;
use std::time::Duration;

/// What went wrong in one decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The plugin ran past its deadline and was interrupted.
    #[error("timed out after the {deadline:?} deadline")]
    Timeout { deadline: Duration },
    /// The plugin asked for more memory than its cap.
    #[error("ran out of memory (cap {limit_bytes} bytes)")]
    OutOfMemory { limit_bytes: usize },
    /// The plugin trapped (panic, unreachable, stack overflow...).
    #[error("trapped: {message}")]
    Trap { message: String },
    /// The verdict names something not in the snapshot, or is too large.
    #[error("returned an invalid verdict: {detail}")]
    InvalidVerdict { detail: String },
    /// The plugin does not export the interface this slot needs.
    #[error("does not export {interface}")]
    MissingExport { interface: String },
    /// The plugin returned its own `policy-error`.
    #[error("declined to decide: {message}")]
    Rejected { message: String },
    /// The circuit breaker is open after repeated failures.
    #[error("is suspended after {failures} consecutive failures (retry after {retry_in:?})")]
    CircuitOpen { failures: u32, retry_in: Duration },
    /// No plugin of that name is in force for the JobSet.
    #[error("is not a known plugin ({name})")]
    UnknownPlugin { name: String },
    /// The sandbox could not be set up (instance pool exhausted, ...).
    #[error("could not be instantiated: {message}")]
    Instantiate { message: String },
    /// The plugin is being compiled (compile on demand); the decision
    /// waits for it. `waited` is for logs; the message leaves it out, so
    /// that the condition it lands in does not change while it waits.
    #[error("is being compiled; the decision waits for it")]
    Compiling { waited: Duration },
    /// The plugin's ConfigMap was verified but its plugin could not be
    /// compiled or loaded (compile on demand).
    #[error("could not be loaded: {message}")]
    NotLoaded { message: String },
}

/// A plugin failed to make a decision. Never a JobSet failure: the caller
/// holds or falls back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy plugin {plugin} ({slot}) {kind}")]
pub struct PolicyError {
    /// `name@sha256-prefix` of the plugin.
    pub plugin: String,
    /// The slot being decided.
    pub slot: Slot,
    /// What happened.
    pub kind: ErrorKind,
}

impl PolicyError {
    /// A short label for metrics (`timeout`, `trap`, ...).
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Timeout { .. } => "timeout",
            ErrorKind::OutOfMemory { .. } => "out_of_memory",
            ErrorKind::Trap { .. } => "trap",
            ErrorKind::InvalidVerdict { .. } => "invalid_verdict",
            ErrorKind::MissingExport { .. } => "missing_export",
            ErrorKind::Rejected { .. } => "rejected",
            ErrorKind::CircuitOpen { .. } => "circuit_open",
            ErrorKind::Instantiate { .. } => "instantiate",
            ErrorKind::UnknownPlugin { .. } => "unknown_plugin",
            ErrorKind::Compiling { .. } => "compiling",
            ErrorKind::NotLoaded { .. } => "not_loaded",
        }
    }
}

/// Why a plugin was not put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// More bytes than a ConfigMap can carry.
    #[error("plugin {name}: {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    /// The sha256 pin does not match the bytes.
    #[error("plugin {name}: sha256 {actual} does not match the pinned {pinned}")]
    PinMismatch {
        name: String,
        pinned: String,
        actual: String,
    },
    /// Not a component wasmtime can compile.
    #[error("plugin {name}: {message}")]
    Compile { name: String, message: String },
    /// The component lacks `jobset:policy/meta` or every slot interface.
    #[error("plugin {name}: does not export {interface} of a supported jobset:policy version")]
    MissingExport { name: String, interface: String },
    /// `info()` or `validate-config` failed or trapped.
    #[error("plugin {name}: {message}")]
    Rejected { name: String, message: String },
    /// The ConfigMap is malformed.
    #[error("ConfigMap {namespace}/{configmap}: {message}")]
    ConfigMap {
        namespace: String,
        configmap: String,
        message: String,
    },
    /// The Wasm engine could not be created.
    #[error("policy runtime: {0}")]
    Engine(String),
    /// The scenario or snapshot text could not be read.
    #[error("scenario: {0}")]
    Scenario(String),
}
