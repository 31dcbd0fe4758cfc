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

fn jobset_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the jobset binary runs")
}

/// The public key `jobset policy keygen` printed.
fn public_key(keygen: &Output) -> String {
    String::from_utf8_lossy(&keygen.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key, to trust: "))
        .expect("a public key line")
        .to_string()
}

#[test]
fn keygen_pack_sign_and_verify_agree_and_refuse_other_keys_and_bytes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE).expect("writes");
    let key = dir.path().join("signing.key");
    let key_arg = key.display().to_string();
    let made = jobset_cmd(&["policy", "keygen", "--out", &key_arg]);
    assert_eq!(
        made.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = public_key(&made);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("the key exists")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is readable by its owner only"
        );
    }
    // keygen never overwrites a key.
    assert_eq!(
        jobset_cmd(&["policy", "keygen", "--out", &key_arg])
            .status
            .code(),
        Some(2)
    );

    let plugin_arg = plugin.display().to_string();
    let packed = jobset_cmd(&[
        "policy",
        "pack",
        &plugin_arg,
        "--name",
        "preemption-aware",
        "--sign",
        &key_arg,
    ]);
    assert_eq!(packed.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&packed.stdout).to_string();
    assert!(
        yaml.contains("policy.jobset.dev/signature: ed25519:"),
        "{yaml}"
    );
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, &yaml).expect("writes");
    let cm_arg = cm.display().to_string();

    let ok = jobset_cmd(&["policy", "verify", &cm_arg, "--key", &public]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.starts_with("plugin preemption-aware: sha256 ") && text.contains("signed by key"),
        "{text}"
    );

    // Another key, and the same signature over other bytes, are refused.
    let other = jobset_cmd(&[
        "policy",
        "keygen",
        "--out",
        &dir.path().join("other.key").display().to_string(),
    ]);
    let refused = jobset_cmd(&["policy", "verify", &cm_arg, "--key", &public_key(&other)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("which this cluster does not trust"));
    let swapped = yaml.replace("policy.jobset.dev/sha256:", "policy.jobset.dev/unpinned:");
    let hostile = serde_yaml::to_string(&{
        let mut v: serde_yaml::Value = serde_yaml::from_str(&swapped).expect("yaml");
        v["binaryData"]["plugin.wasm"] =
            serde_yaml::Value::String(base64_of(jobset_policy::builtin::DEFAULT_OUTCOME));
        v
    })
    .expect("yaml");
    std::fs::write(&cm, hostile).expect("writes");
    let refused = jobset_cmd(&["policy", "verify", &cm_arg, "--key", &public]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a signature of sha256"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
