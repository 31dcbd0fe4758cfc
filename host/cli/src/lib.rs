//! The `jobset` command as a library: argument parsing and every
//! subcommand, so that tests run a command in-process exactly as the binary
//! does (`cli::run_captured`).
// Only `memory_trim` calls into the C library.
#![deny(unsafe_code)]

pub mod agent_cmd;
pub mod cli;
pub mod controller_cmd;
pub mod history;
pub mod manifests;
pub mod memory_trim;
pub mod outcome;
pub mod output;
pub mod policy_cmd;
pub mod report;
pub mod run;
pub mod sim_cmd;
pub mod threads;
pub mod timeline;
pub mod webhook_args;
