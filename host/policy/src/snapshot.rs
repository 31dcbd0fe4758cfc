//! The typed records the controller hands to a policy and gets back: the
//! snapshot of a JobSet, the placement request, and the verdicts of each
//! slot. They are the records of the newest WIT version (0.2.0 kept
//! 0.1.0's `types` and added `pods`; 0.3.0 kept both and added
//! `in-place`), serde-serialisable
//! so a snapshot can be written and read as YAML.

pub use crate::bindings::v0_1_0::jobset::policy::types::{
    Action, Dependency, DependencyStatus, FailureAction, FailurePolicy, FailurePolicyRule,
    FinishedCondition, FinishedType, InOrderCondition, Job, JobPlacement, JobRestart, Jobset,
    JobsetRestart, JobsetStatus, KeyValue, NodeRequirement, Occupant, OutcomeVerdict, PendingJob,
    Pin, Placement, PlacementRequest, PolicyError as PluginError, ReplicatedJob,
    ReplicatedJobStatus, RestartStrategy, Snapshot, StartupOrder, StartupVerdict, SuccessOperator,
    SuccessPolicy, Terminal, Timestamp, Toleration, TopologyDomain,
};
pub use crate::bindings::v0_2_0::jobset::policy::pods::{
    ContainerExit, Disruption, FailedPod, JobPods,
};
pub use crate::bindings::v0_3_0::jobset::policy::in_place::InPlaceRestart;

use std::fmt;

/// The three decisions a plugin can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Which replicated jobs may be created / resumed.
    Startup,
    /// Success and failure handling.
    Outcome,
    /// Where new Jobs go.
    Placement,
}

impl Slot {
    /// Every slot.
    pub const ALL: [Slot; 3] = [Slot::Startup, Slot::Outcome, Slot::Placement];

    /// The slot's name as used in WIT, annotations and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Startup => "startup",
            Slot::Outcome => "outcome",
            Slot::Placement => "placement",
        }
    }

    /// Parses a slot name.
    pub fn parse(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
