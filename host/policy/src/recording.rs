//! Recorded decisions, and replaying them with another plugin. A
//! [`Recording`] holds everything one decision needed (the slot, the
//! snapshot the plugin saw with its configuration, the placement request)
//! and what came of it, named by the plugin, its sha256, the JobSet and the
//! time. A [`DecisionSink`] set on the registry receives one per decision;
//! [`replay`] runs a plugin over a recording and says whether it decides
//! the same. No cluster is needed to replay.

use crate::error::PolicyError;
use crate::plugin::WasmPlugin;
use crate::snapshot::{InPlaceRestart, JobPods, PlacementRequest, Slot, Snapshot};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;

/// The contract version a recording's records belong to.
pub const CONTRACT: &str = "jobset:policy@0.3.0";

/// Older versions whose recordings are still read: 0.2.0's records are
/// 0.3.0's without in-place restarts, 0.1.0's are 0.2.0's without pod
/// facts.
const READABLE: &[&str] = &[CONTRACT, "jobset:policy@0.2.0", "jobset:policy@0.1.0"];

/// One decision: its inputs and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recording {
    /// [`CONTRACT`] when written.
    pub contract: String,
    /// When the decision was made (RFC 3339).
    pub time: String,
    /// `namespace/name` of the JobSet.
    pub jobset: String,
    /// `name@sha256-prefix` of the plugin that decided (or failed).
    pub plugin: String,
    /// The plugin's whole sha256.
    pub sha256: String,
    /// The slot decided.
    pub slot: Slot,
    /// What the plugin saw, its configuration included.
    pub snapshot: Snapshot,
    /// The pending Jobs (placement only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PlacementRequest>,
    /// The failed pods the plugin was given (outcome, `pod-facts` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<JobPods>,
    /// The in-place restart decided, when the decision was the outcome
    /// slot's `decide-in-place`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place: Option<InPlaceRestart>,
    /// The verdict, in its serde form; none when the decision failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<serde_json::Value>,
    /// Why the decision failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Recording {
    /// Reads a recording written as YAML; the error names the field that
    /// is wrong, and a recording of another contract version is refused.
    pub fn from_yaml(text: &str) -> Result<Recording, String> {
        #[derive(Deserialize)]
        struct Version {
            contract: Option<String>,
        }
        let version: Version =
            serde_yaml::from_str(text).map_err(|e| format!("not a decision recording: {e}"))?;
        match version.contract.as_deref() {
            Some(known) if READABLE.contains(&known) => {}
            Some(other) => {
                return Err(format!(
                    "contract: {other:?} is not a version this jobset replays ({})",
                    READABLE.join(", ")
                ));
            }
            None => return Err("contract: missing (not a decision recording?)".to_string()),
        }
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    /// The recording as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// What came of the decision, in one line: the verdict as JSON, or
    /// `failed: <why>`.
    pub fn result_line(&self) -> String {
        result_line(self.verdict.as_ref(), self.error.as_deref())
    }
}

fn result_line(verdict: Option<&serde_json::Value>, error: Option<&str>) -> String {
    match (verdict, error) {
        (Some(v), _) => v.to_string(),
        (None, Some(e)) => format!("failed: {e}"),
        (None, None) => "nothing".to_string(),
    }
}

/// Receives every decision of a registry it is set on.
pub trait DecisionSink: Send + Sync {
    /// Keeps one recording. Must not fail the decision: report problems
    /// in the log.
    fn record(&self, recording: &Recording);
}

/// Writes each recording as a YAML file in a folder, named by its order,
/// JobSet and slot (`000012-default-training-outcome.yaml`).
pub struct DirectorySink {
    dir: PathBuf,
    next: Mutex<u64>,
}

impl DirectorySink {
    /// Creates the folder if needed; numbering continues after the files
    /// already there.
    pub fn new(dir: impl Into<PathBuf>) -> Result<DirectorySink, String> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let existing = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .count() as u64;
        Ok(DirectorySink {
            dir,
            next: Mutex::new(existing + 1),
        })
    }
}

impl DecisionSink for DirectorySink {
    fn record(&self, recording: &Recording) {
        let n = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let n = *next;
            *next += 1;
            n
        };
        let name = format!(
            "{n:06}-{}-{}.yaml",
            recording.jobset.replace('/', "-"),
            recording.slot
        );
        let path = self.dir.join(name);
        if let Err(e) = std::fs::write(&path, recording.to_yaml()) {
            tracing::warn!(path = %path.display(), error = %e, "decision not recorded");
        }
    }
}

/// Logs each recording as one JSON line (target `jobset::decision`).
pub struct LogSink;

impl DecisionSink for LogSink {
    fn record(&self, recording: &Recording) {
        match serde_json::to_string(recording) {
            Ok(line) => {
                tracing::info!(target: "jobset::decision", recording = %line, "decision recorded")
            }
            Err(e) => tracing::warn!(error = %e, "decision not recorded"),
        }
    }
}

/// What a plugin decided over a recording, next to what was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// Both decided alike: the same verdict, or both failed.
    pub same: bool,
    /// The recorded result, in one line.
    pub recorded: String,
    /// The replayed result, in one line.
    pub replayed: String,
}

/// Runs `plugin` over `recording` (its snapshot and request, the recorded
/// configuration included) and compares the results. Two failures count
/// as the same whatever their reasons: neither decided.
pub fn replay(plugin: &WasmPlugin, recording: &Recording) -> Replayed {
    let value = |r: Result<serde_json::Value, PolicyError>| match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (verdict, error) = value(decide_value(
        plugin,
        recording.slot,
        &recording.snapshot,
        recording.request.as_ref(),
        &recording.pods,
        recording.in_place.as_ref(),
    ));
    let same = match (&verdict, &recording.verdict) {
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    };
    Replayed {
        same,
        recorded: recording.result_line(),
        replayed: result_line(verdict.as_ref(), error.as_deref()),
    }
}

/// Decides `slot` with `plugin`, the verdict in its serde form; an
/// outcome with `in_place` is the in-place restart decision.
pub(crate) fn decide_value(
    plugin: &WasmPlugin,
    slot: Slot,
    snapshot: &Snapshot,
    request: Option<&PlacementRequest>,
    pods: &[JobPods],
    in_place: Option<&InPlaceRestart>,
) -> Result<serde_json::Value, PolicyError> {
    match slot {
        Slot::Startup => plugin.startup(snapshot).map(|v| to_value(&v)),
        Slot::Outcome => match in_place {
            Some(restart) => plugin.in_place(snapshot, restart).map(|v| to_value(&v)),
            None => plugin.outcome(snapshot, pods).map(|v| to_value(&v)),
        },
        Slot::Placement => {
            let empty = PlacementRequest {
                jobs: Vec::new(),
                domains: Vec::new(),
            };
            plugin
                .placement(snapshot, request.unwrap_or(&empty))
                .map(|v| to_value(&v))
        }
    }
}

/// The serde form of a verdict (what a recording keeps of it).
pub(crate) fn to_value<T: Serialize>(verdict: &T) -> serde_json::Value {
    serde_json::to_value(verdict).unwrap_or(serde_json::Value::Null)
}
