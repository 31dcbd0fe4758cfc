//! An outcome policy that points at a bad host. It asks the host for pod
//! facts (`pod-facts`); when the failed pods of this attempt's failed Jobs
//! ran on one node at least `threshold` times (a Job's retries of its pods
//! under `backoffLimit` land there again and again, or several Jobs' pods
//! died there), that node is named in the verdict's message (the
//! RestartingJobSet or Failed condition and the event), with the command
//! that cordons it. What happens to the JobSet is what the manifest's own
//! failure policy says: this plugin only adds the diagnosis.
//!
//! A plugin cannot touch the cluster (no network, no API client), so it
//! cannot cordon the node itself; an operator, or an alert on the event,
//! does. It also keeps no memory between decisions: it sees the current
//! attempt's failed pods only. See `plugins/examples/README.md`.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

use std::collections::BTreeMap;

use jobset_policy_sdk::pods::JobPods;
use jobset_policy_sdk::types::{Action, OutcomeVerdict, PolicyError, Snapshot};

/// The plugin's name in `meta.info`.
pub const NAME: &str = "bad-node";

/// The plugin's configuration.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Failed pods on one node, in this attempt, that make it suspect.
    pub threshold: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { threshold: 2 }
    }
}

/// Parses the configuration; empty means the defaults.
pub fn parse_config(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_json::from_str(text).map_err(|e| format!("{NAME} config: {e}"))?;
    if config.threshold < 1 {
        return Err(format!("{NAME} config: threshold must be 1 or more, got 0"));
    }
    Ok(config)
}

/// A node that failed pods at least `threshold` times: the node, how many,
/// and the pods, in the order given. The node with the most failures wins;
/// ties go to the name that sorts first.
pub fn suspect(pods: &[JobPods], threshold: u32) -> Option<(String, u32, Vec<String>)> {
    let mut by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for pod in pods.iter().flat_map(|j| &j.pods) {
        // A pod never scheduled ran nowhere.
        if !pod.node.is_empty() {
            by_node.entry(&pod.node).or_default().push(&pod.name);
        }
    }
    let (node, failed) = by_node
        .into_iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))?;
    let count = u32::try_from(failed.len()).unwrap_or(u32::MAX);
    (count >= threshold).then(|| {
        (
            node.to_string(),
            count,
            failed.into_iter().map(String::from).collect(),
        )
    })
}

/// Decides as the manifest's failure policy does, and names a bad node in
/// the message when there is one.
pub fn decide(snapshot: &Snapshot, pods: &[JobPods]) -> Result<OutcomeVerdict, PolicyError> {
    let config = parse_config(&snapshot.config).map_err(PolicyError::InvalidConfig)?;
    let mut verdict = default_outcome::decide(snapshot)?;
    let Some((node, count, names)) = suspect(pods, config.threshold) else {
        return Ok(verdict);
    };
    let note = format!(
        "; node {node} failed {count} pods of this attempt ({}): consider `kubectl cordon {node}`",
        names.join(", ")
    );
    match &mut verdict.action {
        Action::RestartJobset(r) => r.message.push_str(&note),
        Action::RestartJob(r) => r.message.push_str(&note),
        Action::Fail(t) => t.message.push_str(&note),
        Action::Complete(_) | Action::Continue => {}
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::{SnapshotBuilder, failed_pod, job_pods};

    fn snapshot() -> Snapshot {
        SnapshotBuilder::new("js")
            .rjob("workers", 2)
            .max_restarts(3)
            .failed(
                "workers",
                0,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                5,
            )
            .build()
    }

    #[test]
    fn a_node_that_failed_two_pods_is_named_in_the_restart_message() {
        let pods = vec![job_pods(
            "js-workers-0",
            vec![
                failed_pod("p2", "node-b", 1, 9),
                failed_pod("p1", "node-b", 1, 7),
                failed_pod("p0", "node-a", 1, 5),
            ],
        )];
        let v = decide(&snapshot(), &pods).unwrap();
        let Action::RestartJobset(r) = &v.action else {
            panic!("{v:?}");
        };
        assert!(
            r.message.ends_with(
                "; node node-b failed 2 pods of this attempt (p2, p1): consider `kubectl cordon node-b`"
            ),
            "{}",
            r.message
        );
        let plain = default_outcome::decide(&snapshot()).unwrap();
        let Action::RestartJobset(p) = &plain.action else {
            panic!()
        };
        assert!(
            r.message.starts_with(&p.message),
            "the manifest's words first"
        );
        assert_eq!(r.count_towards_max, p.count_towards_max);
    }

    #[test]
    fn scattered_failures_name_no_node_and_change_nothing() {
        let pods = vec![job_pods(
            "js-workers-0",
            vec![
                failed_pod("p1", "node-b", 1, 7),
                failed_pod("p0", "node-a", 1, 5),
                failed_pod("unscheduled", "", 1, 5),
            ],
        )];
        assert_eq!(
            decide(&snapshot(), &pods).unwrap(),
            default_outcome::decide(&snapshot()).unwrap()
        );
        assert_eq!(suspect(&pods, 1).map(|s| s.0), Some("node-a".to_string()));
    }

    #[test]
    fn a_failing_verdict_names_the_node_too_and_the_threshold_is_configurable() {
        let failing = SnapshotBuilder::new("js")
            .rjob("workers", 1)
            .config(r#"{"threshold": 3}"#)
            .failed("workers", 0, "BackoffLimitExceeded", "x", 5)
            .build();
        let two = vec![job_pods(
            "js-workers-0",
            vec![failed_pod("a", "n", 1, 6), failed_pod("b", "n", 1, 7)],
        )];
        assert_eq!(
            decide(&failing, &two).unwrap(),
            default_outcome::decide(&failing).unwrap(),
            "below the threshold"
        );
        let mut three = two.clone();
        three[0].pods.push(failed_pod("c", "n", 1, 8));
        let Action::Fail(t) = decide(&failing, &three).unwrap().action else {
            panic!()
        };
        assert!(t.message.contains("node n failed 3 pods"), "{}", t.message);
        assert!(parse_config(r#"{"threshold": 0}"#).is_err());
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
