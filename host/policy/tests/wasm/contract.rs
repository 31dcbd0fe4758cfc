//! Versions of the `jobset:policy` contract side by side: a 0.1.0 plugin
//! (the default outcome plugin as released with 0.1.0, kept under
//! `tests/fixtures/contract-0.1.0/` with its source) beside the 0.2.0
//! plugins built from this tree; the optional `pod-facts` input.

use crate::common::{outcome_plugin, runtime, same_records, snap};
use jobset_policy::snapshot::{Action, JobPods};
use jobset_policy::{PolicyEngine, WasmPlugin, builtin, tools};
use jobset_policy_sdk::harness::{SnapshotBuilder, failed_pod, job_pods, rule};
use jobset_policy_sdk::types::FailureAction;
use std::path::Path;

const FIXTURE: &[u8] = include_bytes!("../fixtures/contract-0.1.0/default_outcome.wasm");

fn released_0_1_0() -> WasmPlugin {
    runtime()
        .load("default-outcome-0.1.0", FIXTURE)
        .expect("the 0.1.0 component loads")
}

fn exit_codes() -> WasmPlugin {
    runtime()
        .load("exit-codes", builtin::EXAMPLE_EXIT_CODES)
        .expect("exit-codes loads")
}

fn pods(code: i32) -> Vec<JobPods> {
    same_records(&vec![job_pods(
        "js-workers-1",
        vec![failed_pod("js-workers-1-x", "node-a", code, 9)],
    )])
}

#[test]
fn a_0_1_0_plugin_and_a_0_2_0_plugin_load_side_by_side_and_decide_alike() {
    let old = released_0_1_0();
    let new = outcome_plugin();
    assert_eq!(old.info().contract, "0.1.0");
    assert_eq!(new.info().contract, "0.2.0");
    assert!(old.info().inputs.is_empty() && new.info().inputs.is_empty());
    let cases = [
        SnapshotBuilder::new("js").rjob("workers", 2).failed(
            "workers",
            1,
            "BackoffLimitExceeded",
            "x",
            5,
        ),
        SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .max_restarts(2)
            .rule(rule("r", FailureAction::RestartJobSetAndIgnoreMaxRestarts))
            .failed("workers", 1, "PodFailurePolicy", "evicted", 5),
        SnapshotBuilder::new("js")
            .rjob("workers", 1)
            .succeeded("workers", 0, 5),
    ];
    for case in cases {
        let s = snap(case);
        // Pods offered to either are not given: neither asked.
        let a = old.decide_outcome(&s, &pods(137)).expect("0.1.0 decides");
        let b = new.decide_outcome(&s, &pods(137)).expect("0.2.0 decides");
        assert_eq!(a.verdict, b.verdict);
    }
}

#[test]
fn pod_facts_reach_a_plugin_that_asks_for_them() {
    let plugin = exit_codes();
    assert_eq!(plugin.info().inputs, ["pod-facts"]);
    assert!(plugin.wants(jobset_policy::POD_FACTS));
    let s = snap(SnapshotBuilder::new("js").rjob("workers", 2).failed(
        "workers",
        1,
        "BackoffLimitExceeded",
        "x",
        5,
    ));
    let d = plugin.decide_outcome(&s, &pods(137)).expect("decides");
    match d.verdict.action {
        Action::RestartJobset(r) => {
            assert!(!r.count_towards_max);
            assert_eq!(r.condition_reason, "RetriableExitCode");
        }
        other => panic!("{other:?}"),
    }
    // Exit code 1 is not retriable: the manifest's rules (none: fail).
    let d = plugin.decide_outcome(&s, &pods(1)).expect("decides");
    assert!(matches!(d.verdict.action, Action::Fail(_)), "{d:?}");
}

#[test]
fn a_plugin_asking_for_an_input_the_host_does_not_know_is_refused_naming_it() {
    let err = runtime()
        .load("unknown-input", builtin::EXAMPLE_UNKNOWN_INPUT)
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugin unknown-input: meta.info() asks for the input \"node-history\", \
         which this host does not know (it knows: pod-facts)"
    );
}

#[test]
fn inspect_says_which_contract_a_plugin_speaks_and_what_it_asks_for() {
    let old = tools::inspect(runtime(), "old.wasm", FIXTURE).expect("inspects");
    assert_eq!(old.contract.as_deref(), Some("0.1.0"));
    assert!(
        old.exports
            .iter()
            .any(|e| e == "jobset:policy/outcome@0.1.0")
    );
    let new = tools::inspect(runtime(), "exit-codes.wasm", builtin::EXAMPLE_EXIT_CODES)
        .expect("inspects");
    assert_eq!(new.contract.as_deref(), Some("0.2.0"));
    assert_eq!(new.inputs, ["pod-facts"]);
}

#[test]
fn the_types_of_0_2_0_are_those_of_0_1_0() {
    // The host serves both versions with one set of records; a change to
    // `types` needs a record set (and an adapter) of its own.
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let read = |p: &Path| std::fs::read_to_string(p).expect("wit file");
    assert_eq!(
        read(&wit.join("types.wit")),
        read(&wit.join("0.1.0/types.wit"))
    );
    assert!(read(&wit.join("0.1.0/worlds.wit")).contains("package jobset:policy@0.1.0;"));
    assert!(read(&wit.join("worlds.wit")).contains("package jobset:policy@0.2.0;"));
}

#[test]
fn a_recording_keeps_the_pods_and_replays_with_them() {
    let plugin = exit_codes();
    let s = snap(SnapshotBuilder::new("js").rjob("workers", 2).failed(
        "workers",
        1,
        "BackoffLimitExceeded",
        "x",
        5,
    ));
    let verdict = plugin.outcome(&s, &pods(143)).expect("decides");
    let recording = jobset_policy::recording::Recording {
        contract: jobset_policy::recording::CONTRACT.to_string(),
        time: "2026-12-06T00:00:00Z".into(),
        jobset: "default/js".into(),
        plugin: plugin.id().to_string(),
        sha256: plugin.info().sha256.clone(),
        slot: jobset_policy::Slot::Outcome,
        snapshot: s,
        request: None,
        pods: pods(143),
        verdict: Some(serde_json::to_value(&verdict).unwrap()),
        error: None,
    };
    let read =
        jobset_policy::recording::Recording::from_yaml(&recording.to_yaml()).expect("reads back");
    assert_eq!(read, recording);
    assert!(jobset_policy::recording::replay(&plugin, &read).same);
    // Without the pods the same plugin decides otherwise: they were used.
    let bare = jobset_policy::recording::Recording {
        pods: Vec::new(),
        ..read
    };
    assert!(!jobset_policy::recording::replay(&plugin, &bare).same);
    // A 0.1.0 recording (no pods) is still read.
    let old = bare
        .to_yaml()
        .replace("jobset:policy@0.2.0", "jobset:policy@0.1.0");
    assert!(jobset_policy::recording::Recording::from_yaml(&old).is_ok());
}
