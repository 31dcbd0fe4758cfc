//! The end-to-end suites: the controller with its plugins against the
//! simulated API server, one module per area of the spec. One test binary
//! for all of them, so the workspace links (and stores) it once.

mod compat;
mod conditions;
mod controller;
mod elastic;
mod failure_policy;
mod in_place;
mod lifecycle;
mod pod_facts;
mod rbac;
mod recreate;
mod resources;
mod restart_job;
mod startup;
mod status;
mod success;
mod suspend;
