//! A Job's `podFailurePolicy` applied to one failed pod: the first rule whose
//! exit codes or pod conditions match decides (FailJob, FailIndex, Ignore,
//! Count), with the message the Kubernetes Job controller writes. Pure.

use serde_json::Value;

use super::util::meta;

/// What the policy says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fail the Job with reason PodFailurePolicy and this message.
    FailJob(String),
    /// Fail only the pod's index (backoffLimitPerIndex).
    FailIndex,
    /// Do not count the failure.
    Ignore,
    /// Count it toward the backoff limit (also when no rule matches).
    Count,
}

/// Evaluates `job.spec.podFailurePolicy` for a failed pod.
pub fn evaluate(job: &Value, pod: &Value) -> Verdict {
    let Some(rules) = job
        .pointer("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array)
    else {
        return Verdict::Count;
    };
    for (i, rule) in rules.iter().enumerate() {
        let action = rule
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let matched = if let Some(codes) = rule.get("onExitCodes") {
            exit_code_match(codes, pod).map(|(container, code)| {
                format!(
                    "Container {container} for pod {}/{} failed with exit code {code} matching {action} rule at index {i}",
                    meta(pod, "namespace"),
                    meta(pod, "name")
                )
            })
        } else if let Some(conds) = rule.get("onPodConditions").and_then(Value::as_array) {
            condition_match(conds, pod).map(|kind| {
                format!(
                    "Pod {}/{} has condition {kind} matching {action} rule at index {i}",
                    meta(pod, "namespace"),
                    meta(pod, "name")
                )
            })
        } else {
            None
        };
        if let Some(message) = matched {
            return match action {
                "FailJob" => Verdict::FailJob(message),
                "FailIndex" => Verdict::FailIndex,
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

fn exit_code_match(req: &Value, pod: &Value) -> Option<(String, i64)> {
    let only = req.get("containerName").and_then(Value::as_str);
    let op = req.get("operator").and_then(Value::as_str).unwrap_or("In");
    let values: Vec<i64> = req
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten();
    for s in statuses {
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let Some(code) = s
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
        else {
            continue;
        };
        // Exit code 0 never matches: a container that succeeded did not fail the pod.
        if code == 0 {
            continue;
        }
        let hit = match op {
            "NotIn" => !values.contains(&code),
            _ => values.contains(&code),
        };
        if hit {
            return Some((name.to_string(), code));
        }
    }
    None
}

fn condition_match(reqs: &[Value], pod: &Value) -> Option<String> {
    let conds = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    for req in reqs {
        let kind = req.get("type").and_then(Value::as_str).unwrap_or_default();
        let status = req.get("status").and_then(Value::as_str).unwrap_or("True");
        if conds.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some(kind)
                && c.get("status").and_then(Value::as_str) == Some(status)
        }) {
            return Some(kind.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(rules: Value) -> Value {
        json!({"spec": {"podFailurePolicy": {"rules": rules}}})
    }

    fn pod(exit: i64, conditions: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Failed",
            "conditions": conditions,
            "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": exit}}}]}})
    }

    #[test]
    fn an_exit_code_rule_fails_the_job_with_the_upstream_message() {
        let j =
            job(json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]));
        assert_eq!(
            evaluate(&j, &pod(42, json!([]))),
            Verdict::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0".into())
        );
        assert_eq!(evaluate(&j, &pod(1, json!([]))), Verdict::Count);
    }

    #[test]
    fn a_disruption_condition_rule_matches_before_later_rules() {
        let j = job(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]));
        let p = pod(137, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(
            evaluate(&j, &p),
            Verdict::FailJob(
                "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 1".into()
            )
        );
        assert_eq!(evaluate(&j, &pod(7, json!([]))), Verdict::Ignore);
    }

    #[test]
    fn not_in_never_matches_a_zero_exit() {
        let j = job(
            json!([{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]),
        );
        assert_eq!(evaluate(&j, &pod(0, json!([]))), Verdict::Count);
        assert!(matches!(
            evaluate(&j, &pod(2, json!([]))),
            Verdict::FailJob(_)
        ));
    }
}
