//! Host bindings of every supported version of the `jobset:policy` WIT
//! package, side by side. A new minor version gets a module of its own;
//! older plugins keep being linked through theirs.
//!
//! 0.2.0 left the records of `types` as they were (`wit/types.wit` and
//! `wit/0.1.0/types.wit` differ in nothing but comments, which a test
//! checks), so its bindings reuse 0.1.0's Rust types for them: component
//! types are checked by shape, not by package, and one snapshot record
//! serves plugins of either version. 0.3.0 did the same for `types` and
//! `pods` (unchanged since 0.2.0, comments aside), adding only the
//! `in-place` interface and the outcome slot's `decide-in-place`.

/// `jobset:policy@0.1.0` (`wit/0.1.0/`).
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "policy-plugin",
        path: "../../wit/0.1.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// `jobset:policy@0.2.0` (`wit/0.2.0/`): pod facts for the outcome slot,
/// and the optional inputs a plugin asks for in `meta`.
pub mod v0_2_0 {
    wasmtime::component::bindgen!({
        world: "policy-plugin",
        path: "../../wit/0.2.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        with: {
            "jobset:policy/types@0.2.0": super::v0_1_0::jobset::policy::types,
        },
    });
}

/// `jobset:policy@0.3.0` (`wit/`): the outcome slot decides in-place
/// restarts too (`decide-in-place`).
pub mod v0_3_0 {
    wasmtime::component::bindgen!({
        world: "policy-plugin",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        with: {
            "jobset:policy/types@0.3.0": super::v0_1_0::jobset::policy::types,
            "jobset:policy/pods@0.3.0": super::v0_2_0::jobset::policy::pods,
        },
    });
}

/// The versions this host links, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];
