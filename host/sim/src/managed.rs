//! Field ownership (`metadata.managedFields`): the set of field paths each
//! manager owns, in the `FieldsV1` encoding, and how ordinary writes move
//! ownership of the fields they change.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::lists::{Cursor, ListKind, key_elem, same_key};

/// One path: elements in FieldsV1 spelling (`f:spec`, `k:{"name":"a"}`, `v:"x"`).
pub type Path = Vec<String>;
/// A set of owned paths.
pub type FieldSet = BTreeSet<Path>;

const SKIP_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of an object a write owns: all but status, or only status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Part {
    Main { status_separate: bool },
    Status,
}

/// The owned paths of an object: its leaves, plus keyed list items.
pub fn fields_of(obj: &Value, cursor: Cursor<'_>, part: Part) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        match (part, k.as_str()) {
            (Part::Status, "status") => {}
            (Part::Status, _) => continue,
            (
                Part::Main {
                    status_separate: true,
                },
                "status",
            ) => continue,
            _ => {}
        }
        let mut path = vec![format!("f:{k}")];
        if k == "metadata" {
            if let Some(mm) = v.as_object() {
                for (mk, mv) in mm
                    .iter()
                    .filter(|(mk, _)| !SKIP_META.contains(&mk.as_str()))
                {
                    path.push(format!("f:{mk}"));
                    walk(mv, &mut path, mk, true, cursor.field(k).field(mk), &mut out);
                    path.pop();
                }
            }
            continue;
        }
        walk(v, &mut path, k, false, cursor.field(k), &mut out);
    }
    out
}

/// Adds the owned paths under `v`, which sits at `path`. The path is one
/// stack pushed and popped on the way down; only owned paths are copied.
fn walk(
    v: &Value,
    path: &mut Path,
    field: &str,
    in_meta: bool,
    cursor: Cursor<'_>,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(child, path, k, false, cursor.field(k), out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match cursor.list_kind(field, in_meta, items) {
            ListKind::Map(keys) => {
                for item in items {
                    path.push(key_elem(&keys, item));
                    out.insert(path.clone());
                    walk(item, path, "", false, cursor.items(), out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = step(cur, e)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, e: &str) -> Option<&'a Value> {
    if let Some(f) = e.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = e.strip_prefix("k:") {
        let key: Value = serde_json::from_str(k).ok()?;
        let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
        return items.iter().find(|i| same_key(&keys, i, &key));
    }
    if let Some(v) = e.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        return items.iter().find(|i| **i == want);
    }
    None
}

/// Removes the value at a path (and empty parents it leaves behind are kept).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for e in parents {
        let next = if let Some(f) = e.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            find_item_mut(cur, e)
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        let probe = items
            .iter()
            .position(|i| step(&Value::Array(vec![i.clone()]), last).is_some());
        if let Some(idx) = probe {
            items.remove(idx);
        }
    }
}

fn find_item_mut<'a>(cur: &'a mut Value, e: &str) -> Option<&'a mut Value> {
    let items = cur.as_array_mut()?;
    let idx = items
        .iter()
        .position(|i| step(&Value::Array(vec![i.clone()]), e).is_some())?;
    items.get_mut(idx)
}

/// Encodes a set as FieldsV1.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, e) in path.iter().enumerate() {
            let entry = node.entry(e.clone()).or_insert_with(|| json!({}));
            let Some(m) = entry.as_object_mut() else {
                break;
            };
            if i + 1 == path.len() && e.starts_with("k:") {
                m.insert(".".into(), json!({}));
            }
            node = m;
        }
    }
    Value::Object(root)
}

/// Decodes FieldsV1 into a set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn rec(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m.iter().filter(|(k, _)| *k != ".") {
            path.push(k.clone());
            rec(child, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// The managedFields entries of an object.
pub fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Writes entries back, dropping empty ones.
pub fn set_entries(obj: &mut Value, entries: Vec<Value>) {
    let kept: Vec<Value> = entries
        .into_iter()
        .filter(|e| {
            e.get("fieldsV1")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
        .collect();
    if kept.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(kept);
    }
}

/// The cursor for walking objects of a resource.
pub fn cursor_for(info: &crate::registry::ResourceInfo) -> Cursor<'_> {
    Cursor::new(info.schema.as_deref(), !info.custom)
}

/// Records an ordinary write (create, update, non-apply patch): `manager`
/// takes the fields it changed; other managers lose them.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    sub: Option<&str>,
    now: &str,
) {
    record_with(
        Cursor::new(None, true),
        old,
        new,
        manager,
        api_version,
        sub,
        now,
    );
}

/// `record_update` for an object of `info`, whose schema says how its lists merge.
pub fn record_update_for(
    info: &crate::registry::ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: Option<&str>,
    now: &str,
) {
    record_with(
        cursor_for(info),
        old,
        new,
        manager,
        &info.api_version(),
        sub,
        now,
    );
}

fn record_with(
    cursor: Cursor<'_>,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    sub: Option<&str>,
    now: &str,
) {
    let part = if sub == Some("status") {
        Part::Status
    } else {
        Part::Main {
            status_separate: false,
        }
    };
    let new_fields = fields_of(new, cursor, part);
    let old_fields = old.map(|o| fields_of(o, cursor, part)).unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| {
            !old_fields.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p)
        })
        .cloned()
        .collect();
    let mut list = old.map(entries).unwrap_or_else(|| entries(new));
    let mut found = false;
    for e in list.iter_mut() {
        let mine = e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("subresource").and_then(Value::as_str) == sub;
        // Another manager's entry with nothing in the written part keeps
        // every path (the write neither removes nor takes any of them):
        // a status write leaves a spec owner's entry as it is without
        // decoding it.
        if !mine && !touches_part(e.get("fieldsV1"), part) {
            continue;
        }
        let mut set = from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null));
        let before = set.len();
        set.retain(|p| new_fields.contains(p) || !in_part(p, part));
        if mine {
            found = true;
            set.extend(changed.iter().cloned());
            if !changed.is_empty() {
                e["time"] = json!(now);
            }
        } else {
            set.retain(|p| !changed.contains(p));
        }
        if set.len() != before || mine {
            e["fieldsV1"] = to_fields_v1(&set);
        }
    }
    if !found && !changed.is_empty() {
        let mut e = json!({
            "manager": manager, "operation": "Update", "apiVersion": api_version,
            "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&changed),
        });
        if let Some(s) = sub {
            e["subresource"] = json!(s);
        }
        list.push(e);
    }
    set_entries(new, list);
}

/// Whether an encoded set has any path in `part` (judged by its top-level
/// fields).
fn touches_part(fields_v1: Option<&Value>, part: Part) -> bool {
    let Some(m) = fields_v1.and_then(Value::as_object) else {
        return false;
    };
    match part {
        Part::Status => m.contains_key("f:status"),
        Part::Main { .. } => m.keys().any(|k| k != "f:status"),
    }
}

fn in_part(p: &Path, part: Part) -> bool {
    let status = p.first().map(String::as_str) == Some("f:status");
    match part {
        Part::Status => status,
        Part::Main { .. } => !status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips_keyed_items() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let set = fields_of(
            &obj,
            Cursor::new(None, true),
            Part::Main {
                status_separate: false,
            },
        );
        let enc = to_fields_v1(&set);
        assert_eq!(
            enc["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"],
            json!({})
        );
        assert_eq!(from_fields_v1(&enc), set);
        assert!(set.contains(&vec![
            "f:metadata".to_string(),
            "f:labels".into(),
            "f:a".into()
        ]));
    }

    /// The paths `manager`'s entry owns (none without an entry).
    fn owned_by(entries: &[Value], manager: &str) -> FieldSet {
        entries
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| from_fields_v1(&e["fieldsV1"]))
            .unwrap_or_default()
    }

    #[test]
    fn an_update_moves_the_changed_field_to_its_manager() {
        let mut v1 = json!({"metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        record_update(None, &mut v1, "alice", "v1", None, "t0");
        let mut v2 = v1.clone();
        v2["data"]["a"] = json!("changed");
        record_update(Some(&v1), &mut v2, "bob", "v1", None, "t1");
        let list = entries(&v2);
        let a: Path = vec!["f:data".into(), "f:a".into()];
        assert!(owned_by(&list, "bob").contains(&a));
        assert!(!owned_by(&list, "alice").contains(&a));
        assert!(owned_by(&list, "alice").contains(&vec!["f:data".to_string(), "f:b".into()]));
    }

    #[test]
    fn a_status_write_leaves_the_spec_owner_alone_and_takes_status() {
        let mut v1 = json!({"metadata": {"name": "x"}, "spec": {"a": 1}, "status": {"n": 0}});
        record_update(None, &mut v1, "creator", "v1", None, "t0");
        let mut v2 = v1.clone();
        v2["status"]["n"] = json!(1);
        record_update(Some(&v1), &mut v2, "ctl", "v1", Some("status"), "t1");
        let list = entries(&v2);
        let n: Path = vec!["f:status".into(), "f:n".into()];
        // The creator's entry covered status too (a plain create owns it
        // all); the status write moves the changed field only.
        assert!(owned_by(&list, "ctl").contains(&n));
        assert!(!owned_by(&list, "creator").contains(&n));
        assert!(owned_by(&list, "creator").contains(&vec!["f:spec".to_string(), "f:a".into()]));
        assert_eq!(entries(&v1)[0]["time"], list[0]["time"]);

        // A second status write by a third manager: the creator's entry no
        // longer has status paths and stays byte for byte as it was.
        let mut v3 = v2.clone();
        v3["status"]["n"] = json!(2);
        record_update(Some(&v2), &mut v3, "other", "v1", Some("status"), "t2");
        let after = entries(&v3);
        assert_eq!(after[0], list[0], "the creator's entry is untouched");
        let holders: Vec<&Value> = after
            .iter()
            .filter(|e| from_fields_v1(&e["fieldsV1"]).contains(&n))
            .map(|e| &e["manager"])
            .collect();
        assert_eq!(holders, vec![&json!("other")]);
    }

    #[test]
    fn remove_at_deletes_keyed_items_and_fields() {
        let mut o = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "image": "x"}]}});
        remove_at(
            &mut o,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into(),
            ],
        );
        remove_at(
            &mut o,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"b\"}".into(),
                "f:image".into(),
            ],
        );
        assert_eq!(o, json!({"spec": {"containers": [{"name": "b"}]}}));
    }
}
