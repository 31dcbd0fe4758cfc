//! A synthetic training workload for scale runs: many Indexed Jobs arriving
//! over the first half of a span, pods of varied length, scripted pod
//! failures, node and pool failures and a trickle of API errors. Used by the
//! scale test and the bench; deterministic for a seed.

use std::time::Duration;

use serde_json::{Value, json};

use super::scenario::{Dur, ErrorRate, FaultAction, PodMatch, PodRule, TimedFault};
use super::util::Rng;
use super::{Cluster, ClusterConfig, ClusterError, ClusterEvent, NodeLayout, Scenario};
use crate::client::Resource;
use crate::sim::{Sim, SimConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    pub jobs: usize,
    /// Pods per Job (parallelism = completions).
    pub pods_per_job: u32,
    /// Virtual time the run lasts.
    pub span: Duration,
    pub seed: u64,
    /// Inject pod, node, pool and API failures.
    pub failures: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            jobs: 100,
            pods_per_job: 4,
            span: Duration::from_secs(3600),
            seed: 42,
            failures: true,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub events: Vec<ClusterEvent>,
    pub complete: usize,
    pub failed: usize,
    /// Pod lifecycle steps recorded (created, bound, started, ended).
    pub pod_events: usize,
}

fn minutes(m: u64) -> Dur {
    Dur(Duration::from_secs(m * 60))
}

/// The scenario for `w`: per-Job run lengths, and failures when asked.
pub fn scenario(w: &Workload) -> Scenario {
    let mut rng = Rng::new(w.seed);
    let mut rules = Vec::new();
    for i in 0..w.jobs {
        let job = format!("train-{i}");
        if w.failures && i % 7 == 3 {
            rules.push(PodRule {
                matches: PodMatch {
                    job: Some(job.clone()),
                    pod_index: Some(0),
                    retry: Some(0),
                    ..PodMatch::default()
                },
                duration: Some(minutes(2 + rng.below(3))),
                exit_code: Some(1),
                ..PodRule::default()
            });
        }
        rules.push(PodRule {
            matches: PodMatch {
                job: Some(job),
                ..PodMatch::default()
            },
            duration: Some(minutes(4 + rng.below(12))),
            ..PodRule::default()
        });
    }
    let mut faults = Vec::new();
    let mut api = None;
    if w.failures {
        // Off the Jobs' arrival grid, so the failures never share an instant with a creation.
        let at = |f: f64| Dur(w.span.mul_f64(f) + Duration::from_millis(7_300));
        faults.push(TimedFault {
            at: at(0.2),
            action: FaultAction::FailNode("pool-2-n3".into()),
        });
        faults.push(TimedFault {
            at: at(0.35),
            action: FaultAction::FailDomain {
                key: super::nodes::NODEPOOL.into(),
                value: "pool-5".into(),
            },
        });
        faults.push(TimedFault {
            at: at(0.5),
            action: FaultAction::RecoverNode("pool-2-n3".into()),
        });
        let mut rates = std::collections::BTreeMap::new();
        rates.insert(
            "create".to_string(),
            ErrorRate {
                rate: 0.01,
                code: 500,
            },
        );
        rates.insert(
            "patch".to_string(),
            ErrorRate {
                rate: 0.01,
                code: 429,
            },
        );
        api = Some(super::scenario::ApiFaults {
            error_rates: rates,
            latency: None,
            drop_watches_after: None,
        });
    }
    Scenario {
        default_duration: minutes(10),
        rules,
        faults,
        api,
        ..Scenario::default()
    }
}

fn job(i: usize, pods: u32) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("train-{i}"), "namespace": "default"},
        "spec": {
            "parallelism": pods, "completions": pods, "completionMode": "Indexed", "backoffLimit": 3,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"metadata": {"labels": {"app": "train"}},
                         "spec": {"restartPolicy": "Never", "subdomain": "train",
                                  "containers": [{"name": "main", "image": "trainer",
                                                  "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}}
    })
}

/// Runs `w` on the current runtime (use a paused current-thread runtime for
/// virtual time) and reports the recorded events and the Jobs' outcomes.
pub async fn run(w: &Workload) -> Result<WorkloadReport, ClusterError> {
    let sim = Sim::new(SimConfig::default());
    let config = ClusterConfig {
        nodes: NodeLayout::parse("pools=8,nodes=8,cpu=8,memory=64Gi,zones=2")?,
        scenario: scenario(w),
        seed: w.seed,
        job_controller: true,
    };
    let cluster = Cluster::start(&sim, config).await?;
    let client = sim.client("workload");
    let start = tokio::time::Instant::now();
    let gap = w.span / 2 / (w.jobs.max(1) as u32);
    for i in 0..w.jobs {
        tokio::time::sleep_until(start + gap * i as u32).await;
        // Creation may hit an injected error: try again a second later.
        while client
            .create(&Resource::jobs(), Some("default"), &job(i, w.pods_per_job))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    tokio::time::sleep_until(start + w.span).await;
    sim.set_faults(crate::faults::Faults::default());
    let jobs = client
        .list(&Resource::jobs(), Some("default"), None)
        .await?;
    let has = |j: &Value, kind: &str| {
        j.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == kind && c["status"] == "True")
            })
    };
    let items = jobs
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let events = cluster.events();
    cluster.stop();
    let pod_events = events
        .iter()
        .filter(|e| {
            matches!(
                e.action.as_str(),
                "PodCreated"
                    | "Bound"
                    | "Started"
                    | "Succeeded"
                    | "Failed"
                    | "Stopped"
                    | "Restarted"
            )
        })
        .count();
    Ok(WorkloadReport {
        complete: items.iter().filter(|j| has(j, "Complete")).count(),
        failed: items.iter().filter(|j| has(j, "Failed")).count(),
        pod_events,
        events,
    })
}
