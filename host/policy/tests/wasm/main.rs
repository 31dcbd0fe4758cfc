//! The default, example and hostile plugins run through the real Wasm
//! runtime. One test binary, so each component is compiled once.

mod common;
mod hostile;
mod outcome;
mod placement;
mod startup;
