//! create, update and patch: decode, default, merge with the stored object
//! (status subresource rules), admit, validate, and commit with optimistic
//! concurrency. Patches retry on a concurrent write as a real server does.

use std::sync::Arc;

use serde_json::{Value, json};

pub use crate::body::{check_namespace, check_type, decode_body};
use crate::errors::ApiError;
use crate::handler::Call;
use crate::read::{meta, present_shared};
use crate::registry::ResourceInfo;
use crate::request::ApiResponse;
use crate::sim::Sim;
use crate::validate::validate_object;

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// The object an update produces, given what is stored: the main endpoint
/// keeps the stored status; `/status` keeps everything but the status.
pub fn merge_update(
    info: &ResourceInfo,
    current: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    if sub == Some("status") {
        let mut out = current.clone();
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if out["status"].is_null()
            && let Some(o) = out.as_object_mut()
        {
            o.remove("status");
        }
        if let Some(mf) = new.pointer("/metadata/managedFields") {
            out["metadata"]["managedFields"] = mf.clone();
        }
        return Ok(out);
    }
    if info.has_status {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let cm = &current["metadata"];
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match cm.get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(o) = new["metadata"].as_object_mut() {
                    o.remove(f);
                }
            }
        }
    }
    if info.kind == "Service" && info.group.is_empty() {
        // Allocated addresses survive updates that leave them out.
        for f in ["clusterIP", "clusterIPs"] {
            let unset = new
                .pointer(&format!("/spec/{f}"))
                .is_none_or(|v| v.as_str() == Some("") || v.is_null());
            if let (true, Some(v), Some(spec)) = (
                unset,
                current.pointer(&format!("/spec/{f}")),
                new.get_mut("spec").filter(|s| s.is_object()),
            ) {
                spec[f] = v.clone();
            }
        }
    }
    if spec_part(current) != spec_part(&new) {
        let g = cm.get("generation").and_then(Value::as_i64).unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    if cm.get("deletionTimestamp").is_some() {
        let old: Vec<&Value> = cm
            .get("finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let added = new["metadata"]
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|f| !old.contains(&f));
        if added {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                meta(current, "name"),
                &[(
                    "metadata.finalizers".into(),
                    "Forbidden: no new finalizers can be added if the object is being deleted"
                        .into(),
                )],
            ));
        }
    }
    Ok(new)
}

/// Outcome of one commit attempt.
pub(crate) enum Commit {
    Done(Arc<Value>),
    /// Someone wrote in between; read again and retry.
    Raced,
}

impl Sim {
    /// Defaulting and server-set fields for a new object.
    fn prepare_create(&self, call: &Call, obj: &mut Value) -> Result<(), ApiError> {
        let info = &call.info;
        check_type(info, obj)?;
        check_namespace(info, &call.ns, obj)?;
        let m = &mut obj["metadata"];
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            let prefix = m
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            let n = self.lock().next_uid();
            let suffix: String = n
                .bytes()
                .filter(u8::is_ascii_alphanumeric)
                .rev()
                .take(5)
                .map(|b| {
                    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                    ALPHA[b as usize % ALPHA.len()] as char
                })
                .collect();
            m["name"] = json!(format!("{prefix}{suffix}"));
        }
        let uid = self.lock().next_uid();
        m["uid"] = json!(uid);
        m["creationTimestamp"] = json!(self.clock().now_rfc3339());
        m["generation"] = json!(1);
        if let Some(o) = m.as_object_mut() {
            for f in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                o.remove(f);
            }
        }
        if info.has_status
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        crate::defaults::on_create(info, obj);
        Ok(())
    }

    /// Schema defaults, pruning and strict field validation for custom resources.
    fn structural(&self, call: &Call, obj: &mut Value) -> Result<Vec<String>, ApiError> {
        let mut unknown = crate::known_fields::prune(&call.info, obj);
        if let Some(schema) = call.info.schema.clone() {
            unknown.extend(crate::crd::apply_schema(&call.info, &schema, obj)?);
        }
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        match call.req.param("fieldValidation") {
            Some("Strict") => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    call.info.kind,
                    call.info.api_version(),
                    call.info.kind,
                    list.join(", ")
                )))
            }
            Some("Ignore") => Ok(Vec::new()),
            _ => Ok(unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()),
        }
    }

    pub(crate) async fn create(&self, call: Call) -> Result<ApiResponse, ApiError> {
        let mut obj = decode_body(&call.req)?;
        self.prepare_create(&call, &mut obj)?;
        let warnings = self.structural(&call, &mut obj)?;
        crate::managed::record_update_for(
            &call.info,
            None,
            &mut obj,
            &call.manager(),
            None,
            &self.clock().now_rfc3339(),
        );
        let obj = self.admit(&call, "CREATE", obj, None).await?;
        validate_object(&call.info, &obj, None)?;
        if call.dry_run() {
            return Ok(ApiResponse::json(201, obj));
        }
        let stored = self.commit_create(&call.info, obj)?;
        let mut r = ApiResponse::shared(201, present_shared(&call.info, &stored));
        r.warnings = warnings;
        Ok(r)
    }

    /// Stores a new object (given in `info`'s version), failing if it exists
    /// or its namespace does not.
    pub(crate) fn commit_create(
        &self,
        info: &ResourceInfo,
        obj: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let obj = crate::conversion::to_storage(info, obj);
        let ns = meta(&obj, "namespace").to_string();
        let name = meta(&obj, "name").to_string();
        let mut state = self.lock();
        if info.namespaced {
            match state.get("/namespaces", "", &ns) {
                None => return Err(ApiError::not_found("", "namespaces", &ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            crate::errors::qualified(&info.group, &info.resource)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if state.get(&info.store_key(), &ns, &name).is_some() {
            return Err(ApiError::already_exists(&info.group, &info.resource, &name));
        }
        let stored = state.put(&info.store_key(), obj);
        self.after_write(&mut state, info, &stored);
        // A new dependent is queued by `put`: it may have to follow an owner
        // already in foreground deletion.
        if !state.gc_queue.is_empty() {
            let now = self.clock().now_rfc3339();
            crate::gc::run(&mut state, &now);
        }
        let rv = state.rv;
        drop(state);
        self.notify(rv);
        Ok(stored)
    }

    /// Replaces an object (given in `info`'s version) if it is still at `expected_rv`.
    pub(crate) fn commit_update(
        &self,
        info: &ResourceInfo,
        expected_rv: &str,
        obj: Value,
    ) -> Result<Commit, ApiError> {
        let mut obj = crate::conversion::to_storage(info, obj);
        let ns = meta(&obj, "namespace").to_string();
        let name = meta(&obj, "name").to_string();
        let mut state = self.lock();
        let Some(current) = state.get(&info.store_key(), &ns, &name) else {
            return Err(ApiError::not_found(&info.group, &info.resource, &name));
        };
        if meta(&current, "resourceVersion") != expected_rv {
            return Ok(Commit::Raced);
        }
        obj["metadata"]["resourceVersion"] = json!(expected_rv);
        if obj == *current {
            return Ok(Commit::Done(current));
        }
        let finalizers_empty = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let stored = if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
            let key = crate::store::ObjKey {
                res: Arc::from(info.store_key().as_str()),
                namespace: ns,
                name,
            };
            state.put(&info.store_key(), obj);
            let last = state.remove(&key).unwrap_or(current);
            self.after_delete(&mut state, info, &last);
            last
        } else {
            let stored = state.put(&info.store_key(), obj);
            self.after_write(&mut state, info, &stored);
            stored
        };
        let now = self.clock().now_rfc3339();
        crate::gc::run(&mut state, &now);
        let rv = state.rv;
        drop(state);
        self.notify(rv);
        Ok(Commit::Done(stored))
    }

    pub(crate) async fn update(&self, call: Call) -> Result<ApiResponse, ApiError> {
        let mut body = decode_body(&call.req)?;
        check_type(&call.info, &mut body)?;
        check_namespace(&call.info, &call.ns, &mut body)?;
        let body_name = meta(&body, "name").to_string();
        if body_name != call.name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                call.name
            )));
        }
        let client_rv = meta(&body, "resourceVersion").to_string();
        for _ in 0..16 {
            let current = self.current(&call)?;
            let cur_rv = meta(&current, "resourceVersion").to_string();
            if !client_rv.is_empty() && client_rv != cur_rv {
                return Err(ApiError::stale(
                    &call.info.group,
                    &call.info.resource,
                    &call.name,
                ));
            }
            let mut new = merge_update(&call.info, &current, body.clone(), call.sub.as_deref())?;
            let warnings = self.structural(&call, &mut new)?;
            crate::defaults::on_update(&call.info, &mut new);
            crate::managed::record_update_for(
                &call.info,
                Some(&current),
                &mut new,
                &call.manager(),
                call.sub.as_deref(),
                &self.clock().now_rfc3339(),
            );
            let new = self.admit(&call, "UPDATE", new, Some(&current)).await?;
            validate_object(&call.info, &new, Some(&current))?;
            if call.dry_run() {
                return Ok(ApiResponse::ok(new));
            }
            if let Commit::Done(stored) = self.commit_update(&call.info, &cur_rv, new)? {
                let mut r = ApiResponse::shared(200, present_shared(&call.info, &stored));
                r.warnings = warnings;
                return Ok(r);
            }
            if !client_rv.is_empty() {
                return Err(ApiError::stale(
                    &call.info.group,
                    &call.info.resource,
                    &call.name,
                ));
            }
        }
        Err(ApiError::stale(
            &call.info.group,
            &call.info.resource,
            &call.name,
        ))
    }

    /// The stored object as the request's version presents it.
    fn current(&self, call: &Call) -> Result<Arc<Value>, ApiError> {
        let stored = self
            .lock()
            .get(&call.info.store_key(), &call.ns, &call.name)
            .ok_or_else(|| {
                ApiError::not_found(&call.info.group, &call.info.resource, &call.name)
            })?;
        Ok(present_shared(&call.info, &stored))
    }

    pub(crate) async fn patch(&self, call: Call) -> Result<ApiResponse, ApiError> {
        let ct = call
            .req
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let apply = ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor";
        if !apply
            && !matches!(
                ct.as_str(),
                "application/merge-patch+json"
                    | "application/json-patch+json"
                    | "application/strategic-merge-patch+json"
            )
        {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        if ct == "application/strategic-merge-patch+json" && call.info.custom {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        let force = call.req.flag("force");
        if force && !apply {
            return Err(ApiError::bad_request(
                "force is only supported for apply patches",
            ));
        }
        let now = self.clock().now_rfc3339();
        for _ in 0..16 {
            let current = match self.current(&call) {
                Ok(c) => c,
                Err(e) if apply && e.code == 404 && call.sub.is_none() => {
                    return self.apply_create(&call).await;
                }
                Err(e) => return Err(e),
            };
            let cur_rv = meta(&current, "resourceVersion").to_string();
            let patched = if apply {
                let applied = decode_body(&call.req)?;
                crate::patch::apply::server_side_apply(
                    &call.info,
                    Some(&current),
                    applied,
                    &call.manager(),
                    force,
                    call.sub.as_deref(),
                    &now,
                )?
            } else {
                let p = crate::patch::apply_patch(&ct, &current, &call.req.body, &call.info.kind)?;
                let mut p = p;
                check_type(&call.info, &mut p)?;
                p
            };
            if meta(&patched, "name") != call.name
                || (call.info.namespaced && meta(&patched, "namespace") != call.ns)
            {
                return Err(ApiError::bad_request(
                    "the name or namespace of the patched object does not match the URL",
                ));
            }
            let patch_rv = meta(&patched, "resourceVersion").to_string();
            if !patch_rv.is_empty() && patch_rv != cur_rv {
                return Err(ApiError::stale(
                    &call.info.group,
                    &call.info.resource,
                    &call.name,
                ));
            }
            let mut new = merge_update(&call.info, &current, patched, call.sub.as_deref())?;
            let warnings = self.structural(&call, &mut new)?;
            crate::defaults::on_update(&call.info, &mut new);
            if !apply {
                crate::managed::record_update_for(
                    &call.info,
                    Some(&current),
                    &mut new,
                    &call.manager(),
                    call.sub.as_deref(),
                    &now,
                );
            }
            let new = self.admit(&call, "UPDATE", new, Some(&current)).await?;
            validate_object(&call.info, &new, Some(&current))?;
            if call.dry_run() {
                return Ok(ApiResponse::ok(new));
            }
            if let Commit::Done(stored) = self.commit_update(&call.info, &cur_rv, new)? {
                let mut r = ApiResponse::shared(200, present_shared(&call.info, &stored));
                r.warnings = warnings;
                return Ok(r);
            }
        }
        Err(ApiError::stale(
            &call.info.group,
            &call.info.resource,
            &call.name,
        ))
    }

    async fn apply_create(&self, call: &Call) -> Result<ApiResponse, ApiError> {
        let applied = decode_body(&call.req)?;
        let now = self.clock().now_rfc3339();
        let mut obj = crate::patch::apply::server_side_apply(
            &call.info,
            None,
            applied,
            &call.manager(),
            true,
            None,
            &now,
        )?;
        if meta(&obj, "name") != call.name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mf = obj.pointer("/metadata/managedFields").cloned();
        self.prepare_create(call, &mut obj)?;
        if let Some(mf) = mf {
            obj["metadata"]["managedFields"] = mf;
        }
        let warnings = self.structural(call, &mut obj)?;
        let obj = self.admit(call, "CREATE", obj, None).await?;
        validate_object(&call.info, &obj, None)?;
        if call.dry_run() {
            return Ok(ApiResponse::json(201, obj));
        }
        let stored = self.commit_create(&call.info, obj)?;
        let mut r = ApiResponse::shared(201, present_shared(&call.info, &stored));
        r.warnings = warnings;
        Ok(r)
    }

    /// Side effects of a stored write: CRDs register their resources.
    pub(crate) fn after_write(
        &self,
        state: &mut crate::store::State,
        info: &ResourceInfo,
        obj: &Value,
    ) {
        if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
            crate::crd::register(state, obj);
        }
    }
}
