//! The cluster's own log of what it did (pod created, bound, started,
//! finished, Job condition set, node failed), stamped with virtual time since
//! the cluster started. Two runs with one seed must produce equal logs.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// One thing a component did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Virtual milliseconds since the cluster started.
    pub at_ms: u64,
    /// `job-controller`, `scheduler`, `kubelet` or `faults`.
    pub component: &'static str,
    /// What happened, e.g. `PodCreated`, `Bound`, `Started`, `Failed`.
    pub action: String,
    /// `namespace/name` of the object (or the node's name).
    pub object: String,
    /// Free-form detail (node name, exit code, reason).
    pub detail: String,
}

impl std::fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.3}s {:<14} {:<18} {} {}",
            self.at_ms as f64 / 1000.0,
            self.component,
            self.action,
            self.object,
            self.detail
        )
    }
}

/// A shared, append-only log.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<ClusterEvent>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn record(&self, component: &'static str, action: &str, object: &str, detail: String) {
        let at_ms = self.start.elapsed().as_millis() as u64;
        tracing::debug!(component, action, object, %detail, "cluster");
        let mut g = match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.push(ClusterEvent {
            at_ms,
            component,
            action: action.to_string(),
            object: object.to_string(),
            detail,
        });
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Vec<ClusterEvent> {
        match self.events.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Number of events recorded so far.
    pub fn len(&self) -> usize {
        match self.events.lock() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Virtual time since the cluster started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}
