//! Where the upstream project's published example manifests are, for the
//! tests that play them, and what those tests do when they are not there.
//!
//! They live outside this repository, in `shared/compat/upstream-examples`
//! beside the checkout (or beside a directory above it, for worktrees). A
//! clone on its own has no such folder: the checks that need it are then
//! skipped with one plain line on stderr, unless the environment says
//! `JOBSET_UPSTREAM_EXAMPLES=required` (CI does), which makes them fail.
//!
//! Shared by the test suites of `jobset-api` and `jobset` (by `#[path]`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The variable that turns a missing folder from a skip into a failure.
pub const REQUIRED_VAR: &str = "JOBSET_UPSTREAM_EXAMPLES";

const RELATIVE: &str = "shared/compat/upstream-examples";

/// The folder of upstream examples, or `None` (after saying so once per
/// test binary) when there is none and it is not required.
///
/// # Panics
/// When the folder is missing and `JOBSET_UPSTREAM_EXAMPLES=required`.
pub fn upstream_examples() -> Option<PathBuf> {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start = start.canonicalize().unwrap_or_else(|_| start.to_path_buf());
    let found = start
        .ancestors()
        .map(|a| a.join(RELATIVE))
        .find(|p| p.is_dir());
    if found.is_none() {
        let required = std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "required");
        assert!(
            !required,
            "{REQUIRED_VAR}=required, but no {RELATIVE} was found beside {} or any directory above it",
            start.display()
        );
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            // Straight to stderr: the harness captures `eprintln!` of
            // passing tests, and this line is meant to be seen.
            let _ = writeln!(
                std::io::stderr(),
                "note: the upstream-example checks were not run: no {RELATIVE} beside {} or any \
                 directory above it (set {REQUIRED_VAR}=required to make that a failure)",
                start.display()
            );
        });
    }
    found
}
