//! inspect / test / pack, and the shipped ConfigMaps in deploy/plugins.

use crate::common::runtime;
use jobset_policy::builtin;
use jobset_policy::tools::{inspect, pack, test};
use std::path::PathBuf;

#[test]
fn inspect_names_the_plugin_its_exports_and_imports() {
    let i = inspect(runtime(), "outcome.wasm", builtin::DEFAULT_OUTCOME).expect("inspects");
    assert_eq!(i.name.as_deref(), Some("default-outcome"));
    assert!(
        i.exports.iter().any(|e| e == "jobset:policy/outcome@0.3.0"),
        "{:?}",
        i.exports
    );
    assert!(i.exports.iter().any(|e| e == "jobset:policy/meta@0.3.0"));
    assert_eq!(i.size, builtin::DEFAULT_OUTCOME.len());
    assert_eq!(i.sha256.len(), 64);
    assert!(i.problem.is_none());

    let wrong = inspect(runtime(), "wrong.wasm", builtin::EXAMPLE_WRONG_EXPORT).expect("inspects");
    assert!(
        wrong
            .problem
            .expect("not a plugin")
            .contains("jobset:policy/meta")
    );
}

/// The default plugins are built without `std`: they import no WASI at
/// all, only the shared record types, and the outcome plugin the host's
/// regex matcher. A
/// dependency that pulls `std` back in would show up here (and in their
/// size and compile time).
#[test]
fn default_plugins_import_nothing_but_the_hosts_regex() {
    const TYPES: &str = "jobset:policy/types@0.3.0";
    for (bytes, expected) in [
        (builtin::DEFAULT_STARTUP, &[TYPES][..]),
        (
            builtin::DEFAULT_OUTCOME,
            &[
                "jobset:policy/in-place@0.3.0",
                "jobset:policy/pods@0.3.0",
                "jobset:policy/regex@0.3.0",
                TYPES,
            ][..],
        ),
        (builtin::DEFAULT_PLACEMENT, &[TYPES][..]),
    ] {
        let mut imports = inspect(runtime(), "plugin.wasm", bytes)
            .expect("inspects")
            .imports;
        imports.sort();
        assert_eq!(imports, expected);
    }
    // A plugin written with `std` imports WASI, and still loads.
    let hostile = inspect(runtime(), "hostile.wasm", builtin::EXAMPLE_HOSTILE).expect("inspects");
    assert!(
        hostile.imports.iter().any(|n| n.starts_with("wasi:")),
        "{:?}",
        hostile.imports
    );
}

#[test]
fn test_runs_a_yaml_scenario_and_prints_the_verdict() {
    let snapshot = crate::common::snap(
        jobset_policy_sdk::harness::SnapshotBuilder::new("js")
            .rjob("workers", 1)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 5),
    );
    let scenario = format!(
        "slot: outcome\nsnapshot:\n{}",
        serde_yaml::to_string(&snapshot)
            .expect("yaml")
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let out = test(
        runtime(),
        "outcome.wasm",
        builtin::DEFAULT_OUTCOME,
        &scenario,
    )
    .expect("runs")
    .expect("decides");
    assert!(out.starts_with("# decided by default-outcome@"), "{out}");
    assert!(out.contains("FailedJobs"), "{out}");
    assert!(
        test(
            runtime(),
            "outcome.wasm",
            builtin::DEFAULT_OUTCOME,
            "slot: ["
        )
        .is_err()
    );

    // A plugin asked for a slot it does not export: it ran, and the
    // failure names the label it was given and the slot.
    let err = test(
        runtime(),
        "placement.wasm",
        builtin::DEFAULT_PLACEMENT,
        &scenario,
    )
    .expect("runs")
    .expect_err("no outcome export");
    let text = err.to_string();
    assert!(text.contains("placement.wasm@"), "{text}");
    assert!(text.contains("jobset:policy/outcome"), "{text}");
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/plugins")
}

/// The default plugins shipped as ConfigMaps must be the ones built from
/// this tree. `JOBSET_BLESS=1 cargo test -p jobset-policy` rewrites them.
#[test]
fn deploy_configmaps_match_the_built_default_plugins() {
    let bless = std::env::var("JOBSET_BLESS").is_ok_and(|v| v == "1");
    for (name, bytes) in [
        ("default-startup", builtin::DEFAULT_STARTUP),
        ("default-outcome", builtin::DEFAULT_OUTCOME),
        ("default-placement", builtin::DEFAULT_PLACEMENT),
    ] {
        let expected = pack(bytes, name, "jobset-system").expect("packs");
        let path = deploy_dir().join(format!("{name}.yaml"));
        if bless {
            std::fs::create_dir_all(deploy_dir()).expect("mkdir");
            std::fs::write(&path, &expected).expect("writes");
            continue;
        }
        let actual = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with JOBSET_BLESS=1", path.display()));
        assert!(
            actual == expected,
            "{} is stale (plugin sha256 {}); run JOBSET_BLESS=1 cargo test -p jobset-policy",
            path.display(),
            jobset_policy::sha256_hex(bytes)
        );
    }
}

#[test]
fn the_default_plugins_accept_an_empty_config_and_refuse_any_other_by_name() {
    for slot in jobset_policy::Slot::ALL {
        let name = builtin::default_name(slot);
        let plugin = runtime()
            .load(name, builtin::default_bytes(slot))
            .expect("loads");
        for empty in ["", "{}", " null "] {
            plugin
                .validate_config(empty)
                .unwrap_or_else(|e| panic!("{name} refused {empty:?}: {e}"));
        }
        let err = plugin
            .validate_config(r#"{"maxRestarts": 3}"#)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(&format!("{name} takes no configuration, got 18 bytes")),
            "{err}"
        );
    }
}

/// A scenario with `in_place` is the outcome slot's in-place decision
/// (`decide-in-place`): a pod lost with its node recreates the JobSet under
/// `recreate-on-node-loss`, and goes on in place under the default.
#[test]
fn test_runs_an_in_place_scenario_through_decide_in_place() {
    let snapshot = crate::common::snap(
        jobset_policy_sdk::harness::SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .max_restarts(3)
            .ready("workers", 0)
            .ready("workers", 1),
    );
    let indent = |yaml: String| -> String { yaml.lines().map(|l| format!("  {l}\n")).collect() };
    let mut lost = jobset_policy_sdk::harness::failed_pod("js-workers-1-0-abcde", "n7", 137, 9);
    lost.disruption = Some(jobset_policy_sdk::pods::Disruption {
        reason: "DeletionByTaintManager".into(),
        message: "node n7 is gone".into(),
    });
    let restart = jobset_policy_sdk::in_place::InPlaceRestart {
        current: Some(0),
        previous: None,
        highest: Some(1),
        expected: 4,
        reporting: 4,
        agreed: false,
        max_container_restarts: 1,
        pods: vec![lost],
        omitted: 0,
    };
    let scenario = format!(
        "slot: outcome\nsnapshot:\n{}in_place:\n{}",
        indent(serde_yaml::to_string(&snapshot).expect("yaml")),
        indent(serde_yaml::to_string(&restart).expect("yaml")),
    );
    let decide = |name: &str, bytes: &[u8]| {
        test(runtime(), name, bytes, &scenario)
            .expect("runs")
            .expect("decides")
    };
    let custom = decide("recreate.wasm", builtin::EXAMPLE_RECREATE_ON_NODE_LOSS);
    assert!(custom.contains("RestartJobset"), "{custom}");
    assert!(custom.contains("PodLostDuringInPlaceRestart"), "{custom}");
    let default = decide("outcome.wasm", builtin::DEFAULT_OUTCOME);
    assert!(default.contains("action: Continue"), "{default}");
}
