//! Versions of the `jobset:policy` contract side by side: 0.1.0 and 0.2.0
//! plugins (the default outcome plugin as released with each, kept under
//! `tests/fixtures/contract-<version>/` with its source) beside the 0.3.0
//! plugins built from this tree; the optional `pod-facts` input; the
//! in-place restart decision of 0.3.0.

use crate::common::{outcome_plugin, runtime, same_records, snap};
use jobset_policy::registry::{PLUGIN_LABEL, WASM_KEY};
use jobset_policy::snapshot::{Action, InPlaceRestart, JobPods, Snapshot};
use jobset_policy::{
    ErrorKind, NativeDefaults, PolicyEngine, Registry, RegistryConfig, WasmPlugin, builtin, tools,
};
use jobset_policy_sdk::harness::{SnapshotBuilder, failed_pod, job_pods, rule};
use jobset_policy_sdk::types::FailureAction;
use std::path::Path;

const FIXTURE: &[u8] = include_bytes!("../fixtures/contract-0.1.0/default_outcome.wasm");
const FIXTURE_0_2_0: &[u8] = include_bytes!("../fixtures/contract-0.2.0/default_outcome.wasm");

fn released_0_1_0() -> WasmPlugin {
    runtime()
        .load("default-outcome-0.1.0", FIXTURE)
        .expect("the 0.1.0 component loads")
}

fn released_0_2_0() -> WasmPlugin {
    runtime()
        .load("default-outcome-0.2.0", FIXTURE_0_2_0)
        .expect("the 0.2.0 component loads")
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
fn plugins_of_0_1_0_0_2_0_and_0_3_0_load_side_by_side_and_decide_alike() {
    let old = released_0_1_0();
    let middle = released_0_2_0();
    let new = outcome_plugin();
    assert_eq!(old.info().contract, "0.1.0");
    assert_eq!(middle.info().contract, "0.2.0");
    assert_eq!(new.info().contract, "0.3.0");
    assert!(old.info().inputs.is_empty() && new.info().inputs.is_empty());
    assert!(!old.decides_in_place() && !middle.decides_in_place());
    assert!(new.decides_in_place());
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
        let b = middle
            .decide_outcome(&s, &pods(137))
            .expect("0.2.0 decides");
        let c = new.decide_outcome(&s, &pods(137)).expect("0.3.0 decides");
        assert_eq!(a.verdict, b.verdict);
        assert_eq!(b.verdict, c.verdict);
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
    assert_eq!(new.contract.as_deref(), Some("0.3.0"));
    assert_eq!(new.inputs, ["pod-facts"]);
    assert!(
        new.exports
            .iter()
            .any(|e| e == "jobset:policy/outcome@0.3.0")
    );
}

/// A WIT file without its comments and blank lines.
fn without_comments(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(String::from)
        .collect()
}

#[test]
fn the_records_of_0_3_0_are_those_of_0_1_0_and_0_2_0() {
    // The host serves every version with one set of records; a change to
    // `types` or `pods` needs a record set (and an adapter) of its own.
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let read = |p: &str| std::fs::read_to_string(wit.join(p)).expect("wit file");
    assert_eq!(read("types.wit"), read("0.1.0/types.wit"));
    assert_eq!(read("0.2.0/types.wit"), read("0.1.0/types.wit"));
    assert_eq!(
        without_comments(&read("pods.wit")),
        without_comments(&read("0.2.0/pods.wit"))
    );
    assert!(read("0.1.0/worlds.wit").contains("package jobset:policy@0.1.0;"));
    assert!(read("0.2.0/worlds.wit").contains("package jobset:policy@0.2.0;"));
    assert!(read("worlds.wit").contains("package jobset:policy@0.3.0;"));
    // 0.2.0's outcome slot is 0.3.0's without `decide-in-place`.
    let outcome = without_comments(&read("outcome.wit"));
    let outcome_0_2_0 = without_comments(&read("0.2.0/outcome.wit"));
    let added: Vec<&String> = outcome
        .iter()
        .filter(|l| !outcome_0_2_0.contains(l))
        .collect();
    assert_eq!(
        added,
        [
            "use in-place.{in-place-restart};",
            "decide-in-place: func(snapshot: snapshot, restart: in-place-restart) -> \
             result<outcome-verdict, policy-error>;"
        ]
    );
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
        in_place: None,
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
    // 0.2.0 and 0.1.0 recordings are still read.
    for version in ["0.2.0", "0.1.0"] {
        let old = bare
            .to_yaml()
            .replace("jobset:policy@0.3.0", &format!("jobset:policy@{version}"));
        assert!(jobset_policy::recording::Recording::from_yaml(&old).is_ok());
    }
}

/// A JobSet of 2 × 2 pods restarting in place, `maxRestarts` 2, with the
/// outcome plugin `custom` selected.
fn in_place_jobset() -> Snapshot {
    snap(
        SnapshotBuilder::new("js")
            .annotation("policy.jobset.dev/outcome", "custom")
            .rjob("workers", 2)
            .max_restarts(2)
            .ready("workers", 0)
            .ready("workers", 1),
    )
}

/// Pods report attempt `highest`, one of them lost with its node when
/// `node_lost`.
fn in_place_state(highest: i32, node_lost: bool) -> InPlaceRestart {
    let mut crashed = failed_pod("js-workers-0-0-aaaaa", "n1", 1, 9);
    crashed.phase = "Running".into();
    let mut pods = vec![crashed];
    if node_lost {
        let mut gone = failed_pod("js-workers-1-1-bbbbb", "n2", 137, 9);
        gone.disruption = Some(jobset_policy_sdk::pods::Disruption {
            reason: "DeletionByTaintManager".into(),
            message: "node n2 is gone".into(),
        });
        pods.push(gone);
    }
    same_records(&InPlaceState {
        current: Some(highest - 1),
        previous: None,
        highest: Some(highest),
        expected: 4,
        reporting: 4,
        agreed: false,
        max_container_restarts: 1,
        pods,
        omitted: 0,
    })
}

type InPlaceState = jobset_policy_sdk::in_place::InPlaceRestart;

#[test]
fn the_default_decides_in_place_restarts_as_upstream_in_wasm_and_natively() {
    let wasm = outcome_plugin();
    for (highest, lost) in [(1, false), (2, true), (3, false)] {
        let (s, r) = (in_place_jobset(), in_place_state(highest, lost));
        let a = wasm.decide_in_place(&s, &r).expect("wasm decides");
        let b = NativeDefaults
            .decide_in_place(&s, &r)
            .expect("native decides");
        assert_eq!(a.verdict, b.verdict);
        // A pod lost or not, the default goes on in place within the budget.
        match a.verdict.action {
            Action::Continue => assert!(highest <= 2),
            Action::Fail(t) => {
                assert_eq!(highest, 3);
                assert_eq!(t.reason, "ReachedMaxRestarts");
                assert_eq!(
                    t.message,
                    "jobset failed due to reaching max number of restarts"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

fn registry_with(bytes: &[u8]) -> Registry {
    let reg = Registry::new(runtime().clone(), RegistryConfig::new("jobset-system"))
        .expect("registry starts");
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("plugin-custom".into()),
            namespace: Some("jobset-system".into()),
            labels: Some([(PLUGIN_LABEL.to_string(), "custom".to_string())].into()),
            ..Default::default()
        },
        binary_data: Some(
            [(
                WASM_KEY.to_string(),
                k8s_openapi::ByteString(bytes.to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    reg.apply_configmap(&cm).expect("accepted");
    reg
}

#[test]
fn a_custom_plugin_recreates_after_a_node_loss_and_restarts_in_place_after_a_crash() {
    let reg = registry_with(builtin::EXAMPLE_RECREATE_ON_NODE_LOSS);
    let crash = reg
        .decide_in_place(&in_place_jobset(), &in_place_state(1, false))
        .expect("decides");
    assert!(crash.plugin.starts_with("custom@"), "{}", crash.plugin);
    assert_eq!(crash.verdict.action, Action::Continue);
    let lost = reg
        .decide_in_place(&in_place_jobset(), &in_place_state(1, true))
        .expect("decides");
    match lost.verdict.action {
        Action::RestartJobset(r) => {
            assert_eq!(r.first_failed_job, "js-workers-1");
            assert_eq!(r.condition_reason, "PodLostDuringInPlaceRestart");
            assert!(r.message.contains("node n2"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plugin_older_than_0_3_0_leaves_in_place_restarts_to_the_built_in_default() {
    // Alone, it cannot decide one.
    let err = released_0_2_0()
        .in_place(&in_place_jobset(), &in_place_state(3, false))
        .expect_err("no decide-in-place");
    assert!(matches!(err.kind, ErrorKind::MissingExport { .. }), "{err}");
    // Selected through the registry, the default decides and is named.
    let reg = registry_with(FIXTURE_0_2_0);
    let d = reg
        .decide_in_place(&in_place_jobset(), &in_place_state(3, false))
        .expect("decides");
    assert_eq!(d.plugin, outcome_plugin().id());
    assert!(matches!(d.verdict.action, Action::Fail(ref t) if t.reason == "ReachedMaxRestarts"));
    // Its Job outcomes are still its own.
    let s = in_place_jobset();
    assert_eq!(
        reg.decide_outcome(&s, &[]).expect("decides").plugin,
        format!("custom@{}", &jobset_policy::sha256_hex(FIXTURE_0_2_0)[..12])
    );
}

#[test]
fn complete_or_restart_job_is_no_answer_to_an_in_place_restart() {
    let hostile = runtime()
        .load("hostile", builtin::EXAMPLE_HOSTILE)
        .expect("loads");
    // The hostile plugin answers restart-job for a Job that does not exist
    // when configured "unknown-name".
    let mut s = in_place_jobset();
    s.config = "unknown-name".into();
    let err = hostile
        .decide_in_place(&s, &in_place_state(1, false))
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("decide-in-place answered restart-job"),
        "{err}"
    );
}
