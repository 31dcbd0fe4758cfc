//! The Rust side of the `jobset:policy` contract for plugin authors.
//!
//! [`types`] holds the records of `wit/types.wit` (generated, with serde
//! derives so snapshots can be read from YAML in tests); [`view`] adds
//! read-only helpers over a snapshot; [`harness`] builds snapshots for
//! native unit tests. A plugin crate generates its own world with
//! `with: { "jobset:policy/types@0.1.0": jobset_policy_sdk::types }`, so
//! its policy logic is plain Rust over these types and also runs natively.

mod generated {
    wit_bindgen::generate!({
        world: "types-only",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The records of `jobset:policy/types@0.1.0`.
pub mod types {
    pub use crate::generated::jobset::policy::types::*;
}

pub mod harness;
pub mod view;

/// Re-exported so plugin crates use the same wit-bindgen as the SDK.
pub use wit_bindgen;

/// Feature gate names as they appear in `snapshot.feature-gates`.
pub mod gates {
    /// The `RestartJob` / `RestartJobAndIgnoreMaxRestarts` actions.
    pub const RESTART_JOB: &str = "RestartJob";
}
