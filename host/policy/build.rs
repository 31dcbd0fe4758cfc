//! Builds the policy plugins under `plugins/` for `wasm32-wasip2` with a
//! nested cargo (its own target dir, so it never waits on the outer build's
//! lock) and generates `builtin_wasm.rs`, which embeds the components.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "wasm32-wasip2";

/// (package, const name, build group) of every component the host embeds.
/// Cargo unifies features within one build, so the groups keep two things
/// apart: the default plugins are `#![no_std]` and bring their own panic
/// handler (the SDK's `bare` feature), which must not reach a plugin that
/// links `std`; and a plugin that reuses a default plugin's logic as a
/// library must not get that plugin's export glue switched on.
const PLUGINS: &[(&str, &str, u8)] = &[
    ("default-startup", "DEFAULT_STARTUP", 0),
    ("default-outcome", "DEFAULT_OUTCOME", 0),
    ("default-placement", "DEFAULT_PLACEMENT", 0),
    ("example-hostile", "EXAMPLE_HOSTILE", 1),
    ("example-wrong-export", "EXAMPLE_WRONG_EXPORT", 1),
    ("example-preemption-aware", "EXAMPLE_PREEMPTION_AWARE", 1),
    ("example-exit-codes", "EXAMPLE_EXIT_CODES", 1),
    ("example-bad-node", "EXAMPLE_BAD_NODE", 1),
    ("example-unknown-input", "EXAMPLE_UNKNOWN_INPUT", 1),
    (
        "example-recreate-on-node-loss",
        "EXAMPLE_RECREATE_ON_NODE_LOSS",
        1,
    ),
];

/// Variables a parent cargo (or clippy, or a wrapper) sets that would leak
/// into the nested build and break or redirect it.
const SCRUBBED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_LINKER",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| fail("cannot find the workspace root above host/policy"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR unset")));
    for watched in ["wit", "plugins", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out.
    let outer_target = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.clone());
    let wasm_target_dir = outer_target.join("wasm-plugins");

    ensure_target_installed();

    // A library dependency's cdylib is written to the same place as the
    // plugin's own, so each group's components are copied right after the
    // group is built.
    let built = wasm_target_dir.join(TARGET).join("release");
    let mut generated = String::new();
    for group in [0, 1] {
        build_group(&root, &wasm_target_dir, group);
        for (package, constant, _) in PLUGINS.iter().filter(|p| p.2 == group) {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let from = built.join(&file);
            let to = out_dir.join(&file);
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", from.display())));
            let _ = writeln!(
                generated,
                "/// The `{package}` component, built from `plugins/`.\n\
                 pub const {constant}: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));"
            );
        }
    }
    std::fs::write(out_dir.join("builtin_wasm.rs"), generated)
        .unwrap_or_else(|e| fail(&format!("cannot write builtin_wasm.rs: {e}")));
}

/// Runs the nested `cargo build` for one group of plugins.
fn build_group(root: &Path, wasm_target_dir: &Path, group: u8) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(wasm_target_dir);
    for (package, _, _) in PLUGINS.iter().filter(|p| p.2 == group) {
        cmd.arg("-p").arg(package);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if SCRUBBED.contains(&key.as_str())
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_")
        {
            cmd.env_remove(&key);
        }
    }
    // Paths of this checkout, the cargo home and the target dir must not end
    // up in the components, so the bytes are the same on every machine.
    let cargo_home = env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|_| PathBuf::from("/nonexistent-cargo-home"));
    let mut flags = vec![
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/target", wasm_target_dir.display()),
        format!("--remap-path-prefix={}=/src", root.display()),
    ];
    if group == 0 {
        // The default plugins' heap starts in their initial memory (see the
        // SDK's `bare`): 2 MiB holds the 1 MiB stack, the static data and
        // about 1 MiB of heap, far more than a decision over a 64-Job
        // snapshot takes. A decision that fits does not grow memory, so the
        // host does not have to re-protect the grown pages before the next
        // instance; larger ones grow as usual.
        flags.push(format!("-Clink-arg=--initial-memory={}", 2 << 20));
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"));
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");

    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo for the plugins: {e}")));
    if !status.success() {
        fail("building the policy plugins for wasm32-wasip2 failed (see the output above)");
    }
}

/// Installs the Wasm target for the active toolchain when it is missing
/// (a target listed in rust-toolchain.toml is not added to a toolchain that
/// was installed before).
fn ensure_target_installed() {
    // The compiler's own answer first: a toolchain linked into rustup (or
    // one without rustup) has the target when its library folder exists.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output();
    if let Ok(out) = libdir
        && out.status.success()
        && std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_dir()
    {
        return;
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                fail("`rustup target add wasm32-wasip2` failed; install the target and rebuild");
            }
        }
        // No rustup: the toolchain may carry the target already; the nested
        // build reports it if not.
        Err(_) => {}
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo::error={message}");
    exit(1)
}
