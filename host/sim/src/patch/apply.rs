//! Server-side apply: merges an applied configuration into the stored object,
//! tracks which manager owns which fields, reports conflicts (409 naming the
//! other manager and the field) unless forced, and removes fields a manager
//! stopped applying when nobody else owns them.

use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::lists::{Cursor, ListKind, same_key};
use crate::managed::{self, FieldSet, Part, Path, entries, from_fields_v1, to_fields_v1, value_at};
use crate::registry::ResourceInfo;

/// `.spec.containers[name="c"].image`, as conflict messages spell a path.
pub fn display_path(p: &Path) -> String {
    let mut s = String::new();
    for e in p {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Where a value sits: at the root, inside `metadata`, or elsewhere.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Root,
    Metadata,
    Other,
}

fn merge_applied(
    cur: &Value,
    applied: &Value,
    field: &str,
    at: At,
    parent: At,
    cursor: Cursor<'_>,
) -> Value {
    match (cur, applied) {
        (Value::Object(c), Value::Object(a)) => {
            let mut out: Map<String, Value> = c.clone();
            for (k, v) in a {
                let child_at = if at == At::Root && k == "metadata" {
                    At::Metadata
                } else {
                    At::Other
                };
                let merged = match out.get(k) {
                    Some(existing) => merge_applied(existing, v, k, child_at, at, cursor.field(k)),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(c), Value::Array(a)) => {
            match cursor.list_kind(field, parent == At::Metadata, a) {
                ListKind::Atomic => applied.clone(),
                ListKind::Set => {
                    let mut out = c.clone();
                    for i in a {
                        if !out.contains(i) {
                            out.push(i.clone());
                        }
                    }
                    Value::Array(out)
                }
                ListKind::Map(keys) => {
                    let mut out = c.clone();
                    for item in a {
                        match out.iter().position(|x| same_key(&keys, x, item)) {
                            Some(i) => {
                                out[i] = merge_applied(
                                    &out[i],
                                    item,
                                    "",
                                    At::Other,
                                    At::Other,
                                    cursor.items(),
                                )
                            }
                            None => out.push(item.clone()),
                        }
                    }
                    Value::Array(out)
                }
            }
        }
        _ => applied.clone(),
    }
}

fn is_mine(e: &Value, manager: &str, sub: Option<&str>) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some("Apply")
        && e.get("subresource").and_then(Value::as_str) == sub
}

/// Applies `applied` as `manager`. `current` is None when the object does not exist yet.
pub fn server_side_apply(
    info: &ResourceInfo,
    current: Option<&Value>,
    mut applied: Value,
    manager: &str,
    force: bool,
    sub: Option<&str>,
    now: &str,
) -> Result<Value, ApiError> {
    let kind = applied
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the applied configuration ({kind:?}) does not match the expected kind ({})",
            info.kind
        )));
    }
    if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    let cursor = managed::cursor_for(info);
    let part = if sub == Some("status") {
        Part::Status
    } else {
        Part::Main {
            status_separate: info.has_status,
        }
    };
    let applied_set = managed::fields_of(&applied, cursor, part);
    let empty = json!({});
    let cur = current.unwrap_or(&empty);
    let mut list = entries(cur);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in list.iter().filter(|e| {
        !is_mine(e, manager, sub) && e.get("manager").and_then(Value::as_str) != Some(manager)
    }) {
        let owned = from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null));
        for p in applied_set.intersection(&owned) {
            if value_at(cur, p) != value_at(&applied, p) {
                let who = e
                    .get("manager")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                conflicts.push((who, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(info, &conflicts));
    }
    let mut owned_by_others = FieldSet::new();
    let mut previous = FieldSet::new();
    for e in list.iter_mut() {
        let mut set = from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null));
        if is_mine(e, manager, sub) {
            previous = set;
            continue;
        }
        if force {
            let before = set.len();
            set.retain(|p| !conflicts.iter().any(|(_, c)| c == p));
            if set.len() != before {
                e["fieldsV1"] = to_fields_v1(&set);
            }
        }
        owned_by_others.extend(set);
    }
    let mut obj = cur.clone();
    let mut dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied_set.contains(*p) && !owned_by_others.contains(*p))
        .filter(|p| !owned_by_others.iter().any(|o| o.starts_with(p)))
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        managed::remove_at(&mut obj, p);
    }
    let mut merged = merge_applied(&obj, &applied, "", At::Root, At::Other, cursor);
    list.retain(|e| !is_mine(e, manager, sub));
    let mut mine = json!({
        "manager": manager, "operation": "Apply", "apiVersion": info.api_version(),
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&applied_set),
    });
    if let Some(s) = sub {
        mine["subresource"] = json!(s);
    }
    list.push(mine);
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = json!({});
    }
    managed::set_entries(&mut merged, list);
    Ok(merged)
}

fn conflict_error(info: &ResourceInfo, conflicts: &[(String, Path)]) -> ApiError {
    let n = conflicts.len();
    let av = info.api_version();
    let message = if n == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {av}: {}",
            conflicts[0].0,
            display_path(&conflicts[0].1)
        )
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\" using {av}: {}", display_path(p)))
            .collect();
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {av}"), "field": display_path(p)}))
        .collect();
    ApiError {
        details: Some(json!({"causes": causes})),
        ..ApiError::new(409, "Conflict", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": data})
    }

    fn info() -> std::sync::Arc<ResourceInfo> {
        Registry::with_builtins()
            .get("", "v1", "configmaps")
            .expect("configmaps")
    }

    #[test]
    fn a_second_manager_changing_an_owned_field_conflicts_unless_forced() {
        let i = info();
        let a =
            server_side_apply(&i, None, cm(json!({"k": "1"})), "alice", false, None, "t").unwrap();
        let err = server_side_apply(&i, Some(&a), cm(json!({"k": "2"})), "bob", false, None, "t")
            .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"alice\""),
            "{}",
            err.message
        );
        assert_eq!(err.to_status()["details"]["causes"][0]["field"], ".data.k");
        let b =
            server_side_apply(&i, Some(&a), cm(json!({"k": "2"})), "bob", true, None, "t").unwrap();
        assert_eq!(b["data"]["k"], "2");
        let alice = entries(&b).into_iter().find(|e| e["manager"] == "alice");
        assert!(alice.is_none(), "alice lost her only field");
    }

    #[test]
    fn applying_the_same_value_shares_ownership_without_conflict() {
        let i = info();
        let a =
            server_side_apply(&i, None, cm(json!({"k": "1"})), "alice", false, None, "t").unwrap();
        let b = server_side_apply(&i, Some(&a), cm(json!({"k": "1"})), "bob", false, None, "t")
            .unwrap();
        assert_eq!(entries(&b).len(), 2);
    }

    #[test]
    fn a_field_no_longer_applied_is_removed() {
        let i = info();
        let a = server_side_apply(
            &i,
            None,
            cm(json!({"k": "1", "gone": "x"})),
            "alice",
            false,
            None,
            "t",
        )
        .unwrap();
        let b = server_side_apply(
            &i,
            Some(&a),
            cm(json!({"k": "1"})),
            "alice",
            false,
            None,
            "t",
        )
        .unwrap();
        assert!(b["data"].get("gone").is_none());
        assert_eq!(b["data"]["k"], "1");
    }
}
