//! What the tests that run `jobset` as a process share: a child stopped
//! when the test ends, `jobset sim serve` started and ready, and where the
//! repository and its examples are (upstream's: `upstream`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository root, canonical (so that its ancestors are real).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// One of the repository's own example files (`examples/...`), as a path
/// argument.
pub fn own_example(name: &str) -> String {
    repo().join("examples").join(name).display().to_string()
}

/// Kills the child when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `jobset sim serve` on a free loopback port without the Job
/// controller, writing its kubeconfig to `kubeconfig`, with `extra`
/// options, and waits for its ready line.
pub fn serve_sim(kubeconfig: &Path, extra: &[&str]) -> Proc {
    serve_sim_with(kubeconfig, "off", extra)
}

/// As [`serve_sim`], with the Job controller `on` or `off`.
pub fn serve_sim_with(kubeconfig: &Path, job_controller: &str, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args([
            "sim",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--job-controller",
            job_controller,
        ])
        .arg("--kubeconfig-out")
        .arg(kubeconfig)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jobset sim serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a ready line");
    assert!(line.contains("ready on"), "{line}");
    Proc(child)
}
