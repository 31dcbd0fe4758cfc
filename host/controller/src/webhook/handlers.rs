//! The JobSet admission handlers: `mutate` answers a CREATE with the
//! defaulting of spec 5.1 as a JSONPatch, `validate` checks a CREATE or an
//! UPDATE and denies with one 422 Status listing every field error. Pure:
//! claims the validation needs are fetched by the server beforehand.

use std::collections::HashMap;

use jobset_api::{FeatureGates, JobSet, ValidationContext, ValidationErrors};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

/// Existing claims by (namespace, name), looked up before validation.
pub type Claims = HashMap<(String, String), PersistentVolumeClaim>;

fn object_value(obj: Option<&DynamicObject>) -> Option<Value> {
    obj.and_then(|o| serde_json::to_value(o).ok())
}

fn parse(value: &Value) -> Result<JobSet, String> {
    jobset_api::parse_jobset_value(value).map_err(|e| e.to_string())
}

fn object_name(req: &AdmissionRequest<DynamicObject>, js: Option<&JobSet>) -> String {
    match js {
        Some(js) => jobset_api::naming::effective_name(js),
        None => req.name.clone(),
    }
}

/// The claims (namespace, name) that validating `js` on CREATE may read.
pub fn claims_to_fetch(js: &JobSet) -> Vec<(String, String)> {
    let ns = js.metadata.namespace.clone().unwrap_or_default();
    let name = jobset_api::naming::effective_name(js);
    js.spec
        .volume_claim_policies
        .iter()
        .flat_map(|p| p.templates.iter())
        .map(|t| t.name())
        .filter(|n| !n.is_empty())
        .map(|claim| (ns.clone(), jobset_api::naming::pvc_name(claim, &name)))
        .collect()
}

/// The JobSet in a request's `object`, if it parses.
pub fn requested_jobset(req: &AdmissionRequest<DynamicObject>) -> Option<JobSet> {
    let mut js = parse(&object_value(req.object.as_ref())?).ok()?;
    if js.metadata.namespace.is_none() {
        js.metadata.namespace = req.namespace.clone();
    }
    Some(js)
}

/// Defaults a JobSet on CREATE. The patch is computed between the typed
/// object before and after defaulting, then anchored on the object as it
/// was sent, so that fields the typed view does not carry are left alone.
pub fn mutate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if req.operation != Operation::Create {
        return allow;
    }
    let Some(original) = object_value(req.object.as_ref()) else {
        return allow;
    };
    // An object that does not parse is left to the validating webhook,
    // which reports why with the field path.
    let Ok(js) = parse(&original) else {
        return allow;
    };
    let mut defaulted = js.clone();
    jobset_api::default_jobset(&mut defaulted);
    let (Ok(before), Ok(after)) = (serde_json::to_value(&js), serde_json::to_value(&defaulted))
    else {
        return allow;
    };
    let ops = anchored_patch(&original, &before, &after);
    if ops.0.is_empty() {
        return allow;
    }
    match allow.clone().with_patch(ops) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not encode the defaulting patch");
            allow
        }
    }
}

/// The operations turning `before` into `after`, rewritten so each applies
/// to `original`: an `add` whose parent `original` lacks becomes an `add`
/// of the nearest missing ancestor with its defaulted value.
fn anchored_patch(original: &Value, before: &Value, after: &Value) -> json_patch::Patch {
    let diff = json_patch::diff(before, after);
    let mut doc = original.clone();
    let mut out = Vec::new();
    for op in diff.0 {
        let single = json_patch::Patch(vec![op.clone()]);
        if json_patch::patch(&mut doc, &single).is_ok() {
            out.push(op);
            continue;
        }
        let path = match &op {
            json_patch::PatchOperation::Add(a) => a.path.to_string(),
            json_patch::PatchOperation::Replace(r) => r.path.to_string(),
            _ => continue,
        };
        if let Some(fix) = add_missing_ancestor(&doc, after, &path) {
            let single = json_patch::Patch(vec![fix.clone()]);
            if json_patch::patch(&mut doc, &single).is_ok() {
                out.push(fix);
            }
        }
    }
    json_patch::Patch(out)
}

fn add_missing_ancestor(
    doc: &Value,
    after: &Value,
    path: &str,
) -> Option<json_patch::PatchOperation> {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for depth in 1..=parts.len() {
        let prefix = format!("/{}", parts[..depth].join("/"));
        if doc.pointer(&prefix).is_none() {
            let parent = format!("/{}", parts[..depth - 1].join("/"));
            let parent_ok = depth == 1 || doc.pointer(&parent).is_some_and(Value::is_object);
            let value = after.pointer(&prefix)?.clone();
            if !parent_ok {
                return None;
            }
            let op: json_patch::PatchOperation = serde_json::from_value(
                serde_json::json!({"op": "add", "path": prefix, "value": value}),
            )
            .ok()?;
            return Some(op);
        }
    }
    None
}

fn deny(req: &AdmissionRequest<DynamicObject>, status: kube::core::Status) -> AdmissionResponse {
    let mut r = AdmissionResponse::from(req).deny(status.message.clone());
    r.result = status;
    r
}

fn invalid(
    req: &AdmissionRequest<DynamicObject>,
    name: &str,
    errs: &ValidationErrors,
) -> AdmissionResponse {
    let status = errs.to_status(name);
    match serde_json::to_value(&status).and_then(serde_json::from_value::<kube::core::Status>) {
        Ok(s) => deny(req, s),
        Err(_) => deny(
            req,
            kube::core::Status::failure(&errs.to_string(), "Invalid").with_code(422),
        ),
    }
}

fn unreadable(req: &AdmissionRequest<DynamicObject>, what: &str, why: &str) -> AdmissionResponse {
    let message = format!(
        "JobSet.jobset.x-k8s.io {:?} is invalid: {what}: {why}",
        req.name
    );
    deny(
        req,
        kube::core::Status::failure(&message, "Invalid").with_code(422),
    )
}

/// Validates a CREATE (spec 5.2) or an UPDATE (spec 5.3). `claims` holds
/// the existing claims named by [`claims_to_fetch`].
pub fn validate(
    req: &AdmissionRequest<DynamicObject>,
    gates: FeatureGates,
    claims: &Claims,
) -> AdmissionResponse {
    let lookup = |ns: &str, name: &str| claims.get(&(ns.to_string(), name.to_string())).cloned();
    let ctx = ValidationContext {
        gates,
        pvcs: &lookup,
    };
    let Some(new_value) = object_value(req.object.as_ref()) else {
        return AdmissionResponse::from(req);
    };
    let mut new = match parse(&new_value) {
        Ok(js) => js,
        Err(why) => return unreadable(req, "object", &why),
    };
    if new.metadata.namespace.is_none() {
        new.metadata.namespace = req.namespace.clone();
    }
    let name = object_name(req, Some(&new));
    let result = match req.operation {
        Operation::Create => jobset_api::validate_create(&new, &ctx),
        Operation::Update => {
            let Some(old_value) = object_value(req.old_object.as_ref()) else {
                return unreadable(req, "oldObject", "missing on an UPDATE");
            };
            let old = match parse(&old_value) {
                Ok(js) => js,
                Err(why) => return unreadable(req, "oldObject", &why),
            };
            jobset_api::validate_update(&old, &new, &ctx)
        }
        _ => Ok(()),
    };
    match result {
        Ok(()) => AdmissionResponse::from(req),
        Err(errs) => invalid(req, &name, &errs),
    }
}

/// The AdmissionReview answering with `response`, as JSON bytes. The patch
/// goes out base64-encoded, the way the API server's Go decoder expects a
/// byte slice.
pub fn encode_review(response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let Some(resp) = review.get_mut("response")
        && let Some(bytes) = resp.get("patch").and_then(Value::as_array)
    {
        let raw: Vec<u8> = bytes
            .iter()
            .filter_map(Value::as_u64)
            .map(|b| b as u8)
            .collect();
        resp["patch"] = Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    serde_json::to_vec(&review).unwrap_or_default()
}

#[cfg(test)]
#[path = "handlers_tests.rs"]
mod tests;
