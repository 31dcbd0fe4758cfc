//! The default, example and hostile plugins run through the real Wasm
//! runtime. One test binary, so each component is compiled once.

mod common;
mod contract;
mod echo;
mod examples;
mod hostile;
mod outcome;
mod placement;
mod registry;
mod startup;
mod tools;
