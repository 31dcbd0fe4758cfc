//! The reliability suites: the scripted workload under controller crashes,
//! API faults and leader failover, and hostile plugins among healthy ones.
//! Run one with its module name, e.g.
//! `cargo test -p jobset-e2e --test reliability crash::`.

mod api_faults;
mod crash;
mod failover;
mod hostile;
