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

/// Records `jobset run` of the host-maintenance example (with `plugin`
/// deciding outcomes, if given) into `dir`.
fn record_run(dir: &Path, plugin: Option<&str>) {
    let example = repo().join("examples/host-maintenance.yaml");
    let scenario = repo().join("examples/host-maintenance.scenario.yaml");
    let mut args = vec![
        "run".to_string(),
        example.display().to_string(),
        "--scenario".to_string(),
        scenario.display().to_string(),
        "--record".to_string(),
        dir.display().to_string(),
    ];
    if let Some(p) = plugin {
        args.extend(["--plugin".to_string(), format!("outcome={p}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = jobset_cmd(&args);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_recorded_run_replays_the_same_with_its_own_policy_and_shows_where_another_differs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let recorded = dir.path().join("default");
    record_run(&recorded, None);
    let files = std::fs::read_dir(&recorded)
        .expect("the recording folder")
        .count();
    assert!(files > 5, "{files} recordings");

    // The policy that decided replays the same, exit 0; the decisions of
    // other slots are not its to make.
    let same = jobset_cmd(&[
        "policy",
        "replay",
        "default-outcome",
        recorded.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{text}");
    assert!(text.contains("2 decisions: 2 same, 0 different"), "{text}");
    assert!(
        text.contains(&format!("({} of other slots skipped)", files - 2)),
        "{text}"
    );

    // The preemption-aware candidate restarts where the manifest's rules
    // did, and restarts again where they failed the JobSet: exit 1, both
    // verdicts shown.
    let differs = jobset_cmd(&[
        "policy",
        "replay",
        "preemption-aware",
        recorded.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&differs.stdout);
    assert_eq!(differs.status.code(), Some(1), "{text}");
    assert!(text.contains("2 decisions: 0 same, 2 different"), "{text}");
    assert!(
        text.contains("recorded (default-outcome@")
            && text.contains("\"reason\":\"ReachedMaxRestarts\"")
            && text.contains("replayed (preemption-aware@")
            && text.contains("\"condition_reason\":\"Preempted\""),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&differs.stderr)
            .contains("2 of 2 decisions differ with preemption-aware@"),
        "{}",
        String::from_utf8_lossy(&differs.stderr)
    );

    // A run decided by the candidate replays the same with it.
    let candidate = dir.path().join("candidate");
    record_run(&candidate, Some("preemption-aware"));
    let again = jobset_cmd(&[
        "policy",
        "replay",
        "preemption-aware",
        candidate.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn replay_refuses_a_corrupted_recording_or_another_contract_naming_the_file_and_field() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let recorded = dir.path().join("rec");
    record_run(&recorded, None);
    let mut outcome = std::fs::read_dir(&recorded)
        .expect("the folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-outcome.yaml"))
        .collect::<Vec<_>>();
    outcome.sort();
    let good = std::fs::read_to_string(&outcome[0]).expect("reads");

    // Each bad file is refused (exit 2) naming the file and what is wrong.
    let truncated = good[..good.len() / 2].to_string();
    for (file, text, says) in [
        (
            "other-contract.yaml",
            good.replace("jobset:policy@0.3.0", "jobset:policy@9.0.0"),
            "other-contract.yaml: contract: \"jobset:policy@9.0.0\" is not a version this jobset replays",
        ),
        (
            "corrupted.yaml",
            good.replace("slot: outcome", "slot: sideways"),
            "corrupted.yaml: slot: unknown variant `sideways`",
        ),
        ("truncated.yaml", truncated, "truncated.yaml: "),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("writes");
        let out = jobset_cmd(&[
            "policy",
            "replay",
            "default-outcome",
            path.to_str().expect("utf-8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
    }

    let nothing = jobset_cmd(&[
        "policy",
        "replay",
        "no-such-plugin",
        outcome[0].to_str().expect("utf-8"),
    ]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&nothing.stderr)
            .contains("no-such-plugin: no such file, nor a plugin the binary embeds"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
}

#[test]
fn a_run_with_a_shadow_plugin_shows_where_it_would_have_decided_otherwise() {
    let example = repo().join("examples/host-maintenance.yaml");
    let scenario = repo().join("examples/host-maintenance.scenario.yaml");
    let (example, scenario) = (
        example.to_str().expect("utf-8"),
        scenario.to_str().expect("utf-8"),
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let svg = dir.path().join("timeline.svg");
    let out = jobset_cmd(&[
        "run",
        example,
        "--scenario",
        scenario,
        "--shadow",
        "outcome=preemption-aware",
        "--timeline",
        svg.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The active policy's verdicts stand: the manifest's rules fail it.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("outcome: shadow-preemption-aware@")
            && text.contains("beside default-outcome@")
            && text.contains(": 1 agree, 1 diverge, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("default/host-maintenance attempt 1 (outcome): default-outcome@")
            && text.contains("\"reason\":\"ReachedMaxRestarts\"")
            && text.contains("would decide {\"action\":{\"RestartJobset\""),
        "{text}"
    );
    // The picture marks the divergence when the active plugin decided.
    let picture = std::fs::read_to_string(&svg).expect("the timeline");
    assert!(
        picture.contains(
            ">S1<title>00:05:01 default/host-maintenance: outcome shadow-preemption-aware@"
        ) && picture.contains("RestartJobset where default-outcome@")
            && picture.contains("Shadow divergences (never applied)"),
        "{picture}"
    );
    let bad = jobset_cmd(&["run", example, "--shadow", "sideways=preemption-aware"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--shadow \"sideways=preemption-aware\": unknown slot \"sideways\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
