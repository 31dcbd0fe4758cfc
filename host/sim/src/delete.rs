//! The delete and deletecollection verbs: DeleteOptions (propagation,
//! preconditions, dry run), namespaces taking their contents along, CRDs
//! taking their custom resources and served endpoints along.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::gc::{self, Propagation};
use crate::handler::Call;
use crate::read::{Filters, meta, present};
use crate::registry::ResourceInfo;
use crate::request::ApiResponse;
use crate::sim::Sim;
use crate::store::{ObjKey, State};

/// What a DeleteOptions body and the query say.
struct Options {
    policy: Option<Propagation>,
    grace: Option<i64>,
    uid: Option<String>,
    rv: Option<String>,
}

fn options(call: &Call) -> Result<Options, ApiError> {
    let body: Value = if call.req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&call.req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let policy_str = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| call.req.param("propagationPolicy").map(String::from));
    let mut policy = match policy_str.as_deref() {
        None | Some("") => None,
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Background") => Some(Propagation::Background),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[(
                    "propagationPolicy".into(),
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                )],
            ));
        }
    };
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| call.req.param("orphanDependents").map(|v| v == "true"));
    if let Some(o) = orphan {
        if policy.is_some() {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[(
                    "propagationPolicy".into(),
                    "Invalid value: orphanDependents and propagationPolicy cannot both be set"
                        .into(),
                )],
            ));
        }
        policy = Some(if o {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
    }
    let pre = body.get("preconditions");
    let s = |f: &str| {
        pre.and_then(|p| p.get(f))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let grace = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            call.req
                .param("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
        });
    Ok(Options {
        policy,
        grace,
        uid: s("uid"),
        rv: s("resourceVersion"),
    })
}

impl Sim {
    pub(crate) async fn delete(&self, call: Call) -> Result<ApiResponse, ApiError> {
        let opts = options(&call)?;
        let key = ObjKey {
            res: Arc::from(call.info.store_key().as_str()),
            namespace: call.ns.clone(),
            name: call.name.clone(),
        };
        let current = self.lock().get_key(&key).ok_or_else(|| {
            ApiError::not_found(&call.info.group, &call.info.resource, &call.name)
        })?;
        let precondition = |field: &str, want: &Option<String>, got: &str| match want {
            Some(w) if w != got => Err(ApiError::conflict(
                &call.info.group,
                &call.info.resource,
                &call.name,
                &format!(
                    "Precondition failed: {field} in precondition: {w}, {field} in object meta: {got}"
                ),
            )),
            _ => Ok(()),
        };
        precondition("UID", &opts.uid, meta(&current, "uid"))?;
        precondition(
            "ResourceVersion",
            &opts.rv,
            meta(&current, "resourceVersion"),
        )?;
        let shown = present(&call.info, &current);
        self.admit(&call, "DELETE", shown.clone(), Some(&shown))
            .await?;
        if call.dry_run() {
            return Ok(ApiResponse::ok(shown));
        }
        let policy = opts.policy.unwrap_or_else(|| gc::default_policy(&key.res));
        let now = self.clock().now_rfc3339();
        if let Some(grace) = self.graceful_pod(&call, &current, opts.grace) {
            return self.terminate_pod(&call, &key, grace);
        }
        let mut state = self.lock();
        if call.info.resource == "namespaces" && call.info.group.is_empty() {
            empty_namespace(&mut state, &call.name, &now);
            if state.namespace_in_use(&call.name) {
                let mut ns = (*current).clone();
                ns["metadata"]["deletionTimestamp"] = json!(now);
                ns["status"] = json!({"phase": "Terminating"});
                let stored = state.put(&key.res, ns);
                gc::run(&mut state, &now);
                let rv = state.rv;
                drop(state);
                self.notify(rv);
                return Ok(ApiResponse::json(202, present(&call.info, &stored)));
            }
        }
        let (last, gone) = gc::delete_object(&mut state, &key, policy, &now).ok_or_else(|| {
            ApiError::not_found(&call.info.group, &call.info.resource, &call.name)
        })?;
        if gone {
            self.after_delete(&mut state, &call.info, &last);
        }
        gc::run(&mut state, &now);
        let rv = state.rv;
        drop(state);
        self.notify(rv);
        Ok(ApiResponse::json(
            if gone { 200 } else { 202 },
            present(&call.info, &last),
        ))
    }

    pub(crate) async fn delete_collection(&self, call: Call) -> Result<ApiResponse, ApiError> {
        let filters = Filters::from_call(&call)?;
        let opts = options(&call)?;
        let policy = opts
            .policy
            .unwrap_or_else(|| gc::default_policy(&call.info.store_key()));
        let now = self.clock().now_rfc3339();
        let ns = (!call.ns.is_empty()).then_some(call.ns.as_str());
        let mut state = self.lock();
        let keys: Vec<ObjKey> = state
            .list(&call.info.store_key(), ns)
            .filter(|o| filters.matches(o))
            .map(|o| ObjKey {
                res: Arc::from(call.info.store_key().as_str()),
                namespace: meta(o, "namespace").to_string(),
                name: meta(o, "name").to_string(),
            })
            .collect();
        let mut items = Vec::new();
        for k in keys {
            if let Some((last, gone)) = gc::delete_object(&mut state, &k, policy, &now) {
                if gone {
                    self.after_delete(&mut state, &call.info, &last);
                }
                items.push(present(&call.info, &last));
            }
        }
        gc::run(&mut state, &now);
        let rv = state.rv;
        drop(state);
        self.notify(rv);
        Ok(ApiResponse::ok(json!({
            "apiVersion": call.info.api_version(), "kind": call.info.list_kind,
            "metadata": {"resourceVersion": rv.to_string()}, "items": items,
        })))
    }

    /// The grace period a pod deletion waits for its kubelet, when graceful
    /// deletion is on and the pod is bound and still running.
    fn graceful_pod(&self, call: &Call, pod: &Value, grace: Option<i64>) -> Option<i64> {
        if !self.shared.config.graceful_pod_deletion
            || call.info.kind != "Pod"
            || !call.info.group.is_empty()
        {
            return None;
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !bound || matches!(phase, "Succeeded" | "Failed") {
            return None;
        }
        let grace = grace
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        (grace > 0).then_some(grace)
    }

    /// Marks a pod terminating: its kubelet finishes it, then deletes it with grace 0.
    fn terminate_pod(
        &self,
        call: &Call,
        key: &ObjKey,
        grace: i64,
    ) -> Result<ApiResponse, ApiError> {
        let mut state = self.lock();
        let current = state.get_key(key).ok_or_else(|| {
            ApiError::not_found(&call.info.group, &call.info.resource, &call.name)
        })?;
        let at = crate::clock::format_rfc3339(self.clock().now_secs() + grace);
        let earlier = current
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .is_none_or(|t| at.as_str() < t);
        if !earlier {
            return Ok(ApiResponse::ok(present(&call.info, &current)));
        }
        let mut pod = (*current).clone();
        pod["metadata"]["deletionTimestamp"] = json!(at);
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let stored = state.put(&key.res, pod);
        let rv = state.rv;
        drop(state);
        self.notify(rv);
        Ok(ApiResponse::ok(present(&call.info, &stored)))
    }

    /// Side effects of an object going away for good.
    pub(crate) fn after_delete(&self, state: &mut State, info: &ResourceInfo, obj: &Value) {
        if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
            crate::crd::unregister(state, obj);
        }
    }
}

/// Deletes everything in a namespace (it is being deleted).
fn empty_namespace(state: &mut State, ns: &str, now: &str) {
    for res in state.resource_keys() {
        let keys: Vec<ObjKey> = state
            .list(&res, Some(ns))
            .map(|o| ObjKey {
                res: res.clone(),
                namespace: ns.to_string(),
                name: meta(o, "name").to_string(),
            })
            .collect();
        for k in keys {
            gc::delete_object(state, &k, Propagation::Background, now);
        }
    }
}
