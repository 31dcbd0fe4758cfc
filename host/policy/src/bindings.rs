//! Host bindings of every supported version of the `jobset:policy` WIT
//! package, side by side. A new minor version gets a module of its own;
//! older plugins keep being linked through theirs.

/// `jobset:policy@0.1.0`.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "policy-plugin",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The versions this host links, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];
