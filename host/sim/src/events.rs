//! Events, stored once in the core v1 shape and served through both the core
//! API and events.k8s.io/v1: the field mapping between the two shapes, the
//! field selectors each API accepts, and the columns `kubectl get events` prints.

use serde_json::{Map, Value, json};

use crate::clock::{human_age, parse_rfc3339};
use crate::registry::ResourceInfo;

/// Top-level fields named differently in the two shapes: (core v1, events.k8s.io/v1).
/// Every other field (`metadata`, `eventTime`, `series`, `action`, `reason`,
/// `type`, `related`, `reportingInstance`) has one name in both.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Whether `info` is the events.k8s.io/v1 view of the stored core Events.
pub fn is_events_v1(info: &ResourceInfo) -> bool {
    !info.custom && info.group == "events.k8s.io" && info.kind == "Event"
}

/// Whether `info` is either API's Events.
pub fn is_event(info: &ResourceInfo) -> bool {
    !info.custom && info.kind == "Event" && (info.group.is_empty() || is_events_v1(info))
}

/// Renames the top-level fields of `obj` from one shape to the other; a field
/// that only the target shape names is dropped rather than let it clash.
fn reshape(obj: &Value, to_events_v1: bool, api_version: &str) -> Value {
    let Some(fields) = obj.as_object() else {
        return obj.clone();
    };
    // (name in the source shape, name in the target shape)
    let pairs = RENAMED
        .iter()
        .map(|&(core, v1)| if to_events_v1 { (core, v1) } else { (v1, core) });
    let mut out = Map::new();
    for (k, v) in fields {
        if let Some((_, to)) = pairs.clone().find(|(from, _)| from == k) {
            out.insert(to.to_string(), v.clone());
        } else if !pairs.clone().any(|(_, to)| to == k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A stored (core v1) Event as events.k8s.io/v1 presents it.
pub fn core_to_events_v1(obj: &Value) -> Value {
    reshape(obj, true, "events.k8s.io/v1")
}

/// An events.k8s.io/v1 Event in the stored core v1 shape.
pub fn events_v1_to_core(obj: &Value) -> Value {
    reshape(obj, false, "v1")
}

/// Field selectors of core v1 Events, each with the stored field it reads.
const CORE_FIELDS: &[(&str, &str)] = &[
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("involvedObject.kind", "involvedObject.kind"),
    ("involvedObject.namespace", "involvedObject.namespace"),
    ("involvedObject.name", "involvedObject.name"),
    ("involvedObject.uid", "involvedObject.uid"),
    ("involvedObject.apiVersion", "involvedObject.apiVersion"),
    (
        "involvedObject.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("involvedObject.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingComponent", "reportingComponent"),
    ("source", "source.component"),
    ("type", "type"),
];

/// Field selectors of events.k8s.io/v1 Events, each with the stored field it reads.
const EVENTS_V1_FIELDS: &[(&str, &str)] = &[
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingController", "reportingComponent"),
    ("type", "type"),
];

/// For a field selector on Events of `info`'s API: the stored field it reads,
/// or None when that API does not support the field.
pub fn selector_field(info: &ResourceInfo, field: &str) -> Option<&'static str> {
    let table = if is_events_v1(info) {
        EVENTS_V1_FIELDS
    } else {
        CORE_FIELDS
    };
    table.iter().find(|(f, _)| *f == field).map(|(_, s)| *s)
}

/// Columns of an Event table: (name, type, priority); priority 1 shows with `-o wide`.
const COLUMNS: &[(&str, &str, u8)] = &[
    ("Last Seen", "string", 0),
    ("Type", "string", 0),
    ("Reason", "string", 0),
    ("Object", "string", 0),
    ("Subobject", "string", 1),
    ("Source", "string", 1),
    ("Message", "string", 0),
    ("First Seen", "string", 1),
    ("Count", "integer", 1),
    ("Name", "string", 1),
];

/// The column definitions of an Event table.
pub fn columns() -> Vec<Value> {
    COLUMNS
        .iter()
        .map(|(name, ty, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}

/// The cells of one stored Event, in `columns()` order, aged against `now` (Unix seconds).
pub fn cells(o: &Value, now: i64) -> Vec<Value> {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let age = |p: &str| {
        parse_rfc3339(s(p))
            .map(|t| human_age(now - t))
            .unwrap_or_else(|| "<unknown>".into())
    };
    let series = o.get("series").filter(|v| v.is_object());
    let mut first = if s("/firstTimestamp").is_empty() {
        age("/eventTime")
    } else {
        age("/firstTimestamp")
    };
    let mut last = if s("/lastTimestamp").is_empty() {
        first.clone()
    } else {
        age("/lastTimestamp")
    };
    if series.is_some() {
        last = age("/series/lastObservedTime");
        first = age("/eventTime");
    }
    let count = match series {
        Some(sr) => sr.get("count").cloned().unwrap_or(json!(0)),
        None => o.get("count").cloned().unwrap_or(json!(0)),
    };
    let object = format!(
        "{}/{}",
        s("/involvedObject/kind").to_lowercase(),
        s("/involvedObject/name")
    );
    let mut source = s("/source/component").to_string();
    if source.is_empty() {
        source = s("/reportingComponent").to_string();
    }
    let host = s("/source/host");
    if !host.is_empty() {
        source = format!("{source}, {host}");
    }
    vec![
        json!(last),
        json!(s("/type")),
        json!(s("/reason")),
        json!(object),
        json!(s("/involvedObject/fieldPath")),
        json!(source),
        json!(s("/message").trim()),
        json!(first),
        count,
        json!(s("/metadata/name")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn events_v1_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "js.1", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
            "eventTime": "2026-01-01T00:00:00.000001Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "action": "Create", "reason": "Created", "type": "Normal",
            "related": {"kind": "Job", "name": "js-a-0"},
            "reportingInstance": "ctl-0", "reportingController": "jobset-controller",
            "regarding": {"kind": "JobSet", "name": "js", "namespace": "ns", "uid": "j1"},
            "note": "created job js-a-0",
            "deprecatedSource": {"component": "jobset", "host": "h"},
            "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2026-01-01T00:01:00Z",
            "deprecatedCount": 3
        })
    }

    #[test]
    fn every_events_v1_field_lands_on_its_core_name() {
        let core = events_v1_to_core(&events_v1_event());
        let e = events_v1_event();
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["kind"], "Event");
        for (c, v1) in RENAMED {
            assert_eq!(core[*c], e[*v1], "{v1} -> {c}");
            assert!(core.get(*v1).is_none(), "{v1} left behind");
        }
        for same in [
            "metadata",
            "eventTime",
            "series",
            "action",
            "reason",
            "type",
            "related",
            "reportingInstance",
        ] {
            assert_eq!(core[same], e[same], "{same}");
        }
        assert_eq!(core["involvedObject"]["name"], "js");
        assert_eq!(core["message"], "created job js-a-0");
        assert_eq!(core["count"], 3);
        assert_eq!(core["reportingComponent"], "jobset-controller");
    }

    #[test]
    fn every_core_field_lands_on_its_events_v1_name() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "pulled",
            "source": {"component": "kubelet"}, "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:02:00Z", "count": 4,
            "reportingComponent": "kubelet", "reason": "Pulled", "type": "Normal"
        });
        let v1 = core_to_events_v1(&core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        for (c, n) in RENAMED {
            assert_eq!(v1[*n], core[*c], "{c} -> {n}");
            assert!(v1.get(*c).is_none(), "{c} left behind");
        }
        assert_eq!(v1["regarding"]["kind"], "Pod");
        assert_eq!(v1["note"], "pulled");
        assert_eq!(v1["deprecatedCount"], 4);
        assert_eq!(v1["reason"], "Pulled");
    }

    #[test]
    fn a_round_trip_through_either_shape_gives_the_same_event_back() {
        let e = events_v1_event();
        assert_eq!(core_to_events_v1(&events_v1_to_core(&e)), e);
        let core = events_v1_to_core(&e);
        assert_eq!(events_v1_to_core(&core_to_events_v1(&core)), core);
    }

    #[test]
    fn a_field_named_only_in_the_other_shape_does_not_overwrite_the_mapped_one() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {},
                       "note": "right", "message": "stray"});
        assert_eq!(events_v1_to_core(&e)["message"], "right");
    }

    #[test]
    fn each_api_selects_by_its_own_field_names_over_the_stored_fields() {
        let r = Registry::with_builtins();
        let core = r.get("", "v1", "events").expect("core events");
        let v1 = r
            .get("events.k8s.io", "v1", "events")
            .expect("events.k8s.io");
        assert_eq!(
            selector_field(&core, "involvedObject.name"),
            Some("involvedObject.name")
        );
        assert_eq!(selector_field(&core, "source"), Some("source.component"));
        assert_eq!(selector_field(&core, "regarding.name"), None);
        assert_eq!(
            selector_field(&v1, "regarding.uid"),
            Some("involvedObject.uid")
        );
        assert_eq!(
            selector_field(&v1, "reportingController"),
            Some("reportingComponent")
        );
        assert_eq!(selector_field(&v1, "involvedObject.name"), None);
    }

    #[test]
    fn table_cells_age_the_series_and_name_the_object_as_kubectl_prints_them() {
        let core = events_v1_to_core(&events_v1_event());
        let now = parse_rfc3339("2026-01-01T00:03:00Z").expect("time");
        let c = cells(&core, now);
        assert_eq!(c.len(), columns().len());
        assert_eq!(c[0], "2m", "last seen: the series' last observation");
        assert_eq!(c[1], "Normal");
        assert_eq!(c[2], "Created");
        assert_eq!(c[3], "jobset/js");
        assert_eq!(c[5], "jobset, h");
        assert_eq!(c[6], "created job js-a-0");
        assert_eq!(c[7], "3m", "first seen: the event time");
        assert_eq!(c[8], 2, "count: the series' count");
        assert_eq!(c[9], "js.1");
        let plain = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "count": 5,
                           "firstTimestamp": "2026-01-01T00:00:00Z", "reason": "Pulled"});
        let c = cells(&plain, now);
        assert_eq!(
            (c[0].clone(), c[7].clone(), c[8].clone()),
            (json!("3m"), json!("3m"), json!(5))
        );
    }
}
