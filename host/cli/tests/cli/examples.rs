//! Every upstream example through `jobset run`, in-process (one test per
//! example, so the harness runs them in parallel; the Wasm runtime and its
//! compiled plugins are shared by the runs of this process). Each test
//! asserts the outcome the example's comments describe, with the scenario
//! under examples/scenarios/ that makes the described failures happen.
//!
//! The examples are not part of this repository (see `upstream`): without
//! them beside the checkout every test here returns at once, after one
//! note on stderr, unless `JOBSET_UPSTREAM_EXAMPLES=required`.

use std::collections::BTreeSet;

use crate::common::repo;
use crate::upstream::upstream_examples;

/// What one example must end with.
struct Expect<'a> {
    /// Exit code of `jobset run`.
    code: u8,
    /// Per JobSet: name, state, JobSet restarts, Job restarts, restarts
    /// counted toward maxRestarts.
    rows: &'a [(&'a str, &'a str, i32, i32, i32)],
    /// Lines of output that must appear.
    contains: &'a [&'a str],
}

/// Runs one example (with its scenario when there is one) and checks the
/// summary rows and lines; returns the output for further checks.
fn run_example(name: &str, expect: &Expect) -> String {
    let dir = upstream_examples().expect("each test returns first when they are absent");
    let manifest = dir.join(format!("{name}.yaml"));
    let scenario = repo()
        .join("examples/scenarios")
        .join(format!("{name}.scenario.yaml"));
    let manifest = manifest.display().to_string();
    let scenario_arg = scenario.display().to_string();
    let mut args = vec!["run", manifest.as_str(), "--until", "3h"];
    if scenario.exists() {
        args.extend(["--scenario", scenario_arg.as_str()]);
    }
    // The examples of upstream's alpha features need their gate, on our
    // controller as on upstream's.
    if name.starts_with("in-place-restart__") {
        args.extend(["--feature-gates", "InPlaceRestart=true"]);
    } else if name.starts_with("failure-policy__restartjob") {
        args.extend(["--feature-gates", "RestartJob=true"]);
    }
    let (code, out) = jobset::cli::run_captured(&args);
    assert_eq!(code, expect.code, "{name}: exit code\n{out}");
    for (jobset, state, restarts, job_restarts, counted) in expect.rows {
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(jobset))
            .unwrap_or_else(|| panic!("{name}: no summary row for {jobset}\n{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let want = [
            state.to_string(),
            restarts.to_string(),
            job_restarts.to_string(),
            counted.to_string(),
        ];
        assert_eq!(&cols[1..5], &want, "{name}: {row}\n{out}");
    }
    for line in expect.contains {
        assert!(out.contains(line), "{name}: missing {line:?}\n{out}");
    }
    out
}

/// The virtual time (seconds) of the first log line containing `text`.
fn first_at(out: &str, text: &str) -> u64 {
    out.lines()
        .find(|l| l.starts_with('[') && l.contains(text))
        .and_then(|l| l.get(1..9))
        .map(|t| {
            t.split(':')
                .filter_map(|n| n.parse::<u64>().ok())
                .fold(0, |acc, n| acc * 60 + n)
        })
        .unwrap_or_else(|| panic!("no line with {text:?}\n{out}"))
}

fn count(out: &str, text: &str) -> usize {
    out.lines()
        .filter(|l| l.starts_with('[') && l.contains(text))
        .count()
}

fn pools(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter(|l| l.starts_with('[') && l.contains("pinned to cloud.google.com/gke-nodepool="))
        .filter_map(|l| l.rsplit("gke-nodepool=").next().map(str::to_string))
        .collect()
}

const COMPLETED: Expect<'static> = Expect {
    code: 0,
    rows: &[],
    contains: &["Completed"],
};

macro_rules! completes {
    ($($test:ident: $file:literal, $jobset:literal;)*) => {$(
        #[test]
        fn $test() {
            if upstream_examples().is_none() {
                return;
            }
            run_example($file, &Expect {
                rows: &[($jobset, "Completed", 0, 0, 0)],
                ..COMPLETED
            });
        }
    )*};
}

completes! {
    the_argo_workflow_step_runs_its_jobset_to_completion: "argo-workflow__workflow", "argo/paralleljobs";
    pytorch_mnist_completes: "pytorch__cnn-mnist__mnist", "default/pytorch";
    pytorch_resnet_completes: "pytorch__resnet-cifar10__resnet", "default/pytorch";
    the_coordinator_example_completes: "simple__coordinator", "default/coordinator-example";
    the_group_example_completes: "simple__group", "default/group-example";
    the_network_example_completes: "simple__jobset-with-network", "default/network-jobset";
    parallel_jobs_complete: "simple__paralleljobs", "default/paralleljobs";
    the_ttl_example_completes: "simple__ttl-after-finished", "default/jobset-with-ttl";
    tensorflow_mnist_completes: "tensorflow__mnist", "default/tensorflow";
}

/// The workload-aware scheduling examples: the pod template's
/// `schedulingGroup` (a field newer than the compiled Kubernetes types)
/// reaches the pods, and with no PodGroup served the pods wait for one.
fn stuck_on_pod_group(name: &str, jobset: &str, pods: usize, group: &str) -> String {
    run_example(
        name,
        &Expect {
            code: 1,
            rows: &[(jobset, "Stuck", 0, 0, 0)],
            contains: &[
                &format!("{jobset}: stuck: {pods} pod(s): pod unschedulable: 0/"),
                &format!(
                    "waiting for pod group \"{group}\": no PodGroup of that name in namespace \"default\""
                ),
            ],
        },
    )
}

#[test]
fn the_workload_aware_example_is_stuck_without_its_pod_group() {
    if upstream_examples().is_none() {
        return;
    }
    stuck_on_pod_group(
        "workload-aware-scheduling__jobset",
        "default/js",
        6,
        "js-abc-workers-def",
    );
}

#[test]
fn the_topology_aware_example_is_stuck_without_its_pod_group() {
    if upstream_examples().is_none() {
        return;
    }
    stuck_on_pod_group(
        "workload-aware-scheduling__tas__jobset",
        "default/js",
        4,
        "js-abc-workers-def",
    );
}

#[test]
fn depends_on_starts_the_launcher_after_the_initializer_completes_and_workers_after_it() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "depends-on__depends-on",
        &Expect {
            rows: &[("default/depends-on", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    let init_done = first_at(&out, "Job depends-on-initializer-0 completed");
    let launcher = first_at(&out, "Job depends-on-launcher-0 created");
    let worker = first_at(&out, "Job depends-on-worker-0 created");
    assert!(init_done <= launcher && launcher <= worker, "{out}");
    assert!(
        first_at(&out, "Job depends-on-launcher-0 completed") > worker,
        "workers wait for Ready, not Complete\n{out}"
    );
}

#[test]
fn multiple_depends_on_starts_the_workers_after_both_initializers_complete() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "depends-on__multiple-depends-on",
        &Expect {
            rows: &[("default/multiple-depends-on", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    let worker = first_at(&out, "Job multiple-depends-on-worker-0 created");
    for init in ["dataset-initializer", "model-initializer"] {
        let done = first_at(&out, &format!("Job multiple-depends-on-{init}-0 completed"));
        assert!(done <= worker, "{init}\n{out}");
    }
}

#[test]
fn fail_jobset_action_fails_at_the_first_leader_failure_without_restarting() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__failjobset-action",
        &Expect {
            code: 1,
            rows: &[("default/failjobset-action-example", "Failed", 0, 0, 0)],
            contains: &[
                "failed (BackoffLimitExceeded)",
                ": fail (FailJobSetFailurePolicyAction, rule failurePolicyRule0)",
            ],
        },
    );
    assert_eq!(count(&out, ": restart "), 0, "{out}");
}

#[test]
fn host_maintenance_restarts_without_counting_then_the_crash_fails_the_jobset() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__host-maintenance-event-model",
        &Expect {
            code: 1,
            rows: &[("default/host-maintenance-event-model", "Failed", 1, 0, 0)],
            contains: &[
                "failed: disrupted (TerminationByKubelet)",
                "Job host-maintenance-event-model-leader-0 failed (PodFailurePolicy)",
                "restart jobset (FailurePolicy_failurePolicyRule0, rule failurePolicyRule0",
                "Job host-maintenance-event-model-leader-0 failed (BackoffLimitExceeded)",
                ": fail (ReachedMaxRestarts, rule failurePolicyRule1)",
            ],
        },
    );
    assert_eq!(count(&out, ": restart jobset"), 1, "{out}");
}

#[test]
fn pod_failure_policy_reason_restarts_beyond_max_restarts_and_completes() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__onjobfailurereasons-present-podfailurepolicy",
        &Expect {
            rows: &[(
                "default/onjobfailurereasons-podfailurepolicy-example",
                "Completed",
                5,
                0,
                0,
            )],
            ..COMPLETED
        },
    );
    assert_eq!(
        count(&out, "leader-0 failed (PodFailurePolicy)"),
        5,
        "{out}"
    );
}

#[test]
fn backoff_limit_reason_restarts_beyond_max_restarts_and_completes() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__onjobfailurereasons-present",
        &Expect {
            rows: &[(
                "default/onjobfailurereasons-present-example",
                "Completed",
                5,
                0,
                0,
            )],
            ..COMPLETED
        },
    );
    assert_eq!(
        count(&out, "leader-0 failed (BackoffLimitExceeded)"),
        5,
        "{out}"
    );
}

#[test]
fn restart_job_recreates_only_the_worker_job_and_counts_it() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__restartjob-action",
        &Expect {
            rows: &[("default/js", "Completed", 1, 1, 2)],
            contains: &[
                ": restart job js-rj-worker-0 (rule r_worker)",
                ": restart jobset (FailurePolicy_r_leader, rule r_leader",
            ],
            ..COMPLETED
        },
    );
    // The worker restart left the leader Job alone: it is created once at
    // the start and once after the JobSet restart.
    assert_eq!(count(&out, "Job js-rj-leader-0 created"), 2, "{out}");
    assert_eq!(count(&out, "Job js-rj-worker-0 created"), 3, "{out}");
}

#[test]
fn restart_job_and_ignore_max_restarts_recreates_the_worker_more_often_than_max_restarts() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "failure-policy__restartjobandignoremaxrestarts-action",
        &Expect {
            rows: &[("default/js", "Completed", 1, 3, 0)],
            contains: &[": restart jobset (FailurePolicy_r_leader, rule r_leader"],
            ..COMPLETED
        },
    );
    assert_eq!(
        count(&out, ": restart job js-rj-worker-0 (rule r_worker)"),
        3,
        "{out}"
    );
    assert_eq!(count(&out, "Job js-rj-leader-0 created"), 2, "{out}");
}

#[test]
fn restart_jobset_action_restarts_three_times_then_fails() {
    if upstream_examples().is_none() {
        return;
    }
    run_example(
        "failure-policy__restartjobset-action",
        &Expect {
            code: 1,
            rows: &[("default/restartjobset-action-example", "Failed", 3, 0, 3)],
            contains: &[": fail (ReachedMaxRestarts, rule failurePolicyRule0)"],
        },
    );
}

#[test]
fn restart_jobset_and_ignore_max_restarts_restarts_beyond_the_limit_and_completes() {
    if upstream_examples().is_none() {
        return;
    }
    run_example(
        "failure-policy__restartjobsetandignoremaxrestarts-action",
        &Expect {
            rows: &[("default/rjimr-action-example", "Completed", 5, 0, 0)],
            ..COMPLETED
        },
    );
}

#[test]
fn the_default_failure_policy_recreates_all_jobs_three_times_then_fails() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "simple__failure-policy",
        &Expect {
            code: 1,
            rows: &[("default/failure-policy", "Failed", 3, 0, 3)],
            contains: &[
                ": restart jobset (DefaultFailurePolicy",
                ": fail (ReachedMaxRestarts",
            ],
        },
    );
    // BlockingRecreate: every Job of an attempt is gone before any is recreated.
    assert_eq!(
        count(&out, "Job failure-policy-workers-0 created"),
        4,
        "{out}"
    );
}

#[test]
fn in_place_restart_examples_are_stuck_on_their_placeholder_image() {
    if upstream_examples().is_none() {
        return;
    }
    for name in [
        "in-place-restart__jobset-main-container-mode",
        "in-place-restart__jobset-sidecar-container-mode",
    ] {
        run_example(
            name,
            &Expect {
                code: 1,
                rows: &[("default/js", "Stuck", 0, 0, 0)],
                contains: &[
                    "default/js: stuck: 4 pod(s): container in-place-restart-agent waiting: InvalidImageName",
                    "couldn't parse image name \"<CHANGE ME>\"",
                ],
            },
        );
    }
}

#[test]
fn the_seed_example_places_each_job_in_its_own_tpu_pool() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "seed__multislice-jax-tpu",
        &Expect {
            rows: &[("default/multislice", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    assert_eq!(pools(&out).len(), 4, "{out}");
}

#[test]
fn exclusive_placement_puts_each_job_in_its_own_pool() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "simple__exclusive-placement",
        &Expect {
            rows: &[("default/exclusive-placement", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    assert_eq!(pools(&out).len(), 3, "{out}");
}

#[test]
fn the_success_policy_completes_when_the_workers_finish_before_the_leader() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "simple__success-policy",
        &Expect {
            rows: &[("default/success-policy", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    assert!(
        first_at(&out, "default/success-policy: Completed") < 600,
        "{out}"
    );
    assert_eq!(
        count(&out, "Job success-policy-leader-0 completed"),
        0,
        "{out}"
    );
}

#[test]
fn in_order_startup_creates_the_workers_after_the_driver() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "startup-policy__startup-driver-ready",
        &Expect {
            rows: &[("default/startup-driver-ready", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    let driver = first_at(&out, "Job startup-driver-ready-driver-0 created");
    let workers = first_at(&out, "Job startup-driver-ready-workers-0 created");
    assert!(driver < workers, "{out}");
}

#[test]
fn the_kueue_labelled_multislice_runs_without_kueue_one_slice_per_v6e_pool() {
    if upstream_examples().is_none() {
        return;
    }
    // With no Kueue in the cluster the queue label is inert, as on a real
    // cluster without Kueue: nothing suspends the JobSet.
    let out = run_example(
        "tpu-multislice__v6e-jax-workload",
        &Expect {
            rows: &[("default/v6e-multislice", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    let pools = pools(&out);
    assert_eq!(pools.len(), 2, "{out}");
    assert!(pools.iter().all(|p| p.starts_with("tpu-v6e")), "{out}");
}

#[test]
fn the_volume_claim_example_runs_the_nodes_after_the_initializer() {
    if upstream_examples().is_none() {
        return;
    }
    let out = run_example(
        "volume-claim-policy__single-pvc",
        &Expect {
            rows: &[("default/volume-claim-trainjob", "Completed", 0, 0, 0)],
            ..COMPLETED
        },
    );
    assert!(
        first_at(&out, "Job volume-claim-trainjob-initializer-0 completed")
            <= first_at(&out, "Job volume-claim-trainjob-node-0 created"),
        "{out}"
    );
}

#[test]
fn the_dra_example_is_stuck_on_its_pod_group_and_resource_claim_template() {
    if upstream_examples().is_none() {
        return;
    }
    run_example(
        "workload-aware-scheduling__dra__jobset",
        &Expect {
            code: 1,
            rows: &[("default/training-job", "Stuck", 0, 0, 0)],
            contains: &[
                "default/training-job: stuck: 6 pod(s): pod unschedulable: 0/",
                "waiting for pod group \"training-workers\"",
                "cannot allocate resource claim \"shared-gpu\": ResourceClaimTemplate \"gpu-claim-template\" does not exist",
            ],
        },
    );
}

#[test]
fn the_preemption_examples_note_the_unserved_workload_objects_and_are_stuck() {
    if upstream_examples().is_none() {
        return;
    }
    for (name, jobset, group) in [
        (
            "workload-aware-scheduling__preemption__high-priority-jobset",
            "default/hp-js",
            "hp-abc-workers-def",
        ),
        (
            "workload-aware-scheduling__preemption__low-priority-jobset",
            "default/lp-js",
            "lp-abc-workers-def",
        ),
    ] {
        let out = stuck_on_pod_group(name, jobset, 4, group);
        for kind in ["Workload", "PodGroup"] {
            assert!(
                out.contains(&format!(
                    "scheduling.k8s.io/v1alpha2 {kind} is not served by the simulated cluster; skipped"
                )),
                "{out}"
            );
        }
        assert!(!out.contains("error"), "{out}");
    }
}

#[test]
fn every_upstream_example_has_an_expectation_here() {
    let me = include_str!("examples.rs");
    let Some(dir) = upstream_examples() else {
        return;
    };
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir).expect("the upstream examples are beside the repository") {
        let path = e.expect("a directory entry").path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !me.contains(&format!("\"{stem}\"")) {
                missing.push(stem);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "examples without an expected outcome: {missing:?}"
    );
}
