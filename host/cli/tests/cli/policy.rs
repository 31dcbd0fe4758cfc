//! `jobset policy` through the command line: a verdict exits 0, a decision
//! that fails exits 1 and says which file, which scenario and why; a file
//! that is not a plugin exits 2 and says what it is instead.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::repo;

fn policy_test(plugin: &Path, scenario: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(["policy", "test"])
        .arg(plugin)
        .arg("--scenario")
        .arg(scenario)
        .env_remove("RUST_LOG")
        .output()
        .expect("the jobset binary runs")
}

#[test]
fn policy_test_prints_a_verdict_or_fails_naming_the_file_and_the_reason() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let outcome = dir.path().join("outcome.wasm");
    let placement = dir.path().join("placement.wasm");
    std::fs::write(&outcome, jobset_policy::builtin::DEFAULT_OUTCOME).expect("writes");
    std::fs::write(&placement, jobset_policy::builtin::DEFAULT_PLACEMENT).expect("writes");
    let scenario = repo().join("examples/policy/preempted.scenario.yaml");

    let ok = policy_test(&outcome, &scenario);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("# decided by default-outcome@"),
        "{stdout}"
    );
    // No failurePolicy in the snapshot: the first failed Job fails the set.
    assert!(
        stdout.contains("action: !Fail\n  reason: FailedJobs"),
        "{stdout}"
    );

    // The scenario asks for an outcome; the placement plugin exports none.
    let failed = policy_test(&placement, &scenario);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stdout}\n{stderr}");
    let both = format!("{stdout}{stderr}");
    assert!(both.contains("no verdict for "), "{both}");
    assert!(both.contains("preempted.scenario.yaml: "), "{both}");
    assert!(both.contains("placement.wasm@"), "{both}");
    assert!(
        both.contains("does not export jobset:policy/outcome"),
        "{both}"
    );
    // Said once, not repeated by a runtime warning.
    assert!(!both.contains("WARN"), "{both}");
}

#[test]
fn policy_inspect_says_what_a_file_is_when_it_is_not_a_component() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = dir.path().join("notes.txt");
    let core = dir.path().join("core.wasm");
    std::fs::write(&text, "#!/bin/sh\n").expect("writes");
    // The header of a core module: magic, version 1, layer 0.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("writes");
    for (file, want) in [
        (&text, "not WebAssembly: it starts with \"#!/b\""),
        (&core, "a core WebAssembly module, not a component"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jobset"))
            .args(["policy", "inspect"])
            .arg(file)
            .output()
            .expect("the jobset binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("plugin {}: {want}", file.display())),
            "{stderr}"
        );
    }
}

#[test]
fn policy_pack_refuses_a_name_or_namespace_kubernetes_would_refuse() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plugin = dir.path().join("outcome.wasm");
    std::fs::write(&plugin, jobset_policy::builtin::DEFAULT_OUTCOME).expect("writes");
    let pack = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jobset"))
            .args(["policy", "pack"])
            .arg(&plugin)
            .args(extra)
            .output()
            .expect("the jobset binary runs")
    };
    let ok = pack(&["--name", "fail-fast"]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("name: jobset-policy-fail-fast"));
    for (args, want) in [
        (
            &["--name", "Fail_Fast"][..],
            "--name \"Fail_Fast\": as part of the ConfigMap name jobset-policy-Fail_Fast: a DNS-1123 subdomain",
        ),
        (
            &["--name", ""][..],
            "--name \"\": a plugin name must not be empty",
        ),
        (
            &["--name", "ok", "--namespace", "Team A"][..],
            "--namespace \"Team A\": a DNS-1123 label",
        ),
    ] {
        let out = pack(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing printed on refusal"
        );
    }
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    // `jobset crd` writes about 650 KB, far more than a pipe holds, so the
    // write meets the closed pipe; `| head` does this to every command.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .arg("crd")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the jobset binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
