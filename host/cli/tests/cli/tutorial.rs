//! The README's policy tutorial and the plugin tutorial
//! (`plugins/examples/README.md`), run as written: every `$` line of the
//! ```console blocks marked `<!-- tutorial -->` runs through `sh` from the
//! repository root with the `jobset` binary on PATH, and the lines shown
//! under it must appear in its output, in order (`…` matches anything).
//!
//! A line ending in ` &` starts a background process, as a shell would: the
//! test waits for the lines shown under it to appear on its output and
//! stops it at the end; `export NAME=VALUE` sets a variable for the lines
//! after it.
//!
//! One thing differs from a reader's machine, to keep CI cheap: the
//! `cargo build` of the plugin uses the target directory (and path
//! remapping) the workspace build already compiled the example plugins into
//! (`host/policy/build.rs`), so it finds them fresh instead of building a
//! second copy, and the paths `target/wasm32-wasip2/` are pointed at that
//! directory. Every file the tutorial names is in the repository.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::repo;

/// `<target>/wasm-plugins`, where the workspace build put the plugins.
fn wasm_target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_jobset"))
        .ancestors()
        .nth(2)
        .map(|t| t.join("wasm-plugins"))
        .expect("the binary sits in <target>/<profile>/")
}

/// One command and the lines it must print.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn tutorial_steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- tutorial -->" {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```console"),
            "a tutorial marker must precede a console block"
        );
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            if let Some(cmd) = l.strip_prefix("$ ") {
                steps.push(Step {
                    command: cmd.to_string(),
                    expected: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(l.to_string());
            }
        }
    }
    steps
}

/// Whether `line` matches `pattern`, where `…` matches any text and a run
/// of spaces matches any run (table columns widen with their contents).
fn matches(pattern: &str, line: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (pattern, line) = (squeeze(pattern), squeeze(line));
    let (pattern, line) = (pattern.as_str(), line.as_str());
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn remap_flags(target: &Path, root: &Path) -> String {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|_| PathBuf::from("/nonexistent-cargo-home"));
    [
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/target", target.display()),
        format!("--remap-path-prefix={}=/src", root.display()),
    ]
    .join("\u{1f}")
}

#[test]
fn the_readme_policy_tutorial_runs_as_written() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut steps = tutorial_steps(&readme);
    assert!(steps.len() >= 5, "found {} tutorial commands", steps.len());
    // The plugin tutorial's own blocks (the pod-facts examples) run too.
    let plugins = std::fs::read_to_string(root.join("plugins/examples/README.md"))
        .expect("plugins/examples/README.md");
    let more = tutorial_steps(&plugins);
    assert!(
        more.len() >= 5,
        "found {} plugin tutorial commands",
        more.len()
    );
    steps.extend(more);
    let wasm = wasm_target_dir();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_jobset"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut background = Background(Vec::new());
    let mut exported: Vec<(String, String)> = Vec::new();
    for step in &steps {
        let command = step.command.replace(
            "target/wasm32-wasip2/",
            &format!("{}/wasm32-wasip2/", wasm.display()),
        );
        if let Some((name, value)) = command
            .strip_prefix("export ")
            .and_then(|a| a.split_once('='))
        {
            exported.push((name.to_string(), value.to_string()));
            continue;
        }
        let (command, in_background) = match command.strip_suffix(" &") {
            Some(c) => (c.to_string(), true),
            None => (command, false),
        };
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(&command)
            .current_dir(&root)
            .env("PATH", &path);
        // The outer cargo's settings must not leak into the nested build.
        const KEPT: [&str; 3] = ["CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"];
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let cargo_or_rust = key.starts_with("CARGO_") || key.starts_with("RUST");
            if cargo_or_rust && !KEPT.contains(&key.as_str()) {
                sh.env_remove(&key);
            }
        }
        // The same flags and profile as `host/policy/build.rs`, or cargo
        // would rebuild the plugin over the copy that build made.
        sh.env("CARGO_TARGET_DIR", &wasm)
            .env("CARGO_ENCODED_RUSTFLAGS", remap_flags(&wasm, &root))
            .env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .envs(exported.iter().map(|(k, v)| (k, v)));
        if in_background {
            background.start(sh, step);
            continue;
        }
        let out = sh.output().expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{}` failed:\n{text}\n{}",
            step.command,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut actual = text.lines();
        for want in step.expected.iter().filter(|w| !w.trim().is_empty()) {
            let trimmed = want.trim_end();
            let found = if trimmed == "…" {
                true
            } else {
                actual.any(|l| matches(trimmed, l.trim_end()))
            };
            assert!(
                found,
                "`{}`: expected, in order, a line like\n  {want}\nin:\n{text}",
                step.command
            );
        }
    }
}

/// The processes started by ` &` lines, each in a process group of its own,
/// stopped (group and all) when the test ends, passed or not.
struct Background(Vec<Child>);

impl Background {
    /// Starts `sh` and waits until the lines `step` shows have appeared, in
    /// order, on its output.
    fn start(&mut self, mut sh: Command, step: &Step) {
        use std::os::unix::process::CommandExt;
        sh.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = sh.spawn().expect("sh starts");
        let stdout = child.stdout.take().expect("piped stdout");
        self.0.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        for want in step.expected.iter().filter(|w| !w.trim().is_empty()) {
            loop {
                let line = rx
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|_| {
                        panic!(
                            "`{}`: no line like\n  {want}\nwithin a minute; it printed:\n{}",
                            step.command,
                            seen.join("\n")
                        )
                    });
                let found = matches(want.trim_end(), line.trim_end());
                seen.push(line);
                if found {
                    break;
                }
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

#[test]
fn ellipsis_patterns_match_only_what_they_say() {
    assert!(matches("a…c", "abbbc"));
    assert!(matches("# decided by x@…", "# decided by x@12ab"));
    assert!(!matches("a…c", "abbbd"));
    assert!(!matches("abc", "abcd"));
    assert!(matches("p-…-q: …", "p-1-q: z"));
    assert!(matches(
        "…           Warning   Reason   x",
        "12s   Warning Reason      x"
    ));
    assert!(!matches("… Warning Reason", "12s Normal Reason"));
}
