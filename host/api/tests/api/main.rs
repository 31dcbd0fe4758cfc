//! The API crate's tables and properties: validation on create and update,
//! the upstream examples, and inputs that must never panic. One test
//! binary, so the workspace links it once.

mod common;
mod never_panics;
mod upstream;
mod upstream_examples;
mod validation_create;
mod validation_create_policies;
mod validation_update;
