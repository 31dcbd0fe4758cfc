//! How lists merge: keyed by fields (containers by name, conditions by type,
//! ownerReferences by uid...), as sets (finalizers), or atomically. Built-in
//! kinds use their known list keys; custom resources read
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` from the schema.

use serde_json::Value;

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// A position in a schema while walking an object (None: unknown/unschematised).
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    pub schema: Option<&'a Value>,
    pub builtin: bool,
}

impl<'a> Cursor<'a> {
    pub fn new(schema: Option<&'a Value>, builtin: bool) -> Self {
        Cursor { schema, builtin }
    }

    pub fn field(&self, name: &str) -> Cursor<'a> {
        let s = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Cursor {
            schema: s,
            builtin: self.builtin,
        }
    }

    pub fn items(&self) -> Cursor<'a> {
        Cursor {
            schema: self.schema.and_then(|s| s.get("items")),
            builtin: self.builtin,
        }
    }

    /// The merge behaviour of the list stored under `field`.
    pub fn list_kind(&self, field: &str, path_is_metadata: bool, items: &[Value]) -> ListKind {
        if path_is_metadata {
            return match field {
                "ownerReferences" => ListKind::Map(vec!["uid".into()]),
                "finalizers" => ListKind::Set,
                _ => ListKind::Atomic,
            };
        }
        if let Some(s) = self.schema {
            return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => ListKind::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect(),
                ),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
        }
        if !self.builtin {
            return ListKind::Atomic;
        }
        let key = |k: &str| ListKind::Map(vec![k.to_string()]);
        match field {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "secrets"
            | "readinessGates"
            | "hostAliases" => key("name"),
            "volumeMounts" | "volumeDevices" => key("mountPath"),
            "conditions" => key("type"),
            "ports" => {
                if items.iter().any(|i| i.get("containerPort").is_some()) {
                    key("containerPort")
                } else {
                    key("port")
                }
            }
            "topologySpreadConstraints" => {
                ListKind::Map(vec!["topologyKey".into(), "whenUnsatisfiable".into()])
            }
            "schedulingGates" => key("name"),
            "podFailurePolicy" => ListKind::Atomic,
            _ => ListKind::Atomic,
        }
    }
}

/// Whether `item` has the key fields of `other` with equal values.
pub fn same_key(keys: &[String], a: &Value, b: &Value) -> bool {
    !keys.is_empty() && keys.iter().all(|k| a.get(k) == b.get(k))
}

/// The `k:{...}` element name of a keyed list item.
pub fn key_elem(keys: &[String], item: &Value) -> String {
    let mut m = serde_json::Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_lists_merge_by_their_known_keys() {
        let c = Cursor::new(None, true);
        assert_eq!(
            c.list_kind("containers", false, &[]),
            ListKind::Map(vec!["name".into()])
        );
        assert_eq!(c.list_kind("tolerations", false, &[]), ListKind::Atomic);
        assert_eq!(c.list_kind("finalizers", true, &[]), ListKind::Set);
        assert_eq!(
            c.list_kind("ports", false, &[json!({"port": 80})]),
            ListKind::Map(vec!["port".into()])
        );
    }

    #[test]
    fn custom_resource_lists_follow_the_schema() {
        let schema = json!({"properties": {"jobs": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}, "tags": {"type": "array"}}});
        let c = Cursor::new(Some(&schema), false);
        assert_eq!(
            c.field("jobs").list_kind("jobs", false, &[]),
            ListKind::Map(vec!["name".into()])
        );
        assert_eq!(
            c.field("tags").list_kind("tags", false, &[]),
            ListKind::Atomic
        );
        assert_eq!(
            key_elem(&["name".into()], &json!({"name": "a", "x": 1})),
            "k:{\"name\":\"a\"}"
        );
    }
}
