//! Events through both APIs from one store, via kube-rs: what the
//! events.k8s.io/v1 Recorder writes is listed, fetched, selected and watched
//! through core v1, and core v1 Events are seen through events.k8s.io/v1.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use k8s_openapi::api::events::v1::Event as V1Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

fn client(sim: &Sim) -> kube::Client {
    kube::Client::new(sim.service(), "default")
}

fn jobset_ref(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("jobset.x-k8s.io/v1alpha2".into()),
        kind: Some("JobSet".into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

async fn publish(client: &kube::Client, reason: &str, note: &str, regarding: &ObjectReference) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "jobset-controller".into(),
            instance: Some("ctl-0".into()),
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: reason.into(),
                note: Some(note.into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            regarding,
        )
        .await
        .expect("the Recorder publishes");
}

fn by_name(name: &str) -> ListParams {
    ListParams::default().fields(&format!("involvedObject.name={name}"))
}

#[tokio::test]
async fn a_recorder_event_is_listed_fetched_and_selected_through_core_v1() {
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    publish(
        &c,
        "AllJobsCompleted",
        "jobset completed",
        &jobset_ref("js", "u-js"),
    )
    .await;
    publish(
        &c,
        "Other",
        "about someone else",
        &jobset_ref("other", "u-o"),
    )
    .await;

    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    assert_eq!(
        core.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let selector = "involvedObject.name=js,involvedObject.kind=JobSet,involvedObject.uid=u-js,\
                    involvedObject.namespace=default";
    let found = core
        .list(&ListParams::default().fields(selector))
        .await
        .expect("core v1 events list with kubectl describe's selector")
        .items;
    assert_eq!(found.len(), 1, "only the event about js: {found:?}");
    let e = &found[0];
    assert_eq!(e.involved_object.name.as_deref(), Some("js"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("JobSet"));
    assert_eq!(e.involved_object.uid.as_deref(), Some("u-js"));
    assert_eq!(e.message.as_deref(), Some("jobset completed"));
    assert_eq!(e.reason.as_deref(), Some("AllJobsCompleted"));
    assert_eq!(e.reporting_component.as_deref(), Some("jobset-controller"));
    assert_eq!(e.reporting_instance.as_deref(), Some("ctl-0"));
    assert_eq!(e.count, None, "the Recorder sets no deprecatedCount");

    let name = e.metadata.name.clone().expect("name");
    let fetched = core.get(&name).await.expect("get through core v1");
    let v1: Api<V1Event> = Api::namespaced(c.clone(), "default");
    let same = v1.get(&name).await.expect("get through events.k8s.io");
    assert_eq!(fetched.metadata.uid, same.metadata.uid);
    assert_eq!(
        fetched.metadata.resource_version,
        same.metadata.resource_version
    );
    assert_eq!(same.note.as_deref(), Some("jobset completed"));
}

#[tokio::test]
async fn a_repeated_recorder_event_patches_the_series_seen_through_core_v1() {
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "jobset-controller".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "Restarting".into(),
        note: Some("restart 1".into()),
        action: "Restart".into(),
        secondary: None,
    };
    let r = jobset_ref("js", "u-js");
    recorder.publish(&ev, &r).await.expect("create");
    recorder.publish(&ev, &r).await.expect("merge patch");
    let core: Api<CoreEvent> = Api::namespaced(c, "default");
    let items = core.list(&by_name("js")).await.unwrap().items;
    assert_eq!(items.len(), 1, "the second publish patched the first");
    assert_eq!(items[0].series.as_ref().and_then(|s| s.count), Some(2));
    assert_eq!(items[0].type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn counts_and_sources_written_through_events_v1_read_back_on_their_core_names() {
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    let v1: Api<V1Event> = Api::namespaced(c.clone(), "default");
    let body: V1Event = serde_json::from_value(json!({
        "metadata": {"name": "pulled.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kubelet", "reportingInstance": "node-1",
        "action": "Pull", "reason": "Pulled", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "note": "image pulled",
        "deprecatedSource": {"component": "kubelet", "host": "node-1"},
        "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
        "deprecatedLastTimestamp": "2026-01-01T00:05:00Z",
        "deprecatedCount": 3
    }))
    .expect("event");
    let created = v1.create(&PostParams::default(), &body).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(c, "default");
    let e = core
        .get("pulled.1")
        .await
        .expect("the same event via core v1");
    assert_eq!(e.metadata.uid, created.metadata.uid);
    assert_eq!(e.count, Some(3));
    assert_eq!(e.message.as_deref(), Some("image pulled"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(
        e.source.as_ref().and_then(|s| s.host.as_deref()),
        Some("node-1")
    );
    assert!(e.first_timestamp.is_some() && e.last_timestamp.is_some());
    let by_source = core
        .list(&ListParams::default().fields("source=kubelet,reason=Pulled"))
        .await
        .unwrap();
    assert_eq!(by_source.items.len(), 1);

    core.delete("pulled.1", &DeleteParams::default())
        .await
        .expect("delete through core v1");
    let gone = v1
        .get("pulled.1")
        .await
        .expect_err("gone from events.k8s.io");
    assert!(matches!(gone, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn a_core_event_is_seen_and_selected_through_events_v1() {
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    let body: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "p.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "message": "scheduled", "reason": "Scheduled", "type": "Normal",
        "source": {"component": "scheduler"}, "reportingComponent": "scheduler", "count": 1
    }))
    .expect("event");
    core.create(&PostParams::default(), &body).await.unwrap();
    let v1: Api<V1Event> = Api::namespaced(c, "default");
    let seen = v1
        .list(&ListParams::default().fields("regarding.name=p,reportingController=scheduler"))
        .await
        .expect("events.k8s.io list with its own field names")
        .items;
    assert_eq!(seen.len(), 1);
    let e = &seen[0];
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("p")
    );
    assert_eq!(e.note.as_deref(), Some("scheduled"));
    assert_eq!(e.deprecated_count, Some(1));
    assert_eq!(e.reporting_controller.as_deref(), Some("scheduler"));
    let wrong = v1
        .list(&ListParams::default().fields("involvedObject.name=p"))
        .await
        .expect_err("events.k8s.io does not know the core field name");
    assert!(matches!(wrong, kube::Error::Api(s) if s.code == 400));

    v1.delete("p.1", &DeleteParams::default())
        .await
        .expect("delete through events.k8s.io");
    assert!(
        core.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn watches_through_either_api_see_events_written_through_the_other() {
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    let v1: Api<V1Event> = Api::namespaced(c.clone(), "default");
    let params = WatchParams::default()
        .fields("involvedObject.name=js")
        .timeout(5);
    let mut core_watch = core.watch(&params, "0").await.unwrap().boxed();
    let v1_params = WatchParams::default().fields("regarding.name=p").timeout(5);
    let mut v1_watch = v1.watch(&v1_params, "0").await.unwrap().boxed();

    publish(
        &c,
        "Ignored",
        "about another jobset",
        &jobset_ref("x", "u-x"),
    )
    .await;
    publish(&c, "Started", "jobset started", &jobset_ref("js", "u-js")).await;
    let next = tokio::time::timeout(Duration::from_secs(5), core_watch.try_next()).await;
    match next {
        Ok(Ok(Some(WatchEvent::Added(e)))) => {
            assert_eq!(e.reason.as_deref(), Some("Started"));
            assert_eq!(e.message.as_deref(), Some("jobset started"));
            assert_eq!(e.involved_object.name.as_deref(), Some("js"));
        }
        other => panic!("expected the Recorder's event on the core watch, got {other:?}"),
    }

    let body: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "p.2"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "message": "killed", "reason": "Killing", "type": "Normal"
    }))
    .expect("event");
    core.create(&PostParams::default(), &body).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), v1_watch.try_next()).await;
    match next {
        Ok(Ok(Some(WatchEvent::Added(e)))) => {
            assert_eq!(e.note.as_deref(), Some("killed"));
            assert_eq!(
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()),
                Some("Pod")
            );
        }
        other => panic!("expected the core event on the events.k8s.io watch, got {other:?}"),
    }
}
