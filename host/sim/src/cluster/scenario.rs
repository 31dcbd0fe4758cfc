//! The scenario a simulated run follows, as YAML: how long pods run, which
//! pods fail and how (matched by Job, replicated job, indexes and attempt),
//! timed node, domain, pod and Job failures, and API faults. Pure data plus
//! the rule matching; the kubelet and the fault injector act on it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ClusterError;
use super::util::{annotation, label, meta};

pub const REPLICATED_JOB_LABEL: &str = "jobset.sigs.k8s.io/replicatedjob-name";
pub const JOB_INDEX_LABEL: &str = "jobset.sigs.k8s.io/job-index";
pub const RESTART_ATTEMPT_LABEL: &str = "jobset.sigs.k8s.io/restart-attempt";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// A duration written as seconds (`90`, `1.5`) or with a unit (`500ms`, `30s`, `5m`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        let secs = match Raw::deserialize(d)? {
            Raw::Num(n) => n,
            Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom)?,
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "duration {secs} must be zero or more"
            )));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .map(|n| n * scale)
        .map_err(|_| format!("{s:?} is not a duration (examples: 90, 30s, 5m, 1h, 500ms)"))
}

/// Which pods a rule is about. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMatch {
    pub namespace: Option<String>,
    /// The Job's name; a trailing `*` matches a prefix.
    pub job: Option<String>,
    /// Label `jobset.sigs.k8s.io/replicatedjob-name`.
    pub replicated_job: Option<String>,
    /// Label `jobset.sigs.k8s.io/job-index`.
    pub job_index: Option<u32>,
    /// The completion index of an Indexed Job's pod.
    pub pod_index: Option<u32>,
    /// Label `jobset.sigs.k8s.io/restart-attempt` (0 when absent).
    pub attempt: Option<u32>,
    /// How many earlier pods of the same Job and index failed.
    pub retry: Option<u32>,
    /// The node the pod runs on (`spec.nodeName`): a bad host.
    pub node: Option<String>,
}

/// A condition the kubelet adds to a pod it fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// What happens to matching pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRule {
    #[serde(rename = "match", default)]
    pub matches: PodMatch,
    /// How long the pod runs before its containers exit.
    pub duration: Option<Dur>,
    /// Exit code at the end (default 0, or 1 with `failAt`).
    pub exit_code: Option<i32>,
    /// A virtual time since the start of the run at which matching pods that
    /// are running then fail.
    pub fail_at: Option<Dur>,
    /// A condition added to the pod when it fails.
    pub condition: Option<ConditionSpec>,
}

/// What a timed fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum FaultAction {
    /// The node goes NotReady; its pods fail with DisruptionTarget.
    FailNode(String),
    /// Every node whose label `key` is `value` fails.
    FailDomain { key: String, value: String },
    /// A node comes back Ready.
    RecoverNode(String),
    /// One pod's containers exit with `exitCode` (default 1).
    FailPod {
        #[serde(default = "default_ns")]
        namespace: String,
        name: String,
        #[serde(default)]
        exit_code: Option<i32>,
    },
    /// Every running pod of a Job fails with exit code 1.
    FailJob {
        #[serde(default = "default_ns")]
        namespace: String,
        name: String,
    },
}

fn default_ns() -> String {
    "default".into()
}

/// A fault at a virtual time since the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimedFault {
    pub at: Dur,
    #[serde(flatten)]
    pub action: FaultAction,
}

/// A change a user makes to a running JobSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ChangeAction {
    /// Sets `parallelism` and `completions` (default: `parallelism`) of one
    /// replicated job's template: an elastic JobSet grows or shrinks
    /// (admission refuses it unless the ElasticJobSet gate is on).
    Resize {
        #[serde(default = "default_ns")]
        namespace: String,
        job_set: String,
        replicated_job: String,
        parallelism: i32,
        #[serde(default)]
        completions: Option<i32>,
    },
}

/// A change at a virtual time since the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimedChange {
    pub at: Dur,
    #[serde(flatten)]
    pub action: ChangeAction,
}

/// One verb's error rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRate {
    pub rate: f64,
    #[serde(default = "default_code")]
    pub code: u16,
}

fn default_code() -> u16 {
    500
}

/// Faults of the API server itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiFaults {
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`) → rate.
    #[serde(default)]
    pub error_rates: BTreeMap<String, ErrorRate>,
    /// Added to every response.
    pub latency: Option<Dur>,
    /// Every watch ends after this long; clients re-watch.
    pub drop_watches_after: Option<Dur>,
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// How long a pod runs when no rule says otherwise (default 60 s).
    #[serde(default = "default_duration")]
    pub default_duration: Dur,
    /// From binding to Running (image pull, container start; default 1 s).
    #[serde(default = "default_start")]
    pub start_delay: Dur,
    /// How long containers take to stop after SIGTERM (capped by the pod's
    /// grace period; default: the whole grace period).
    pub shutdown: Option<Dur>,
    /// First matching rule wins.
    #[serde(default)]
    pub rules: Vec<PodRule>,
    #[serde(default)]
    pub faults: Vec<TimedFault>,
    /// Timed changes to JobSets, made through the API as a user would.
    #[serde(default)]
    pub changes: Vec<TimedChange>,
    #[serde(default)]
    pub api: Option<ApiFaults>,
}

fn default_duration() -> Dur {
    Dur(Duration::from_secs(60))
}

fn default_start() -> Dur {
    Dur(Duration::from_secs(1))
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            default_duration: default_duration(),
            start_delay: default_start(),
            shutdown: None,
            rules: Vec::new(),
            faults: Vec::new(),
            changes: Vec::new(),
            api: None,
        }
    }
}

/// The facts about a pod that rules match on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub job: String,
    pub replicated_job: Option<String>,
    pub job_index: Option<u32>,
    pub pod_index: Option<u32>,
    pub attempt: u32,
    pub retry: u32,
    /// `spec.nodeName` ("" before binding).
    pub node: String,
}

impl PodFacts {
    /// Reads the facts from a pod's labels and annotations; `retry` comes
    /// from the caller, who knows the pod's predecessors.
    pub fn of(pod: &Value, retry: u32) -> Self {
        let num = |s: Option<&str>| s.and_then(|v| v.parse::<u32>().ok());
        PodFacts {
            namespace: meta(pod, "namespace").to_string(),
            job: label(pod, JOB_NAME_LABEL).unwrap_or_default().to_string(),
            replicated_job: label(pod, REPLICATED_JOB_LABEL).map(String::from),
            job_index: num(label(pod, JOB_INDEX_LABEL)),
            pod_index: num(annotation(pod, COMPLETION_INDEX).or(label(pod, COMPLETION_INDEX))),
            attempt: num(label(pod, RESTART_ATTEMPT_LABEL)).unwrap_or(0),
            retry,
            node: pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

impl PodMatch {
    pub fn matches(&self, f: &PodFacts) -> bool {
        let job_ok = match self.job.as_deref() {
            None => true,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => f.job.starts_with(prefix),
                None => f.job == p,
            },
        };
        job_ok
            && self.namespace.as_ref().is_none_or(|n| *n == f.namespace)
            && self
                .replicated_job
                .as_ref()
                .is_none_or(|r| f.replicated_job.as_ref() == Some(r))
            && self.job_index.is_none_or(|i| f.job_index == Some(i))
            && self.pod_index.is_none_or(|i| f.pod_index == Some(i))
            && self.attempt.is_none_or(|a| f.attempt == a)
            && self.retry.is_none_or(|r| f.retry == r)
            && self.node.as_ref().is_none_or(|n| *n == f.node)
    }
}

/// How one pod's run ends, decided when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    /// Run time from start to exit.
    pub run: Duration,
    pub exit_code: i32,
    pub condition: Option<ConditionSpec>,
}

impl Scenario {
    /// Reads a scenario from YAML, naming the field that is wrong.
    pub fn from_yaml(text: &str) -> Result<Self, ClusterError> {
        serde_yaml::from_str(text).map_err(|e| ClusterError::Scenario(e.to_string()))
    }

    /// Reads a scenario file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::Scenario(format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text)
            .map_err(|e| ClusterError::Scenario(format!("{}: {e}", path.display())))
    }

    /// The plan for a pod starting `started` after the run began.
    pub fn plan(&self, facts: &PodFacts, started: Duration) -> PodPlan {
        let default = PodPlan {
            run: self.default_duration.0,
            exit_code: 0,
            condition: None,
        };
        for rule in &self.rules {
            if !rule.matches.matches(facts) {
                continue;
            }
            if let Some(at) = rule.fail_at {
                // A timed failure hits the pods running at that moment; a
                // container started at or after it is not hit again.
                if at.0 <= started && started > Duration::ZERO {
                    continue;
                }
                let run = rule.duration.map_or(default.run, |d| d.0);
                let until_fail = at.0 - started;
                if run <= until_fail {
                    return PodPlan {
                        run,
                        exit_code: 0,
                        condition: None,
                    };
                }
                return PodPlan {
                    run: until_fail,
                    exit_code: rule.exit_code.unwrap_or(1),
                    condition: rule.condition.clone(),
                };
            }
            return PodPlan {
                run: rule.duration.map_or(default.run, |d| d.0),
                exit_code: rule.exit_code.unwrap_or(0),
                condition: rule.condition.clone(),
            };
        }
        default
    }

    /// The server's fault settings this scenario asks for, seeded.
    pub fn server_faults(&self, seed: u64) -> Option<crate::faults::Faults> {
        let api = self.api.as_ref()?;
        Some(crate::faults::Faults {
            seed,
            error_rates: api
                .error_rates
                .iter()
                .map(|(verb, r)| (verb.clone(), (r.rate, r.code)))
                .collect(),
            latency: api.latency.map_or(Duration::ZERO, |d| d.0),
            drop_watches_after: api.drop_watches_after.map(|d| d.0),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
defaultDuration: 10m
rules:
  - match: {replicatedJob: workers, jobIndex: 1, attempt: 0}
    duration: 90s
    exitCode: 42
  - match: {job: "train-*", podIndex: 0}
    failAt: 300
    condition: {type: DisruptionTarget, reason: TerminationByKubelet, message: preempted}
faults:
  - at: 5m
    failNode: pool-1-n0
  - at: 1h
    failDomain: {key: cloud.google.com/gke-nodepool, value: pool-2}
api:
  errorRates: {create: {rate: 0.01, code: 429}}
  dropWatchesAfter: 2m
"#;

    fn facts(
        job: &str,
        rjob: Option<&str>,
        job_index: u32,
        pod_index: u32,
        attempt: u32,
    ) -> PodFacts {
        PodFacts {
            namespace: "default".into(),
            job: job.into(),
            replicated_job: rjob.map(String::from),
            job_index: Some(job_index),
            pod_index: Some(pod_index),
            attempt,
            retry: 0,
            node: String::new(),
        }
    }

    #[test]
    fn a_scenario_file_reads_durations_faults_and_api_faults() {
        let s = Scenario::from_yaml(YAML).expect("parses");
        assert_eq!(s.default_duration.0, Duration::from_secs(600));
        assert_eq!(s.faults[0].at.0, Duration::from_secs(300));
        assert_eq!(
            s.faults[0].action,
            FaultAction::FailNode("pool-1-n0".into())
        );
        let f = s.server_faults(9).expect("api faults");
        assert_eq!(f.error_rates.get("create"), Some(&(0.01, 429)));
        assert_eq!(f.drop_watches_after, Some(Duration::from_secs(120)));
    }

    #[test]
    fn the_first_matching_rule_decides_a_pods_run() {
        let s = Scenario::from_yaml(YAML).expect("parses");
        let p = s.plan(
            &facts("js-workers-1", Some("workers"), 1, 0, 0),
            Duration::ZERO,
        );
        assert_eq!((p.run, p.exit_code), (Duration::from_secs(90), 42));
        let p = s.plan(
            &facts("js-workers-1", Some("workers"), 1, 0, 1),
            Duration::ZERO,
        );
        assert_eq!(
            (p.run, p.exit_code),
            (Duration::from_secs(600), 0),
            "attempt 1 is not matched"
        );
    }

    #[test]
    fn a_rule_can_match_the_node_a_pod_runs_on() {
        let s = Scenario::from_yaml(
            "rules:\n- match: {node: cpu-0-n1}\n  duration: 1m\n  exitCode: 137\n",
        )
        .expect("parses");
        let on = |node: &str| PodFacts {
            node: node.into(),
            ..facts("js-workers-0", Some("workers"), 0, 0, 0)
        };
        let p = s.plan(&on("cpu-0-n1"), Duration::ZERO);
        assert_eq!((p.run, p.exit_code), (Duration::from_secs(60), 137));
        let p = s.plan(&on("cpu-0-n0"), Duration::ZERO);
        assert_eq!(p.exit_code, 0, "another node is not matched");
    }

    #[test]
    fn fail_at_cuts_a_run_short_only_for_pods_started_before_it() {
        let s = Scenario::from_yaml(YAML).expect("parses");
        let p = s.plan(&facts("train-a", None, 0, 0, 0), Duration::from_secs(100));
        assert_eq!((p.run, p.exit_code), (Duration::from_secs(200), 1));
        assert_eq!(
            p.condition.map(|c| c.reason),
            Some("TerminationByKubelet".into())
        );
        let later = s.plan(&facts("train-a", None, 0, 0, 0), Duration::from_secs(400));
        assert_eq!(later.exit_code, 0);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Scenario::from_yaml("rules:\n- match: {jobName: x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jobName"), "{e}");
        let e = Scenario::from_yaml("defaultDuration: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn timed_faults_and_changes_spell_their_fields_in_camel_case() {
        let s = Scenario::from_yaml(
            "faults:\n- {at: 1m, failPod: {name: p, exitCode: 137}}\n\
             changes:\n- {at: 2m, resize: {jobSet: js, replicatedJob: workers, parallelism: 4}}\n",
        )
        .expect("parses");
        assert_eq!(
            s.faults[0].action,
            FaultAction::FailPod {
                namespace: "default".into(),
                name: "p".into(),
                exit_code: Some(137)
            }
        );
        assert_eq!(
            s.changes[0].action,
            ChangeAction::Resize {
                namespace: "default".into(),
                job_set: "js".into(),
                replicated_job: "workers".into(),
                parallelism: 4,
                completions: None
            }
        );
        let e = Scenario::from_yaml("changes:\n- {at: 1m, resize: {jobset: js}}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jobset") && e.contains("jobSet"), "{e}");
    }
}
