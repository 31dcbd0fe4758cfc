//! OpenAPI v3: an index of group versions and, per group version, a document
//! whose PATCH operations carry `x-kubernetes-group-version-kind` and a
//! `fieldValidation` parameter, which is what tells kubectl to leave field
//! validation to the server. Custom resources include their schema.

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
