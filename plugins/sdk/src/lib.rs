//! The Rust side of the `jobset:policy` contract for plugin authors.
//!
//! [`types`] holds the records of `wit/types.wit` and [`pods`] those of
//! `wit/pods.wit`, [`in_place`] that of `wit/in-place.wit` (generated,
//! with serde derives so snapshots can be read from YAML in tests);
//! [`view`] adds
//! read-only helpers over a snapshot; [`regex`] matches patterns through
//! the host; [`harness`] builds snapshots for native unit tests. A plugin
//! crate generates its own world with
//! `with: { "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
//! "jobset:policy/pods@0.3.0": jobset_policy_sdk::pods,
//! "jobset:policy/in-place@0.3.0": jobset_policy_sdk::in_place,
//! "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import }`, so its
//! policy logic is plain Rust over these types and also runs natively.
//!
//! The SDK needs only `alloc`, so a plugin may be `#![no_std]`: the
//! `bare` feature then supplies the panic handler and the allocator such a
//! component needs (module `bare`). Plugins that use `std` leave it off.

#![no_std]

extern crate alloc;

mod generated {
    wit_bindgen::generate!({
        world: "sdk",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The records of `jobset:policy/types@0.3.0` (unchanged since 0.1.0).
pub mod types {
    pub use crate::generated::jobset::policy::types::*;
}

/// The records of `jobset:policy/pods@0.3.0` (unchanged since 0.2.0): the
/// failed pods given to an outcome plugin that lists [`inputs::POD_FACTS`]
/// in its `meta`.
pub mod pods {
    pub use crate::generated::jobset::policy::pods::*;
}

/// The record of `jobset:policy/in-place@0.3.0`: an in-place restart, for
/// the outcome slot's `decide-in-place`.
pub mod in_place {
    pub use crate::generated::jobset::policy::in_place::*;
}

/// Names of the optional inputs a plugin may ask for in
/// `plugin-info.inputs`.
pub mod inputs {
    /// The failed pods of each failed Job, for the outcome slot.
    pub const POD_FACTS: &str = "pod-facts";
}

#[cfg(all(target_arch = "wasm32", feature = "bare"))]
mod bare;
#[cfg(any(test, all(target_arch = "wasm32", feature = "bare")))]
mod bump;
pub mod harness;
pub mod regex;
pub mod view;

/// The version of the `jobset:policy` contract this SDK speaks.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Runs a decision on what the host passed and then leaves it unfreed.
///
/// The host makes each decision in a fresh instance and discards the
/// instance right after, memory and all, so freeing the snapshot string by
/// string and list by list is work no one benefits from (several µs of a
/// 64-Job decision). For a component's export glue:
/// `decide_once(snapshot, |s| crate::decide(s))`. Do not use it in a
/// plugin that is called more than once per instance: each call would leak
/// its input.
pub fn decide_once<T, R>(input: T, decide: impl FnOnce(&T) -> R) -> R {
    let verdict = decide(&input);
    core::mem::forget(input);
    verdict
}

/// `validate-config` for a plugin that takes no configuration: an empty
/// string, `{}` or `null` (blanks around them allowed) pass, anything else
/// is refused with the plugin's name and the size of what it was given.
pub fn no_config(plugin: &str, config: &str) -> Result<(), alloc::string::String> {
    match config.trim() {
        "" | "{}" | "null" => Ok(()),
        other => Err(alloc::format!(
            "{plugin} takes no configuration, got {} bytes",
            other.len()
        )),
    }
}

/// Re-exported so plugin crates use the same wit-bindgen as the SDK.
pub use wit_bindgen;

/// Feature gate names as they appear in `snapshot.feature-gates`.
pub mod gates {
    /// The `RestartJob` / `RestartJobAndIgnoreMaxRestarts` actions.
    pub const RESTART_JOB: &str = "RestartJob";
}

#[cfg(test)]
mod tests {
    use super::no_config;

    #[test]
    fn no_config_accepts_only_the_empty_forms_and_names_the_plugin() {
        for empty in ["", "  ", "{}", " {} \n", "null"] {
            assert_eq!(no_config("p", empty), Ok(()), "{empty:?}");
        }
        assert_eq!(
            no_config("default-startup", r#" {"a": 1} "#),
            Err("default-startup takes no configuration, got 8 bytes".into())
        );
        assert!(no_config("p", "[]").is_err());
    }
}
