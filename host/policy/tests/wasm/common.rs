//! Shared fixtures: the runtime and the loaded plugins (compiled once per
//! test binary), and conversion from the SDK's test builder.

use jobset_policy::builtin;
use jobset_policy::snapshot::Snapshot;
use jobset_policy::{Runtime, WasmPlugin};
use jobset_policy_sdk::harness::SnapshotBuilder;
use std::sync::OnceLock;

pub fn runtime() -> &'static Runtime {
    Runtime::shared().expect("the policy runtime starts")
}

fn load(cell: &'static OnceLock<WasmPlugin>, name: &str, bytes: &[u8]) -> &'static WasmPlugin {
    cell.get_or_init(|| {
        runtime()
            .load(name, bytes)
            .unwrap_or_else(|e| panic!("{name} loads: {e}"))
    })
}

pub fn outcome_plugin() -> &'static WasmPlugin {
    static P: OnceLock<WasmPlugin> = OnceLock::new();
    load(&P, "default-outcome", builtin::DEFAULT_OUTCOME)
}

pub fn startup_plugin() -> &'static WasmPlugin {
    static P: OnceLock<WasmPlugin> = OnceLock::new();
    load(&P, "default-startup", builtin::DEFAULT_STARTUP)
}

pub fn placement_plugin() -> &'static WasmPlugin {
    static P: OnceLock<WasmPlugin> = OnceLock::new();
    load(&P, "default-placement", builtin::DEFAULT_PLACEMENT)
}

pub fn hostile_plugin() -> &'static WasmPlugin {
    static P: OnceLock<WasmPlugin> = OnceLock::new();
    load(&P, "hostile", builtin::EXAMPLE_HOSTILE)
}

pub fn preemption_plugin() -> &'static WasmPlugin {
    static P: OnceLock<WasmPlugin> = OnceLock::new();
    load(&P, "preemption-aware", builtin::EXAMPLE_PREEMPTION_AWARE)
}

/// The host's snapshot from the SDK's builder.
pub fn snap(builder: SnapshotBuilder) -> Snapshot {
    same_records(&builder.build())
}

/// A record of the host's as the SDK's, or the other way round: the same
/// WIT records, generated twice, with the same serde form.
pub fn same_records<A: serde::Serialize, B: serde::de::DeserializeOwned>(value: &A) -> B {
    serde_json::from_value(serde_json::to_value(value).expect("serialises"))
        .expect("the SDK and host records agree")
}
