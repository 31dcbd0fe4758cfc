//! The built-in startup policy: upstream's dependsOn gates (which hold even
//! while suspended) and InOrder startup (one replicated job at a time once
//! running; everything at once while suspended; starting over after a
//! restart because the counts are rebuilt from the new Jobs).

// The generated export glue needs unsafe; the policy logic does not.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
// No `std`: the component is smaller and imports nothing (see the SDK's
// `bare` feature). Tests run natively with `std`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use jobset_policy_sdk::types::{
    DependencyStatus, InOrderCondition, PolicyError, ReplicatedJob, Snapshot, StartupOrder,
    StartupVerdict,
};
use jobset_policy_sdk::view::SnapshotView;

/// The plugin's name in `meta.info`.
pub const NAME: &str = "default-startup";

/// Decides which replicated jobs may be created and resumed now.
pub fn decide(snapshot: &Snapshot) -> Result<StartupVerdict, PolicyError> {
    let jobset = &snapshot.jobset;
    let in_order = jobset.startup_order == StartupOrder::InOrder && !jobset.suspended;
    let mut verdict = StartupVerdict {
        create: Vec::new(),
        resume: Vec::new(),
        in_order: InOrderCondition::None,
    };
    let mut stopped = false;
    for rjob in &jobset.replicated_jobs {
        if !dependencies_met(snapshot, rjob) {
            continue;
        }
        if in_order && started(snapshot, rjob) {
            continue;
        }
        verdict.create.push(rjob.name.clone());
        if !jobset.suspended {
            verdict.resume.push(rjob.name.clone());
        }
        if in_order {
            verdict.in_order = InOrderCondition::InProgress;
            stopped = true;
            break;
        }
    }
    if in_order && !stopped {
        verdict.in_order = InOrderCondition::Completed;
    }
    Ok(verdict)
}

/// Every dependency reached its status: `Complete` needs all its Jobs
/// succeeded, `Ready` needs all of them ready, succeeded or failed. A
/// dependency without a status entry is not met.
pub fn dependencies_met(snapshot: &Snapshot, rjob: &ReplicatedJob) -> bool {
    rjob.depends_on.iter().all(|dep| {
        let (Some(spec), Some(status)) = (
            snapshot.replicated_job(&dep.name),
            snapshot.replicated_job_status(&dep.name),
        ) else {
            return false;
        };
        match dep.status {
            DependencyStatus::Complete => status.succeeded == spec.replicas,
            DependencyStatus::Ready => {
                status.ready + status.succeeded + status.failed == spec.replicas
            }
        }
    })
}

/// InOrder's "started": every Job of the replicated job is ready, succeeded
/// or failed.
pub fn started(snapshot: &Snapshot, rjob: &ReplicatedJob) -> bool {
    snapshot
        .replicated_job_status(&rjob.name)
        .is_some_and(|s| s.ready + s.succeeded + s.failed == rjob.replicas)
}

/// Accepts no configuration other than an empty one.
pub fn validate_config(config: &str) -> Result<(), String> {
    jobset_policy_sdk::no_config(NAME, config)
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component {
    wit_bindgen::generate!({
        world: "startup-plugin",
        path: "../../wit",
        with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
        },
    });

    use alloc::string::{String, ToString};
    use alloc::vec;
    use exports::jobset::policy::{meta, startup};
    use jobset_policy_sdk::types::{PolicyError, Snapshot, StartupVerdict};

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["startup".to_string()],
                inputs: alloc::vec::Vec::new(),
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            crate::validate_config(&config)
        }
    }

    impl startup::Guest for Plugin {
        fn decide(snapshot: Snapshot) -> Result<StartupVerdict, PolicyError> {
            jobset_policy_sdk::decide_once(snapshot, crate::decide)
        }
    }

    export!(Plugin);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_policy_sdk::harness::SnapshotBuilder;

    #[test]
    fn depends_on_complete_blocks_until_every_job_succeeded() {
        let b = || {
            SnapshotBuilder::new("js")
                .rjob("a", 2)
                .rjob("b", 1)
                .depends_on("a", DependencyStatus::Complete)
        };
        let v = decide(&b().succeeded("a", 0, 1).ready("a", 1).build()).expect("decides");
        assert_eq!(v.create, ["a"]);
        let v = decide(&b().succeeded("a", 0, 1).succeeded("a", 1, 1).build()).expect("decides");
        assert_eq!(v.create, ["a", "b"]);
    }

    #[test]
    fn in_order_stops_at_the_first_unstarted_replicated_job() {
        let s = SnapshotBuilder::new("js")
            .startup_order(StartupOrder::InOrder)
            .rjob("a", 1)
            .rjob("b", 1)
            .rjob("c", 1)
            .ready("a", 0)
            .build();
        let v = decide(&s).expect("decides");
        assert_eq!(v.create, ["b"]);
        assert_eq!(v.in_order, InOrderCondition::InProgress);
    }

    #[test]
    fn configuration_must_be_empty() {
        assert!(validate_config("").is_ok());
        assert!(validate_config("{\"x\":1}").is_err());
    }
}
