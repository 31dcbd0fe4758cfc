//! Failures the cluster can be made to suffer, from tests or a scenario's
//! timed faults: nodes and whole topology domains going NotReady, pods and
//! Jobs failing. API-level faults belong to the server (`crate::faults`).

pub mod inject;

pub use inject::{fail_domain, fail_node, recover_node, run_timed};
