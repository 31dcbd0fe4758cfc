//! Table tests of CREATE validation (spec 5.2 items 1 to 6 and the CRD
//! checks of item 10): each case changes the valid base JobSet and lists the
//! exact (path, kind) of every error it must produce.

use crate::common::create::*;
use crate::common::{base, job, run_create_table};
use jobset_api::ErrorKind::*;
use jobset_api::*;

fn cases() -> Vec<Case> {
    vec![
        // 1. InPlaceRestart
        gated(
            case(
                "in-place restart without its gate",
                in_place,
                &[("spec.failurePolicy.restartStrategy", Forbidden)],
            ),
            NO_IN_PLACE,
        ),
        case("in-place restart with a ready template", in_place, &[]),
        case(
            "in-place restart needs backoffLimit maxint",
            |js| {
                in_place(js);
                job(js, 0).backoff_limit = Some(6)
            },
            &[("spec.replicatedJobs[0].template.spec.backoffLimit", Invalid)],
        ),
        case(
            "in-place restart needs podReplacementPolicy Failed",
            |js| {
                in_place(js);
                job(js, 1).pod_replacement_policy = Some("TerminatingOrFailed".into())
            },
            &[(
                "spec.replicatedJobs[1].template.spec.podReplacementPolicy",
                Invalid,
            )],
        ),
        case(
            "in-place restart needs completions equal to parallelism",
            |js| {
                in_place(js);
                job(js, 1).completions = Some(3)
            },
            &[("spec.replicatedJobs[1].template.spec.completions", Invalid)],
        ),
        case(
            "in-place restart needs completions set",
            |js| {
                in_place(js);
                job(js, 0).completions = None
            },
            &[("spec.replicatedJobs[0].template.spec.completions", Required)],
        ),
        // 2. and 5. dependsOn
        case(
            "the first replicated job cannot depend on anything",
            |js| depends(js, 0, &["workers"]),
            &[("spec.replicatedJobs[0].dependsOn", Forbidden)],
        ),
        case(
            "a replicated job cannot depend on itself",
            |js| depends(js, 1, &["workers"]),
            &[("spec.replicatedJobs[1].dependsOn[0].name", Invalid)],
        ),
        case(
            "a dependency must exist",
            |js| depends(js, 1, &["nope"]),
            &[("spec.replicatedJobs[1].dependsOn[0].name", Invalid)],
        ),
        case(
            "a dependency on an earlier job is fine",
            |js| depends(js, 1, &["driver"]),
            &[],
        ),
        case(
            "a dependency on a later job is rejected",
            |js| {
                js.spec.replicated_jobs.push(ReplicatedJob {
                    name: "later".into(),
                    ..js.spec.replicated_jobs[1].clone()
                });
                depends(js, 1, &["driver", "later"]);
            },
            &[("spec.replicatedJobs[1].dependsOn[1].name", Invalid)],
        ),
        case(
            "at most five dependencies",
            |js| {
                let tpl = js.spec.replicated_jobs[1].clone();
                js.spec.replicated_jobs = ["a", "b", "c", "d", "e", "f", "g"]
                    .iter()
                    .map(|n| ReplicatedJob {
                        name: n.to_string(),
                        ..tpl.clone()
                    })
                    .collect();
                depends(js, 6, &["a", "b", "c", "d", "e", "f"]);
            },
            &[("spec.replicatedJobs[6].dependsOn", TooMany)],
        ),
        case(
            "a dependency is listed once",
            |js| depends(js, 1, &["driver", "driver"]),
            &[("spec.replicatedJobs[1].dependsOn[1].name", Duplicate)],
        ),
        case(
            "InOrder excludes dependsOn",
            |js| {
                depends(js, 1, &["driver"]);
                js.spec.startup_policy = Some(StartupPolicy {
                    startup_policy_order: StartupPolicyOrder::InOrder,
                });
            },
            &[("spec.startupPolicy.startupPolicyOrder", Forbidden)],
        ),
        case(
            "InOrder alone is fine",
            |js| {
                js.spec.startup_policy = Some(StartupPolicy {
                    startup_policy_order: StartupPolicyOrder::InOrder,
                })
            },
            &[],
        ),
        // 3. subdomain
        case(
            "a valid subdomain",
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("net-1".into()),
            &[],
        ),
        case(
            "an uppercase subdomain breaks both DNS rules",
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("Net".into()),
            &[
                ("spec.network.subdomain", Invalid),
                ("spec.network.subdomain", Invalid),
            ],
        ),
        case(
            "a subdomain over 63 characters is too long",
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("a".repeat(64)),
            &[("spec.network.subdomain", TooLong)],
        ),
        case(
            "a subdomain must start with a letter",
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("1net".into()),
            &[("spec.network.subdomain", Invalid)],
        ),
        case(
            "a subdomain cannot contain dots",
            |js| js.spec.network.as_mut().unwrap().subdomain = Some("a.b".into()),
            &[("spec.network.subdomain", Invalid)],
        ),
        // 4. managedBy
        case(
            "managedBy as a domain-prefixed path",
            |js| js.spec.managed_by = Some("acme.io/foo".into()),
            &[],
        ),
        case(
            "managedBy naming the built-in controller",
            |js| js.spec.managed_by = Some(labels::JOBSET_CONTROLLER_NAME.into()),
            &[],
        ),
        case(
            "managedBy without a domain",
            |js| js.spec.managed_by = Some("foo".into()),
            &[("spec.managedBy", Invalid)],
        ),
        case(
            "managedBy without a path",
            |js| js.spec.managed_by = Some("acme.io/".into()),
            &[("spec.managedBy", Invalid)],
        ),
        case(
            "managedBy over 63 characters",
            |js| js.spec.managed_by = Some(format!("acme.io/{}", "x".repeat(60))),
            &[("spec.managedBy", TooLong)],
        ),
        // 5. per replicated job
        case(
            "replicas times parallelism over maxint32",
            |js| job(js, 1).parallelism = Some(1_500_000_000),
            &[("spec.replicatedJobs[1].replicas", Invalid)],
        ),
        case(
            "replicas times parallelism at maxint32",
            |js| {
                js.spec.replicated_jobs[0].replicas = Some(1);
                job(js, 0).parallelism = Some(i32::MAX)
            },
            &[],
        ),
        case(
            "groupName must be a DNS-1035 label",
            |js| js.spec.replicated_jobs[1].group_name = Some("Group_1".into()),
            &[("spec.replicatedJobs[1].groupName", Invalid)],
        ),
        case(
            "a custom groupName",
            |js| js.spec.replicated_jobs[1].group_name = Some("workers-a".into()),
            &[],
        ),
        case(
            "a long replicated job name breaks the Job and pod names",
            |js| js.spec.replicated_jobs[0].name = "d".repeat(60),
            &[
                ("spec.replicatedJobs[0].name", Invalid),
                ("spec.replicatedJobs[0].name", TooLong),
            ],
        ),
        case(
            "a long jobset name breaks only the pod names",
            |js| js.metadata.name = Some("a".repeat(50)),
            &[
                ("spec.replicatedJobs[0].name", TooLong),
                ("spec.replicatedJobs[1].name", TooLong),
            ],
        ),
        case(
            "pod names are not checked for NonIndexed jobs",
            |js| {
                js.metadata.name = Some("a".repeat(50));
                job(js, 0).completion_mode = Some("NonIndexed".into());
                job(js, 1).completion_mode = Some("NonIndexed".into());
            },
            &[],
        ),
        case(
            "pod names are not checked without completions",
            |js| {
                js.metadata.name = Some("a".repeat(50));
                job(js, 0).completions = None;
                job(js, 1).completions = None;
            },
            &[],
        ),
        case(
            "an uppercase replicated job name",
            |js| js.spec.replicated_jobs[1].name = "Workers".into(),
            &[("spec.replicatedJobs[1].name", Invalid)],
        ),
        case(
            "generateName stands in for the name",
            |js| {
                js.metadata.name = None;
                js.metadata.generate_name = Some("run-".into())
            },
            &[],
        ),
        case(
            "a long generateName breaks the pod names",
            |js| {
                js.metadata.name = None;
                js.metadata.generate_name = Some("g".repeat(45))
            },
            &[
                ("spec.replicatedJobs[0].name", TooLong),
                ("spec.replicatedJobs[1].name", TooLong),
            ],
        ),
        case(
            "a name or generateName is required",
            |js| js.metadata.name = None,
            &[("metadata.name", Required)],
        ),
        case(
            "replicated job names are unique",
            |js| js.spec.replicated_jobs[1].name = "driver".into(),
            &[("spec.replicatedJobs[1].name", Duplicate)],
        ),
        case(
            "a replicated job needs a name",
            |js| js.spec.replicated_jobs[1].name = String::new(),
            &[("spec.replicatedJobs[1].name", Required)],
        ),
        case(
            "replicas cannot be negative",
            |js| js.spec.replicated_jobs[0].replicas = Some(-1),
            &[("spec.replicatedJobs[0].replicas", Invalid)],
        ),
        case(
            "zero replicas are fine",
            |js| js.spec.replicated_jobs[1].replicas = Some(0),
            &[],
        ),
        case(
            "no replicated jobs at all is accepted",
            |js| js.spec.replicated_jobs.clear(),
            &[],
        ),
        // 6. success policy
        case(
            "a success target must exist",
            |js| {
                js.spec
                    .success_policy
                    .as_mut()
                    .unwrap()
                    .target_replicated_jobs = vec!["driver".into(), "nope".into()]
            },
            &[("spec.successPolicy.targetReplicatedJobs[1]", Invalid)],
        ),
        case(
            "an existing success target",
            |js| {
                js.spec.success_policy = Some(SuccessPolicy {
                    operator: Operator::Any,
                    target_replicated_jobs: vec!["workers".into()],
                })
            },
            &[],
        ),
    ]
}

#[test]
fn every_spec_and_replicated_job_rule_reports_its_exact_paths_and_kinds() {
    let n = run_create_table(cases(), &NoPvcs);
    assert!(n >= 40, "only {n} cases");
}

#[test]
fn all_errors_are_reported_together_one_per_line() {
    let mut js = base();
    depends(&mut js, 1, &["ghost"]);
    js.spec.ttl_seconds_after_finished = Some(-1);
    js.spec.managed_by = Some("nope".into());
    js.spec.replicated_jobs[0].group_name = Some("G".into());
    let errs = validate_create(&js, &ValidationContext::default()).unwrap_err();
    assert_eq!(errs.errors().len(), 4);
    let text = errs.to_string();
    assert_eq!(text.lines().count(), 4);
    assert!(text.contains(
        "spec.replicatedJobs[1].dependsOn[0].name: \"ghost\" is not an earlier replicated job (earlier: \"driver\")"
    ));
    for line in text.lines() {
        assert!(
            errs.errors()
                .iter()
                .any(|e| line == format!("{}: {}", e.path, e.message))
        );
    }
}
