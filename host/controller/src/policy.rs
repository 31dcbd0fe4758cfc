//! What the plan needs from the policy runtime: the typed calls of
//! `jobset_policy::PolicyEngine` (one per slot, resolved for the JobSet in
//! the snapshot), a metered wrapper that feeds the decision metrics, and
//! the hand-off of plugin ConfigMaps from the controller's watch.

use std::sync::Arc;
use std::time::Instant;

pub use jobset_policy::snapshot as records;
pub use jobset_policy::{Decision, ErrorKind, PolicyEngine, PolicyError, Slot};
use records::{
    InPlaceRestart, JobPlacement, JobPods, OutcomeVerdict, PlacementRequest, Snapshot,
    StartupVerdict,
};

use crate::metrics::Metrics;

/// An invalid-verdict error for a check the controller makes itself.
pub fn invalid_verdict(slot: Slot, plugin: &str, detail: String) -> PolicyError {
    PolicyError {
        plugin: plugin.to_string(),
        slot,
        kind: ErrorKind::InvalidVerdict { detail },
    }
}

/// Times every decision of the engine it wraps into the metrics.
pub struct Metered {
    pub inner: Arc<dyn PolicyEngine>,
    pub metrics: Arc<Metrics>,
}

impl Metered {
    fn record<T>(&self, slot: Slot, started: Instant, r: &Result<Decision<T>, PolicyError>) {
        let took = started.elapsed();
        match r {
            Ok(d) => self.metrics.decision(&d.plugin, slot.as_str(), took, None),
            Err(e) => self
                .metrics
                .decision(&e.plugin, slot.as_str(), took, Some(e.metric_label())),
        }
    }
}

impl PolicyEngine for Metered {
    fn decide_startup(&self, snapshot: &Snapshot) -> Result<Decision<StartupVerdict>, PolicyError> {
        let t = Instant::now();
        let r = self.inner.decide_startup(snapshot);
        self.record(Slot::Startup, t, &r);
        r
    }

    fn decide_outcome(
        &self,
        snapshot: &Snapshot,
        pods: &[JobPods],
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        let t = Instant::now();
        let r = self.inner.decide_outcome(snapshot, pods);
        self.record(Slot::Outcome, t, &r);
        r
    }

    fn decide_in_place(
        &self,
        snapshot: &Snapshot,
        restart: &InPlaceRestart,
    ) -> Result<Decision<OutcomeVerdict>, PolicyError> {
        let t = Instant::now();
        let r = self.inner.decide_in_place(snapshot, restart);
        self.record(Slot::Outcome, t, &r);
        r
    }

    fn wants(&self, snapshot: &Snapshot, slot: Slot, input: &str) -> bool {
        self.inner.wants(snapshot, slot, input)
    }

    fn decide_placement(
        &self,
        snapshot: &Snapshot,
        request: &PlacementRequest,
    ) -> Result<Decision<Vec<JobPlacement>>, PolicyError> {
        let t = Instant::now();
        let r = self.inner.decide_placement(snapshot, request);
        self.record(Slot::Placement, t, &r);
        r
    }
}

/// Where the controller's watch hands plugin ConfigMaps
/// (label `policy.jobset.dev/plugin`).
pub trait PluginConfigMaps: Send + Sync {
    /// A ConfigMap was added or changed; an error says why the new version
    /// was rejected (the last good version stays in force).
    fn upsert(&self, cm: &k8s_openapi::api::core::v1::ConfigMap) -> Result<(), String>;
    /// A ConfigMap was deleted.
    fn remove(&self, namespace: &str, name: &str);
    /// What the plugins cost now, for the metrics.
    fn stats(&self) -> PluginStats {
        PluginStats::default()
    }
    /// Has `notify` called whenever a plugin compiled off the watch (on
    /// demand) is put in force or fails; none by default.
    fn on_compiled(&self, notify: Box<dyn Fn(&CompileNotice) + Send + Sync>) {
        let _ = notify;
    }
    /// Has `notify` called with every shadow decision; none by default.
    fn on_shadow(&self, notify: Box<dyn Fn(&ShadowReport) + Send + Sync>) {
        let _ = notify;
    }
}

pub use jobset_policy::CompileNotice;
pub use jobset_policy::shadow::ShadowReport;

/// Plugins from ConfigMaps in force, the compiled code kept, and the
/// limits that bound both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    pub in_force: usize,
    pub compiled: usize,
    pub compiled_bytes: usize,
    pub max_per_namespace: usize,
    pub max_compiled: usize,
    pub max_compiled_bytes: usize,
    /// Verified plugins not compiled yet (compile on demand).
    pub pending: usize,
    /// Plugins queued for or being compiled.
    pub compiling: usize,
    /// Plugins whose compile failed or was abandoned.
    pub failed: usize,
    /// Compiles abandoned at the deadline so far.
    pub abandoned: u64,
    /// The compile deadline, in milliseconds.
    pub compile_deadline_ms: u64,
}

impl PluginConfigMaps for jobset_policy::Registry {
    fn upsert(&self, cm: &k8s_openapi::api::core::v1::ConfigMap) -> Result<(), String> {
        self.apply_configmap(cm)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn remove(&self, namespace: &str, name: &str) {
        self.delete_configmap(namespace, name);
    }

    fn stats(&self) -> PluginStats {
        let (compiled, compiled_bytes) = self.runtime().compiled_cache();
        let limits = self.runtime().limits();
        let stages = jobset_policy::Registry::stats(self);
        PluginStats {
            in_force: stages.plugins,
            compiled,
            compiled_bytes,
            max_per_namespace: self.config().max_plugins_per_namespace,
            max_compiled: limits.max_compiled,
            max_compiled_bytes: limits.max_compiled_bytes,
            pending: stages.pending,
            compiling: stages.compiling,
            failed: stages.failed,
            abandoned: stages.abandoned,
            compile_deadline_ms: self.config().compile_deadline.as_millis() as u64,
        }
    }

    fn on_compiled(&self, notify: Box<dyn Fn(&CompileNotice) + Send + Sync>) {
        jobset_policy::Registry::on_compiled(self, notify);
    }

    fn on_shadow(&self, notify: Box<dyn Fn(&ShadowReport) + Send + Sync>) {
        jobset_policy::Registry::on_shadow(self, "controller", notify);
    }
}
