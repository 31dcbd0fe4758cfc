//! A plugin that asks for an input the host does not know
//! (`node-history`), for the host's test that such a plugin is refused at
//! load with the input named. Its decision is never reached.

/// The input no host provides.
pub const UNKNOWN_INPUT: &str = "node-history";

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
                name: "unknown-input".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["outcome".to_string()],
                inputs: vec![
                    jobset_policy_sdk::inputs::POD_FACTS.to_string(),
                    crate::UNKNOWN_INPUT.to_string(),
                ],
            }
        }

        fn validate_config(_config: String) -> Result<(), String> {
            Ok(())
        }
    }

    impl outcome::Guest for Plugin {
        fn decide(_snapshot: Snapshot, _pods: Vec<JobPods>) -> Result<OutcomeVerdict, PolicyError> {
            Err(PolicyError::Unsupported("never loaded".to_string()))
        }

        fn decide_in_place(
            _snapshot: Snapshot,
            _restart: jobset_policy_sdk::in_place::InPlaceRestart,
        ) -> Result<OutcomeVerdict, PolicyError> {
            Err(PolicyError::Unsupported("never loaded".to_string()))
        }
    }

    export!(Plugin);
}
