//! Strategic merge patch for built-in kinds: lists with a merge key merge
//! item by item, `finalizers` merge as a set, other lists are replaced;
//! `$patch: delete|replace|merge`, `$deleteFromPrimitiveList/<f>` and
//! `$setElementOrder/<f>` (ordering) directives are understood.

use serde_json::{Map, Value};

use crate::errors::ApiError;
use crate::lists::{Cursor, ListKind, same_key};

/// Applies a strategic merge patch to a built-in object.
pub fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    merge_map(target, patch, Cursor::new(None, true), true)
}

fn directive(patch: &Value) -> Option<&str> {
    patch.get("$patch").and_then(Value::as_str)
}

fn merge_map(
    target: &Value,
    patch: &Value,
    cursor: Cursor<'_>,
    root: bool,
) -> Result<Value, ApiError> {
    let Some(p) = patch.as_object() else {
        return Ok(patch.clone());
    };
    match directive(patch) {
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            return Ok(Value::Object(m));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type {other:?}"
            )));
        }
    }
    let mut out: Map<String, Value> = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) = (
                out.get_mut(field).and_then(Value::as_array_mut),
                v.as_array(),
            ) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let in_meta = root && k == "metadata";
        let child = cursor.field(k);
        let merged = match (out.get(k), v) {
            (Some(cur @ Value::Object(_)), Value::Object(_)) => merge_map(cur, v, child, false)?,
            (None, Value::Object(_)) => merge_map(&Value::Null, v, child, false)?,
            (Some(Value::Array(cur)), Value::Array(items)) => {
                merge_list(k, cur, items, child, false)?
            }
            (_, Value::Array(items)) => merge_list(k, &[], items, child, false)?,
            _ => v.clone(),
        };
        if in_meta {
            // metadata's own lists (finalizers, ownerReferences) have fixed kinds.
            let mut m = merged;
            if let (Some(cur), Some(pm)) = (out.get("metadata"), v.as_object()) {
                for lf in ["finalizers", "ownerReferences"] {
                    if let (Some(Value::Array(c)), Some(Value::Array(items))) =
                        (cur.get(lf), pm.get(lf))
                    {
                        m[lf] = merge_list(lf, c, items, child, true)?;
                    }
                }
            }
            out.insert(k.clone(), m);
        } else if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(out))
}

fn merge_list(
    field: &str,
    cur: &[Value],
    patch: &[Value],
    cursor: Cursor<'_>,
    in_meta: bool,
) -> Result<Value, ApiError> {
    if patch
        .iter()
        .any(|i| directive(i) == Some("replace") && i.as_object().is_some_and(|m| m.len() == 1))
    {
        let rest: Vec<Value> = patch
            .iter()
            .filter(|i| directive(i) != Some("replace"))
            .cloned()
            .collect();
        return Ok(Value::Array(rest));
    }
    match cursor.list_kind(field, in_meta, patch) {
        ListKind::Atomic => Ok(Value::Array(patch.to_vec())),
        ListKind::Set => {
            let mut out = cur.to_vec();
            for i in patch {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListKind::Map(keys) => {
            let mut out = cur.to_vec();
            for item in patch {
                let pos = out.iter().position(|c| same_key(&keys, c, item));
                match (directive(item), pos) {
                    (Some("delete"), Some(i)) => {
                        out.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => out[i] = merge_map(&out[i], item, cursor.items(), false)?,
                    (_, None) => out.push(merge_map(&Value::Null, item, cursor.items(), false)?),
                }
            }
            Ok(Value::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {"containers": [{"name": "a", "image": "x2", "env": [{"name": "F", "value": "2"}]}, {"name": "b", "$patch": "delete"}],
                       "$setElementOrder/containers": [{"name": "a"}]}});
        let out = strategic_merge(&t, &p).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(out["spec"]["containers"][0]["image"], "x2");
        assert_eq!(
            out["spec"]["containers"][0]["env"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn tolerations_are_replaced_and_finalizers_merge_as_a_set() {
        let t =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"tolerations": [{"key": "k1"}]}});
        let p = json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"tolerations": [{"key": "k2"}]}});
        let out = strategic_merge(&t, &p).unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "k2"}]));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let del = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        assert_eq!(
            strategic_merge(&out, &del).unwrap()["metadata"]["finalizers"],
            json!(["b"])
        );
    }

    #[test]
    fn conditions_merge_by_type() {
        let t = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}});
        let p = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = strategic_merge(&t, &p).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}])
        );
    }
}
