//! The components built from `plugins/` by this crate's build script and
//! embedded in the binary: the three defaults (always available, with no
//! ConfigMap) and the example and hostile plugins used by tests.

include!(concat!(env!("OUT_DIR"), "/builtin_wasm.rs"));

use crate::snapshot::Slot;

/// The registry name of the built-in default for a slot.
pub fn default_name(slot: Slot) -> &'static str {
    match slot {
        Slot::Startup => "default-startup",
        Slot::Outcome => "default-outcome",
        Slot::Placement => "default-placement",
    }
}

/// The built-in default component for a slot.
pub fn default_bytes(slot: Slot) -> &'static [u8] {
    match slot {
        Slot::Startup => DEFAULT_STARTUP,
        Slot::Outcome => DEFAULT_OUTCOME,
        Slot::Placement => DEFAULT_PLACEMENT,
    }
}
