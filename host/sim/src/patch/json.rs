//! JSON patch (RFC 6902): add, remove, replace, move, copy, test.

use serde_json::Value;

use crate::errors::ApiError;

fn parse_pointer(p: &str) -> Result<Vec<String>, ApiError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {p:?}")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn bad(op: &Value, why: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!(
            "the server rejected our request due to an error in our request: {why} (operation {op})"
        ),
    )
}

fn parent<'a>(doc: &'a mut Value, path: &[String], op: &Value) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| bad(op, &format!("path segment {seg:?} does not exist")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &[String], value: Value, op: &Value) -> Result<(), ApiError> {
    let Some((last, pre)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, pre, op)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| bad(op, "array index out of range"))?
            };
            a.insert(idx, value);
        }
        _ => return Err(bad(op, "parent is not a container")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &[String], op: &Value) -> Result<Value, ApiError> {
    let Some((last, pre)) = path.split_last() else {
        return Err(bad(op, "cannot remove the root"));
    };
    match parent(doc, pre, op)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| bad(op, &format!("field {last:?} does not exist"))),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| bad(op, "array index out of range"))?;
            Ok(a.remove(i))
        }
        _ => Err(bad(op, "parent is not a container")),
    }
}

/// Applies an RFC 6902 patch document.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    let mut doc = target.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = parse_pointer(
            op.get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(op, "missing path"))?,
        )?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| bad(op, "missing value"))
        };
        let from = || parse_pointer(op.get("from").and_then(Value::as_str).unwrap_or_default());
        match kind {
            "add" => add(&mut doc, &path, value()?, op)?,
            "remove" => {
                remove(&mut doc, &path, op)?;
            }
            "replace" => {
                remove(&mut doc, &path, op)?;
                add(&mut doc, &path, value()?, op)?;
            }
            "move" => {
                let v = remove(&mut doc, &from()?, op)?;
                add(&mut doc, &path, v, op)?;
            }
            "copy" => {
                let v = parent(&mut doc, &from()?, op)?.clone();
                add(&mut doc, &path, v, op)?;
            }
            "test" => {
                if *parent(&mut doc, &path, op)? != value()? {
                    return Err(bad(op, "test failed"));
                }
            }
            _ => return Err(bad(op, &format!("unknown operation {kind:?}"))),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_applies_each_operation_in_order() {
        let t = json!({"a": {"b": 1}, "l": [1, 2]});
        let p = json!([
            {"op": "add", "path": "/a/c", "value": 2},
            {"op": "remove", "path": "/a/b"},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "replace", "path": "/l/0", "value": 0},
            {"op": "move", "from": "/a/c", "path": "/m"},
            {"op": "copy", "from": "/m", "path": "/n"},
            {"op": "test", "path": "/n", "value": 2}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"a": {}, "l": [0, 2, 3], "m": 2, "n": 2})
        );
    }

    #[test]
    fn failed_tests_and_missing_paths_are_rejected_without_panicking() {
        let t = json!({"a": 1});
        for p in [
            json!([{"op": "test", "path": "/a", "value": 2}]),
            json!([{"op": "remove", "path": "/x/y"}]),
            json!({"op": "add"}),
            json!([{"op": "add", "path": "/l/9", "value": 1}]),
        ] {
            assert!(json_patch(&t, &p).is_err(), "{p}");
        }
    }
}
