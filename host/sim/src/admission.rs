//! Admission webhooks: finds the Mutating and Validating webhook
//! configurations whose rules, namespaceSelector and objectSelector match a
//! write, sends each an AdmissionReview v1 and applies its verdict and
//! JSONPatch, honouring failurePolicy and timeoutSeconds.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::handler::Call;
use crate::read::meta;
use crate::selectors::LabelSelector;
use crate::sim::Sim;

const MUTATING: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
const VALIDATING: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";

fn has(list: Option<&Value>, want: &str) -> bool {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|x| x == "*" || x == want)
}

fn rule_matches(rule: &Value, call: &Call, op: &str) -> bool {
    let res = match &call.sub {
        Some(s) => format!("{}/{s}", call.info.resource),
        None => call.info.resource.clone(),
    };
    let resource_ok = rule
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| {
            r == res
                || (r == "*" && call.sub.is_none())
                || r == "*/*"
                || call.sub.as_ref().is_some_and(|s| r == format!("*/{s}"))
        });
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => call.info.namespaced,
        "Cluster" => !call.info.namespaced,
        _ => true,
    };
    has(rule.get("operations"), op)
        && has(rule.get("apiGroups"), &call.info.group)
        && has(rule.get("apiVersions"), &call.info.version)
        && resource_ok
        && scope_ok
}

/// A webhook failure in a real server's words.
fn call_failed(name: &str, why: &str) -> ApiError {
    ApiError::internal(format!(
        "Internal error occurred: failed calling webhook \"{name}\": failed to call webhook: {why}"
    ))
}

impl Sim {
    fn webhooks(&self, res: &str) -> Vec<Value> {
        let state = self.lock();
        state
            .list(res, None)
            .flat_map(|c| {
                c.get("webhooks")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    fn selected(&self, hook: &Value, call: &Call, obj: &Value) -> Result<bool, ApiError> {
        if let Some(sel) = hook.get("objectSelector")
            && !LabelSelector::from_object(sel)?.matches(obj)
        {
            return Ok(false);
        }
        if let Some(sel) = hook.get("namespaceSelector") {
            let ns_obj = if call.info.namespaced {
                self.lock().get("/namespaces", "", &call.ns)
            } else if call.info.resource == "namespaces" && call.info.group.is_empty() {
                Some(std::sync::Arc::new(obj.clone()))
            } else {
                None
            };
            if let Some(ns) = ns_obj
                && !LabelSelector::from_object(sel)?.matches(&ns)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs mutating then validating webhooks; returns the (possibly mutated) object.
    pub(crate) async fn admit(
        &self,
        call: &Call,
        op: &str,
        mut obj: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        if call.info.group == "admissionregistration.k8s.io" {
            return Ok(obj);
        }
        for (res, mutating) in [(MUTATING, true), (VALIDATING, false)] {
            for hook in self.webhooks(res) {
                let rules_match = hook
                    .get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|r| rule_matches(r, call, op));
                let subject = if op == "DELETE" {
                    old.unwrap_or(&obj)
                } else {
                    &obj
                };
                if !rules_match || !self.selected(&hook, call, subject)? {
                    continue;
                }
                let name = hook
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("webhook")
                    .to_string();
                let fail_open = hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
                let review = self.review(call, op, &obj, old);
                let timeout = Duration::from_secs(
                    hook.get("timeoutSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(10)
                        .clamp(1, 30),
                );
                let answer = match self.local_webhook(&hook) {
                    Some(handler) => Ok(handler(&review)),
                    None => {
                        match tokio::time::timeout(timeout, post_review(&hook, &review)).await {
                            Ok(r) => r,
                            Err(_) => Err("context deadline exceeded".to_string()),
                        }
                    }
                };
                let response = match answer {
                    Ok(r) => r,
                    Err(why) if fail_open => {
                        tracing::warn!(webhook = %name, %why, "webhook failed; ignored by its failurePolicy");
                        continue;
                    }
                    Err(why) => return Err(call_failed(&name, &why)),
                };
                let resp = &response["response"];
                if resp.get("allowed").and_then(Value::as_bool) != Some(true) {
                    let status = resp.get("status").cloned().unwrap_or_default();
                    let msg = status
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let code = status.get("code").and_then(Value::as_u64).unwrap_or(400) as u16;
                    let text = if msg.is_empty() {
                        format!(
                            "admission webhook \"{name}\" denied the request without explanation"
                        )
                    } else {
                        format!("admission webhook \"{name}\" denied the request: {msg}")
                    };
                    // As kube-apiserver: the webhook's own Status goes back
                    // with its reason and details (kubectl prints the
                    // causes of an Invalid one), only its message prefixed.
                    let reason = match status.get("reason").and_then(Value::as_str) {
                        Some("Invalid") => "Invalid",
                        Some("Forbidden") => "Forbidden",
                        Some("Conflict") => "Conflict",
                        Some("BadRequest") => "BadRequest",
                        Some("NotFound") => "NotFound",
                        Some("AlreadyExists") => "AlreadyExists",
                        _ => match code {
                            403 => "Forbidden",
                            422 => "Invalid",
                            409 => "Conflict",
                            _ => "BadRequest",
                        },
                    };
                    let mut error = ApiError::new(code, reason, text);
                    error.details = status.get("details").filter(|d| d.is_object()).cloned();
                    return Err(error);
                }
                if mutating && let Some(p) = resp.get("patch").and_then(Value::as_str) {
                    let raw = STANDARD
                        .decode(p)
                        .map_err(|e| call_failed(&name, &format!("invalid patch encoding: {e}")))?;
                    let patch: Value = serde_json::from_slice(&raw)
                        .map_err(|e| call_failed(&name, &format!("invalid patch: {e}")))?;
                    obj = crate::patch::json::json_patch(&obj, &patch)
                        .map_err(|e| call_failed(&name, &e.message))?;
                }
            }
        }
        Ok(obj)
    }

    /// The in-process handler of a webhook's `clientConfig.url`, if any.
    fn local_webhook(&self, hook: &Value) -> Option<crate::sim::LocalWebhook> {
        let url = hook.pointer("/clientConfig/url").and_then(Value::as_str)?;
        self.shared.local_webhooks.lock().ok()?.get(url).cloned()
    }

    fn review(&self, call: &Call, op: &str, obj: &Value, old: Option<&Value>) -> Value {
        let uid = self.lock().next_uid();
        let i = &call.info;
        let mut req = json!({
            "uid": uid,
            "kind": {"group": i.group, "version": i.version, "kind": i.kind},
            "resource": {"group": i.group, "version": i.version, "resource": i.resource},
            "requestKind": {"group": i.group, "version": i.version, "kind": i.kind},
            "requestResource": {"group": i.group, "version": i.version, "resource": i.resource},
            "name": meta(obj, "name"),
            "operation": op,
            "userInfo": {"username": call.user.name, "groups": call.user.groups},
            "object": if op == "DELETE" { Value::Null } else { obj.clone() },
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": call.dry_run(),
        });
        if call.info.namespaced {
            req["namespace"] = json!(call.ns);
        }
        if let Some(s) = &call.sub {
            req["subResource"] = json!(s);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
    }
}

async fn post_review(hook: &Value, review: &Value) -> Result<Value, String> {
    let cc = hook.get("clientConfig").cloned().unwrap_or_default();
    let url = cc
        .get("url")
        .and_then(Value::as_str)
        .ok_or("the simulator calls webhooks by clientConfig.url only (no service network)")?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid url {url:?}: {e}"))?;
    if uri.scheme_str() == Some("https") {
        return crate::tls::post_https(&uri, cc.get("caBundle").and_then(Value::as_str), review)
            .await;
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let req = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("Post {url:?}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the server responded with {status}"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the response is not an AdmissionReview: {e}"))
}
