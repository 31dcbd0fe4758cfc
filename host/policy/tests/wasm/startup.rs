//! default-startup through Wasm: spec 4.5 and 4.7.
