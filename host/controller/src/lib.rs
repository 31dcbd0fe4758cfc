//! The JobSet controller. A reconcile is observe -> plan -> apply -> status:
//! `observe` reads the JobSet and its Jobs from the index the watches keep,
//! `plan` is a pure function from what was observed (and the policy
//! verdicts) to actions, `apply` executes them, and the status is written
//! once, then the events are emitted.
#![forbid(unsafe_code)]

pub mod actions;
pub mod apply;
pub mod clock;
pub mod conditions;
pub mod controller;
mod creation;
pub mod error;
pub mod events;
pub mod failed_pods;
pub mod health;
pub mod http_server;
pub mod in_place;
pub mod index;
pub mod job_builder;
pub mod leader;
pub mod metrics;
pub mod observe;
mod outcome;
pub mod placement;
pub mod plan;
pub mod pod_watch;
pub mod policy;
pub mod reconcile;
pub mod resources;
mod scaling;
pub mod snapshot;
pub mod suspend;
mod ttl;
pub mod webhook;

pub use controller::{ControllerConfig, run};
pub use error::ControllerError;
pub use leader::{LeaderConfig, LeaderElector, run_with_leader_election};
#[cfg(test)]
mod plan_tests;
