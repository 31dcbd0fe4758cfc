//! The Wasm runtime for JobSet policy plugins. The controller calls a
//! [`PolicyEngine`] with typed snapshots and gets typed verdicts or a
//! [`PolicyError`]; everything wasmtime-specific stays in this crate: one
//! [`Runtime`] (engine, pooling allocator, epoch ticker, compile cache),
//! [`WasmPlugin`]s with a fresh sandbox per decision, verdict validation,
//! and the [`registry`] that loads plugins from ConfigMaps and picks one
//! per JobSet and slot.

// Two audited exceptions: calling a plugin export without re-checking its
// type (`plugin::call_decide`), and lowering the snapshot and the placement
// request in one pass (`lower::Fast`).
#![deny(unsafe_code)]

mod bindings;
mod breaker;
pub mod builtin;
mod compile;
pub mod engine;
pub mod error;
mod lower;
pub mod offload;
pub mod plugin;
pub mod recording;
pub mod registry;
pub mod runtime;
mod sandbox;
pub mod shadow;
pub mod snapshot;
pub mod tools;
pub mod trust;
pub mod validate;

pub use bindings::SUPPORTED_VERSIONS;
pub use breaker::BreakerConfig;
pub use engine::{Decision, NativeDefaults, PolicyEngine};
pub use error::{ErrorKind, LoadError, PolicyError};
pub use offload::{OffRuntimeError, off_runtime};
pub use plugin::{KNOWN_INPUTS, POD_FACTS, PluginInfo, WasmPlugin};
pub use registry::{CompileNotice, FailureMode, Registry, RegistryConfig, RegistryStats};
pub use runtime::{Limits, Runtime, sha256_hex};
pub use snapshot::Slot;
