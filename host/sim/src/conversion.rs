//! How objects move between the version a client speaks and the form they
//! are stored in: custom resources are relabelled to their storage version,
//! events.k8s.io/v1 Events are reshaped to and from the stored core v1 Events.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::events;
use crate::registry::ResourceInfo;

/// Whether objects served by `info` look different from the stored ones.
pub fn converts(info: &ResourceInfo) -> bool {
    (info.custom && info.version != info.storage_version) || info.group != info.storage_group
}

/// A stored object as `info`'s API version presents it.
pub fn from_storage(info: &ResourceInfo, obj: &Value) -> Value {
    if events::is_events_v1(info) {
        return events::core_to_events_v1(obj);
    }
    let mut o = obj.clone();
    if info.custom && info.version != info.storage_version {
        o["apiVersion"] = json!(info.api_version());
    }
    o
}

/// Like `from_storage`, sharing the stored object when nothing changes.
pub fn from_storage_shared(info: &ResourceInfo, obj: &Arc<Value>) -> Arc<Value> {
    if converts(info) {
        Arc::new(from_storage(info, obj))
    } else {
        obj.clone()
    }
}

/// An object written through `info`'s API version, in the form it is stored in.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    if events::is_events_v1(info) {
        return events::events_v1_to_core(&obj);
    }
    if info.custom && info.version != info.storage_version {
        let mut o = obj;
        o["apiVersion"] = json!(format!("{}/{}", info.group, info.storage_version));
        return o;
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn events_v1_writes_are_stored_as_core_events_and_read_back_unchanged() {
        let r = Registry::with_builtins();
        let v1 = r
            .get("events.k8s.io", "v1", "events")
            .expect("events.k8s.io");
        let core = r.get("", "v1", "events").expect("core events");
        assert_eq!(v1.store_key(), core.store_key());
        assert!(converts(&v1) && !converts(&core));
        let written = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "regarding": {"name": "x"}, "note": "hi"});
        let stored = to_storage(&v1, written.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "x");
        assert_eq!(from_storage(&v1, &stored), written);
        assert_eq!(from_storage(&core, &stored), stored);
    }

    #[test]
    fn custom_resources_are_stored_in_their_storage_version() {
        let mut info = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .map(|i| (*i).clone())
            .expect("configmaps");
        info.custom = true;
        info.group = "x.io".into();
        info.storage_group = "x.io".into();
        info.version = "v1beta1".into();
        info.storage_version = "v1".into();
        let stored = to_storage(
            &info,
            json!({"apiVersion": "x.io/v1beta1", "kind": "ConfigMap"}),
        );
        assert_eq!(stored["apiVersion"], "x.io/v1");
        assert_eq!(from_storage(&info, &stored)["apiVersion"], "x.io/v1beta1");
    }
}
