//! The Wasm export glue: forwards the `outcome` world to the plain Rust
//! policy.

wit_bindgen::generate!({
    world: "outcome-plugin",
    path: "../../wit",
    with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/pods@0.3.0": jobset_policy_sdk::pods,
            "jobset:policy/in-place@0.3.0": jobset_policy_sdk::in_place,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
        },
});

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use exports::jobset::policy::{meta, outcome};
use jobset_policy_sdk::in_place::InPlaceRestart;
use jobset_policy_sdk::pods::JobPods;
use jobset_policy_sdk::types::{OutcomeVerdict, PolicyError, Snapshot};

struct Plugin;

impl meta::Guest for Plugin {
    fn info() -> meta::PluginInfo {
        meta::PluginInfo {
            name: crate::NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            interfaces: vec!["outcome".to_string()],
            inputs: Vec::new(),
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        crate::validate_config(&config)
    }
}

impl outcome::Guest for Plugin {
    fn decide(snapshot: Snapshot, pods: Vec<JobPods>) -> Result<OutcomeVerdict, PolicyError> {
        // Asked for none: always empty.
        core::mem::forget(pods);
        jobset_policy_sdk::decide_once(snapshot, crate::decide)
    }

    fn decide_in_place(
        snapshot: Snapshot,
        restart: InPlaceRestart,
    ) -> Result<OutcomeVerdict, PolicyError> {
        let verdict = crate::in_place::decide(&snapshot, &restart);
        // Never freed: the instance is discarded after the call.
        core::mem::forget((snapshot, restart));
        verdict
    }
}

export!(Plugin);
