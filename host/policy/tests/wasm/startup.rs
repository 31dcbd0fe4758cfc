//! default-startup through Wasm: spec 4.5 (dependsOn, InOrder) and 4.7
//! (suspend / resume).

use crate::common::{snap, startup_plugin};
use jobset_policy::snapshot::{InOrderCondition, StartupVerdict};
use jobset_policy::{NativeDefaults, PolicyEngine};
use jobset_policy_sdk::harness::SnapshotBuilder;
use jobset_policy_sdk::types::{DependencyStatus as Dep, StartupOrder};

fn decide(b: SnapshotBuilder) -> StartupVerdict {
    let s = snap(b);
    let wasm = startup_plugin().decide_startup(&s).expect("decides");
    let native = NativeDefaults.decide_startup(&s).expect("decides natively");
    assert_eq!(wasm.verdict, native.verdict, "Wasm and native agree");
    wasm.verdict
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn chain(status: Dep) -> SnapshotBuilder {
    SnapshotBuilder::new("js")
        .rjob("init", 1)
        .rjob("driver", 1)
        .depends_on("init", status)
        .rjob("workers", 2)
        .depends_on("driver", Dep::Ready)
}

#[test]
fn any_order_creates_and_resumes_everything() {
    let v = decide(SnapshotBuilder::new("js").rjob("a", 1).rjob("b", 2));
    assert_eq!(names(&v.create), ["a", "b"]);
    assert_eq!(names(&v.resume), ["a", "b"]);
    assert_eq!(v.in_order, InOrderCondition::None);
}

#[test]
fn depends_on_complete_waits_for_every_job_to_succeed() {
    let v = decide(chain(Dep::Complete).ready("init", 0));
    assert_eq!(names(&v.create), ["init"]);
    let v = decide(chain(Dep::Complete).succeeded("init", 0, 5));
    assert_eq!(names(&v.create), ["init", "driver"]);
}

#[test]
fn depends_on_ready_chains_one_step_at_a_time() {
    let v = decide(chain(Dep::Ready).ready("init", 0).created("driver", 0));
    assert_eq!(names(&v.create), ["init", "driver"]);
    let v = decide(chain(Dep::Ready).ready("init", 0).ready("driver", 0));
    assert_eq!(names(&v.create), ["init", "driver", "workers"]);
}

#[test]
fn depends_on_ready_counts_failed_jobs_as_reached() {
    let v = decide(
        SnapshotBuilder::new("js")
            .rjob("a", 2)
            .rjob("b", 1)
            .depends_on("a", Dep::Ready)
            .ready("a", 0)
            .failed("a", 1, "BackoffLimitExceeded", "x", 1),
    );
    assert_eq!(names(&v.create), ["a", "b"]);
}

#[test]
fn depends_on_gates_creation_even_while_suspended() {
    let v = decide(chain(Dep::Ready).suspended(true));
    assert_eq!(names(&v.create), ["init"]);
    assert!(v.resume.is_empty());
}

#[test]
fn in_order_creates_one_replicated_job_until_it_is_ready() {
    let b = || {
        SnapshotBuilder::new("js")
            .startup_order(StartupOrder::InOrder)
            .rjob("a", 1)
            .rjob("b", 2)
    };
    let v = decide(b().created("a", 0));
    assert_eq!(names(&v.create), ["a"]);
    assert_eq!(names(&v.resume), ["a"]);
    assert_eq!(v.in_order, InOrderCondition::InProgress);

    let v = decide(b().ready("a", 0).ready("b", 0));
    assert_eq!(names(&v.create), ["b"]);
    assert_eq!(v.in_order, InOrderCondition::InProgress);

    let v = decide(b().ready("a", 0).ready("b", 0).ready("b", 1));
    assert!(v.create.is_empty());
    assert_eq!(v.in_order, InOrderCondition::Completed);
}

#[test]
fn in_order_while_suspended_creates_everything_and_sets_no_condition() {
    let v = decide(
        SnapshotBuilder::new("js")
            .startup_order(StartupOrder::InOrder)
            .suspended(true)
            .rjob("a", 1)
            .rjob("b", 1),
    );
    assert_eq!(names(&v.create), ["a", "b"]);
    assert!(v.resume.is_empty());
    assert_eq!(v.in_order, InOrderCondition::None);
}

#[test]
fn in_order_starts_over_after_a_restart() {
    // After a restart the new attempt has no Jobs yet: counts are zero.
    let v = decide(
        SnapshotBuilder::new("js")
            .startup_order(StartupOrder::InOrder)
            .restarts(1, 1)
            .rjob("a", 1)
            .rjob("b", 1),
    );
    assert_eq!(names(&v.create), ["a"]);
    assert_eq!(v.in_order, InOrderCondition::InProgress);
}

#[test]
fn more_callers_than_pooled_instances_wait_their_turn() {
    // One instance slot, four threads deciding at once: each decision waits
    // for the slot instead of failing to instantiate.
    let rt = jobset_policy::Runtime::new(jobset_policy::Limits {
        max_concurrent: 1,
        ..Default::default()
    })
    .expect("a runtime");
    let plugin = rt
        .load("default-startup", jobset_policy::builtin::DEFAULT_STARTUP)
        .expect("loads");
    let s = snap(SnapshotBuilder::new("js").rjob("a", 2).rjob("b", 1));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let d = plugin
                        .decide_startup(&s)
                        .expect("every decision gets a slot");
                    assert_eq!(names(&d.verdict.create), ["a", "b"]);
                }
            });
        }
    });
}
