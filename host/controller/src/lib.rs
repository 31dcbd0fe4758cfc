//! The JobSet controller. A reconcile is observe -> plan -> apply -> status:
//! `observe` reads the JobSet and its Jobs from the stores, `plan` is a pure
//! function from what was observed (and the policy verdicts) to actions,
//! `apply` executes them, and `status` writes the status once, then events.
#![forbid(unsafe_code)]

pub mod actions;
pub mod conditions;
mod creation;
pub mod error;
pub mod job_builder;
pub mod observe;
mod outcome;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod resources;
pub mod snapshot;
pub mod suspend;
mod ttl;
