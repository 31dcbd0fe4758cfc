//! The `jobset` binary as users run it: each module starts it as a
//! process (with the simulator, the controller, the policy tools, the
//! examples and the tutorial). One test binary, so the workspace links it once.

mod agent;
mod common;
mod controller;
mod crd;
mod deploy;
mod examples;
mod policy;
mod readme_paths;
mod run;
mod tutorial;
#[path = "../../../api/tests/api/upstream.rs"]
mod upstream;
