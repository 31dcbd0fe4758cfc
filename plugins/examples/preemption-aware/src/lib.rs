//! An outcome policy for clusters with preemptible capacity: a Job that
//! failed because its node was preempted, evicted or taken down for
//! maintenance restarts the JobSet without spending the restart budget; an
//! application failure restarts it counting toward the budget, and fails it
//! once `maxApplicationFailures` restarts were spent. Success is decided by
//! the built-in policy. See `plugins/examples/README.md` for the walk-through.

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

use jobset_policy_sdk::types::{
    Action, FinishedCondition, Job, JobsetRestart, OutcomeVerdict, PolicyError, Snapshot, Terminal,
};
use jobset_policy_sdk::view::SnapshotView;

/// The plugin's name in `meta.info`.
pub const NAME: &str = "preemption-aware";

/// The plugin's configuration (`config.json` or the
/// `policy.jobset.dev/config` annotation).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Application failures (restarts counted toward the max) after which
    /// the JobSet fails.
    pub max_application_failures: i32,
    /// Case-insensitive substrings of a failure's reason or message that
    /// mean "the infrastructure took the node away".
    pub preemption_patterns: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_application_failures: 3,
            preemption_patterns: ["preempt", "disruptiontarget", "maintenance", "evict"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Parses the configuration; empty means the defaults.
pub fn parse_config(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_json::from_str(text).map_err(|e| format!("{NAME} config: {e}"))?;
    if config.max_application_failures < 0 {
        return Err(format!(
            "{NAME} config: maxApplicationFailures must be 0 or more, got {}",
            config.max_application_failures
        ));
    }
    Ok(config)
}

/// Whether a failure looks like the node was taken away.
pub fn is_preemption(cond: &FinishedCondition, config: &Config) -> bool {
    let text = format!("{} {}", cond.reason, cond.message).to_lowercase();
    config
        .preemption_patterns
        .iter()
        .any(|p| text.contains(&p.to_lowercase()))
}

/// Decides the outcome.
pub fn decide(snapshot: &Snapshot) -> Result<OutcomeVerdict, PolicyError> {
    let config = parse_config(&snapshot.config).map_err(PolicyError::InvalidConfig)?;
    let Some((job, cond)) = snapshot.first_failed_job() else {
        return default_outcome::decide(snapshot);
    };
    if is_preemption(cond, &config) {
        return Ok(restart(job, false, "Preempted", "preemption"));
    }
    let spent = snapshot.jobset.status.restarts_count_towards_max;
    if spent >= config.max_application_failures {
        return Ok(OutcomeVerdict {
            action: Action::Fail(Terminal {
                reason: "ApplicationFailures".to_string(),
                message: format!(
                    "jobset failed after {spent} application restarts (failed job: {})",
                    job.name
                ),
            }),
            rule: Some("application-failure".to_string()),
        });
    }
    Ok(restart(
        job,
        true,
        "ApplicationFailure",
        "application-failure",
    ))
}

fn restart(job: &Job, count: bool, reason: &str, rule: &str) -> OutcomeVerdict {
    let budget = if count { "counted" } else { "not counted" };
    OutcomeVerdict {
        action: Action::RestartJobset(JobsetRestart {
            count_towards_max: count,
            condition_reason: reason.to_string(),
            message: format!(
                "restarting the jobset after {rule}, {budget} toward max restarts (first failed job: {})",
                job.name
            ),
            event_reason: format!("{reason}Restart"),
            first_failed_job: job.name.clone(),
        }),
        rule: Some(rule.to_string()),
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
    use jobset_policy_sdk::types::{OutcomeVerdict, PolicyError, Snapshot};

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["outcome".to_string()],
                inputs: Vec::new(),
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            crate::parse_config(&config).map(|_| ())
        }
    }

    impl outcome::Guest for Plugin {
        fn decide(
            snapshot: Snapshot,
            _pods: Vec<jobset_policy_sdk::pods::JobPods>,
        ) -> Result<OutcomeVerdict, PolicyError> {
            crate::decide(&snapshot)
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
