//! An outcome policy that decides on how the training container ended,
//! not only on the Job's failure reason. It asks the host for pod facts
//! (`pod-facts`) and, for the first failed Job:
//! - a container exit code listed as fatal fails the JobSet at once
//!   (a bad configuration, a corrupted checkpoint: retrying cannot help);
//! - a disrupted pod (preempted, evicted, node lost) or an exit code listed
//!   as retriable (137: killed, e.g. out of memory; 143: terminated)
//!   restarts the JobSet without spending `maxRestarts`, up to
//!   `maxUncountedRestarts` times;
//! - anything else is left to the manifest's own failure policy.
//!
//! Success is decided as the built-in policy decides it. See
//! `plugins/examples/README.md`.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

use jobset_policy_sdk::pods::{FailedPod, JobPods};
use jobset_policy_sdk::types::{
    Action, Job, JobsetRestart, OutcomeVerdict, PolicyError, Snapshot, Terminal,
};
use jobset_policy_sdk::view::{SnapshotView, pods_of};

/// The plugin's name in `meta.info`.
pub const NAME: &str = "exit-codes";

/// The plugin's configuration (`config.json` or the
/// `policy.jobset.dev/config` annotation).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Exit codes that restart the JobSet without counting toward
    /// `maxRestarts`.
    pub retriable_exit_codes: Vec<i32>,
    /// Exit codes that fail the JobSet at once.
    pub fatal_exit_codes: Vec<i32>,
    /// Whether a disrupted pod (DisruptionTarget) restarts without counting.
    pub restart_on_disruption: bool,
    /// Uncounted restarts allowed in all; past them the manifest's rules
    /// decide (so a pod killed the same way every time cannot loop forever).
    pub max_uncounted_restarts: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retriable_exit_codes: vec![137, 143],
            fatal_exit_codes: Vec::new(),
            restart_on_disruption: true,
            max_uncounted_restarts: 10,
        }
    }
}

/// Parses the configuration; empty means the defaults. An exit code in
/// both lists is refused, with the code named.
pub fn parse_config(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_json::from_str(text).map_err(|e| format!("{NAME} config: {e}"))?;
    if let Some(code) = config
        .fatal_exit_codes
        .iter()
        .find(|c| config.retriable_exit_codes.contains(c))
    {
        return Err(format!(
            "{NAME} config: exit code {code} is in both retriableExitCodes and fatalExitCodes"
        ));
    }
    if config.max_uncounted_restarts < 0 {
        return Err(format!(
            "{NAME} config: maxUncountedRestarts must be 0 or more, got {}",
            config.max_uncounted_restarts
        ));
    }
    Ok(config)
}

/// What the failed pods of a Job say, by the configuration.
#[derive(Debug, PartialEq)]
enum Finding<'a> {
    /// A container exited with a fatal code.
    Fatal(&'a FailedPod, &'a str, i32),
    /// A pod was disrupted.
    Disrupted(&'a FailedPod, &'a str),
    /// Every failing container exited with a retriable code.
    Retriable(&'a FailedPod, i32),
    /// Nothing this policy acts on.
    Other,
}

fn examine<'a>(pods: &'a JobPods, config: &Config) -> Finding<'a> {
    // A fatal exit anywhere wins; then a disruption; then retriable codes.
    for pod in &pods.pods {
        for c in &pod.containers {
            if config.fatal_exit_codes.contains(&c.exit_code) {
                return Finding::Fatal(pod, &c.name, c.exit_code);
            }
        }
    }
    if config.restart_on_disruption
        && let Some((pod, d)) = pods
            .pods
            .iter()
            .find_map(|p| p.disruption.as_ref().map(|d| (p, d)))
    {
        return Finding::Disrupted(pod, &d.reason);
    }
    let mut retriable = None;
    for pod in &pods.pods {
        for c in pod.containers.iter().filter(|c| c.exit_code != 0) {
            if !config.retriable_exit_codes.contains(&c.exit_code) {
                return Finding::Other;
            }
            retriable.get_or_insert((pod, c.exit_code));
        }
    }
    match retriable {
        Some((pod, code)) => Finding::Retriable(pod, code),
        None => Finding::Other,
    }
}

/// Decides the outcome from the snapshot and the failed pods.
pub fn decide(snapshot: &Snapshot, pods: &[JobPods]) -> Result<OutcomeVerdict, PolicyError> {
    let config = parse_config(&snapshot.config).map_err(PolicyError::InvalidConfig)?;
    let Some((job, _)) = snapshot.first_failed_job() else {
        return default_outcome::decide(snapshot);
    };
    // The host gives every failed Job's pods to a plugin that asks; a Job
    // whose pods were all deleted has an empty list.
    let Some(job_pods) = pods_of(pods, &job.name) else {
        return default_outcome::decide(snapshot);
    };
    let status = &snapshot.jobset.status;
    let uncounted = status.restarts - status.restarts_count_towards_max;
    let budget_left = uncounted < config.max_uncounted_restarts;
    match examine(job_pods, &config) {
        Finding::Fatal(pod, container, code) => Ok(OutcomeVerdict {
            action: Action::Fail(Terminal {
                reason: "FatalExitCode".to_string(),
                message: format!(
                    "container {container} of pod {} (Job {}) exited with {code}, which is listed as fatal",
                    pod.name, job.name
                ),
            }),
            rule: Some("fatal-exit-code".to_string()),
        }),
        Finding::Disrupted(pod, reason) if budget_left => Ok(restart(
            job,
            "Disrupted",
            format!("pod {} was disrupted ({reason})", pod.name),
            "disruption",
        )),
        Finding::Retriable(pod, code) if budget_left => Ok(restart(
            job,
            "RetriableExitCode",
            format!(
                "pod {} exited with {code}, which is listed as retriable",
                pod.name
            ),
            "retriable-exit-code",
        )),
        _ => default_outcome::decide(snapshot),
    }
}

fn restart(job: &Job, reason: &str, why: String, rule: &str) -> OutcomeVerdict {
    OutcomeVerdict {
        action: Action::RestartJobset(JobsetRestart {
            count_towards_max: false,
            condition_reason: reason.to_string(),
            message: format!(
                "restarting the jobset, not counted toward max restarts: {why} (first failed job: {})",
                job.name
            ),
            event_reason: format!("{reason}Restart"),
            first_failed_job: job.name.clone(),
        }),
        rule: Some(rule.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::{SnapshotBuilder, failed_pod, job_pods};
    use jobset_policy_sdk::pods::Disruption;

    fn snapshot(config: &str) -> Snapshot {
        SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .max_restarts(1)
            .config(config)
            .failed(
                "workers",
                1,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                5,
            )
            .build()
    }

    fn exited(code: i32) -> Vec<JobPods> {
        vec![job_pods(
            "js-workers-1",
            vec![failed_pod("p", "node-a", code, 5)],
        )]
    }

    fn restart_of(v: &OutcomeVerdict) -> &JobsetRestart {
        match &v.action {
            Action::RestartJobset(r) => r,
            other => panic!("not a restart: {other:?}"),
        }
    }

    #[test]
    fn a_retriable_exit_code_restarts_without_spending_max_restarts() {
        let v = decide(&snapshot(""), &exited(137)).unwrap();
        let r = restart_of(&v);
        assert!(!r.count_towards_max);
        assert_eq!(r.condition_reason, "RetriableExitCode");
        assert!(r.message.contains("pod p exited with 137"), "{}", r.message);
        assert_eq!(v.rule.as_deref(), Some("retriable-exit-code"));
    }

    #[test]
    fn a_fatal_exit_code_fails_at_once_naming_the_container_and_code() {
        let v = decide(&snapshot(r#"{"fatalExitCodes": [3]}"#), &exited(3)).unwrap();
        match v.action {
            Action::Fail(t) => {
                assert_eq!(t.reason, "FatalExitCode");
                assert_eq!(
                    t.message,
                    "container main of pod p (Job js-workers-1) exited with 3, which is listed as fatal"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_disruption_restarts_without_counting_whatever_the_exit_code() {
        let mut pods = exited(1);
        pods[0].pods[0].disruption = Some(Disruption {
            reason: "PreemptionByScheduler".into(),
            message: "preempted".into(),
        });
        let v = decide(&snapshot(""), &pods).unwrap();
        assert_eq!(restart_of(&v).condition_reason, "Disrupted");
        let off = decide(&snapshot(r#"{"restartOnDisruption": false}"#), &pods).unwrap();
        assert!(
            restart_of(&off).count_towards_max,
            "left to the manifest's rules, which count"
        );
    }

    #[test]
    fn other_exit_codes_and_a_spent_budget_go_to_the_manifests_rules() {
        let v = decide(&snapshot(""), &exited(1)).unwrap();
        assert_eq!(v, default_outcome::decide(&snapshot("")).unwrap());
        let spent = SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .restarts(10, 0)
            .failed("workers", 1, "BackoffLimitExceeded", "x", 5)
            .build();
        let v = decide(&spent, &exited(137)).unwrap();
        assert_eq!(v, default_outcome::decide(&spent).unwrap());
    }

    #[test]
    fn without_pod_facts_or_failures_the_built_in_policy_decides() {
        assert_eq!(
            decide(&snapshot(""), &[]).unwrap(),
            default_outcome::decide(&snapshot("")).unwrap()
        );
        let done = SnapshotBuilder::new("js")
            .rjob("workers", 1)
            .succeeded("workers", 0, 5)
            .build();
        assert!(matches!(
            decide(&done, &[]).unwrap().action,
            Action::Complete(_)
        ));
    }

    #[test]
    fn a_code_both_fatal_and_retriable_is_refused_by_name() {
        assert_eq!(
            parse_config(r#"{"fatalExitCodes": [137]}"#).unwrap_err(),
            "exit-codes config: exit code 137 is in both retriableExitCodes and fatalExitCodes"
        );
        assert!(parse_config(r#"{"retriable": [1]}"#).is_err());
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "outcome-plugin",
        path: "../../../wit",
        with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/pods@0.3.0": jobset_policy_sdk::pods,
            "jobset:policy/in-place@0.3.0": jobset_policy_sdk::in_place,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
        },
    });

    use exports::jobset::policy::{meta, outcome};
    use jobset_policy_sdk::pods::JobPods;
    use jobset_policy_sdk::types::{OutcomeVerdict, PolicyError, Snapshot};

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["outcome".to_string()],
                inputs: vec![jobset_policy_sdk::inputs::POD_FACTS.to_string()],
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            crate::parse_config(&config).map(|_| ())
        }
    }

    impl outcome::Guest for Plugin {
        fn decide(snapshot: Snapshot, pods: Vec<JobPods>) -> Result<OutcomeVerdict, PolicyError> {
            crate::decide(&snapshot, &pods)
        }

        /// In-place restarts are decided as upstream decides them.
        fn decide_in_place(
            snapshot: Snapshot,
            restart: jobset_policy_sdk::in_place::InPlaceRestart,
        ) -> Result<OutcomeVerdict, PolicyError> {
            default_outcome::in_place::decide(&snapshot, &restart)
        }
    }

    export!(Plugin);
}
