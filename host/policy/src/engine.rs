//! The interface the controller sees: [`PolicyEngine`], typed calls per
//! slot returning a [`Decision`] (the verdict plus which plugin made it) or
//! a [`PolicyError`]. Implemented by a single [`WasmPlugin`], by the
//! [`NativeDefaults`] (the default policies compiled natively, for
//! comparison), and by the registry (plugin selection, failure modes).

use crate::error::{ErrorKind, PolicyError};
use crate::plugin::WasmPlugin;
use crate::snapshot::{
    InPlaceRestart, JobPlacement, JobPods, OutcomeVerdict, PlacementRequest, Slot, Snapshot,
    StartupVerdict,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A verdict and its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<T> {
    /// What the plugin decided.
    pub verdict: T,
    /// `name@sha256-prefix` of the plugin that decided; record it in the
    /// event and condition message.
    pub plugin: String,
    /// Set when the selected plugin failed and the built-in default decided
    /// instead (failure mode `fallback`).
    pub fallback_from: Option<PolicyError>,
}

/// Typed policy decisions.
pub trait PolicyEngine: Send + Sync {
    /// Which replicated jobs may be created and resumed now.
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError>;
    /// What happens to the JobSet given its finished Jobs; `pods` are the
    /// failed pods of its failed Jobs, collected when [`wants`] said so
    /// (empty otherwise).
    ///
    /// [`wants`]: PolicyEngine::wants
    fn decide_outcome(
        &self,
        snapshot: &Snapshot,
        pods: &[JobPods],
    ) -> Result<Decision<OutcomeVerdict>, PolicyError>;
    /// What happens to an in-place restart of a JobSet that restarts in
    /// place: `continue` (go on in place), `restart-jobset` (recreate) or
    /// `fail`. Decided by the outcome plugin; one of contract 0.1.0 or
    /// 0.2.0, which has no `decide-in-place`, leaves it to the built-in
    /// default.
    fn decide_in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<Decision<OutcomeVerdict>, PolicyError>;
    /// Whether the plugin that would decide `slot` for this snapshot asked
    /// for the optional input `input` (see [`crate::POD_FACTS`]). Asked
    /// before the inputs are collected, which costs API calls.
    fn wants(&self, snapshot: &Snapshot, slot: Slot, input: &str) -> bool {
        let _ = (snapshot, slot, input);
        false
    }
    /// Where the pending Jobs go.
    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError>;
}

fn decided<T>(plugin: &WasmPlugin, verdict: T) -> Decision<T> {
    Decision {
        verdict,
        plugin: plugin.id().to_string(),
        fallback_from: None,
    }
}

impl PolicyEngine for WasmPlugin {
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError> {
        self.startup(snapshot).map(|v| decided(self, v))
    }

    fn decide_outcome(
        &self,
        snapshot: &Snapshot,
        pods: &[JobPods],
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        self.outcome(snapshot, pods).map(|v| decided(self, v))
    }

    fn decide_in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        self.in_place(snapshot, restart).map(|v| decided(self, v))
    }

    fn wants(&self, _snapshot: &Snapshot, slot: Slot, input: &str) -> bool {
        self.exports(slot) && WasmPlugin::wants(self, input)
    }

    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError> {
        self.placement(snapshot, request).map(|v| decided(self, v))
    }
}

/// The three default policies compiled natively (same source as the
/// built-in plugins). For benchmarks and differential tests; the
/// controller uses the Wasm plugins.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeDefaults;

/// Moves a value between the host's records and the SDK's (the same WIT
/// records, generated twice) through their common serde form.
fn convert<A: Serialize, B: DeserializeOwned>(value: &A, slot: Slot) -> Result<B, PolicyError> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| PolicyError {
            plugin: NativeDefaults::id(slot).to_string(),
            slot,
            kind: ErrorKind::InvalidVerdict {
                detail: format!("record conversion failed: {e}"),
            },
        })
}

impl NativeDefaults {
    /// The identity recorded for native decisions.
    pub fn id(slot: Slot) -> &'static str {
        match slot {
            Slot::Startup => "default-startup@native",
            Slot::Outcome => "default-outcome@native",
            Slot::Placement => "default-placement@native",
        }
    }

    fn decision<T>(slot: Slot, verdict: T) -> Decision<T> {
        Decision {
            verdict,
            plugin: NativeDefaults::id(slot).to_string(),
            fallback_from: None,
        }
    }

    fn rejected(slot: Slot, e: jobset_policy_sdk::types::PolicyError) -> PolicyError {
        PolicyError {
            plugin: NativeDefaults::id(slot).to_string(),
            slot,
            kind: ErrorKind::Rejected {
                message: format!("{e:?}"),
            },
        }
    }
}

impl PolicyEngine for NativeDefaults {
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError> {
        let slot = Slot::Startup;
        let s: jobset_policy_sdk::types::Snapshot = convert(snapshot, slot)?;
        let v = default_startup::decide(&s).map_err(|e| Self::rejected(slot, e))?;
        Ok(Self::decision(slot, convert(&v, slot)?))
    }

    fn decide_outcome(
        &self,
        snapshot: &Snapshot,
        _pods: &[JobPods],
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        let slot = Slot::Outcome;
        let s: jobset_policy_sdk::types::Snapshot = convert(snapshot, slot)?;
        let v = default_outcome::decide(&s).map_err(|e| Self::rejected(slot, e))?;
        Ok(Self::decision(slot, convert(&v, slot)?))
    }

    fn decide_in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        let slot = Slot::Outcome;
        let s: jobset_policy_sdk::types::Snapshot = convert(snapshot, slot)?;
        let r: jobset_policy_sdk::in_place::InPlaceRestart = convert(restart, slot)?;
        let v = default_outcome::in_place::decide(&s, &r).map_err(|e| Self::rejected(slot, e))?;
        Ok(Self::decision(slot, convert(&v, slot)?))
    }

    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError> {
        let slot = Slot::Placement;
        let s: jobset_policy_sdk::types::Snapshot = convert(snapshot, slot)?;
        let r: jobset_policy_sdk::types::PlacementRequest = convert(request, slot)?;
        let v = default_placement::decide(&s, &r).map_err(|e| Self::rejected(slot, e))?;
        Ok(Self::decision(slot, convert(&v, slot)?))
    }
}
