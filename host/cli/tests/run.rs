//! `jobset run` end to end: the simulated cluster, the controller and the
//! plugins in one process, driven through the command line as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The upstream examples: `shared/compat/upstream-examples` beside the
/// checkout (or beside a directory above it, for worktrees).
fn examples_dir() -> PathBuf {
    repo()
        .ancestors()
        .map(|a| a.join("shared/compat/upstream-examples"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| repo().join("../shared/compat/upstream-examples"))
}

fn jobset(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the jobset binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example(name: &str) -> String {
    examples_dir().join(name).display().to_string()
}

#[test]
fn the_quickstart_policy_decides_the_restarts_and_the_jobset_completes() {
    let out = jobset(&[
        "run",
        &example("failure-policy__host-maintenance-event-model.yaml"),
        "--scenario",
        "examples/host-maintenance.scenario.yaml",
        "--plugin",
        "outcome=preemption-aware",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("outcome by preemption-aware@") && t.contains("(Preempted"),
        "{t}"
    );
    assert!(t.contains("(ApplicationFailure"), "{t}");
    let row = t
        .lines()
        .find(|l| l.starts_with("default/host-maintenance-event-model"))
        .expect("a summary row");
    assert!(
        row.contains("Completed") && row.split_whitespace().nth(2) == Some("2"),
        "{row}"
    );
}

#[test]
fn without_the_plugin_the_manifest_rules_fail_the_jobset_after_the_crash() {
    let out = jobset(&[
        "run",
        &example("failure-policy__host-maintenance-event-model.yaml"),
        "--scenario",
        "examples/host-maintenance.scenario.yaml",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("restart jobset (FailurePolicy_failurePolicyRule0"),
        "{t}"
    );
    assert!(t.contains("fail (ReachedMaxRestarts"), "{t}");
}

#[test]
fn an_invalid_jobset_is_bad_input_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("jobset-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: bad}\nspec:\n  replicatedJobs:\n  - name: a\n    dependsOn: [{name: b, status: Ready}]\n    template: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}\n",
    )
    .expect("write fixture");
    let out = jobset(&["run", &file.display().to_string()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("spec.replicatedJobs[0].dependsOn"), "{t}");
    let out = jobset(&[
        "run",
        &example("seed__multislice-jax-tpu.yaml"),
        "--plugin",
        "outcome=/no/such.wasm",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_pod_that_fits_no_node_is_reported_as_stuck_with_the_reason() {
    let out = jobset(&[
        "run",
        &example("seed__multislice-jax-tpu.yaml"),
        "--nodes",
        "pools=2,nodes=2,cpu=8",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Stuck"), "{t}");
    assert!(t.contains("unschedulable") || t.contains("wait"), "{t}");
}
