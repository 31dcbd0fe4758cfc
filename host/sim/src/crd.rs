//! CustomResourceDefinitions: registering their served versions as resources,
//! and the structural schema work on custom resources (defaults, pruning of
//! unknown fields, type checks).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::read::meta;
use crate::registry::ResourceInfo;
use crate::store::{ObjKey, State};

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: &Value, p: &str) -> Vec<String> {
    v.pointer(p)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

/// The resources a CRD serves, one per served version.
pub fn infos_of(crd: &Value) -> Vec<ResourceInfo> {
    let group = s(crd, "/spec/group").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    let kind = s(crd, "/spec/names/kind").to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| s(v, "/name").to_string())
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| ResourceInfo {
            group: group.clone(),
            version: s(v, "/name").to_string(),
            resource: plural.clone(),
            singular: {
                let sg = s(crd, "/spec/names/singular");
                if sg.is_empty() {
                    kind.to_lowercase()
                } else {
                    sg.to_string()
                }
            },
            kind: kind.clone(),
            list_kind: {
                let lk = s(crd, "/spec/names/listKind");
                if lk.is_empty() {
                    format!("{kind}List")
                } else {
                    lk.to_string()
                }
            },
            namespaced: s(crd, "/spec/scope") != "Cluster",
            short_names: strings(crd, "/spec/names/shortNames"),
            categories: strings(crd, "/spec/names/categories"),
            has_status: v.pointer("/subresources/status").is_some(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            custom: true,
            storage_version: storage.clone(),
            storage_group: group.clone(),
        })
        .collect()
}

/// Serves (or re-serves) the resources of a stored CRD.
pub fn register(state: &mut State, crd: &Value) {
    let group = s(crd, "/spec/group").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    state.registry.remove(&group, &plural);
    for info in infos_of(crd) {
        state.registry.insert(info);
    }
}

/// Stops serving a deleted CRD's resources and drops its objects.
pub fn unregister(state: &mut State, crd: &Value) {
    let group = s(crd, "/spec/group").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    let res = format!("{group}/{plural}");
    let keys: Vec<ObjKey> = state
        .list(&res, None)
        .map(|o| ObjKey {
            res: Arc::from(res.as_str()),
            namespace: meta(o, "namespace").to_string(),
            name: meta(o, "name").to_string(),
        })
        .collect();
    for k in keys {
        state.remove(&k);
    }
    state.registry.remove(&group, &plural);
}

/// Applies schema defaults, prunes unknown fields and checks types. Returns
/// the pruned fields' paths (for `fieldValidation`).
pub fn apply_schema(
    info: &ResourceInfo,
    schema: &Value,
    obj: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let mut f = Findings::default();
    if let Some(m) = obj.as_object_mut() {
        let props = schema.get("properties");
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(sub) => {
                    if let Some(v) = m.get_mut(&k) {
                        walk(v, sub, &k, &mut f);
                    }
                }
                None if preserves(schema) => {}
                None => {
                    m.remove(&k);
                    f.unknown.push(k);
                }
            }
        }
        if let Some(p) = props.and_then(Value::as_object) {
            for (k, sub) in p {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if !m.contains_key(k)
                    && let Some(d) = sub.get("default")
                {
                    let mut d = d.clone();
                    walk(&mut d, sub, k, &mut Findings::default());
                    m.insert(k.clone(), d);
                }
            }
        }
        required(schema, m, "", &mut f.errors);
    }
    // As kube-apiserver: schema errors, then list invariants, then the
    // CEL rules, which a type or enum error keeps from running (and says
    // so, when the schema has rules).
    let mut errors = f.errors;
    errors.extend(f.lists);
    if f.blocking {
        if f.has_rules {
            errors.push((
                "<nil>".to_string(),
                "Invalid value: null: some validation rules were not checked because the \
                 object was invalid; correct the existing errors to complete validation"
                    .to_string(),
            ));
        }
    } else {
        errors.extend(f.rules);
    }
    if errors.is_empty() {
        Ok(f.unknown)
    } else {
        Err(ApiError::invalid(
            &info.group,
            &info.kind,
            meta(obj, "name"),
            &errors,
        ))
    }
}

/// What a walk over an object finds, kept apart as kube-apiserver orders
/// and gates them.
#[derive(Default)]
struct Findings {
    /// Fields pruned.
    unknown: Vec<String>,
    /// Schema errors (types, enums, bounds, required).
    errors: Vec<(String, String)>,
    /// A type or enum error: the CEL rules are not run.
    blocking: bool,
    /// `x-kubernetes-list-type` map and set invariants broken.
    lists: Vec<(String, String)>,
    /// `x-kubernetes-validations` rules broken.
    rules: Vec<(String, String)>,
    /// Whether the schema walked had any rule.
    has_rules: bool,
}

/// The CEL rules of the CRDs this simulator knows (JobSet's), evaluated
/// as Rust: whether `v` passes `rule`, or none for a rule it does not
/// know (not checked) or a transition rule (`oldSelf`; updates are
/// checked elsewhere).
fn known_rule(rule: &str, v: &Value) -> Option<bool> {
    match rule {
        "!(has(self.startupPolicy) && self.startupPolicy.startupPolicyOrder == 'InOrder' && has(self.replicatedJobs) && self.replicatedJobs.exists(x, has(x.dependsOn)))" =>
        {
            let in_order = v.pointer("/startupPolicy/startupPolicyOrder")
                == Some(&Value::String("InOrder".into()));
            let depends = v
                .get("replicatedJobs")
                .and_then(Value::as_array)
                .is_some_and(|rjs| rjs.iter().any(|r| r.get("dependsOn").is_some()));
            Some(!(in_order && depends))
        }
        "!has(self.metadata) || !has(self.metadata.namespace) || self.metadata.namespace == ''" => {
            Some(
                v.pointer("/metadata/namespace")
                    .is_none_or(|ns| ns == &Value::String(String::new())),
            )
        }
        _ => None,
    }
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn required(
    schema: &Value,
    m: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<(String, String)>,
) {
    for r in strings(schema, "/required") {
        if !m.contains_key(&r) {
            let f = if path.is_empty() {
                r
            } else {
                format!("{path}.{r}")
            };
            errors.push((f, "Required value".into()));
        }
    }
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn walk(v: &mut Value, schema: &Value, path: &str, f: &mut Findings) {
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        f.has_rules = true;
        for r in rules {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            if known_rule(rule, v) == Some(false) {
                let message = r
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("failed rule: {rule}"));
                f.rules
                    .push((path.into(), format!("Invalid value: {message}")));
            }
        }
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            f.blocking = true;
            f.errors.push((
                path.into(),
                format!("Invalid value: {v}: must be an integer or a string"),
            ));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(v, t)
    {
        let got = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        f.blocking = true;
        f.errors.push((
            path.into(),
            format!("Invalid value: \"{got}\": {path} in body must be of type {t}: \"{got}\""),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        f.blocking = true;
        f.errors.push((
            path.into(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    if let Some(n) = v.as_f64() {
        for (bound, words, broken) in [
            (
                "minimum",
                "greater",
                n < schema
                    .get("minimum")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::MIN),
            ),
            (
                "maximum",
                "less",
                n > schema
                    .get("maximum")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::MAX),
            ),
        ] {
            // Go prints the bound as a float64: 0, not 0.0.
            if broken && let Some(limit) = schema.get(bound).and_then(Value::as_f64) {
                f.errors.push((
                    path.into(),
                    format!(
                        "Invalid value: {v}: {path} in body should be {words} than or equal to {limit}"
                    ),
                ));
            }
        }
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child = format!("{path}.{k}");
                let sub = props.and_then(|p| p.get(&k)).or(extra);
                match sub {
                    Some(sub) => {
                        if let Some(cv) = m.get_mut(&k) {
                            walk(cv, sub, &child, f);
                        }
                    }
                    None if preserves(schema)
                        || (embedded
                            && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")) => {}
                    None => {
                        m.remove(&k);
                        f.unknown.push(child);
                    }
                }
            }
            if let Some(p) = props {
                for (k, sub) in p {
                    if !m.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        let mut d = d.clone();
                        walk(
                            &mut d,
                            sub,
                            &format!("{path}.{k}"),
                            &mut Findings::default(),
                        );
                        m.insert(k.clone(), d);
                    }
                }
            }
            required(schema, m, path, &mut f.errors);
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, is, &format!("{path}[{i}]"), f);
                }
            }
            list_invariants(items, schema, path, &mut f.lists);
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: map` (no two items with the same keys) and
/// `set` (no two equal items), in kube-apiserver's words.
fn list_invariants(items: &[Value], schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = strings(schema, "/x-kubernetes-list-map-keys");
    let mut seen: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let identity = match list_type {
            Some("map") => Value::Object(
                keys.iter()
                    .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            ),
            Some("set") => item.clone(),
            _ => return,
        };
        if seen.contains(&identity) {
            out.push((
                format!("{path}[{i}]"),
                format!("Duplicate value: {identity}"),
            ));
        } else {
            seen.push(identity);
        }
    }
}

/// A CRD object for tests and examples.
pub fn example_crd(group: &str, kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "additionalPrinterColumns": [
                                   {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                   {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}],
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {
                                       "size": {"type": "integer", "default": 1},
                                       "mode": {"type": "string", "enum": ["fast", "slow"]},
                                       "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                                   "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ResourceInfo {
        infos_of(&example_crd("x.io", "Widget", "widgets")).remove(0)
    }

    #[test]
    fn a_crd_serves_its_versions_with_status_and_columns() {
        let i = info();
        assert_eq!(
            (
                i.resource.as_str(),
                i.kind.as_str(),
                i.namespaced,
                i.has_status
            ),
            ("widgets", "Widget", true, true)
        );
        assert_eq!(i.printer_columns.len(), 2);
        assert_eq!(i.short_names, vec!["wd".to_string()]);
    }

    #[test]
    fn schema_defaults_fill_in_and_unknown_fields_are_pruned() {
        let i = info();
        let schema = i.schema.clone().unwrap();
        let mut o = json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"},
                           "spec": {"bogus": 1, "extra": {"kept": true}}, "top": 1});
        let unknown = apply_schema(&i, &schema, &mut o).unwrap();
        assert_eq!(o["spec"]["size"], 1);
        assert_eq!(o["spec"]["extra"]["kept"], true);
        assert!(o.get("top").is_none() && o["spec"].get("bogus").is_none());
        assert_eq!(unknown, vec!["spec.bogus".to_string(), "top".to_string()]);
    }

    #[test]
    fn list_map_duplicates_bounds_and_the_jobset_rules_read_as_kube_apiserver_words_them() {
        let crd: Value =
            serde_yaml::from_str(jobset_api::crd::crd_yaml().as_str()).expect("the CRD");
        let info = infos_of(&crd).remove(0);
        let schema = info.schema.clone().expect("a schema");
        let answer = |spec: Value| {
            let mut o = json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                               "metadata": {"name": "js"}, "spec": spec});
            apply_schema(&info, &schema, &mut o)
                .map(|_| ())
                .map_err(|e| e.message)
        };
        let rj = |name: &str, extra: Value| {
            let mut r = json!({"name": name, "replicas": 1, "template": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}});
            if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
                r.extend(e.clone());
            }
            r
        };
        assert_eq!(
            answer(json!({"replicatedJobs": [rj("workers", json!({})), rj("workers", json!({}))]})),
            Err("JobSet.jobset.x-k8s.io \"js\" is invalid: spec.replicatedJobs[1]: Duplicate value: {\"name\":\"workers\"}".into())
        );
        assert_eq!(
            answer(json!({"replicatedJobs": [rj("workers", json!({"replicas": -1}))]})),
            Err("JobSet.jobset.x-k8s.io \"js\" is invalid: spec.replicatedJobs[0].replicas: Invalid value: -1: spec.replicatedJobs[0].replicas in body should be greater than or equal to 0".into())
        );
        assert_eq!(
            answer(json!({"startupPolicy": {"startupPolicyOrder": "InOrder"},
                          "replicatedJobs": [rj("a", json!({})), rj("b", json!({"dependsOn": [{"name": "a", "status": "Ready"}]}))]})),
            Err("JobSet.jobset.x-k8s.io \"js\" is invalid: spec: Invalid value: StartupPolicy and DependsOn APIs are mutually exclusive".into())
        );
        // An enum error keeps the rules from running, and says so.
        let e = answer(json!({"startupPolicy": {"startupPolicyOrder": "InOrder"},
                              "failurePolicy": {"restartStrategy": "Sometimes"},
                              "replicatedJobs": [rj("a", json!({})), rj("b", json!({"dependsOn": [{"name": "a", "status": "Ready"}]}))]}))
            .unwrap_err();
        assert!(
            e.contains("spec.failurePolicy.restartStrategy: Unsupported value: \"Sometimes\""),
            "{e}"
        );
        assert!(
            e.contains("<nil>: Invalid value: null: some validation rules were not checked"),
            "{e}"
        );
        assert!(!e.contains("mutually exclusive"), "{e}");
        answer(json!({"replicatedJobs": [rj("a", json!({})), rj("b", json!({}))]})).expect("valid");
    }

    #[test]
    fn wrong_types_and_enum_values_are_invalid() {
        let i = info();
        let schema = i.schema.clone().unwrap();
        let mut o = json!({"metadata": {"name": "w"}, "spec": {"size": "big", "mode": "medium"}});
        let e = apply_schema(&i, &schema, &mut o).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.size"), "{}", e.message);
        assert!(e.message.contains("spec.mode"), "{}", e.message);
    }
}
