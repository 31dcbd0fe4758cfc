//! Request bodies of writes: decoding JSON, YAML or protobuf, and checking
//! the object's `apiVersion`, `kind` and namespace against the endpoint.

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::registry::ResourceInfo;
use crate::request::ApiRequest;

/// Parses a request body as JSON or YAML, per its content type.
pub fn decode_body(req: &ApiRequest) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let v: Value = match ct {
        "application/json" | "" => serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?,
        crate::protobuf::PROTOBUF => crate::protobuf::decode(&req.body)?,
        "application/yaml" | "application/apply-patch+yaml" => serde_yaml::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    Ok(v)
}

/// Checks `apiVersion`/`kind` against the endpoint and fills them in.
pub fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            truncate(&obj.to_string())
        )));
    }
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ok_version = av == info.api_version()
        || (info.custom && av.split('/').next() == Some(info.group.as_str()));
    if kind != info.kind || !ok_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            info.api_version()
        ))
        .with_kind_hint(kind, &info.kind));
    }
    obj["apiVersion"] = json!(info.api_version());
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    Ok(())
}

impl ApiError {
    fn with_kind_hint(self, got: &str, want: &str) -> Self {
        if got != want {
            ApiError::bad_request(format!(
                "the kind in the data ({got}) does not match the expected kind ({want})"
            ))
        } else {
            self
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Checks the object's namespace against the request's, filling it in.
pub fn check_namespace(info: &ResourceInfo, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    let m = &mut obj["metadata"];
    if !info.namespaced {
        if let Some(o) = m.as_object_mut() {
            o.remove("namespace");
        }
        return Ok(());
    }
    match m.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            m["namespace"] = json!(ns);
            Ok(())
        }
    }
}
