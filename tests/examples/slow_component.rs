//! Writes a component built to be slow to compile to stdout:
//! `cargo run -p jobset-e2e --example slow_component -- DEPTH > slow.wasm`
//! (46000 gives 1,029,768 bytes, under the 1 MiB plugin limit). Time its
//! compile with `jobset policy inspect slow.wasm`.

use std::io::Write;

fn main() {
    let depth = std::env::args()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(46_000);
    let bytes = jobset_e2e::slow_compile::slow_to_compile(depth);
    if let Err(e) = std::io::stdout().write_all(&bytes) {
        eprintln!("slow_component: {e}");
        std::process::exit(1);
    }
}
