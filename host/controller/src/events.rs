//! Events, recorded the way upstream's recorder (client-go's events library)
//! records them, so that `kubectl get events`, dashboards and alerts see the
//! same Event objects under either controller:
//! - two events are the same when their type, action, reason, reporter and
//!   the object they regard (its resource version included) are; the note
//!   is not part of that identity, so a repeat keeps the first note;
//! - the first is created; the second turns it into a series of count 2;
//!   later repeats are counted here and written when the series ends
//!   (nothing repeated for six minutes) or every thirty minutes.
//!
//! Unlike upstream's, writes are made in the order the events happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as ApiEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::clock::Clock;
use crate::conditions::EventType;

/// A series with no repeat for this long has ended: its count is written
/// and it is forgotten (as is an event never repeated).
pub const SERIES_FINISH: SignedDuration = SignedDuration::from_mins(6);
/// A running series has its count written at least this often.
pub const SERIES_REFRESH: SignedDuration = SignedDuration::from_mins(30);

/// One event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub action: String,
    pub note: String,
}

impl Event {
    /// An event of the JobSet controller's reconcile (upstream's action).
    pub fn reconciling(
        type_: EventType,
        reason: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Event {
            type_,
            reason: reason.into(),
            action: "Reconciling".to_string(),
            note: note.into(),
        }
    }
}

/// A reference to `obj` as client-go makes one for an event: kind, API
/// version, namespace, name, UID and the resource version it was seen at.
pub fn regarding<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        resource_version: obj.meta().resource_version.clone(),
        ..obj.object_ref(&())
    }
}

/// What makes two events the same: everything of the object reference,
/// its resource version included, as client-go compares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    action: String,
    reason: String,
    regarding: [Option<String>; 7],
}

impl Key {
    fn of(ev: &Event, r: &ObjectReference) -> Self {
        Key {
            type_: ev.type_.as_str(),
            action: ev.action.clone(),
            reason: ev.reason.clone(),
            regarding: [
                r.api_version.clone(),
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
                r.uid.clone(),
                r.resource_version.clone(),
                r.field_path.clone(),
            ],
        }
    }
}

/// An event as written, and how often it happened since.
struct Recorded {
    event: ApiEvent,
    /// Occurrences so far (1 until it repeats).
    count: i32,
    /// The count last written to the API server.
    written: i32,
    last: Timestamp,
    /// When the series' count was last written.
    refreshed: Timestamp,
}

struct Inner {
    client: Client,
    controller: String,
    instance: String,
    clock: Clock,
    cache: Mutex<HashMap<Key, Recorded>>,
    /// The time in the last Event name given, so that names stay distinct
    /// when the clock does not move between two events (a virtual clock).
    last_name: Mutex<i128>,
    /// Serialises writes so that events reach the API server in order.
    writing: tokio::sync::Mutex<()>,
}

/// Records events as one reporting controller. Cheap to clone.
#[derive(Clone)]
pub struct Recorder(Arc<Inner>);

/// What recording an event sends to the API server.
enum Write {
    Create(Box<ApiEvent>),
    /// The first Event with its series' count; created with it if gone.
    Series(Box<ApiEvent>),
}

impl Recorder {
    /// A recorder reporting as `controller`, from the instance
    /// `<controller>-<hostname>` as client-go names it.
    pub fn new(client: Client, controller: impl Into<String>, clock: Clock) -> Self {
        let controller = controller.into();
        let instance = format!("{controller}-{}", hostname());
        Recorder(Arc::new(Inner {
            client,
            controller,
            instance,
            clock,
            cache: Mutex::default(),
            last_name: Mutex::new(0),
            writing: tokio::sync::Mutex::new(()),
        }))
    }

    /// Records `ev` about the object `regarding` refers to.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let _order = self.0.writing.lock().await;
        let now = self.0.clock.now_precise();
        let key = Key::of(ev, regarding);
        let write = {
            let Ok(mut cache) = self.0.cache.lock() else {
                return Ok(());
            };
            match cache.get_mut(&key) {
                Some(seen) => {
                    seen.count += 1;
                    seen.last = now;
                    if seen.count == 2 {
                        seen.written = 2;
                        seen.refreshed = now;
                        Some(series_write(seen))
                    } else {
                        None
                    }
                }
                None => {
                    let event = self.new_event(ev, regarding, now);
                    cache.insert(
                        key,
                        Recorded {
                            event: event.clone(),
                            count: 1,
                            written: 1,
                            last: now,
                            refreshed: now,
                        },
                    );
                    Some(Write::Create(Box::new(event)))
                }
            }
        };
        match write {
            Some(w) => self.send(w).await,
            None => Ok(()),
        }
    }

    /// Writes the counts of series that ended or were not written for
    /// [`SERIES_REFRESH`], and forgets what ended. Returns how many Events
    /// it wrote.
    pub async fn flush(&self) -> usize {
        let _order = self.0.writing.lock().await;
        let now = self.0.clock.now_precise();
        let writes: Vec<Write> = {
            let Ok(mut cache) = self.0.cache.lock() else {
                return 0;
            };
            let mut writes = Vec::new();
            cache.retain(|_, seen| {
                let ended = seen.last + SERIES_FINISH < now;
                let stale = seen.count > 1 && seen.refreshed + SERIES_REFRESH < now;
                if seen.count > seen.written && (ended || stale) {
                    seen.written = seen.count;
                    seen.refreshed = now;
                    writes.push(series_write(seen));
                }
                !ended
            });
            writes
        };
        let mut written = 0;
        for w in writes {
            match self.send(w).await {
                Ok(()) => written += 1,
                Err(e) => tracing::warn!(error = %e, "could not write an event series' count"),
            }
        }
        written
    }

    /// Flushes every minute until the returned task is aborted.
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                recorder.flush().await;
            }
        })
    }

    /// Events remembered for repeats.
    pub fn remembered(&self) -> usize {
        self.0.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn new_event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> ApiEvent {
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let nanos = match self.0.last_name.lock() {
            Ok(mut last) => {
                *last = (*last + 1).max(now.as_nanosecond());
                *last
            }
            Err(_) => now.as_nanosecond(),
        };
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.0.controller),
            nanos
        );
        ApiEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.0.controller.clone()),
            reporting_instance: Some(self.0.instance.clone()),
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            regarding: Some(regarding.clone()),
            note: Some(ev.note.clone()),
            type_: Some(ev.type_.as_str().to_string()),
            ..ApiEvent::default()
        }
    }

    /// Sends one write; a series whose Event is gone is created again with
    /// its count, as client-go does.
    async fn send(&self, write: Write) -> Result<(), kube::Error> {
        match write {
            Write::Create(event) => {
                let api: Api<ApiEvent> = Api::namespaced(
                    self.0.client.clone(),
                    event.metadata.namespace.as_deref().unwrap_or("default"),
                );
                api.create(&PostParams::default(), &event).await.map(drop)
            }
            Write::Series(event) => {
                let name = event.metadata.name.clone().unwrap_or_default();
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<ApiEvent> = Api::namespaced(self.0.client.clone(), &namespace);
                let patch = json!({"series": event.series});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        api.create(&PostParams::default(), &event).await.map(drop)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

fn series_write(seen: &Recorded) -> Write {
    let mut event = seen.event.clone();
    event.series = Some(EventSeries {
        count: seen.count,
        last_observed_time: MicroTime(seen.last),
    });
    Write::Series(Box::new(event))
}

/// The host's name, as `os.Hostname` gives it (in a pod, the pod's name).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_sim::{Sim, SimConfig};
    use kube::api::{DeleteParams, ListParams};

    /// A recorder on a simulated API server, with a clock the test moves.
    struct World {
        _sim: Sim,
        events: Api<ApiEvent>,
        recorder: Recorder,
        now: Arc<Mutex<Timestamp>>,
    }

    impl World {
        fn new() -> World {
            let sim = Sim::new(SimConfig::default());
            let client = Client::new(sim.service(), "default");
            let now = Arc::new(Mutex::new(
                Timestamp::from_second(1_800_000_000).expect("a time"),
            ));
            let clock = {
                let now = now.clone();
                Clock::from_fn(move || *now.lock().expect("the test clock"))
            };
            World {
                events: Api::namespaced(client.clone(), "default"),
                recorder: Recorder::new(client, "jobset", clock),
                now,
                _sim: sim,
            }
        }

        fn advance(&self, d: SignedDuration) {
            let mut now = self.now.lock().expect("the test clock");
            *now += d;
        }

        async fn stored(&self) -> Vec<ApiEvent> {
            let mut all = self
                .events
                .list(&ListParams::default())
                .await
                .expect("events are listed")
                .items;
            all.sort_by_key(|e| e.metadata.name.clone());
            all
        }
    }

    fn jobset_at(resource_version: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("jobset.x-k8s.io/v1alpha2".into()),
            kind: Some("JobSet".into()),
            name: Some("js".into()),
            namespace: Some("default".into()),
            uid: Some("js-uid".into()),
            resource_version: Some(resource_version.into()),
            field_path: None,
        }
    }

    fn failed(note: &str) -> Event {
        Event::reconciling(EventType::Warning, "JobCreationFailed", note)
    }

    fn count(e: &ApiEvent) -> Option<i32> {
        e.series.as_ref().map(|s| s.count)
    }

    #[tokio::test]
    async fn a_repeat_is_a_series_of_two_and_later_repeats_are_written_when_the_series_ends() {
        let w = World::new();
        for note in ["job \"a\" failed", "job \"b\" failed", "job \"c\" failed"] {
            w.recorder
                .publish(&failed(note), &jobset_at("7"))
                .await
                .expect("recorded");
        }
        let stored = w.stored().await;
        assert_eq!(
            stored.len(),
            1,
            "one Event for three of the same: {stored:?}"
        );
        assert_eq!(
            stored[0].note.as_deref(),
            Some("job \"a\" failed"),
            "the first note stays"
        );
        assert_eq!(count(&stored[0]), Some(2), "the third repeat waits");
        assert_eq!(stored[0].reporting_controller.as_deref(), Some("jobset"));
        assert!(
            stored[0]
                .reporting_instance
                .as_deref()
                .is_some_and(|i| i.starts_with("jobset-")),
            "instance named as client-go names it"
        );

        w.advance(SignedDuration::from_mins(5));
        assert_eq!(w.recorder.flush().await, 0, "not ended after five minutes");
        w.advance(SignedDuration::from_mins(2));
        assert_eq!(w.recorder.flush().await, 1, "ended after six minutes");
        let stored = w.stored().await;
        assert_eq!(count(&stored[0]), Some(3), "the final count is written");
        assert_eq!(w.recorder.remembered(), 0, "an ended series is forgotten");
    }

    #[test]
    fn an_event_regards_the_object_at_its_resource_version() {
        let cm = k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        let r = regarding(&cm);
        assert_eq!(r.resource_version.as_deref(), Some("42"));
        assert_eq!(r.kind.as_deref(), Some("ConfigMap"));
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("ns"), Some("p"), Some("u"))
        );
    }

    #[tokio::test]
    async fn the_same_event_at_another_resource_version_is_a_new_event() {
        // The test clock does not move: Event names stay distinct anyway.
        let w = World::new();
        w.recorder
            .publish(&failed("x"), &jobset_at("7"))
            .await
            .expect("recorded");
        w.recorder
            .publish(&failed("x"), &jobset_at("8"))
            .await
            .expect("recorded");
        let other = Event::reconciling(EventType::Normal, "Restarting", "x");
        w.recorder
            .publish(&other, &jobset_at("8"))
            .await
            .expect("recorded");
        let stored = w.stored().await;
        assert_eq!(stored.len(), 3, "{stored:?}");
        assert!(
            stored.iter().all(|e| e.series.is_none()),
            "no repeats: {stored:?}"
        );
    }

    #[tokio::test]
    async fn a_series_whose_event_was_deleted_is_created_again_with_its_count() {
        let w = World::new();
        w.recorder
            .publish(&failed("x"), &jobset_at("7"))
            .await
            .expect("recorded");
        let name = w.stored().await[0].metadata.name.clone().expect("a name");
        w.events
            .delete(&name, &DeleteParams::default())
            .await
            .expect("deleted");
        w.recorder
            .publish(&failed("x"), &jobset_at("7"))
            .await
            .expect("recorded");
        let stored = w.stored().await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(count(&stored[0]), Some(2));
    }

    #[tokio::test]
    async fn a_running_series_has_its_count_written_every_thirty_minutes() {
        let w = World::new();
        for _ in 0..3 {
            w.recorder
                .publish(&failed("x"), &jobset_at("7"))
                .await
                .expect("recorded");
        }
        // Repeats every five minutes keep the series running past 30 minutes.
        for _ in 0..6 {
            w.advance(SignedDuration::from_mins(5));
            w.recorder
                .publish(&failed("x"), &jobset_at("7"))
                .await
                .expect("recorded");
            assert_eq!(w.recorder.flush().await, 0);
        }
        w.advance(SignedDuration::from_mins(1));
        w.recorder
            .publish(&failed("x"), &jobset_at("7"))
            .await
            .expect("recorded");
        assert_eq!(w.recorder.flush().await, 1, "refreshed after 31 minutes");
        assert_eq!(count(&w.stored().await[0]), Some(10));
        assert_eq!(w.recorder.remembered(), 1, "a running series is kept");
    }
}
