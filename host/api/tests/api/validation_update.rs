//! Table tests of UPDATE validation (spec 5.3): each case builds the old
//! object from the valid base, changes a copy, and lists the exact
//! (path, kind) of every error the update must produce.

use std::collections::BTreeMap;

use crate::common::{base, expected, found, job, pod, run_table};
use jobset_api::ErrorKind::{self, *};
use jobset_api::*;
use k8s_openapi::api::core::v1::{PodSchedulingGate, Toleration};

type Edit = Box<dyn Fn(&mut JobSet)>;

struct Case {
    name: &'static str,
    gates: FeatureGates,
    old: Edit,
    new: Edit,
    want: Vec<(&'static str, ErrorKind)>,
}

fn case(
    name: &'static str,
    old: impl Fn(&mut JobSet) + 'static,
    new: impl Fn(&mut JobSet) + 'static,
    want: &[(&'static str, ErrorKind)],
) -> Case {
    Case {
        name,
        gates: FeatureGates::all(),
        old: Box::new(old),
        new: Box::new(new),
        want: want.to_vec(),
    }
}

fn no_elastic(mut c: Case) -> Case {
    c.gates.elastic_jobset = false;
    c
}

fn same(_: &mut JobSet) {}

fn suspend(js: &mut JobSet) {
    js.spec.suspend = Some(true);
}

fn relabel(js: &mut JobSet) {
    let meta = job(js, 0)
        .template
        .metadata
        .get_or_insert_with(Default::default);
    meta.labels = Some(BTreeMap::from([("app".to_string(), "y".to_string())]));
    meta.annotations = Some(BTreeMap::from([(
        "kueue.x-k8s.io/x".to_string(),
        "1".to_string(),
    )]));
}

fn node_selector(js: &mut JobSet) {
    pod(js, 1).node_selector = Some(BTreeMap::from([("zone".to_string(), "a".to_string())]));
}

fn tolerate(js: &mut JobSet) {
    pod(js, 1).tolerations = Some(vec![Toleration {
        key: Some("gpu".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
}

fn gate(js: &mut JobSet) {
    pod(js, 1).scheduling_gates = Some(vec![PodSchedulingGate {
        name: "kueue".into(),
    }]);
}

fn image(js: &mut JobSet) {
    pod(js, 0).containers[0].image = Some("busybox:2".into());
}

fn resize(p: Option<i32>, c: Option<i32>) -> impl Fn(&mut JobSet) {
    move |js| {
        job(js, 1).parallelism = p;
        job(js, 1).completions = c;
    }
}

fn finished(js: &mut JobSet) {
    js.status = Some(JobSetStatus {
        terminal_state: "Completed".into(),
        ..Default::default()
    });
}

fn non_indexed(js: &mut JobSet) {
    job(js, 1).completion_mode = Some("NonIndexed".into());
}

fn cases() -> Vec<Case> {
    let containers0 = "spec.replicatedJobs[0].template.spec.template.spec.containers[0].image";
    vec![
        case("an unchanged jobset", same, same, &[]),
        case("suspending", same, suspend, &[]),
        case("resuming", suspend, same, &[]),
        case(
            "changing the ttl",
            same,
            |js| js.spec.ttl_seconds_after_finished = Some(30),
            &[],
        ),
        case(
            "changing the coordinator",
            same,
            |js| {
                js.spec.coordinator = Some(Coordinator {
                    replicated_job: "workers".into(),
                    job_index: Some(1),
                    pod_index: Some(0),
                })
            },
            &[],
        ),
        case(
            "changing metadata",
            same,
            |js| js.metadata.labels = Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
            &[],
        ),
        case(
            "changing an image",
            same,
            image,
            &[(containers0, Forbidden)],
        ),
        case(
            "changing an image while suspended",
            suspend,
            |js| {
                suspend(js);
                image(js)
            },
            &[(containers0, Forbidden)],
        ),
        case(
            "pod labels and annotations while the old object is suspended",
            suspend,
            |js| {
                relabel(js);
                js.spec.suspend = Some(false)
            },
            &[],
        ),
        case(
            "pod labels and annotations while the new object is suspended",
            same,
            |js| {
                suspend(js);
                relabel(js)
            },
            &[],
        ),
        case(
            "pod labels and annotations while running",
            same,
            relabel,
            &[
                (
                    "spec.replicatedJobs[0].template.spec.template.metadata.annotations",
                    Forbidden,
                ),
                (
                    "spec.replicatedJobs[0].template.spec.template.metadata.labels.app",
                    Forbidden,
                ),
            ],
        ),
        case(
            "pod labels on a template without metadata while suspended",
            |js| {
                suspend(js);
                job(js, 1).template.metadata = None
            },
            |js| {
                suspend(js);
                job(js, 1).template.metadata = Some(Default::default());
                job(js, 1).template.metadata.as_mut().unwrap().labels =
                    Some(BTreeMap::from([("q".to_string(), "1".to_string())]))
            },
            &[],
        ),
        case(
            "a nodeSelector while suspended",
            suspend,
            |js| {
                suspend(js);
                node_selector(js)
            },
            &[],
        ),
        case(
            "a nodeSelector while running",
            same,
            node_selector,
            &[(
                "spec.replicatedJobs[1].template.spec.template.spec.nodeSelector",
                Forbidden,
            )],
        ),
        case(
            "tolerations while suspended",
            suspend,
            |js| {
                suspend(js);
                tolerate(js)
            },
            &[],
        ),
        case(
            "tolerations while running",
            same,
            tolerate,
            &[(
                "spec.replicatedJobs[1].template.spec.template.spec.tolerations",
                Forbidden,
            )],
        ),
        case(
            "scheduling gates while suspended",
            suspend,
            |js| {
                suspend(js);
                gate(js)
            },
            &[],
        ),
        case(
            "scheduling gates while running",
            same,
            gate,
            &[(
                "spec.replicatedJobs[1].template.spec.template.spec.schedulingGates",
                Forbidden,
            )],
        ),
        case(
            "adding a replicated job",
            same,
            |js| {
                let r = ReplicatedJob {
                    name: "extra".into(),
                    ..js.spec.replicated_jobs[1].clone()
                };
                js.spec.replicated_jobs.push(r)
            },
            &[("spec.replicatedJobs", Forbidden)],
        ),
        case(
            "removing a replicated job",
            same,
            |js| {
                js.spec.replicated_jobs.pop();
            },
            &[("spec.replicatedJobs", Forbidden)],
        ),
        case(
            "renaming a replicated job",
            same,
            |js| js.spec.replicated_jobs[1].name = "w".into(),
            &[("spec.replicatedJobs", Forbidden)],
        ),
        case(
            "reordering replicated jobs",
            same,
            |js| js.spec.replicated_jobs.reverse(),
            &[("spec.replicatedJobs", Forbidden)],
        ),
        case(
            "changing replicas",
            same,
            |js| js.spec.replicated_jobs[1].replicas = Some(3),
            &[("spec.replicatedJobs[1].replicas", Forbidden)],
        ),
        case(
            "changing the group",
            same,
            |js| js.spec.replicated_jobs[1].group_name = Some("g".into()),
            &[("spec.replicatedJobs[1].groupName", Forbidden)],
        ),
        case(
            "changing dependsOn",
            |js| {
                js.spec.replicated_jobs[1].depends_on = vec![DependsOn {
                    name: "driver".into(),
                    status: DependsOnStatus::Ready,
                }]
            },
            |js| {
                js.spec.replicated_jobs[1].depends_on = vec![DependsOn {
                    name: "driver".into(),
                    status: DependsOnStatus::Complete,
                }]
            },
            &[("spec.replicatedJobs[1].dependsOn[0].status", Forbidden)],
        ),
        case(
            "elastic resize of an Indexed job",
            same,
            resize(Some(4), Some(4)),
            &[],
        ),
        no_elastic(case(
            "resizing without the ElasticJobSet gate",
            same,
            resize(Some(4), Some(4)),
            &[
                (
                    "spec.replicatedJobs[1].template.spec.completions",
                    Forbidden,
                ),
                (
                    "spec.replicatedJobs[1].template.spec.parallelism",
                    Forbidden,
                ),
            ],
        )),
        case(
            "elastic resize to unequal values",
            same,
            resize(Some(4), Some(3)),
            &[("spec.replicatedJobs[1].template.spec.completions", Invalid)],
        ),
        case(
            "elastic resize to zero",
            same,
            resize(Some(0), Some(0)),
            &[
                ("spec.replicatedJobs[1].template.spec.parallelism", Invalid),
                ("spec.replicatedJobs[1].template.spec.completions", Invalid),
            ],
        ),
        case(
            "elastic resize dropping completions",
            same,
            resize(Some(2), None),
            &[("spec.replicatedJobs[1].template.spec.completions", Required)],
        ),
        case(
            "elastic resize of a finished jobset",
            finished,
            |js| {
                finished(js);
                resize(Some(4), Some(4))(js)
            },
            &[("spec.replicatedJobs[1].template.spec", Forbidden)],
        ),
        case(
            "resizing a NonIndexed job",
            non_indexed,
            |js| {
                non_indexed(js);
                resize(Some(4), Some(4))(js)
            },
            &[
                (
                    "spec.replicatedJobs[1].template.spec.completions",
                    Forbidden,
                ),
                (
                    "spec.replicatedJobs[1].template.spec.parallelism",
                    Forbidden,
                ),
            ],
        ),
        case(
            "elastic resize also changing the image",
            same,
            |js| {
                resize(Some(4), Some(4))(js);
                pod(js, 1).containers[0].image = Some("x".into())
            },
            &[(
                "spec.replicatedJobs[1].template.spec.template.spec.containers[0].image",
                Forbidden,
            )],
        ),
        case(
            "changing backoffLimit",
            same,
            |js| job(js, 1).backoff_limit = Some(3),
            &[(
                "spec.replicatedJobs[1].template.spec.backoffLimit",
                Forbidden,
            )],
        ),
        case(
            "changing managedBy",
            |js| js.spec.managed_by = Some("acme.io/a".into()),
            |js| js.spec.managed_by = Some("acme.io/b".into()),
            &[("spec.managedBy", Forbidden)],
        ),
        case(
            "setting managedBy",
            same,
            |js| js.spec.managed_by = Some("acme.io/a".into()),
            &[("spec.managedBy", Forbidden)],
        ),
        case(
            "changing the network",
            same,
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("x".into()),
            &[("spec.network", Forbidden)],
        ),
        case(
            "adding a network to an object that had none",
            |js| js.spec.network = None,
            same,
            &[],
        ),
        case(
            "changing the success policy",
            same,
            |js| js.spec.success_policy.as_mut().unwrap().operator = Operator::Any,
            &[("spec.successPolicy", Forbidden)],
        ),
        case(
            "changing the failure policy",
            |js| js.spec.failure_policy = Some(FailurePolicy::default()),
            |js| {
                js.spec.failure_policy = Some(FailurePolicy {
                    max_restarts: Some(3),
                    ..Default::default()
                })
            },
            &[("spec.failurePolicy", Forbidden)],
        ),
        case(
            "changing the startup policy",
            same,
            |js| {
                js.spec.startup_policy = Some(StartupPolicy {
                    startup_policy_order: StartupPolicyOrder::InOrder,
                })
            },
            &[("spec.startupPolicy", Forbidden)],
        ),
        case(
            "changing volume claim policies",
            |js| js.spec.volume_claim_policies = vec![VolumeClaimPolicy::default()],
            |js| {
                js.spec.volume_claim_policies =
                    vec![VolumeClaimPolicy::default(), VolumeClaimPolicy::default()]
            },
            &[("spec.volumeClaimPolicies", Forbidden)],
        ),
        case(
            "status restart arrays hold at most 1024 items",
            same,
            |js| {
                js.status = Some(JobSetStatus {
                    replicated_jobs_status: vec![ReplicatedJobStatus {
                        name: "workers".into(),
                        job_restarts: vec![0; 1025],
                        job_restarts_count_towards_max: vec![0; 1024],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            },
            &[("status.replicatedJobsStatus[0].jobRestarts", TooMany)],
        ),
        case(
            "in-place restart attempts are not negative",
            same,
            |js| {
                js.status = Some(JobSetStatus {
                    previous_in_place_restart_attempt: Some(-1),
                    current_in_place_restart_attempt: Some(0),
                    ..Default::default()
                })
            },
            &[("status.previousInPlaceRestartAttempt", Invalid)],
        ),
        case(
            "the CRD checks still apply on update",
            same,
            |js| js.spec.ttl_seconds_after_finished = Some(-1),
            &[("spec.ttlSecondsAfterFinished", Invalid)],
        ),
        case(
            "CREATE rules are not re-run on update",
            |js| {
                js.spec.failure_policy = Some(FailurePolicy {
                    rules: vec![FailurePolicyRule {
                        name: "1bad".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            },
            |js| {
                js.spec.failure_policy = Some(FailurePolicy {
                    rules: vec![FailurePolicyRule {
                        name: "1bad".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                suspend(js)
            },
            &[],
        ),
    ]
}

#[test]
fn every_update_rule_reports_its_exact_paths_and_kinds() {
    let mut table = Vec::new();
    for c in cases() {
        let mut old = base();
        (c.old)(&mut old);
        let mut new = old.clone();
        (c.new)(&mut new);
        let ctx = ValidationContext {
            gates: c.gates,
            pvcs: &NoPvcs,
        };
        table.push((
            c.name,
            found(validate_update(&old, &new, &ctx)),
            expected(&c.want),
        ));
    }
    let n = run_table(table);
    assert!(n >= 40, "only {n} cases");
}

#[test]
fn immutable_field_messages_point_at_the_suspended_exceptions() {
    let old = base();
    let mut new = old.clone();
    image(&mut new);
    let errs = validate_update(&old, &new, &ValidationContext::default()).unwrap_err();
    assert!(
        errs.to_string().contains("while the JobSet is suspended"),
        "{errs}"
    );
}

#[test]
fn elastic_refusals_are_in_upstreams_words() {
    let old = base();
    let ctx = ValidationContext {
        gates: FeatureGates::all(),
        pvcs: &NoPvcs,
    };
    let refused = |p, c| {
        let mut new = old.clone();
        resize(Some(p), Some(c))(&mut new);
        validate_update(&old, &new, &ctx)
            .unwrap_err()
            .to_status("js")
            .message
            .unwrap_or_default()
    };
    assert_eq!(
        refused(4, 3),
        "JobSet.jobset.x-k8s.io \"js\" is invalid: spec.replicatedJobs[1].template.spec.completions: \
         Invalid value: 3: completions must be equal to parallelism for Elastic Indexed Jobs"
    );
    assert_eq!(
        refused(0, 0),
        "JobSet.jobset.x-k8s.io \"js\" is invalid: [spec.replicatedJobs[1].template.spec.parallelism: \
         Invalid value: 0: parallelism must be >= 1, spec.replicatedJobs[1].template.spec.completions: \
         Invalid value: 0: completions must be >= 1]"
    );
    let mut done = old.clone();
    finished(&mut done);
    let mut new = done.clone();
    resize(Some(4), Some(4))(&mut new);
    let errs = validate_update(&done, &new, &ctx).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "spec.replicatedJobs[1].template.spec: Cannot mutate parallelism or completions when \
         JobSet is in a terminal state (Completed or Failed)"
    );
}
