//! The end of a run as people read it: a summary row per JobSet, the
//! decisions each plugin made, and for JobSets that did not finish, why
//! (unschedulable pods, containers that cannot start, Jobs that wait).

use std::collections::BTreeMap;
use std::time::Duration;

use jobset_api::JobSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use crate::history::Record;
use crate::output::Output;

/// The state of one JobSet at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `namespace/name`.
    pub name: String,
    /// `Completed`, `Failed`, `Stuck` (nothing moved for a long while) or
    /// `Running` (the time limit came first).
    pub state: String,
    /// Restarts of the whole JobSet.
    pub restarts: i32,
    /// Restarts of single Jobs (`RestartJob*` actions).
    pub job_restarts: i32,
    /// Restarts (of either kind) that count toward `maxRestarts`.
    pub counted: i32,
    pub duration: Duration,
    pub succeeded: i32,
    pub failed: i32,
}

/// `HH:MM:SS`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `namespace/name` of an object.
pub fn key(ns: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        ns.map(String::as_str).unwrap_or_default(),
        name.map(String::as_str).unwrap_or_default()
    )
}

fn owned_by(labels: Option<&BTreeMap<String, String>>, name: &str) -> bool {
    labels
        .and_then(|l| l.get(jobset_api::labels::JOBSET_NAME_KEY))
        .is_some_and(|n| n == name)
}

/// The summary row of a JobSet, counting its Jobs' outcomes.
pub fn row(js: &JobSet, jobs: &[Job], unfinished: &str, duration: Duration) -> Row {
    let name = js.metadata.name.clone().unwrap_or_default();
    let ns = js.metadata.namespace.clone().unwrap_or_default();
    let status = js.status.clone().unwrap_or_default();
    let (mut ok, mut bad) = (0, 0);
    let mine = jobs.iter().filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns.as_str())
            && owned_by(j.metadata.labels.as_ref(), &name)
    });
    for j in mine {
        let conditions = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten();
        for c in conditions.filter(|c| c.status == "True") {
            match c.type_.as_str() {
                "Complete" => ok += 1,
                "Failed" => bad += 1,
                _ => {}
            }
        }
    }
    Row {
        name: format!("{ns}/{name}"),
        state: if status.terminal_state.is_empty() {
            unfinished.to_string()
        } else {
            status.terminal_state.clone()
        },
        restarts: status.restarts,
        job_restarts: status
            .replicated_jobs_status
            .iter()
            .flat_map(|r| r.job_restarts.iter())
            .sum(),
        counted: status.restarts_count_towards_max
            + status
                .replicated_jobs_status
                .iter()
                .flat_map(|r| r.job_restarts_count_towards_max.iter())
                .sum::<i32>(),
        duration,
        succeeded: ok,
        failed: bad,
    }
}

/// Prints the summary table and the decisions.
pub fn print_summary(out: &Output, rows: &[Row], record: &Record) {
    out.line("");
    let header = format!(
        "{:<40} {:<10} {:>8} {:>12} {:>7} {:>10} {:>9} {:>6}",
        "JOBSET", "STATE", "RESTARTS", "JOB-RESTARTS", "COUNTED", "DURATION", "SUCCEEDED", "FAILED"
    );
    out.line(&header);
    for r in rows {
        out.line(&format!(
            "{:<40} {:<10} {:>8} {:>12} {:>7} {:>10} {:>9} {:>6}",
            r.name,
            r.state,
            r.restarts,
            r.job_restarts,
            r.counted,
            fmt_duration(r.duration),
            r.succeeded,
            r.failed
        ));
    }
    if record.decisions.is_empty() {
        return;
    }
    out.line("\nPolicy decisions:");
    let mut by_jobset: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in &record.decisions {
        by_jobset
            .entry(d.jobset.as_str())
            .or_default()
            .push(format!("[{}] {}", fmt_duration(d.at), d.text));
    }
    for (js, lines) in by_jobset {
        out.line(&format!("  {js}:"));
        for l in lines {
            out.line(&format!("    {l}"));
        }
    }
}

/// Why each unfinished JobSet is not moving, one `stuck: why` line per
/// distinct reason: pods the scheduler cannot place, containers that cannot
/// start, Jobs the controller holds back.
pub fn stuck_reasons(unfinished: &[&Row], pods: &[Pod], record: &Record) -> Vec<String> {
    let mut lines = Vec::new();
    for r in unfinished {
        let (ns, name) = r.name.split_once('/').unwrap_or(("", r.name.as_str()));
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mine = pods.iter().filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && owned_by(p.metadata.labels.as_ref(), name)
        });
        for p in mine {
            let Some(status) = p.status.as_ref() else {
                continue;
            };
            for c in status.conditions.iter().flatten() {
                if c.type_ == "PodScheduled" && c.status == "False" {
                    let why = c
                        .message
                        .clone()
                        .unwrap_or_else(|| c.reason.clone().unwrap_or_default());
                    *reasons
                        .entry(format!("pod unschedulable: {why}"))
                        .or_default() += 1;
                }
            }
            let containers = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten());
            for c in containers {
                if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                    let why = format!(
                        "container {} waiting: {}: {}",
                        c.name,
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    );
                    *reasons.entry(why).or_default() += 1;
                }
            }
        }
        let mut mine: Vec<String> = reasons
            .into_iter()
            .map(|(why, n)| format!("  {}: stuck: {n} pod(s): {why}", r.name))
            .collect();
        for w in record.waiting.get(&r.name).into_iter().flatten() {
            mine.push(format!("  {}: stuck: Job waits: {w}", r.name));
        }
        if mine.is_empty() {
            mine.push(format!(
                "  {}: stuck: no pod is waiting for a node; the JobSet waits on its Jobs",
                r.name
            ));
        }
        lines.extend(mine);
    }
    lines
}

/// The shadow plugins' decisions of a run: how many agreed, diverged or
/// failed per slot and pair of plugins, then each divergence.
pub fn print_shadows(out: &Output, reports: &[jobset_policy::shadow::ShadowReport], dropped: u64) {
    use jobset_policy::shadow::ShadowResult;
    out.line("\nShadow decisions:");
    if reports.is_empty() {
        out.line("  none (no decision of a shadowed slot was made)");
    }
    let mut tally: std::collections::BTreeMap<(String, String, String), [usize; 3]> =
        std::collections::BTreeMap::new();
    for r in reports {
        let counts = tally
            .entry((
                r.slot.as_str().to_string(),
                r.active.clone(),
                r.shadow.clone(),
            ))
            .or_default();
        counts[match r.result {
            ShadowResult::Agree => 0,
            ShadowResult::Diverge => 1,
            ShadowResult::ShadowFailed => 2,
        }] += 1;
    }
    for ((slot, active, shadow), [agree, diverge, failed]) in &tally {
        out.line(&format!(
            "  {slot}: {shadow} beside {active}: {agree} agree, {diverge} diverge, {failed} failed"
        ));
    }
    for r in reports.iter().filter(|r| r.result != ShadowResult::Agree) {
        out.line(&format!(
            "  {} attempt {} ({}): {} decided {}",
            r.jobset, r.attempt, r.slot, r.active, r.active_verdict
        ));
        out.line(&format!(
            "    {} would decide {}",
            r.shadow, r.shadow_verdict
        ));
    }
    if dropped > 0 {
        out.line(&format!("  {dropped} shadow calls dropped (queue full)"));
    }
}

/// Where shadow plugins diverged, as marks for the timeline: at the
/// active decision's time in the run (`start_ms` is the run's start on the
/// same clock), what each would have done.
pub fn divergences(
    reports: &[jobset_policy::shadow::ShadowReport],
    start_ms: i64,
) -> Vec<crate::history::Decision> {
    /// The action's name in a verdict line (`Fail`, `RestartJobset`...).
    fn action(verdict: &str) -> String {
        serde_json::from_str::<serde_json::Value>(verdict)
            .ok()
            .and_then(|v| match &v["action"] {
                serde_json::Value::Object(m) => m.keys().next().cloned(),
                serde_json::Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "another verdict".to_string())
    }
    reports
        .iter()
        .filter(|r| r.result == jobset_policy::shadow::ShadowResult::Diverge)
        .map(|r| crate::history::Decision {
            at: std::time::Duration::from_millis((r.at_ms - start_ms).max(0) as u64),
            jobset: r.jobset.clone(),
            text: format!(
                "{} {}: {} where {} decided {}",
                r.slot,
                r.shadow,
                action(&r.shadow_verdict),
                r.active,
                action(&r.active_verdict)
            ),
        })
        .collect()
}
