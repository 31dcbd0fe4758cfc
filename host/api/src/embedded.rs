//! Kubernetes objects embedded in a JobSet (the Job template), kept typed
//! while preserving fields that this build's Kubernetes types do not know,
//! so that manifests written for a newer Kubernetes survive a round trip.

use std::ops::{Deref, DerefMut};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Prefix of the message of a deserialisation error raised inside an
/// embedded object; [`crate::parse`] joins the inner path to the outer one.
pub(crate) const INNER_PATH_MARKER: &str = "\u{1}at ";

/// A typed Kubernetes object plus the fields of its input that the typed
/// value does not represent (fields from a newer Kubernetes version).
///
/// It dereferences to the typed value; serialising writes the typed value
/// and then adds back every preserved field the typed value does not set.
#[derive(Clone, Debug, Default)]
pub struct Embedded<T> {
    value: T,
    unknown: Option<Value>,
    /// Fields the typed value always writes (required-with-default fields
    /// of the Kubernetes types) that the input did not have, with the value
    /// written; left out again while the typed value still writes the same.
    added: Vec<(Vec<Seg>, Value)>,
}

/// One step of a path into a JSON value.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl<T> Embedded<T> {
    /// Wraps a typed value with nothing preserved.
    pub fn new(value: T) -> Self {
        Self {
            value,
            unknown: None,
            added: Vec::new(),
        }
    }

    /// The typed value, dropping any preserved fields.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Wraps `value` with the fields `source` preserved, for an object built
    /// from another of the same shape (a Job from a JobSet's Job template:
    /// both have `metadata` and `spec`), so that fields from a newer
    /// Kubernetes in the template reach the object built from it.
    pub fn with_preserved_from<U>(value: T, source: &Embedded<U>) -> Self {
        Self {
            value,
            unknown: source.unknown.clone(),
            added: Vec::new(),
        }
    }
}

impl<T: Serialize> Embedded<T> {
    /// Dotted paths (relative to this object) of the preserved fields that
    /// the typed value does not know, e.g. `spec.template.spec.schedulingGroup`.
    pub fn unknown_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(u), Ok(typed)) = (&self.unknown, serde_json::to_value(&self.value)) {
            unknown_roots(u, &typed, String::new(), &mut out);
        }
        out
    }
}

/// Paths of the keys of the sparse tree `missing` that `typed` lacks
/// entirely (the unknown fields themselves, not their insides), skipping
/// empty values that Go's `omitempty` would drop anyway.
pub(crate) fn unknown_roots(missing: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match missing {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match typed.get(k) {
                    None if !is_empty_value(v) => out.push(p),
                    None => {}
                    Some(t) => unknown_roots(v, t, p, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if let Some(t) = typed.get(i) {
                    unknown_roots(v, t, format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Equal when the typed values and the preserved unknown fields are; the
/// record of fields the typed value adds is a detail of serialisation.
impl<T: PartialEq> PartialEq for Embedded<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.unknown == other.unknown
    }
}

impl<T> From<T> for Embedded<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T> Deref for Embedded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Embedded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Serialize> Serialize for Embedded<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.unknown.is_none() && self.added.is_empty() {
            return self.value.serialize(serializer);
        }
        let mut typed = serde_json::to_value(&self.value).map_err(serde::ser::Error::custom)?;
        if let Some(u) = &self.unknown {
            overlay(&mut typed, u);
        }
        for (path, v) in &self.added {
            retract(&mut typed, path, v);
        }
        typed.serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned + Serialize> Deserialize<'de> for Embedded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = Value::deserialize(deserializer)?;
        let value: T = serde_path_to_error::deserialize(&input).map_err(|e| {
            let path = e.path().to_string();
            D::Error::custom(format!("{INNER_PATH_MARKER}{path}: {}", e.inner()))
        })?;
        let typed = serde_json::to_value(&value).map_err(D::Error::custom)?;
        let unknown = vanished(&input, &typed);
        let mut added = Vec::new();
        added_paths(&typed, &input, &mut Vec::new(), &mut added);
        Ok(Self {
            value,
            unknown,
            added,
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Embedded<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Whether a value is what Go's `omitempty` leaves out, so its vanishing
/// on a round trip loses nothing.
pub(crate) fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The parts of `input` that are missing from `output`, as a sparse tree:
/// objects keep only the keys that vanished (or that contain vanished
/// parts), arrays of equal length are compared element by element (an
/// element with nothing missing becomes `null`).
pub(crate) fn vanished(input: &Value, output: &Value) -> Option<Value> {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            let mut missing = Map::new();
            for (k, iv) in i {
                match o.get(k) {
                    None => {
                        missing.insert(k.clone(), iv.clone());
                    }
                    Some(ov) => {
                        if let Some(m) = vanished(iv, ov) {
                            missing.insert(k.clone(), m);
                        }
                    }
                }
            }
            (!missing.is_empty()).then_some(Value::Object(missing))
        }
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => {
            let parts: Vec<Value> = i
                .iter()
                .zip(o)
                .map(|(iv, ov)| vanished(iv, ov).unwrap_or(Value::Null))
                .collect();
            parts
                .iter()
                .any(|p| !p.is_null())
                .then_some(Value::Array(parts))
        }
        _ => None,
    }
}

/// Whole keys present in `typed` but absent from `input`, with their values.
fn added_paths(
    typed: &Value,
    input: &Value,
    path: &mut Vec<Seg>,
    out: &mut Vec<(Vec<Seg>, Value)>,
) {
    match (typed, input) {
        (Value::Object(t), Value::Object(i)) => {
            for (k, tv) in t {
                path.push(Seg::Key(k.clone()));
                match i.get(k) {
                    None => out.push((path.clone(), tv.clone())),
                    Some(iv) => added_paths(tv, iv, path, out),
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(i)) if t.len() == i.len() => {
            for (n, (tv, iv)) in t.iter().zip(i).enumerate() {
                path.push(Seg::Index(n));
                added_paths(tv, iv, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Removes the key at `path` if it still holds `value`.
fn retract(target: &mut Value, path: &[Seg], value: &Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => node.get_mut(k.as_str()),
            Seg::Index(i) => node.get_mut(*i),
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Value::Object(m)) = (last, node)
        && m.get(k) == Some(value)
    {
        m.remove(k);
    }
}

/// Adds the preserved fields of `extra` to `target` where `target` does not
/// already set them.
fn overlay(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, ev) in e {
                match t.get_mut(k) {
                    Some(tv) => overlay(tv, ev),
                    None => {
                        t.insert(k.clone(), ev.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(e)) => {
            for (tv, ev) in t.iter_mut().zip(e) {
                overlay(tv, ev);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default, Clone)]
    struct Small {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        a: Option<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<Small>,
    }

    #[test]
    fn fields_unknown_to_the_typed_value_survive_a_round_trip() {
        let input = json!({"a": 1, "newField": {"x": 1}, "items": [{"a": 2}, {"a": 3, "z": true}]});
        let e: Embedded<Small> = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(e.a, Some(1));
        assert_eq!(serde_json::to_value(&e).unwrap(), input);
        assert_eq!(e.unknown_fields(), vec!["items[1].z", "newField"]);
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default, Clone)]
    struct Required {
        #[serde(default)]
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        a: Option<i32>,
    }

    #[test]
    fn fields_the_typed_value_adds_are_left_out_again() {
        let mut e: Embedded<Required> = serde_json::from_value(json!({"a": 1})).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"a": 1}));
        e.status = "True".into();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"a": 1, "status": "True"})
        );
    }

    #[test]
    fn equality_ignores_how_the_value_was_read() {
        let parsed: Embedded<Required> = serde_json::from_value(json!({"a": 1})).unwrap();
        let built = Embedded::new(Required {
            status: String::new(),
            a: Some(1),
        });
        assert_eq!(parsed, built);
        let other: Embedded<Required> = serde_json::from_value(json!({"a": 1, "x": 2})).unwrap();
        assert_ne!(parsed, other);
    }

    #[test]
    fn typed_changes_win_over_preserved_fields() {
        let mut e: Embedded<Small> = serde_json::from_value(json!({"a": 1, "b": 2})).unwrap();
        e.a = Some(5);
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"a": 5, "b": 2}));
    }

    #[test]
    fn an_object_built_from_another_carries_its_preserved_fields() {
        let template: Embedded<Small> =
            serde_json::from_value(json!({"a": 1, "items": [{"a": 2, "group": "g"}]})).unwrap();
        let built = Embedded::with_preserved_from(
            Small {
                a: Some(7),
                items: vec![Small {
                    a: Some(2),
                    items: vec![],
                }],
            },
            &template,
        );
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            json!({"a": 7, "items": [{"a": 2, "group": "g"}]})
        );
        let plain =
            Embedded::with_preserved_from(Small::default(), &Embedded::new(Small::default()));
        assert_eq!(serde_json::to_value(&plain).unwrap(), json!({}));
    }

    #[test]
    fn a_wrong_type_inside_reports_the_inner_path() {
        let err = serde_json::from_value::<Embedded<Small>>(json!({"items": [{"a": "x"}]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0].a"), "{err}");
    }
}
