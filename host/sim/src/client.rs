//! A typed in-process handle for simulator components (Job controller,
//! scheduler, kubelet): the verbs on unstructured objects, through the same
//! request path as HTTP clients, so admission, resourceVersions and garbage
//! collection behave identically.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::Method;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::gc::Propagation;
use crate::request::{ApiBody, ApiRequest, ApiResponse};
use crate::sim::Sim;

/// A resource by group, version and plural name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Resource {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }

    pub fn pods() -> Self {
        Self::new("", "v1", "pods")
    }

    pub fn nodes() -> Self {
        Self::new("", "v1", "nodes")
    }

    pub fn jobs() -> Self {
        Self::new("batch", "v1", "jobs")
    }

    pub fn events() -> Self {
        Self::new("", "v1", "events")
    }

    pub fn jobsets() -> Self {
        Self::new("jobset.x-k8s.io", "v1alpha2", "jobsets")
    }

    fn path(&self, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            p.push_str(&format!("/namespaces/{ns}"));
        }
        p.push('/');
        p.push_str(&self.resource);
        for seg in [name, sub].into_iter().flatten() {
            p.push('/');
            p.push_str(seg);
        }
        p
    }
}

/// The kinds of patch the handle can send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
}

impl PatchKind {
    fn content_type(self) -> &'static str {
        match self {
            PatchKind::Merge => "application/merge-patch+json",
            PatchKind::Json => "application/json-patch+json",
            PatchKind::Strategic => "application/strategic-merge-patch+json",
        }
    }
}

/// One watch event: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`, and its object.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: String,
    pub object: Value,
}

/// A handle on the store for in-process components.
#[derive(Clone, Debug)]
pub struct SimClient {
    sim: Sim,
    manager: String,
}

impl Sim {
    /// An in-process handle writing as field manager `manager`.
    pub fn client(&self, manager: &str) -> SimClient {
        SimClient {
            sim: self.clone(),
            manager: manager.to_string(),
        }
    }
}

fn into_result(resp: ApiResponse) -> Result<Value, ApiError> {
    let ApiBody::Json(v) = resp.body else {
        return Err(ApiError::internal("unexpected non-JSON response"));
    };
    if resp.status < 300 {
        return Ok(std::sync::Arc::unwrap_or_clone(v));
    }
    Err(status_to_error(&v))
}

fn status_to_error(v: &Value) -> ApiError {
    let code = v.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
    let reason: &'static str = match v.get("reason").and_then(Value::as_str).unwrap_or_default() {
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Conflict" => "Conflict",
        "Invalid" => "Invalid",
        "Expired" => "Expired",
        "Forbidden" => "Forbidden",
        "BadRequest" => "BadRequest",
        "TooManyRequests" => "TooManyRequests",
        _ => "InternalError",
    };
    ApiError {
        details: v.get("details").cloned(),
        ..ApiError::new(
            code,
            reason,
            v.get("message").and_then(Value::as_str).unwrap_or_default(),
        )
    }
}

impl SimClient {
    async fn send(&self, mut req: ApiRequest) -> Result<Value, ApiError> {
        req.user_agent = self.manager.clone();
        into_result(self.sim.handle(req).await)
    }

    fn with_manager(&self, path: String) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}fieldManager={}", self.manager)
    }

    pub async fn get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.send(ApiRequest::new(
            Method::GET,
            &res.path(ns, Some(name), None),
        ))
        .await
    }

    /// Lists, optionally filtered by a label selector (`a=b,c in (d)`).
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut req = ApiRequest::new(Method::GET, &res.path(ns, None, None));
        if let Some(s) = label_selector {
            req.query.push(("labelSelector".into(), s.into()));
        }
        self.send(req).await
    }

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let path = self.with_manager(res.path(ns, None, None));
        self.send(ApiRequest::new(Method::POST, &path).with_json(obj))
            .await
    }

    /// Replaces an object (409 if its resourceVersion is stale).
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = self.with_manager(res.path(ns, Some(name), None));
        self.send(ApiRequest::new(Method::PUT, &path).with_json(obj))
            .await
    }

    /// Replaces an object's status through the status subresource.
    pub async fn update_status(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = self.with_manager(res.path(ns, Some(name), Some("status")));
        self.send(ApiRequest::new(Method::PUT, &path).with_json(obj))
            .await
    }

    pub async fn patch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let path = self.with_manager(res.path(ns, Some(name), None));
        let body = Bytes::from(serde_json::to_vec(patch).unwrap_or_default());
        self.send(ApiRequest::new(Method::PATCH, &path).with_body(kind.content_type(), body))
            .await
    }

    pub async fn patch_status(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let path = self.with_manager(res.path(ns, Some(name), Some("status")));
        let body = Bytes::from(serde_json::to_vec(patch).unwrap_or_default());
        self.send(ApiRequest::new(Method::PATCH, &path).with_body(kind.content_type(), body))
            .await
    }

    /// Server-side apply as this handle's field manager.
    pub async fn apply(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &Value,
        force: bool,
    ) -> Result<Value, ApiError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut path = self.with_manager(res.path(ns, Some(name), None));
        if force {
            path.push_str("&force=true");
        }
        let body = Bytes::from(serde_json::to_vec(obj).unwrap_or_default());
        self.send(
            ApiRequest::new(Method::PATCH, &path).with_body("application/apply-patch+yaml", body),
        )
        .await
    }

    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        propagation: Option<Propagation>,
    ) -> Result<Value, ApiError> {
        let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(p) = propagation {
            opts["propagationPolicy"] = json!(format!("{p:?}"));
        }
        self.send(ApiRequest::new(Method::DELETE, &res.path(ns, Some(name), None)).with_json(&opts))
            .await
    }

    /// Watches from `resource_version` (None: current state first, as ADDED events).
    pub async fn watch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        resource_version: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<impl Stream<Item = WatchEvent> + Send + use<>, ApiError> {
        let mut req = ApiRequest::new(Method::GET, &res.path(ns, None, None));
        req.query.push(("watch".into(), "true".into()));
        req.query.push(("timeoutSeconds".into(), "0".into()));
        if let Some(rv) = resource_version {
            req.query.push(("resourceVersion".into(), rv.into()));
        }
        if let Some(s) = label_selector {
            req.query.push(("labelSelector".into(), s.into()));
        }
        let resp = self.sim.handle(req).await;
        let stream = match resp.body {
            ApiBody::Stream(s) => s,
            ApiBody::Json(v) => return Err(status_to_error(&v)),
            ApiBody::Text(..) => return Err(ApiError::internal("unexpected watch response")),
        };
        Ok(stream.filter_map(|line| async move {
            let v: Value = serde_json::from_slice(&line).ok()?;
            Some(WatchEvent {
                kind: v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                object: v.get("object").cloned().unwrap_or_default(),
            })
        }))
    }
}
