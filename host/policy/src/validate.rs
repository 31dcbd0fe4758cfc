//! Checks every verdict before the host acts on it: each name must exist in
//! the snapshot (or request), and every list and string is capped, so a
//! plugin can neither make the host act on something that does not exist
//! nor flood the API with huge conditions or events.

use crate::snapshot::{
    Action, JobPlacement, OutcomeVerdict, Placement, PlacementRequest, Snapshot, StartupVerdict,
};
use std::collections::HashMap;

/// Longest condition or event message accepted (the API's own limit).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Longest condition / event reason accepted (the API's own limit).
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest rule name (as for failure-policy rules).
pub const MAX_RULE_BYTES: usize = 128;
/// Most tolerations or affinity requirements one pin may add.
pub const MAX_PIN_ITEMS: usize = 32;

/// Startup: names must be replicated jobs, each listed at most once.
pub fn startup(snapshot: &Snapshot, verdict: &StartupVerdict) -> Result<(), String> {
    // A JobSet has a handful of replicated jobs: scanning beats hashing.
    let known = &snapshot.jobset.replicated_jobs;
    for (field, names) in [("create", &verdict.create), ("resume", &verdict.resume)] {
        if names.len() > known.len() {
            return Err(format!(
                "{field} lists {} names but the JobSet has {} replicated jobs",
                names.len(),
                known.len()
            ));
        }
        for (i, name) in names.iter().enumerate() {
            if !known.iter().any(|r| &r.name == name) {
                return Err(format!(
                    "{field}: {:?} is not a replicated job of {}/{}",
                    clip(name),
                    snapshot.jobset.namespace,
                    snapshot.jobset.name
                ));
            }
            if names[..i].contains(name) {
                return Err(format!("{field}: {name:?} is listed twice"));
            }
        }
    }
    Ok(())
}

/// Outcome: Jobs named must be current-attempt Jobs; reasons must be valid
/// condition reasons; messages are capped.
pub fn outcome(snapshot: &Snapshot, verdict: &OutcomeVerdict) -> Result<(), String> {
    let job_exists = |name: &str| snapshot.jobs.iter().any(|j| j.name == name);
    if let Some(rule) = &verdict.rule {
        bounded("rule", rule, MAX_RULE_BYTES)?;
    }
    match &verdict.action {
        Action::Continue => Ok(()),
        Action::Complete(t) | Action::Fail(t) => {
            reason("reason", &t.reason)?;
            bounded("message", &t.message, MAX_MESSAGE_BYTES)
        }
        Action::RestartJobset(r) => {
            reason("condition-reason", &r.condition_reason)?;
            reason("event-reason", &r.event_reason)?;
            bounded("message", &r.message, MAX_MESSAGE_BYTES)?;
            if !job_exists(&r.first_failed_job) {
                return Err(format!(
                    "first-failed-job: {:?} is not a Job of the current attempt",
                    clip(&r.first_failed_job)
                ));
            }
            Ok(())
        }
        Action::RestartJob(r) => {
            reason("event-reason", &r.event_reason)?;
            bounded("message", &r.message, MAX_MESSAGE_BYTES)?;
            if !job_exists(&r.job) {
                return Err(format!(
                    "restart-job: {:?} is not a Job of the current attempt",
                    clip(&r.job)
                ));
            }
            Ok(())
        }
    }
}

/// In-place restart (`decide-in-place`): as an outcome, but only
/// `continue`, `restart-jobset` and `fail` answer it.
pub fn in_place(snapshot: &Snapshot, verdict: &OutcomeVerdict) -> Result<(), String> {
    match &verdict.action {
        Action::Complete(_) => Err(
            "decide-in-place answered complete, which is not an answer to an in-place \
             restart (continue, restart-jobset or fail)"
                .to_string(),
        ),
        Action::RestartJob(_) => Err(
            "decide-in-place answered restart-job, which is not an answer to an in-place \
             restart (continue, restart-jobset or fail)"
                .to_string(),
        ),
        _ => outcome(snapshot, verdict),
    }
}

/// Placement: Jobs named must be in the request, at most once each; pins
/// are bounded.
pub fn placement(request: &PlacementRequest, verdict: &[JobPlacement]) -> Result<(), String> {
    if verdict.len() > request.jobs.len() {
        return Err(format!(
            "places {} Jobs but only {} were pending",
            verdict.len(),
            request.jobs.len()
        ));
    }
    // Plugins usually answer in request order: check the next pending Job
    // first and index the request by name only when that guess misses.
    let mut placed = vec![false; request.jobs.len()];
    let mut by_name: Option<HashMap<&str, usize>> = None;
    let mut next = 0;
    for p in verdict {
        let at = match request.jobs.get(next) {
            Some(j) if j.name == p.job => next,
            _ => {
                let index = by_name.get_or_insert_with(|| {
                    let mut index = HashMap::with_capacity(request.jobs.len());
                    for (i, j) in request.jobs.iter().enumerate() {
                        index.entry(j.name.as_str()).or_insert(i);
                    }
                    index
                });
                match index.get(p.job.as_str()) {
                    Some(&i) => i,
                    None => return Err(format!("{:?} is not a pending Job", clip(&p.job))),
                }
            }
        };
        next = at + 1;
        if std::mem::replace(&mut placed[at], true) {
            return Err(format!("{:?} is placed twice", p.job));
        }
        match &p.placement {
            Placement::Unchanged => {}
            Placement::Wait(why) => bounded("wait", why, MAX_REASON_BYTES)?,
            Placement::Pin(pin) => {
                if pin.node_selector.len() > MAX_PIN_ITEMS
                    || pin.tolerations.len() > MAX_PIN_ITEMS
                    || pin.required_node_affinity.len() > MAX_PIN_ITEMS
                {
                    return Err(format!(
                        "pin for {} has more than {MAX_PIN_ITEMS} entries in a list",
                        p.job
                    ));
                }
                // Only the size is capped here: whether a key or value is a
                // valid label is the API server's to say when the Job is
                // created (a JobCreationFailed event, as upstream gets for
                // a namespaced-job value over 63 characters).
                for kv in &pin.node_selector {
                    bounded("node-selector key", &kv.key, MAX_SELECTOR_BYTES)?;
                    bounded("node-selector value", &kv.value, MAX_SELECTOR_BYTES)?;
                }
            }
        }
    }
    Ok(())
}

/// A condition reason: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, bounded.
fn reason(field: &str, value: &str) -> Result<(), String> {
    bounded(field, value, MAX_REASON_BYTES)?;
    let bytes = value.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b',' | b':');
    let ok = match bytes {
        [] => false,
        [first] => first.is_ascii_alphabetic(),
        [first, middle @ .., last] => {
            first.is_ascii_alphabetic()
                && middle.iter().all(inner_ok)
                && (last.is_ascii_alphanumeric() || *last == b'_')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {:?} is not a valid condition reason",
            clip(value)
        ))
    }
}

/// The most bytes of a node-selector key or value a pin may carry.
const MAX_SELECTOR_BYTES: usize = 1024;

fn bounded(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        Err(format!(
            "{field} is {} bytes, over the {max}-byte cap",
            value.len()
        ))
    } else {
        Ok(())
    }
}

/// At most 80 characters of a name from a plugin, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_reasons_follow_the_api_pattern() {
        for ok in ["FailedJobs", "FailurePolicy_rule1", "A", "a:b,c_"] {
            assert!(reason("reason", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "has space", "ends,", "dash-ed"] {
            assert!(reason("reason", bad).is_err(), "{bad:?}");
        }
    }

    fn request(names: &[&str]) -> PlacementRequest {
        PlacementRequest {
            jobs: names
                .iter()
                .map(|n| crate::snapshot::PendingJob {
                    name: n.to_string(),
                    replicated_job: "w".into(),
                    job_index: 0,
                    job_key: n.to_string(),
                    exclusive_topology: None,
                    node_selector_strategy: false,
                    priority: None,
                    pods: 1,
                })
                .collect(),
            domains: Vec::new(),
        }
    }

    fn waits(names: &[&str]) -> Vec<JobPlacement> {
        names
            .iter()
            .map(|n| JobPlacement {
                job: n.to_string(),
                placement: Placement::Wait("no room".into()),
            })
            .collect()
    }

    #[test]
    fn placements_in_any_order_and_subset_are_accepted() {
        let r = request(&["a", "b", "c"]);
        for order in [
            &["a", "b", "c"][..],
            &["c", "a"],
            &["b"],
            &["b", "a", "c"],
            &[],
        ] {
            assert_eq!(placement(&r, &waits(order)), Ok(()), "{order:?}");
        }
    }

    #[test]
    fn a_job_placed_twice_or_not_pending_is_refused() {
        let r = request(&["a", "b", "c"]);
        for (order, why) in [
            (&["a", "a"][..], "\"a\" is placed twice"),
            (&["b", "a", "b"], "\"b\" is placed twice"),
            (&["c", "c"], "\"c\" is placed twice"),
            (&["a", "x"], "\"x\" is not a pending Job"),
            (&["x"], "\"x\" is not a pending Job"),
        ] {
            assert_eq!(
                placement(&r, &waits(order)),
                Err(why.to_string()),
                "{order:?}"
            );
        }
    }

    #[test]
    fn a_pin_is_capped_in_size_and_label_rules_are_left_to_the_api_server() {
        use crate::snapshot::{KeyValue, Pin};
        let r = request(&["a"]);
        let pin = |value: String| {
            vec![JobPlacement {
                job: "a".into(),
                placement: Placement::Pin(Pin {
                    node_selector: vec![KeyValue {
                        key: "alpha.jobset.sigs.k8s.io/namespaced-job".into(),
                        value,
                    }],
                    tolerations: vec![],
                    required_node_affinity: vec![],
                }),
            }]
        };
        // Upstream sends a namespaced-job value over 63 characters to the
        // API server, which refuses the Job; so does ours.
        assert_eq!(placement(&r, &pin("n".repeat(64))), Ok(()));
        assert_eq!(
            placement(&r, &pin("n".repeat(1025))),
            Err("node-selector value is 1025 bytes, over the 1024-byte cap".to_string())
        );
    }

    #[test]
    fn startup_names_must_be_replicated_jobs_listed_once() {
        let snapshot = crate::snapshot::Snapshot {
            jobset: crate::snapshot::Jobset {
                name: "js".into(),
                namespace: "ns".into(),
                replicated_jobs: ["leader", "workers"]
                    .iter()
                    .map(|n| crate::snapshot::ReplicatedJob {
                        name: n.to_string(),
                        group_name: "default".into(),
                        replicas: 1,
                        parallelism: 1,
                        completions: None,
                        depends_on: Vec::new(),
                    })
                    .collect(),
                uid: "u".into(),
                labels: Vec::new(),
                annotations: Vec::new(),
                suspended: false,
                success_policy: crate::snapshot::SuccessPolicy {
                    operator: crate::snapshot::SuccessOperator::All,
                    target_replicated_jobs: Vec::new(),
                },
                failure_policy: None,
                startup_order: crate::snapshot::StartupOrder::AnyOrder,
                status: crate::snapshot::JobsetStatus {
                    restarts: 0,
                    restarts_count_towards_max: 0,
                    replicated_jobs: Vec::new(),
                },
            },
            jobs: Vec::new(),
            now: 0,
            feature_gates: Vec::new(),
            config: String::new(),
        };
        let verdict = |create: &[&str]| StartupVerdict {
            create: create.iter().map(|n| n.to_string()).collect(),
            resume: Vec::new(),
            in_order: crate::snapshot::InOrderCondition::None,
        };
        assert_eq!(startup(&snapshot, &verdict(&["workers", "leader"])), Ok(()));
        assert_eq!(
            startup(&snapshot, &verdict(&["workers", "workers"])),
            Err("create: \"workers\" is listed twice".to_string())
        );
        assert_eq!(
            startup(&snapshot, &verdict(&["ps"])),
            Err("create: \"ps\" is not a replicated job of ns/js".to_string())
        );
    }

    #[test]
    fn oversized_strings_are_refused_with_their_size() {
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let err = bounded("message", &long, MAX_MESSAGE_BYTES).expect_err("too long");
        assert!(
            err.contains(&format!("{} bytes", MAX_MESSAGE_BYTES + 1)),
            "{err}"
        );
    }
}
