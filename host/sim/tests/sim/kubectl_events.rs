//! kubectl (the real binary) reading Events a controller wrote through
//! events.k8s.io/v1: `get events`, its field selectors and `describe`, which
//! all read core v1 Events from the one store.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::kubectl::{Cluster, start};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: jobsets.jobset.x-k8s.io
spec:
  group: jobset.x-k8s.io
  scope: Namespaced
  names: {plural: jobsets, singular: jobset, kind: JobSet}
  versions:
  - name: v1alpha2
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const JOBSET: &str = "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata:\n  name: js\n";

impl Cluster {
    /// Publishes an event through events.k8s.io/v1 as the JobSet controller does.
    fn record(&self, regarding: ObjectReference, reason: &str, note: &str) {
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.rt
            .block_on(async {
                let client = kube::Client::new(self.sim.service(), "default");
                let reporter = Reporter {
                    controller: "jobset-controller".into(),
                    instance: None,
                };
                Recorder::new(client, reporter)
                    .publish(&ev, &regarding)
                    .await
            })
            .expect("the Recorder publishes");
    }
}

fn reference(kind: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("jobset.x-k8s.io/v1alpha2".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

#[test]
fn kubectl_get_and_describe_show_events_recorded_through_events_k8s_io() {
    let c = start();
    c.ok(&["apply", "-f", "-"], Some(CRD));
    c.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/jobsets.jobset.x-k8s.io",
            "--timeout=20s",
        ],
        None,
    );
    c.ok(&["apply", "-f", "-"], Some(JOBSET));
    let uid = c.ok(
        &["get", "jobset", "js", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
    assert!(!uid.is_empty());
    c.record(
        reference("JobSet", "js", &uid),
        "AllJobsCompleted",
        "jobset js completed",
    );
    c.record(
        reference("JobSet", "other", "u-other"),
        "Suspended",
        "jobset other suspended",
    );

    let all = c.ok(&["get", "events"], None);
    let header = all.lines().next().unwrap_or_default();
    for col in ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
        assert!(header.contains(col), "missing {col}: {all}");
    }
    assert!(
        all.lines().any(|l| l.contains("AllJobsCompleted")
            && l.contains("jobset/js")
            && l.contains("jobset js completed")),
        "{all}"
    );
    assert!(all.contains("Suspended"), "{all}");

    let selected = c.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=js",
        ],
        None,
    );
    assert!(selected.contains("AllJobsCompleted"), "{selected}");
    assert!(!selected.contains("Suspended"), "{selected}");

    let described = c.ok(&["describe", "jobset", "js"], None);
    let events = described
        .split_once("Events:")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        events.contains("AllJobsCompleted")
            && events.contains("jobset js completed")
            && events.contains("jobset-controller"),
        "{described}"
    );
    assert!(!events.contains("Suspended"), "{described}");

    let v1 = c.ok(
        &[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=other",
        ],
        None,
    );
    assert!(
        v1.contains("Suspended") && !v1.contains("AllJobsCompleted"),
        "{v1}"
    );
}
