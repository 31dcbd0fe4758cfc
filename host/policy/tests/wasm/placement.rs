//! default-placement through Wasm: exclusive topology, node-selector strategy.
