//! Hostile plugins: the host stays up, the call ends within a generous
//! bound of the deadline, and the error names the plugin, the slot and what
//! happened; the next decision of a well-behaved plugin is unaffected.

use crate::common::{hostile_plugin, outcome_plugin, runtime, snap};
use jobset_policy::builtin;
use jobset_policy::snapshot::{Action, PlacementRequest, Snapshot};
use jobset_policy::{ErrorKind, LoadError, PolicyEngine, PolicyError, Slot};
use jobset_policy_sdk::harness::SnapshotBuilder;
use std::time::{Duration, Instant};

fn snapshot(config: &str) -> Snapshot {
    snap(
        SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 5)
            .config(config),
    )
}

/// Runs the hostile outcome slot and checks the common promises.
fn outcome_error(config: &str) -> PolicyError {
    // Generous: the tests share two cores with parallel builds; a runtime
    // that failed to interrupt would never return at all.
    let bound = runtime().limits().deadline * 5 + Duration::from_millis(1500);
    let started = Instant::now();
    let err = hostile_plugin()
        .decide_outcome(&snapshot(config), &[])
        .expect_err("the hostile plugin fails");
    let took = started.elapsed();
    assert!(took < bound, "{config}: took {took:?}, bound {bound:?}");
    assert!(err.plugin.starts_with("hostile@"), "{err}");
    assert_eq!(err.slot, Slot::Outcome);
    assert!(err.to_string().contains("hostile@"), "{err}");
    assert!(err.to_string().contains("(outcome)"), "{err}");
    still_healthy();
    err
}

fn still_healthy() {
    let ok = outcome_plugin()
        .decide_outcome(&snapshot(""), &[])
        .expect("the default plugin still decides");
    assert!(matches!(ok.verdict.action, Action::Fail(_)));
}

#[test]
fn endless_loop_times_out_at_the_deadline() {
    let err = outcome_error("loop");
    assert!(matches!(err.kind, ErrorKind::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

/// Host calls do not escape the deadline: a plugin that keeps the host's
/// regex matcher compiling large patterns is still stopped at the next
/// return to Wasm, within the bound.
#[test]
fn a_flood_of_regex_calls_times_out_at_the_deadline() {
    let err = outcome_error("regex");
    assert!(matches!(err.kind, ErrorKind::Timeout { .. }), "{err}");
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let err = outcome_error("memory");
    assert_eq!(
        err.kind,
        ErrorKind::OutOfMemory {
            limit_bytes: 16 << 20
        }
    );
}

#[test]
fn a_panic_is_a_trap_with_the_plugins_message() {
    let err = outcome_error("trap");
    match &err.kind {
        ErrorKind::Trap { message } => {
            assert!(message.contains("panics on purpose"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let err = outcome_error("recursion");
    match &err.kind {
        // Rust keeps large frames on a shadow stack in linear memory, so
        // the overflow shows as either the call stack or that stack running out.
        ErrorKind::Trap { message } => assert!(
            message.contains("stack") || message.contains("out of bounds"),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_huge_verdict_is_rejected_by_the_size_caps() {
    let err = outcome_error("huge");
    match &err.kind {
        ErrorKind::InvalidVerdict { detail } => assert!(detail.contains("cap"), "{detail}"),
        other => panic!("expected an invalid verdict, got {other:?}"),
    }
}

#[test]
fn a_verdict_naming_a_job_not_in_the_snapshot_is_rejected_with_the_name() {
    let err = outcome_error("unknown-name");
    match &err.kind {
        ErrorKind::InvalidVerdict { detail } => assert!(detail.contains("no-such-job"), "{detail}"),
        other => panic!("expected an invalid verdict, got {other:?}"),
    }
}

#[test]
fn unknown_replicated_jobs_and_pending_jobs_are_rejected_in_the_other_slots() {
    let s = snapshot("unknown-name");
    let err = hostile_plugin().decide_startup(&s).expect_err("rejected");
    assert_eq!(err.slot, Slot::Startup);
    assert!(err.to_string().contains("no-such-replicated-job"), "{err}");
    let request = PlacementRequest {
        jobs: vec![jobset_policy::snapshot::PendingJob {
            name: "js-workers-0".to_string(),
            replicated_job: "workers".to_string(),
            job_index: 0,
            job_key: "k".to_string(),
            exclusive_topology: None,
            node_selector_strategy: false,
            priority: None,
            pods: 1,
        }],
        domains: vec![],
    };
    let err = hostile_plugin()
        .decide_placement(&s, &request)
        .expect_err("rejected");
    assert_eq!(err.slot, Slot::Placement);
    assert!(err.to_string().contains("ghost-job"), "{err}");
}

#[test]
fn a_huge_startup_list_is_rejected() {
    let err = hostile_plugin()
        .decide_startup(&snapshot("huge"))
        .expect_err("rejected");
    assert!(
        matches!(err.kind, ErrorKind::InvalidVerdict { .. }),
        "{err}"
    );
}

#[test]
fn the_sandbox_offers_no_filesystem_network_environment_or_clock() {
    let decision = hostile_plugin()
        .decide_outcome(&snapshot("snoop"), &[])
        .expect("snoop reports through its verdict");
    let Action::Fail(report) = decision.verdict.action else {
        panic!("expected the snoop report");
    };
    let m = report.message;
    assert!(m.contains("fs=denied"), "{m}");
    assert!(m.contains("write=denied"), "{m}");
    assert!(m.contains("env=0"), "{m}");
    assert!(m.contains("args=0"), "{m}");
    assert!(m.contains("net=denied"), "{m}");
    assert!(m.contains("clock=0"), "{m}");
    // Randomness is fixed, so two decisions see the same bytes.
    let again = hostile_plugin()
        .decide_outcome(&snapshot("snoop"), &[])
        .expect("decides");
    let Action::Fail(again) = again.verdict.action else {
        panic!("expected the snoop report");
    };
    assert_eq!(m, again.message);
}

#[test]
fn a_chatty_plugin_is_truncated_not_stopped() {
    let d = hostile_plugin()
        .decide_outcome(&snapshot("print"), &[])
        .expect("printing is allowed");
    assert_eq!(d.verdict.action, Action::Continue);
}

#[test]
fn printing_and_panicking_plugins_decide_inside_a_tokio_runtime_too() {
    // The controller calls plugins from a thread driving a tokio runtime;
    // flushing the plugin's stdout or stderr there must not panic the host.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let d = hostile_plugin()
            .decide_outcome(&snapshot("print"), &[])
            .expect("printing is allowed");
        assert_eq!(d.verdict.action, Action::Continue);
        let err = hostile_plugin()
            .decide_outcome(&snapshot("trap"), &[])
            .expect_err("the plugin panics");
        assert!(matches!(err.kind, ErrorKind::Trap { .. }), "{err}");

        // The same, handed off the runtime thread as the controller's plan
        // is: the calls run in place on a blocking-pool thread.
        let (printed, panicked) = jobset_policy::off_runtime(|| {
            (
                hostile_plugin().decide_outcome(&snapshot("print"), &[]),
                hostile_plugin().decide_outcome(&snapshot("trap"), &[]),
            )
        })
        .await
        .expect("the hand-off works");
        assert_eq!(
            printed.expect("printing is allowed").verdict.action,
            Action::Continue
        );
        match panicked.expect_err("the plugin panics").kind {
            ErrorKind::Trap { message } => {
                assert!(message.contains("panics on purpose"), "{message}")
            }
            other => panic!("expected a trap, got {other:?}"),
        }
    });
}

#[test]
fn a_component_exporting_the_wrong_interface_is_refused_at_load() {
    let err = runtime()
        .load("wrong-export", builtin::EXAMPLE_WRONG_EXPORT)
        .expect_err("refused");
    match err {
        LoadError::MissingExport { name, interface } => {
            assert_eq!(name, "wrong-export");
            assert!(interface.contains("jobset:policy/meta"), "{interface}");
        }
        other => panic!("expected a missing export, got {other}"),
    }
}

#[test]
fn an_outcome_only_plugin_asked_for_placement_reports_the_missing_export() {
    let request = PlacementRequest {
        jobs: vec![],
        domains: vec![],
    };
    let err = outcome_plugin()
        .decide_placement(&snapshot(""), &request)
        .expect_err("not exported");
    assert_eq!(
        err.kind,
        ErrorKind::MissingExport {
            interface: "jobset:policy/placement".to_string()
        }
    );
}

#[test]
fn bytes_that_are_not_wasm_are_refused_at_load() {
    let err = runtime()
        .load("garbage", b"#!/bin/sh\necho not wasm\n")
        .expect_err("refused");
    assert!(
        matches!(err, LoadError::Compile { ref name, .. } if name == "garbage"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        r##"plugin garbage: not WebAssembly: it starts with "#!/b", a component with "\0asm""##
    );
}

#[test]
fn a_plugin_over_one_mebibyte_is_refused_before_compiling() {
    let mut big = builtin::DEFAULT_OUTCOME.to_vec();
    big.resize((1 << 20) + 1, 0);
    let err = runtime().load("big", &big).expect_err("refused");
    assert!(
        matches!(err, LoadError::TooLarge { size, limit, .. } if size == (1 << 20) + 1 && limit == 1 << 20),
        "{err}"
    );
}
