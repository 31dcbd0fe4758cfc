//! OpenAPI v3: an index of group versions and, per group version, a document
//! whose PATCH operations carry `x-kubernetes-group-version-kind` and a
//! `fieldValidation` parameter, which is what tells kubectl to leave field
//! validation to the server. Custom resources include their schema.
//!
//! OpenAPI v2: a document with no definitions. kubectl reads it (as
//! protobuf) only to validate what the v3 documents do not describe, such
//! as a `kind: List` of objects; with no definitions it validates nothing
//! there and leaves each item to the server, which checks it as it would
//! any object.

use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::sim::Sim;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let g = if group.is_empty() {
        "core".to_string()
    } else {
        group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{g}.{version}.{kind}")
}

/// The v2 document's title and version.
const V2_TITLE: &str = "Kubernetes";
const V2_VERSION: &str = "v1.35.0";

/// The v2 document as `application/com.github.proto-openapi.spec.v2.v1.0+protobuf`
/// (gnostic's `openapi_v2.Document`: `swagger` is field 1, `info` field 2;
/// `Info`'s `title` field 1, `version` field 2).
pub(crate) fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, V2_TITLE.as_bytes());
    field(&mut info, 2, V2_VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

/// The same v2 document as JSON.
pub(crate) fn openapi_v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": V2_TITLE, "version": V2_VERSION},
        "paths": {},
        "definitions": {}
    })
}

impl Sim {
    pub(crate) fn openapi_index(&self) -> Value {
        let state = self.lock();
        let hash = format!("{:016x}", state.registry.generation);
        let mut paths = Map::new();
        for (g, v) in state.registry.group_versions() {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
        json!({"paths": paths})
    }

    pub(crate) fn openapi_doc(&self, group: &str, version: &str) -> Result<Value, ApiError> {
        let infos = self.lock().registry.resources_in(group, version);
        if infos.is_empty() {
            return Err(ApiError::path_not_found());
        }
        let prefix = format!("/{}", gv_path(group, version));
        let mut paths = Map::new();
        let mut schemas = Map::new();
        for i in &infos {
            let gvk = json!({"group": i.group, "version": i.version, "kind": i.kind});
            let name = schema_name(&i.group, &i.version, &i.kind);
            let reference = json!({"$ref": format!("#/components/schemas/{name}")});
            let body = json!({"content": {"application/json": {"schema": reference}}});
            let params = json!([
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
            ]);
            let op = |verb: &str, action: &str| {
                json!({
                    "operationId": format!("{verb}{}", i.kind),
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "requestBody": body,
                    "responses": {"200": body},
                })
            };
            let base = if i.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}", i.resource)
            } else {
                format!("{prefix}/{}", i.resource)
            };
            paths.insert(
                base.clone(),
                json!({"post": op("create", "post"), "get": op("list", "list")}),
            );
            paths.insert(
                format!("{base}/{{name}}"),
                json!({"get": op("read", "get"), "put": op("replace", "put"), "patch": op("patch", "patch"), "delete": op("delete", "delete")}),
            );
            if i.has_status {
                paths.insert(
                    format!("{base}/{{name}}/status"),
                    json!({"patch": op("patchStatus", "patch"), "put": op("replaceStatus", "put")}),
                );
            }
            let mut schema = match &i.schema {
                Some(s) => (**s).clone(),
                None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            };
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props
                    .entry("apiVersion")
                    .or_insert(json!({"type": "string"}));
                props.entry("kind").or_insert(json!({"type": "string"}));
                props.entry("metadata").or_insert(json!({"type": "object"}));
            }
            schema["x-kubernetes-group-version-kind"] = json!([gvk]);
            schemas.insert(name, schema);
        }
        Ok(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.35.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_document_is_swagger_2_0_with_an_info_and_nothing_else() {
        let mut want = vec![0x0a, 3];
        want.extend_from_slice(b"2.0");
        want.extend_from_slice(&[0x12, 21, 0x0a, 10]);
        want.extend_from_slice(b"Kubernetes");
        want.extend_from_slice(&[0x12, 7]);
        want.extend_from_slice(b"v1.35.0");
        assert_eq!(openapi_v2_protobuf(), want);
        assert_eq!(openapi_v2_json()["swagger"], "2.0");
    }
}
