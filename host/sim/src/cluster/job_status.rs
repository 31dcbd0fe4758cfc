//! The decision step of the Job controller, pure: from a Job, its pods and
//! what was already counted, the new status (counters, completed and failed
//! indexes, conditions with the upstream reasons and messages) and the pod
//! actions (create, delete, release the tracking finalizer).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::job_pods::{
    INDEX_FAILURE_COUNT, TRACKING_FINALIZER, compress_indexes, is_indexed, parse_indexes, pod_index,
};
use super::pod_failure_policy::{Verdict, evaluate};
use super::util::{annotation, condition_true, is_deleting, is_terminal, meta, phase, str_at};
use crate::clock::parse_rfc3339;

/// What the controller remembers about a Job between reconciles.
#[derive(Debug, Default, Clone)]
pub struct JobMemory {
    /// Terminal pods already counted in status (their finalizer may still be on).
    pub counted: BTreeSet<String>,
    /// Pods deleted because the Job was suspended: their end is not a failure.
    pub suspend_deleted: BTreeSet<String>,
    /// Failures since the last success, for the pod creation backoff.
    pub consecutive_failures: u32,
    /// When the last failure was counted (virtual ms since the cluster started).
    pub last_failure: Option<u64>,
    /// When this controller last set `startTime` (virtual ms), so deadlines
    /// fire at exact virtual instants whatever the wall-clock offset.
    pub started_ms: Option<u64>,
}

/// A pod to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPod {
    pub index: Option<u32>,
    pub index_failures: Option<u32>,
}

/// Everything one reconcile should do.
#[derive(Debug, Clone, Default)]
pub struct JobPlan {
    /// The whole new status (None: unchanged).
    pub status: Option<Value>,
    /// Pods counted by this status write, and whether each failed.
    pub newly_counted: Vec<(String, bool)>,
    pub create: Vec<NewPod>,
    /// Pod names to delete, with whether it is for a suspension.
    pub delete: Vec<(String, bool)>,
    /// Pod names whose tracking finalizer can go.
    pub release: Vec<String>,
    /// Look again at this virtual ms since the cluster started.
    pub requeue_at: Option<u64>,
    /// This reconcile (re)set `startTime`.
    pub started: bool,
    /// Conditions added, as `type reason`.
    pub new_conditions: Vec<String>,
    /// Failures since the last success, after this reconcile's counting.
    pub consecutive_failures: u32,
}

fn num(job: &Value, p: &str) -> Option<i64> {
    job.pointer(p).and_then(Value::as_i64)
}

fn has_finalizer(pod: &Value) -> bool {
    pod.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(TRACKING_FINALIZER)))
}

fn cond(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

/// Seconds to wait before replacing a failed pod: 10 s doubling, at most 6 min.
/// With `restartPolicy: OnFailure` a failing container restarts in place,
/// and its restarts count against the backoff limit (kube's
/// `pastBackoffLimitOnFailure`): any restart at all with a limit of 0.
fn past_backoff_limit_on_failure(job: &Value, active: &[&Value], limit: i64) -> bool {
    if str_at(job, "/spec/template/spec/restartPolicy") != "OnFailure" {
        return false;
    }
    let restarts: i64 = active
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            ["/status/initContainerStatuses", "/status/containerStatuses"]
                .into_iter()
                .filter_map(|at| p.pointer(at).and_then(Value::as_array))
                .flatten()
        })
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

pub fn backoff_secs(consecutive_failures: u32) -> i64 {
    if consecutive_failures == 0 {
        return 0;
    }
    (10i64 << (consecutive_failures - 1).min(6)).min(360)
}

/// Plans one reconcile of `job` owning `pods` at Unix second `now`.
///
/// `now` (Unix seconds) and `now_str` stamp the status; `mono_ms` (virtual
/// ms since the cluster started) times backoff and deadlines.
pub fn plan(
    job: &Value,
    pods: &[&Value],
    mem: &JobMemory,
    now: i64,
    now_str: &str,
    mono_ms: u64,
) -> JobPlan {
    let mut out = JobPlan::default();
    let old_status = job.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut status = old_status.clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let finished = condition_true(job, "Complete") || condition_true(job, "Failed");
    let indexed = is_indexed(job);
    let parallelism = num(job, "/spec/parallelism").unwrap_or(1).max(0) as usize;
    let completions = num(job, "/spec/completions").map(|c| c.max(0) as u32);
    let backoff_limit = num(job, "/spec/backoffLimit").unwrap_or(6);
    let per_index = num(job, "/spec/backoffLimitPerIndex").filter(|_| indexed);
    let max_failed_indexes = num(job, "/spec/maxFailedIndexes");
    let suspend = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);

    let mut succeeded = status.get("succeeded").and_then(Value::as_i64).unwrap_or(0);
    let mut failed = status.get("failed").and_then(Value::as_i64).unwrap_or(0);
    // Indexes past `completions` (an elastic Job shrank) no longer count.
    let in_range = |i: &u32| completions.is_none_or(|c| *i < c);
    let indexes_at = |key: &str| -> BTreeSet<u32> {
        let all = parse_indexes(status.get(key).and_then(Value::as_str).unwrap_or(""));
        all.into_iter().filter(in_range).collect()
    };
    let mut completed = indexes_at("completedIndexes");
    let mut failed_idx = indexes_at("failedIndexes");
    let mut failure_target: Option<(String, String)> = None;
    let mut consecutive = mem.consecutive_failures;

    // Per-index failure counts carried by the newest pod of each index.
    let mut index_failures: BTreeMap<u32, u32> = BTreeMap::new();
    let mut active: Vec<&Value> = Vec::new();
    let mut terminating = 0i64;
    for pod in pods {
        let uid = meta(pod, "uid").to_string();
        if is_terminal(pod) {
            let counted = mem.counted.contains(&uid) || !has_finalizer(pod);
            if !counted {
                let idx = pod_index(pod);
                if phase(pod) == "Succeeded" {
                    consecutive = 0;
                    match (indexed, idx) {
                        (true, Some(i)) if completions.is_none_or(|c| i < c) => {
                            completed.insert(i);
                        }
                        (true, _) => {}
                        (false, _) => succeeded += 1,
                    }
                    out.newly_counted.push((uid.clone(), false));
                } else if mem.suspend_deleted.contains(&uid)
                    || (indexed && idx.is_some_and(|i| !in_range(&i)))
                {
                    // Deleted for a suspension, or of an index the Job no
                    // longer has: not a failure.
                    out.newly_counted.push((uid.clone(), false));
                } else {
                    let verdict = evaluate(job, pod);
                    if verdict != Verdict::Ignore {
                        failed += 1;
                        consecutive += 1;
                    }
                    if let (Some(limit), Some(i)) = (per_index, idx) {
                        let before: u32 = annotation(pod, INDEX_FAILURE_COUNT)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let after = if verdict == Verdict::Ignore {
                            before
                        } else {
                            before + 1
                        };
                        let e = index_failures.entry(i).or_default();
                        *e = (*e).max(after);
                        if verdict == Verdict::FailIndex || i64::from(after) > limit {
                            failed_idx.insert(i);
                        }
                    }
                    if let Verdict::FailJob(message) = &verdict {
                        failure_target.get_or_insert(("PodFailurePolicy".into(), message.clone()));
                    }
                    out.newly_counted
                        .push((uid.clone(), verdict != Verdict::Ignore));
                }
            }
            if has_finalizer(pod) {
                out.release.push(meta(pod, "name").to_string());
            }
            if let (Some(_), Some(i)) = (per_index, pod_index(pod)) {
                let n: u32 = annotation(pod, INDEX_FAILURE_COUNT)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let failed_here = u32::from(phase(pod) == "Failed");
                let e = index_failures.entry(i).or_default();
                *e = (*e).max(n + failed_here);
            }
        } else if is_deleting(pod) {
            terminating += 1;
            // Never started on a node: nothing will stop it, it can go now.
            if pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && has_finalizer(pod)
            {
                out.release.push(meta(pod, "name").to_string());
            }
        } else {
            active.push(pod);
        }
    }
    if finished {
        // Only the bookkeeping of stragglers is left.
        out.release.extend(
            active
                .iter()
                .filter(|p| has_finalizer(p))
                .map(|p| meta(p, "name").to_string()),
        );
        out.consecutive_failures = consecutive;
        return out;
    }
    if indexed {
        succeeded = completed.len() as i64;
    }

    let has_cond =
        |cs: &[Value], k: &str| cs.iter().any(|c| c["type"] == k && c["status"] == "True");
    let start_time = status
        .get("startTime")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    if !has_cond(&conditions, "FailureTarget") && !has_cond(&conditions, "SuccessCriteriaMet") {
        if failure_target.is_none() {
            failure_target = if per_index.is_some() {
                max_failed_indexes
                    .filter(|m| failed_idx.len() as i64 > *m)
                    .map(|_| {
                        (
                            "MaxFailedIndexesExceeded".to_string(),
                            "Job has exceeded the specified maximal number of failed indexes"
                                .to_string(),
                        )
                    })
            } else if failed > backoff_limit
                || past_backoff_limit_on_failure(job, &active, backoff_limit)
            {
                Some((
                    "BackoffLimitExceeded".into(),
                    "Job has reached the specified backoff limit".into(),
                ))
            } else {
                None
            };
        }
        if failure_target.is_none()
            && !suspend
            && let (Some(ads), Some(st)) = (num(job, "/spec/activeDeadlineSeconds"), start_time)
        {
            let ads_ms = ads.max(0) as u64 * 1000;
            let deadline = match mem.started_ms {
                Some(s) => s + ads_ms,
                None => (mono_ms + ads_ms).saturating_sub((now - st).max(0) as u64 * 1000),
            };
            if mono_ms >= deadline {
                failure_target = Some((
                    "DeadlineExceeded".into(),
                    "Job was active longer than specified deadline".into(),
                ));
            } else {
                out.requeue_at = Some(deadline);
            }
        }
        let done = |c: u32| {
            if indexed {
                completed.len() as u32 + failed_idx.len() as u32 >= c
            } else {
                succeeded >= i64::from(c)
            }
        };
        let success = match completions {
            Some(c) => done(c) && failed_idx.is_empty(),
            None => succeeded > 0 && active.is_empty(),
        };
        if failure_target.is_none()
            && per_index.is_some()
            && completions.is_some_and(done)
            && !failed_idx.is_empty()
        {
            failure_target = Some(("FailedIndexes".into(), "Job has failed indexes".into()));
        }
        if let Some((reason, message)) = &failure_target {
            conditions.push(cond("FailureTarget", "True", reason, message, now_str));
            out.new_conditions.push(format!("FailureTarget {reason}"));
        } else if success {
            conditions.push(cond(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now_str,
            ));
            out.new_conditions
                .push("SuccessCriteriaMet CompletionsReached".into());
        }
    }

    let ending =
        has_cond(&conditions, "FailureTarget") || has_cond(&conditions, "SuccessCriteriaMet");
    let mut active_count = active.len() as i64;
    if ending {
        for p in &active {
            out.delete.push((meta(p, "name").to_string(), false));
        }
        terminating += active_count;
        active_count = 0;
        if terminating == 0 {
            if let Some(ft) = conditions
                .iter()
                .find(|c| c["type"] == "FailureTarget" && c["status"] == "True")
                .cloned()
            {
                let reason = ft["reason"].as_str().unwrap_or_default().to_string();
                conditions.push(cond(
                    "Failed",
                    "True",
                    &reason,
                    ft["message"].as_str().unwrap_or_default(),
                    now_str,
                ));
                out.new_conditions.push(format!("Failed {reason}"));
            } else {
                conditions.push(cond(
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now_str,
                ));
                out.new_conditions
                    .push("Complete CompletionsReached".into());
                status["completionTime"] = json!(now_str);
            }
        }
    } else if suspend {
        for p in &active {
            out.delete.push((meta(p, "name").to_string(), true));
        }
        terminating += active_count;
        active_count = 0;
        if !has_cond(&conditions, "Suspended") {
            conditions.retain(|c| c["type"] != "Suspended");
            conditions.push(cond(
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now_str,
            ));
            out.new_conditions.push("Suspended JobSuspended".into());
        }
    } else {
        if has_cond(&conditions, "Suspended") {
            for c in conditions.iter_mut().filter(|c| c["type"] == "Suspended") {
                *c = cond("Suspended", "False", "JobResumed", "Job resumed", now_str);
            }
            out.new_conditions.push("Suspended JobResumed".into());
            status["startTime"] = json!(now_str);
            out.started = true;
        }
        if status.get("startTime").is_none_or(Value::is_null) {
            status["startTime"] = json!(now_str);
            out.started = true;
        }
        // Pods the Job no longer wants: out-of-range and duplicate
        // indexes, then any beyond what is left to do, cheapest first.
        let want = match completions {
            Some(c) => (i64::from(c) - succeeded).clamp(0, parallelism as i64) as usize,
            None if succeeded > 0 => active.len(),
            None => parallelism,
        };
        let excess = excess_pods(&mut active, indexed.then(|| completions.unwrap_or(0)), want);
        terminating += excess.len() as i64;
        active_count = active.len() as i64;
        out.delete
            .extend(excess.iter().map(|p| (meta(p, "name").to_string(), false)));
        let wait_until = mem
            .last_failure
            .map(|t| t + backoff_secs(consecutive) as u64 * 1000)
            .filter(|t| *t > mono_ms);
        if let Some(t) = wait_until {
            out.requeue_at = Some(out.requeue_at.map_or(t, |r| r.min(t)));
        } else {
            let room = parallelism.saturating_sub(active.len());
            if indexed {
                let busy: BTreeSet<u32> = active.iter().filter_map(|p| pod_index(p)).collect();
                let total = completions.unwrap_or(0);
                out.create = (0..total)
                    .filter(|i| {
                        !completed.contains(i) && !failed_idx.contains(i) && !busy.contains(i)
                    })
                    .take(room)
                    .map(|i| NewPod {
                        index: Some(i),
                        index_failures: per_index
                            .map(|_| index_failures.get(&i).copied().unwrap_or(0)),
                    })
                    .collect();
            } else {
                let want = if completions.is_none() && succeeded > 0 {
                    0
                } else {
                    want
                };
                let n = want.saturating_sub(active.len()).min(room);
                out.create = (0..n)
                    .map(|_| NewPod {
                        index: None,
                        index_failures: None,
                    })
                    .collect();
            }
            active_count += out.create.len() as i64;
        }
    }

    let ready = active.iter().filter(|p| condition_true(p, "Ready")).count() as i64;
    status["active"] = json!(active_count);
    status["ready"] = json!(if ending || suspend { 0 } else { ready });
    status["terminating"] = json!(terminating);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["uncountedTerminatedPods"] = json!({});
    if indexed {
        status["completedIndexes"] = json!(compress_indexes(&completed));
        if per_index.is_some() {
            status["failedIndexes"] = json!(compress_indexes(&failed_idx));
        }
    }
    if conditions.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("conditions");
        }
    } else {
        status["conditions"] = json!(conditions);
    }
    if status != old_status {
        out.status = Some(status);
    }
    out.consecutive_failures = consecutive;
    out
}

/// Takes out of `active` the pods a Job no longer wants, as the Job
/// controller picks them: for an Indexed Job (`indexed` gives its
/// completions) every pod whose index is out of range or repeats an index,
/// then, while more than `want` are left, the cheapest to lose: not yet on
/// a node, then not running, then not ready, then the newest.
fn excess_pods<'p>(
    active: &mut Vec<&'p Value>,
    indexed: Option<u32>,
    want: usize,
) -> Vec<&'p Value> {
    let mut excess = Vec::new();
    if let Some(completions) = indexed {
        let mut seen = BTreeSet::new();
        active.retain(|p| match pod_index(p) {
            Some(i) if i < completions && seen.insert(i) => true,
            _ => {
                excess.push(*p);
                false
            }
        });
    }
    if active.len() > want {
        let cost = |p: &Value| {
            let on_node = p
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let running = phase(p) == "Running";
            let ready = condition_true(p, "Ready");
            let created = str_at(p, "/metadata/creationTimestamp").to_string();
            (on_node, running, ready, std::cmp::Reverse(created))
        };
        active.sort_by_key(|p| cost(p));
        let n = active.len() - want;
        excess.extend(active.drain(..n));
    }
    excess
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(extra: Value) -> Value {
        let mut j = json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u"},
            "spec": {"parallelism": 2, "completions": 2, "completionMode": "Indexed", "backoffLimit": 0,
                     "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
            "status": {}});
        if let (Some(s), Some(add)) = (j["spec"].as_object_mut(), extra.as_object()) {
            s.extend(add.clone());
        }
        j
    }

    fn pod(name: &str, index: u32, phase: &str) -> Value {
        json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "ns",
                            "annotations": {"batch.kubernetes.io/job-completion-index": index.to_string()},
                            "finalizers": [TRACKING_FINALIZER]},
               "spec": {"nodeName": "n1"},
               "status": {"phase": phase}})
    }

    fn types(p: &JobPlan) -> Vec<String> {
        p.status
            .as_ref()
            .and_then(|s| s["conditions"].as_array())
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}={}",
                    c["type"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn a_new_indexed_job_creates_one_pod_per_index_up_to_parallelism() {
        let p = plan(&job(json!({})), &[], &JobMemory::default(), 0, "t", 0);
        assert_eq!(
            p.create.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![Some(0), Some(1)]
        );
        let s = p.status.expect("status");
        assert_eq!(
            (s["active"].as_i64(), s["startTime"].as_str()),
            (Some(2), Some("t"))
        );
    }

    #[test]
    fn a_failure_past_the_backoff_limit_sets_failure_target_then_failed_once_pods_are_gone() {
        let (failed, running) = (pod("a", 0, "Failed"), pod("b", 1, "Running"));
        let p = plan(
            &job(json!({})),
            &[&failed, &running],
            &JobMemory::default(),
            0,
            "t",
            0,
        );
        assert_eq!(types(&p), ["FailureTarget=BackoffLimitExceeded"]);
        assert_eq!(p.delete, vec![("b".to_string(), false)]);
        assert_eq!(p.release, vec!["a".to_string()]);
        assert!(p.create.is_empty());
        // Next round: the status carries the target and the running pod has stopped.
        let mut j = job(json!({}));
        j["status"] = p.status.clone().expect("status");
        let mem = JobMemory {
            counted: ["uid-a".to_string()].into(),
            ..JobMemory::default()
        };
        let stopped = pod("b", 1, "Failed");
        let p = plan(&j, &[&failed, &stopped], &mem, 0, "t", 0);
        assert_eq!(
            types(&p),
            [
                "FailureTarget=BackoffLimitExceeded",
                "Failed=BackoffLimitExceeded"
            ]
        );
    }

    #[test]
    fn with_restart_policy_on_failure_a_container_restart_spends_the_backoff_limit() {
        let mut j = job(json!({}));
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let mut restarted = pod("a", 0, "Running");
        restarted["status"]["containerStatuses"] = json!([{"name": "main", "restartCount": 1}]);
        let fresh = pod("b", 1, "Running");
        let p = plan(&j, &[&restarted, &fresh], &JobMemory::default(), 0, "t", 0);
        assert_eq!(types(&p), ["FailureTarget=BackoffLimitExceeded"]);
        j["spec"]["backoffLimit"] = json!(2);
        let p = plan(&j, &[&restarted, &fresh], &JobMemory::default(), 0, "t", 0);
        assert!(types(&p).is_empty(), "one restart is under a limit of 2");
    }

    #[test]
    fn all_indexes_succeeded_gives_success_criteria_met_and_complete_with_completion_time() {
        let (a, b) = (pod("a", 0, "Succeeded"), pod("b", 1, "Succeeded"));
        let p = plan(&job(json!({})), &[&a, &b], &JobMemory::default(), 0, "t", 0);
        assert_eq!(
            types(&p),
            [
                "SuccessCriteriaMet=CompletionsReached",
                "Complete=CompletionsReached"
            ]
        );
        let s = p.status.expect("status");
        assert_eq!(
            (s["succeeded"].as_i64(), s["completedIndexes"].as_str()),
            (Some(2), Some("0-1"))
        );
        assert_eq!(s["completionTime"], "t");
    }

    #[test]
    fn a_replacement_waits_out_the_failure_backoff() {
        let j = job(json!({"backoffLimit": 5}));
        let mem = JobMemory {
            consecutive_failures: 2,
            last_failure: Some(1_000),
            ..JobMemory::default()
        };
        let p = plan(&j, &[], &mem, 0, "t", 5_000);
        assert!(p.create.is_empty());
        assert_eq!(
            p.requeue_at,
            Some(21_000),
            "10 s doubled once after the second failure"
        );
        assert_eq!(
            (backoff_secs(1), backoff_secs(3), backoff_secs(20)),
            (10, 40, 360)
        );
    }

    #[test]
    fn a_shrunk_indexed_job_deletes_its_out_of_range_pods_and_forgets_their_indexes() {
        let shrunk = {
            let mut j = job(json!({"parallelism": 2, "completions": 2, "backoffLimit": 0}));
            j["status"] = json!({"completedIndexes": "1,3", "succeeded": 2});
            j
        };
        let (p0, p2, f4) = (
            pod("p0", 0, "Running"),
            pod("p2", 2, "Running"),
            pod("f4", 4, "Failed"),
        );
        let p = plan(&shrunk, &[&p0, &p2, &f4], &JobMemory::default(), 0, "t", 0);
        assert_eq!(p.delete, vec![("p2".to_string(), false)]);
        // The failed pod of index 4 is no failure of a Job of two indexes.
        assert_eq!(p.newly_counted, vec![("uid-f4".to_string(), false)]);
        assert!(types(&p).is_empty(), "{:?}", types(&p));
        let s = p.status.expect("status");
        assert_eq!(s["completedIndexes"], "1");
        assert_eq!(
            (s["succeeded"].as_i64(), s["active"].as_i64()),
            (Some(1), Some(1))
        );
        assert!(p.create.is_empty(), "index 0 runs, index 1 is done");
    }

    #[test]
    fn a_grown_indexed_job_creates_pods_for_its_new_indexes() {
        let grown = job(json!({"parallelism": 4, "completions": 4}));
        let (p0, p1) = (pod("p0", 0, "Running"), pod("p1", 1, "Running"));
        let p = plan(&grown, &[&p0, &p1], &JobMemory::default(), 0, "t", 0);
        assert!(p.delete.is_empty());
        assert_eq!(
            p.create.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![Some(2), Some(3)]
        );
    }

    #[test]
    fn beyond_parallelism_the_pods_not_yet_on_a_node_go_first() {
        let lower =
            job(json!({"parallelism": 1, "completions": 3, "completionMode": "NonIndexed"}));
        let mut pending = pod("pending", 0, "Pending");
        pending["spec"] = json!({});
        let running = pod("running", 0, "Running");
        let p = plan(
            &lower,
            &[&running, &pending],
            &JobMemory::default(),
            0,
            "t",
            0,
        );
        assert_eq!(p.delete, vec![("pending".to_string(), false)]);
        assert!(p.create.is_empty());
    }
}
