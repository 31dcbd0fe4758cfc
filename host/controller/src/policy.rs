//! What the plan needs from the policy runtime: one typed call per slot,
//! resolved for the JobSet at hand, answering with the verdict and the
//! plugin that made it, or a failure that names plugin, slot and cause.

use std::fmt;

use jobset_api::JobSet;
pub use jobset_policy_sdk::types as records;
use records::{JobPlacement, OutcomeVerdict, PlacementRequest, Snapshot, StartupVerdict};

/// The three decision slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Startup,
    Outcome,
    Placement,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Startup => "startup",
            Slot::Outcome => "outcome",
            Slot::Placement => "placement",
        })
    }
}

/// A verdict and the plugin (`name@sha256-prefix`) that gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided<T> {
    pub verdict: T,
    pub plugin: String,
}

/// A decision that could not be made; the controller holds that decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{slot} plugin {plugin} failed: {message}")]
pub struct PolicyFailure {
    pub slot: Slot,
    pub plugin: String,
    pub message: String,
}

/// The policy decisions of one reconcile.
pub trait Policies: Send + Sync {
    /// Which replicated jobs may be created and resumed now.
    fn startup(
        &self,
        js: &JobSet,
        snap: &Snapshot,
    ) -> Result<Decided<StartupVerdict>, PolicyFailure>;
    /// What the finished Jobs of the current attempt mean for the JobSet.
    fn outcome(
        &self,
        js: &JobSet,
        snap: &Snapshot,
    ) -> Result<Decided<OutcomeVerdict>, PolicyFailure>;
    /// Where the Jobs about to be created go.
    fn placement(
        &self,
        js: &JobSet,
        snap: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decided<Vec<JobPlacement>>, PolicyFailure>;
}

/// Where the controller's watch hands plugin ConfigMaps
/// (label `policy.jobset.dev/plugin`).
pub trait PluginConfigMaps: Send + Sync {
    /// A ConfigMap was added or changed; an error says why the new version
    /// was rejected (the last good version stays in force).
    fn upsert(&self, cm: &k8s_openapi::api::core::v1::ConfigMap) -> Result<(), String>;
    /// A ConfigMap was deleted.
    fn remove(&self, namespace: &str, name: &str);
}
