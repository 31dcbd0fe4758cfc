//! Table tests of CREATE validation of the policies (spec 5.2 items 7 to
//! 9: failure policy, coordinator, volume claim policies, and the ttl bound
//! of item 10): exact (path, kind) of every error.

use crate::common::create::*;
use crate::common::{job, pod, run_create_table};
use jobset_api::ErrorKind::*;
use jobset_api::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Volume};

fn cases() -> Vec<Case> {
    vec![
        // 7. failure policy
        gated(
            case(
                "RestartJob without its gate skips the other failure-policy checks",
                |js| {
                    let mut bad = rule(FailurePolicyAction::FailJobSet, "bad");
                    bad.on_job_failure_reasons = vec!["Nope".into()];
                    rules(js, vec![rule(FailurePolicyAction::RestartJob, "r"), bad]);
                },
                &[("spec.failurePolicy.rules[0].action", Forbidden)],
            ),
            NO_RESTART_JOB,
        ),
        gated(
            case(
                "RestartJobAndIgnoreMaxRestarts without its gate",
                |js| {
                    rules(
                        js,
                        vec![
                            rule(FailurePolicyAction::RestartJobSet, "a"),
                            rule(FailurePolicyAction::RestartJobAndIgnoreMaxRestarts, "b"),
                        ],
                    )
                },
                &[("spec.failurePolicy.rules[1].action", Forbidden)],
            ),
            NO_RESTART_JOB,
        ),
        gated(
            case(
                "RestartJobSet needs no gate",
                |js| rules(js, vec![rule(FailurePolicyAction::RestartJobSet, "a")]),
                &[],
            ),
            NO_RESTART_JOB,
        ),
        case(
            "RestartJob caps replicas at 1024",
            |js| {
                rules(js, vec![rule(FailurePolicyAction::RestartJob, "r")]);
                js.spec.replicated_jobs[1].replicas = Some(1025)
            },
            &[("spec.replicatedJobs[1].replicas", Invalid)],
        ),
        case(
            "RestartJob with 1024 replicas",
            |js| {
                rules(js, vec![rule(FailurePolicyAction::RestartJob, "r")]);
                js.spec.replicated_jobs[1].replicas = Some(1024)
            },
            &[],
        ),
        case(
            "RestartJobSet has no replicas cap",
            |js| {
                rules(js, vec![rule(FailurePolicyAction::RestartJobSet, "r")]);
                js.spec.replicated_jobs[1].replicas = Some(1025)
            },
            &[],
        ),
        case(
            "a rule name over 128 characters",
            |js| {
                rules(
                    js,
                    vec![rule(FailurePolicyAction::FailJobSet, &"r".repeat(129))],
                )
            },
            &[("spec.failurePolicy.rules[0].name", TooLong)],
        ),
        case(
            "a rule name of 128 characters",
            |js| {
                rules(
                    js,
                    vec![rule(FailurePolicyAction::FailJobSet, &"r".repeat(128))],
                )
            },
            &[],
        ),
        case(
            "a rule name must start with a letter",
            |js| rules(js, vec![rule(FailurePolicyAction::FailJobSet, "1rule")]),
            &[("spec.failurePolicy.rules[0].name", Invalid)],
        ),
        case(
            "a rule name cannot end with a colon",
            |js| rules(js, vec![rule(FailurePolicyAction::FailJobSet, "rule:")]),
            &[("spec.failurePolicy.rules[0].name", Invalid)],
        ),
        case(
            "a rule name with commas, colons and underscores",
            |js| rules(js, vec![rule(FailurePolicyAction::FailJobSet, "a,b:c_d")]),
            &[],
        ),
        case(
            "an empty rule name outside defaulting",
            |js| rules(js, vec![rule(FailurePolicyAction::FailJobSet, "")]),
            &[("spec.failurePolicy.rules[0].name", Required)],
        ),
        case(
            "rule names are unique",
            |js| {
                rules(
                    js,
                    vec![
                        rule(FailurePolicyAction::FailJobSet, "x"),
                        rule(FailurePolicyAction::RestartJobSet, "y"),
                        rule(FailurePolicyAction::FailJobSet, "x"),
                    ],
                )
            },
            &[("spec.failurePolicy.rules[2].name", Duplicate)],
        ),
        case(
            "a rule target must exist",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.target_replicated_jobs = vec!["driver".into(), "ghost".into()];
                rules(js, vec![r])
            },
            &[(
                "spec.failurePolicy.rules[0].targetReplicatedJobs[1]",
                Invalid,
            )],
        ),
        case(
            "an unknown failure reason",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.on_job_failure_reasons = vec!["OOMKilled".into()];
                rules(js, vec![r])
            },
            &[(
                "spec.failurePolicy.rules[0].onJobFailureReasons[0]",
                NotSupported,
            )],
        ),
        case(
            // Admitted, as upstream admits it.
            "a failure reason listed twice",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.on_job_failure_reasons =
                    vec!["PodFailurePolicy".into(), "PodFailurePolicy".into()];
                rules(js, vec![r])
            },
            &[],
        ),
        case(
            "every allowed failure reason",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.on_job_failure_reasons = labels::ALLOWED_JOB_FAILURE_REASONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                rules(js, vec![r])
            },
            &[],
        ),
        case(
            // Admitted, as upstream: skipped with a log line when deciding.
            "an invalid message pattern",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.on_job_failure_message_patterns = vec!["ok.*".into(), "(unclosed".into()];
                rules(js, vec![r])
            },
            &[],
        ),
        case(
            "a message pattern listed twice",
            |js| {
                let mut r = rule(FailurePolicyAction::FailJobSet, "r");
                r.on_job_failure_message_patterns = vec!["oom".into(), "oom".into()];
                rules(js, vec![r])
            },
            &[],
        ),
        // 8. coordinator
        case(
            "a valid coordinator",
            |js| coordinator(js, "workers", 1, 1),
            &[],
        ),
        case(
            "the coordinator's replicated job must exist",
            |js| coordinator(js, "ghost", 0, 0),
            &[("spec.coordinator.replicatedJob", Invalid)],
        ),
        case(
            "the coordinator job index is below replicas",
            |js| coordinator(js, "workers", 2, 0),
            &[("spec.coordinator.jobIndex", Invalid)],
        ),
        case(
            "the coordinator job index is not negative",
            |js| coordinator(js, "workers", -1, 0),
            &[("spec.coordinator.jobIndex", Invalid)],
        ),
        case(
            "the coordinator pod index is below completions",
            |js| coordinator(js, "workers", 0, 2),
            &[("spec.coordinator.podIndex", Invalid)],
        ),
        case(
            "the coordinator job must be Indexed",
            |js| {
                coordinator(js, "workers", 0, 0);
                job(js, 1).completion_mode = Some("NonIndexed".into())
            },
            &[("spec.coordinator.replicatedJob", Invalid)],
        ),
        case(
            "the coordinator job must set completions",
            |js| {
                coordinator(js, "workers", 0, 0);
                job(js, 1).completions = None
            },
            &[("spec.coordinator.replicatedJob", Invalid)],
        ),
        case(
            "the coordinator endpoint must be a label value",
            |js| {
                coordinator(js, "workers", 0, 0);
                js.spec.network.as_mut().unwrap().subdomain = Some("s".repeat(55))
            },
            &[("spec.coordinator", Invalid)],
        ),
        // 10. CRD checks
        case(
            "ttl cannot be negative",
            |js| js.spec.ttl_seconds_after_finished = Some(-5),
            &[("spec.ttlSecondsAfterFinished", Invalid)],
        ),
        case(
            "ttl zero deletes at once",
            |js| js.spec.ttl_seconds_after_finished = Some(0),
            &[],
        ),
        // 9. volume claim policies
        case(
            "a mounted claim template",
            |js| claims(js, &[&["data"]]),
            &[],
        ),
        case(
            "a claim template nobody mounts",
            |js| claims(js, &[&["other"]]),
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.name",
                Invalid,
            )],
        ),
        case(
            "a claim template name must be a DNS subdomain",
            |js| {
                claims(js, &[&["Data"]]);
                mount(js, "Data")
            },
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.name",
                Invalid,
            )],
        ),
        case(
            "claim template names are unique across policies",
            |js| claims(js, &[&["data"], &["data"]]),
            &[(
                "spec.volumeClaimPolicies[1].templates[0].metadata.name",
                Duplicate,
            )],
        ),
        case(
            "the generated PVC name must fit 63 characters",
            |js| {
                let n = "c".repeat(61);
                claims(js, &[&[n.as_str()]]);
                mount(js, &n)
            },
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.name",
                TooLong,
            )],
        ),
        case(
            "a claim template cannot shadow a pod volume",
            |js| {
                claims(js, &[&["data"]]);
                pod(js, 1).volumes = Some(vec![Volume {
                    name: "data".into(),
                    ..Default::default()
                }])
            },
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.name",
                Invalid,
            )],
        ),
        case(
            "a claim template has no namespace",
            |js| {
                claims(js, &[&["data"]]);
                js.spec.volume_claim_policies[0].templates[0]
                    .metadata
                    .namespace = Some("other".into())
            },
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.namespace",
                Forbidden,
            )],
        ),
        case(
            "a claim template needs a name",
            |js| claims(js, &[&[""]]),
            &[(
                "spec.volumeClaimPolicies[0].templates[0].metadata.name",
                Required,
            )],
        ),
        case(
            "at most 50 volume claim policies",
            |js| js.spec.volume_claim_policies = vec![VolumeClaimPolicy::default(); 51],
            &[("spec.volumeClaimPolicies", TooMany)],
        ),
        case(
            "at most 50 templates per policy",
            |js| {
                let names: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                claims(js, &[&refs]);
                for n in &names {
                    mount(js, n)
                }
            },
            &[("spec.volumeClaimPolicies[0].templates", TooMany)],
        ),
    ]
}

/// Claims that already exist in namespace `ns`: `data-js` with the spec the
/// `claim()` helper gives.
fn existing(ns: &str, name: &str) -> Option<PersistentVolumeClaim> {
    (ns == "ns" && name == "data-js").then(|| PersistentVolumeClaim {
        spec: claim("data").spec.clone(),
        ..Default::default()
    })
}

fn existing_cases() -> Vec<Case> {
    vec![
        case(
            "reusing an identical existing claim with Retain",
            |js| {
                claims(js, &[&["data"]]);
                retain(js)
            },
            &[],
        ),
        case(
            "reusing an existing claim needs Retain",
            |js| claims(js, &[&["data"]]),
            &[(
                "spec.volumeClaimPolicies[0].retentionPolicy.whenDeleted",
                Invalid,
            )],
        ),
        case(
            "reusing an existing claim needs the same spec",
            |js| {
                claims(js, &[&["data"]]);
                retain(js);
                js.spec.volume_claim_policies[0].templates[0]
                    .spec
                    .as_mut()
                    .unwrap()
                    .access_modes = Some(vec!["ReadWriteMany".into()]);
            },
            &[("spec.volumeClaimPolicies[0].templates[0].spec", Invalid)],
        ),
    ]
}

#[test]
fn every_policy_rule_reports_its_exact_paths_and_kinds() {
    let n = run_create_table(cases(), &NoPvcs);
    let m = run_create_table(existing_cases(), &existing);
    assert!(n + m >= 40, "only {} cases", n + m);
}
