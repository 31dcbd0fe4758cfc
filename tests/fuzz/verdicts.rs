//! Fuzzed plugin verdicts (property tests): any JSON decoded as a verdict
//! record, and any verdict built from random names, never panics the host's
//! checks; a verdict naming something outside the snapshot is rejected and
//! the rejection names it; a verdict naming only what exists passes.
//!
//! CI runs 64 cases per property; the long run is
//! `PROPTEST_CASES=20000 cargo test -p jobset-e2e --test fuzz verdicts::`.

use jobset_policy::snapshot::{
    Action, InOrderCondition, JobPlacement, JobRestart, OutcomeVerdict, PendingJob, Placement,
    PlacementRequest, Snapshot, StartupVerdict,
};
use jobset_policy::validate;
use jobset_policy_sdk::harness::SnapshotBuilder;
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

const RJOBS: &[&str] = &["driver", "workers"];

fn snapshot() -> Snapshot {
    let sdk = SnapshotBuilder::new("js")
        .rjob("driver", 1)
        .rjob("workers", 2)
        .created("driver", 0)
        .created("workers", 0)
        .created("workers", 1)
        .build();
    serde_json::from_value(serde_json::to_value(&sdk).expect("the snapshot serialises"))
        .expect("the SDK and host records agree")
}

fn job_names(s: &Snapshot) -> Vec<String> {
    s.jobs.iter().map(|j| j.name.clone()).collect()
}

/// A known name or a made-up one.
fn name(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(known), "[a-z0-9-]{1,20}", ".{0,40}"]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "create",
                    "resume",
                    "in-order",
                    "action",
                    "rule",
                    "job",
                    "placement",
                    "continue",
                    "fail",
                    "restart-job",
                    "reason",
                    "message",
                    "wait",
                    "pin",
                ])
                .prop_map(String::from),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn startup_verdicts_name_only_replicated_jobs(
        create in prop::collection::vec(name(RJOBS.iter().map(|s| s.to_string()).collect()), 0..4),
        resume in prop::collection::vec(name(RJOBS.iter().map(|s| s.to_string()).collect()), 0..4),
    ) {
        let snap = snapshot();
        let verdict = StartupVerdict { create: create.clone(), resume: resume.clone(), in_order: InOrderCondition::None };
        let result = validate::startup(&snap, &verdict);
        let all: Vec<&String> = create.iter().chain(resume.iter()).collect();
        let stranger = all.iter().find(|n| !RJOBS.contains(&n.as_str()));
        let dup = |v: &[String]| { let mut s = v.to_vec(); s.sort(); s.dedup(); s.len() != v.len() };
        match (stranger, &result) {
            (Some(n), Ok(())) => prop_assert!(false, "{n:?} is not a replicated job but passed"),
            (Some(_), Err(e)) => prop_assert!(!e.is_empty()),
            (None, Ok(())) => prop_assert!(!dup(&create) && !dup(&resume)),
            (None, Err(e)) => prop_assert!(dup(&create) || dup(&resume), "known names rejected: {e}"),
        }
        if let (Some(n), Err(e)) = (stranger, &result)
            && n.len() < 20 && !n.contains(['"', '\\']) && n.chars().all(|c| c.is_ascii_graphic())
            && !dup(&create) && !dup(&resume)
            && create.len() <= RJOBS.len() && resume.len() <= RJOBS.len()
        {
            prop_assert!(e.contains(n.as_str()), "the rejection does not name {n:?}: {e}");
        }
    }

    #[test]
    fn outcome_verdicts_restart_only_jobs_of_the_snapshot(job in name(job_names(&snapshot()))) {
        let snap = snapshot();
        let verdict = OutcomeVerdict {
            action: Action::RestartJob(JobRestart {
                job: job.clone(),
                count_towards_max: true,
                event_reason: "Restart".into(),
                message: "m".into(),
            }),
            rule: None,
        };
        let known = job_names(&snap).contains(&job);
        match validate::outcome(&snap, &verdict) {
            Ok(()) => prop_assert!(known, "{job:?} is not a Job but passed"),
            Err(e) => {
                prop_assert!(!known, "a known Job was rejected: {e}");
                if job.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    prop_assert!(e.contains(&job), "the rejection does not name {job:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn placement_verdicts_place_only_pending_jobs(
        placed in prop::collection::vec(name(vec!["js-workers-0".into(), "js-workers-1".into()]), 0..4),
    ) {
        let request = PlacementRequest {
            jobs: ["js-workers-0", "js-workers-1"]
                .iter()
                .map(|n| PendingJob {
                    name: n.to_string(),
                    replicated_job: "workers".into(),
                    job_index: 0,
                    job_key: "k".into(),
                    exclusive_topology: None,
                    node_selector_strategy: false,
                    priority: None,
                    pods: 1,
                })
                .collect(),
            domains: Vec::new(),
        };
        let verdict: Vec<JobPlacement> = placed
            .iter()
            .map(|j| JobPlacement { job: j.clone(), placement: Placement::Unchanged })
            .collect();
        let pending = |n: &str| n == "js-workers-0" || n == "js-workers-1";
        let result = validate::placement(&request, &verdict);
        if placed.iter().any(|n| !pending(n)) {
            prop_assert!(result.is_err(), "an unknown Job was placed: {placed:?}");
        }
        if result.is_ok() {
            prop_assert!(placed.iter().all(|n| pending(n)));
        }
    }

    #[test]
    fn any_json_decoded_as_a_verdict_is_checked_without_panicking(doc in any_json()) {
        let snap = snapshot();
        if let Ok(v) = serde_json::from_value::<StartupVerdict>(doc.clone()) {
            let _ = validate::startup(&snap, &v);
        }
        if let Ok(v) = serde_json::from_value::<OutcomeVerdict>(doc.clone()) {
            let _ = validate::outcome(&snap, &v);
        }
        if let Ok(v) = serde_json::from_value::<Vec<JobPlacement>>(doc) {
            let request = PlacementRequest { jobs: Vec::new(), domains: Vec::new() };
            prop_assert!(v.is_empty() || validate::placement(&request, &v).is_err());
        }
    }
}
