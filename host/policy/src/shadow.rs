//! Shadow decisions: a candidate plugin selected beside the active one
//! (annotation `policy.jobset.dev/<slot>-shadow`, or the controller's
//! setting) gets the same snapshot after every decision of its slot, in
//! the same sandbox and limits, and its verdict is only compared, never
//! applied. It runs on a thread of its own after the active decision is
//! returned, behind a bounded queue (a full queue drops the shadow call,
//! counted), with a circuit breaker of its own: a shadow that fails, loops
//! or runs out of memory costs the active decision nothing.

use crate::breaker::Breakers;
use crate::plugin::WasmPlugin;
use crate::recording::decide_value;
use crate::snapshot::{PlacementRequest, Slot, Snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

/// The JobSet annotation that selects a slot's shadow plugin.
pub fn shadow_annotation(slot: Slot) -> String {
    format!("policy.jobset.dev/{slot}-shadow")
}

/// How a shadow verdict compared with the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowResult {
    /// The same decision (wording aside).
    Agree,
    /// Another action, terminal state, count, restart target or pin.
    Diverge,
    /// The shadow plugin failed to decide.
    ShadowFailed,
}

impl ShadowResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowResult::Agree => "agree",
            ShadowResult::Diverge => "diverge",
            ShadowResult::ShadowFailed => "shadow_failed",
        }
    }
}

/// One shadow decision next to the active one.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowReport {
    /// `namespace/name` of the JobSet.
    pub jobset: String,
    /// Its uid.
    pub uid: String,
    /// Its attempt (`status.restarts`).
    pub attempt: i32,
    /// When the active decision was made: the snapshot's `now`
    /// (milliseconds since the Unix epoch, on the controller's clock).
    pub at_ms: i64,
    /// The slot decided.
    pub slot: Slot,
    /// `name@sha256-prefix` of the active plugin.
    pub active: String,
    /// `name@sha256-prefix` of the shadow plugin (or its name, when it
    /// could not be resolved).
    pub shadow: String,
    /// How they compared.
    pub result: ShadowResult,
    /// The active verdict, one line of JSON.
    pub active_verdict: String,
    /// The shadow verdict, one line of JSON, or why it failed.
    pub shadow_verdict: String,
}

type ShadowListener = Arc<dyn Fn(&ShadowReport) + Send + Sync>;

/// One shadow call waiting for the shadow thread.
pub(crate) struct ShadowCall {
    pub(crate) plugin: WasmPlugin,
    pub(crate) input: Snapshot,
    pub(crate) request: Option<PlacementRequest>,
    /// The failed pods the decision was given (outcome only).
    pub(crate) pods: Vec<crate::snapshot::JobPods>,
    /// The in-place restart decided (outcome's `decide-in-place` only).
    pub(crate) in_place: Option<crate::snapshot::InPlaceRestart>,
    pub(crate) slot: Slot,
    pub(crate) active: String,
    pub(crate) active_verdict: serde_json::Value,
}

/// Shadow calls waiting at most; more are dropped (and counted).
const QUEUE: usize = 256;

/// The shadow thread, its queue, breaker and listeners.
pub(crate) struct Shadows {
    queue: Mutex<Option<SyncSender<ShadowCall>>>,
    breakers: Arc<Breakers>,
    /// By name: a listener set again under its name replaces the old one.
    listeners: Arc<RwLock<Vec<(String, ShadowListener)>>>,
    dropped: AtomicU64,
    /// Calls queued or running.
    pending: Arc<AtomicU64>,
}

impl Shadows {
    pub(crate) fn new(breakers: Breakers) -> Shadows {
        Shadows {
            queue: Mutex::new(None),
            breakers: Arc::new(breakers),
            listeners: Arc::new(RwLock::new(Vec::new())),
            dropped: AtomicU64::new(0),
            pending: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits until no shadow call is queued or running, at most `limit`;
    /// says whether none is.
    pub(crate) fn settled(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.pending.load(Ordering::Acquire) > 0 {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    pub(crate) fn set_listener(&self, name: &str, listener: ShadowListener) {
        if let Ok(mut l) = self.listeners.write() {
            l.retain(|(n, _)| n != name);
            l.push((name.to_string(), listener));
        }
    }

    /// Shadow calls dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Tells the listeners at once (a shadow that could not even be
    /// resolved).
    pub(crate) fn report(&self, report: &ShadowReport) {
        tell(&self.listeners, report);
    }

    /// Queues a shadow call for the shadow thread (started on first use).
    pub(crate) fn submit(&self, call: ShadowCall) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            let (tx, rx) = mpsc::sync_channel::<ShadowCall>(QUEUE);
            let breakers = self.breakers.clone();
            let listeners = self.listeners.clone();
            let pending = self.pending.clone();
            let spawned = std::thread::Builder::new()
                .name("policy-shadow".to_string())
                .spawn(move || {
                    for call in rx {
                        let report = run(&breakers, call);
                        tell(&listeners, &report);
                        pending.fetch_sub(1, Ordering::AcqRel);
                    }
                });
            match spawned {
                Ok(_) => *queue = Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no thread for shadow decisions; shadow call dropped");
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Some(tx) = queue.as_ref() {
            self.pending.fetch_add(1, Ordering::AcqRel);
            match tx.try_send(call) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    *queue = None;
                }
            }
        }
    }
}

fn tell(listeners: &RwLock<Vec<(String, ShadowListener)>>, report: &ShadowReport) {
    let listeners: Vec<ShadowListener> = listeners
        .read()
        .map(|l| l.iter().map(|(_, f)| f.clone()).collect())
        .unwrap_or_default();
    for l in listeners {
        l(report);
    }
}

fn run(breakers: &Breakers, call: ShadowCall) -> ShadowReport {
    let shadow = call.plugin.id().to_string();
    let decided = match breakers.check(&shadow) {
        Err((failures, retry_in)) => Err(format!(
            "is suspended after {failures} consecutive failures (retry after {retry_in:?})"
        )),
        Ok(()) => {
            let r = decide_value(
                &call.plugin,
                call.slot,
                &call.input,
                call.request.as_ref(),
                &call.pods,
                call.in_place.as_ref(),
            );
            breakers.record(&shadow, r.is_ok());
            r.map_err(|e| e.to_string())
        }
    };
    let (result, shadow_verdict) = match decided {
        Ok(v) => (
            if significant(&v) == significant(&call.active_verdict) {
                ShadowResult::Agree
            } else {
                ShadowResult::Diverge
            },
            v.to_string(),
        ),
        Err(why) => (ShadowResult::ShadowFailed, format!("failed: {why}")),
    };
    ShadowReport {
        jobset: format!("{}/{}", call.input.jobset.namespace, call.input.jobset.name),
        uid: call.input.jobset.uid.clone(),
        attempt: call.input.jobset.status.restarts,
        at_ms: call.input.now,
        slot: call.slot,
        active: call.active,
        shadow,
        result,
        active_verdict: call.active_verdict.to_string(),
        shadow_verdict,
    }
}

/// A verdict without its wording (messages, event and condition reasons,
/// the rule's name): what it does, not how it says so.
fn significant(verdict: &serde_json::Value) -> serde_json::Value {
    const WORDING: [&str; 4] = ["message", "event_reason", "condition_reason", "rule"];
    match verdict {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !WORDING.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), significant(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(significant).collect(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listener_set_again_under_its_name_replaces_the_old_one() {
        let shadows = Shadows::new(Breakers::new(Default::default()));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        for (name, i) in [("controller", 0), ("controller", 1), ("run", 2)] {
            let c = counts.clone();
            shadows.set_listener(
                name,
                Arc::new(move |_: &ShadowReport| {
                    c[i].fetch_add(1, Ordering::Relaxed);
                }),
            );
        }
        shadows.report(&ShadowReport {
            jobset: "ns/js".into(),
            uid: "u".into(),
            attempt: 0,
            at_ms: 0,
            slot: Slot::Outcome,
            active: "a@1".into(),
            shadow: "b@2".into(),
            result: ShadowResult::ShadowFailed,
            active_verdict: "{}".into(),
            shadow_verdict: "failed: x".into(),
        });
        let seen: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(seen, vec![0, 1, 1], "the replaced listener is not called");
    }

    #[test]
    fn wording_is_not_a_divergence_but_the_action_and_its_count_are() {
        let a = json!({"action": {"RestartJobset": {"count_towards_max": false, "message": "a",
            "event_reason": "X", "condition_reason": "Y", "first_failed_job": "j-0"}}, "rule": "r1"});
        let same = json!({"action": {"RestartJobset": {"count_towards_max": false, "message": "b",
            "event_reason": "Z", "condition_reason": "W", "first_failed_job": "j-0"}}, "rule": null});
        let counted = json!({"action": {"RestartJobset": {"count_towards_max": true, "message": "a",
            "event_reason": "X", "condition_reason": "Y", "first_failed_job": "j-0"}}, "rule": "r1"});
        let fail = json!({"action": {"Fail": {"reason": "ReachedMaxRestarts", "message": "a"}}, "rule": "r1"});
        assert_eq!(significant(&a), significant(&same));
        assert_ne!(significant(&a), significant(&counted));
        assert_ne!(significant(&a), significant(&fail));
    }
}
