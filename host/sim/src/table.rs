//! `meta.k8s.io/v1` Table output for `kubectl get`: CRD printer columns
//! (a JSONPath subset: `.a.b`, `[0]`, `[?(@.type=="X")]`) and the usual
//! columns of built-in kinds.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::clock::{human_age, parse_rfc3339};
use crate::read::{meta, partial_metadata, present};
use crate::registry::ResourceInfo;
use crate::sim::Sim;

/// Evaluates a JSONPath subset against `obj`; returns all matches.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            cur = cur.into_iter().filter_map(|v| v.get(field)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.into_iter().filter_map(|v| v.get(i)).collect();
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((field, want)) = f.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                let field = field.trim();
                cur = cur
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .filter(|item| {
                        item.pointer(&format!("/{}", field.replace('.', "/")))
                            .and_then(Value::as_str)
                            == Some(want)
                    })
                    .collect();
            } else {
                return Vec::new();
            }
        } else {
            return Vec::new();
        }
    }
    cur
}

fn cell(v: Option<&Value>, ty: &str, now: i64) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if ty == "date" => match parse_rfc3339(s) {
            Some(t) => json!(human_age(now - t)),
            None => json!(s),
        },
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(Value::String(s)) => json!(s),
        Some(other) => json!(other.to_string()),
    }
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum();
    let mut status = o
        .pointer("/status/reason")
        .or(o.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    // As kubectl prints it: a container's waiting or terminated reason wins.
    for s in statuses.iter().rev() {
        let reason = |state: &str| {
            s.pointer(&format!("/state/{state}/reason"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
        };
        if let Some(r) = reason("waiting").or_else(|| reason("terminated")) {
            status = r.to_string();
            break;
        }
        if let Some(code) = s
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
        {
            status = format!("ExitCode:{code}");
            break;
        }
    }
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        status = "Terminating".into();
    }
    vec![
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts),
    ]
}

fn job_cells(o: &Value) -> Vec<Value> {
    let conds = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.pointer("/spec/suspend") == Some(&json!(true)) {
        "Suspended"
    } else {
        "Running"
    };
    let succeeded = o
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let completions = o
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .map_or("1".to_string(), |c| c.to_string());
    vec![json!(status), json!(format!("{succeeded}/{completions}"))]
}

fn node_cells(o: &Value) -> Vec<Value> {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True");
    let mut status = match ready {
        Some(true) => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    vec![json!(status), json!(roles)]
}

fn column(name: &str, ty: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0})
}

impl Sim {
    /// Renders objects as a Table; `include` is `None`, `Metadata` or `Object`.
    pub(crate) fn table(
        &self,
        info: &ResourceInfo,
        objs: &[Arc<Value>],
        include: &str,
        rv: Option<u64>,
    ) -> Value {
        let now = self.clock().now_secs();
        if crate::events::is_event(info) {
            return self.event_table(info, objs, include, rv, now);
        }
        let mut cols = vec![column("Name", "string")];
        let custom: Vec<Value> = info.printer_columns.clone();
        match (info.group.as_str(), info.kind.as_str()) {
            _ if info.custom => {
                for c in &custom {
                    let mut col = column(
                        c.get("name").and_then(Value::as_str).unwrap_or("?"),
                        c.get("type").and_then(Value::as_str).unwrap_or("string"),
                    );
                    col["priority"] = c.get("priority").cloned().unwrap_or(json!(0));
                    if let Some(d) = c.get("description") {
                        col["description"] = d.clone();
                    }
                    cols.push(col);
                }
            }
            ("", "Pod") => {
                cols.extend([
                    column("Ready", "string"),
                    column("Status", "string"),
                    column("Restarts", "integer"),
                ]);
            }
            ("batch", "Job") => {
                cols.extend([column("Status", "string"), column("Completions", "string")])
            }
            ("", "Node") => cols.extend([column("Status", "string"), column("Roles", "string")]),
            _ => {}
        }
        let custom_has_age = custom.iter().any(|c| {
            c.get("jsonPath").and_then(Value::as_str) == Some(".metadata.creationTimestamp")
        });
        if !custom_has_age {
            cols.push(column("Age", "date"));
        }
        let rows: Vec<Value> = objs
            .iter()
            .map(|o| {
                let mut cells = vec![json!(meta(o, "name"))];
                if info.custom {
                    for c in &custom {
                        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
                        let path = c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        cells.push(cell(json_path(o, path).first().copied(), ty, now));
                    }
                } else if info.kind == "Pod" && info.group.is_empty() {
                    cells.extend(pod_cells(o));
                } else if info.kind == "Job" && info.group == "batch" {
                    cells.extend(job_cells(o));
                } else if info.kind == "Node" && info.group.is_empty() {
                    cells.extend(node_cells(o));
                }
                if !custom_has_age {
                    cells.push(cell(o.pointer("/metadata/creationTimestamp"), "date", now));
                }
                row(info, o, cells, include)
            })
            .collect();
        table_of(cols, rows, rv)
    }

    /// Events (either API; stored alike) print as `kubectl get events` shows them.
    fn event_table(
        &self,
        info: &ResourceInfo,
        objs: &[Arc<Value>],
        include: &str,
        rv: Option<u64>,
        now: i64,
    ) -> Value {
        let rows = objs
            .iter()
            .map(|o| row(info, o, crate::events::cells(o, now), include))
            .collect();
        table_of(crate::events::columns(), rows, rv)
    }
}

/// One table row: its cells and the object as `include` asks.
fn row(info: &ResourceInfo, o: &Value, cells: Vec<Value>, include: &str) -> Value {
    let object = match include {
        "None" => Value::Null,
        "Object" => present(info, o),
        _ => partial_metadata(o),
    };
    json!({"cells": cells, "object": object})
}

fn table_of(cols: Vec<Value>, rows: Vec<Value>, rv: Option<u64>) -> Value {
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows});
    if let Some(rv) = rv {
        t["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_shows_the_container_reason_as_kubectl_does() {
        let pod = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"ready": false, "restartCount": 2, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(
            pod_cells(&pod),
            vec![json!("0/1"), json!("Completed"), json!(2)]
        );
        let node = json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(node_cells(&node), vec![json!("Ready"), json!("worker")]);
    }

    #[test]
    fn json_path_handles_fields_indexes_and_filters() {
        let o = json!({"spec": {"size": 3}, "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&o, ".spec.size"), vec![&json!(3)]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            vec![&json!("A")]
        );
        assert!(json_path(&o, ".missing.x").is_empty());
        assert!(json_path(&o, ".status.conditions[oops").is_empty());
    }
}
