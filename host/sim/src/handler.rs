//! Routes a request to discovery, OpenAPI or a resource verb, after faults,
//! authentication and authorisation. The one path every request takes.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::observe::{Gate, Seen};
use crate::rbac::{Attributes, UserInfo};
use crate::registry::ResourceInfo;
use crate::request::{ApiBody, ApiRequest, ApiResponse, ResTarget, Target, parse_path};
use crate::sim::Sim;

/// A resource request after routing: what it targets and who asks.
pub(crate) struct Call {
    pub req: ApiRequest,
    pub info: Arc<ResourceInfo>,
    pub ns: String,
    pub name: String,
    pub sub: Option<String>,
    pub user: UserInfo,
}

impl Call {
    /// `fieldManager`, or the client's name as a real server derives it.
    pub fn manager(&self) -> String {
        if let Some(m) = self.req.param("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.req.user_agent.split('/').next().unwrap_or_default();
        if ua.is_empty() {
            "unknown".into()
        } else {
            ua.to_string()
        }
    }

    pub fn dry_run(&self) -> bool {
        self.req.param("dryRun") == Some("All")
    }
}

fn verb_of(method: &Method, has_name: bool, watch: bool) -> Result<&'static str, ApiError> {
    Ok(match (method.as_str(), has_name) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    })
}

impl Sim {
    /// Answers one request. Never panics on client input.
    pub async fn handle(&self, req: ApiRequest) -> ApiResponse {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(code = e.code, reason = e.reason, message = %e.message, "request failed");
                ApiResponse::error(&e)
            }
        }
    }

    async fn route(&self, req: ApiRequest) -> Result<ApiResponse, ApiError> {
        let target = parse_path(&req.path)?;
        // /version and health checks are public, as for anonymous users on a real server.
        let user = match target {
            Target::Version | Target::Health => UserInfo::default(),
            _ => self.authenticate(req.token.as_deref())?,
        };
        let ok = |v: Value| Ok(ApiResponse::ok(v));
        if !matches!(target, Target::Resource(_)) && req.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        match target {
            Target::Version => ok(json!({
                "major": "1", "minor": "35", "gitVersion": "v1.35.0-jobset-sim",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                "platform": "linux/amd64"
            })),
            Target::Health => Ok(ApiResponse {
                status: 200,
                body: ApiBody::Text("text/plain", Bytes::from_static(b"ok")),
                warnings: Vec::new(),
            }),
            Target::Api => ok(self.discovery_api()),
            Target::Apis => ok(self.discovery_apis()),
            Target::GroupVersion(g, v) => ok(self.discovery_group_version(&g, &v)?),
            Target::OpenApiIndex => ok(self.openapi_index()),
            Target::OpenApiDoc(g, v) => ok(self.openapi_doc(&g, &v)?),
            Target::OpenApiV2 if req.accept.contains("protobuf") => Ok(ApiResponse {
                status: 200,
                body: ApiBody::Text(
                    // kube-apiserver answers the deprecated "...v2@v1.0" form
                    // with this one, which Go's mime parser reads.
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    Bytes::from(crate::openapi::openapi_v2_protobuf()),
                ),
                warnings: Vec::new(),
            }),
            Target::OpenApiV2 => ok(crate::openapi::openapi_v2_json()),
            Target::Resource(t) => self.resource(req, t, user).await,
        }
    }

    async fn resource(
        &self,
        req: ApiRequest,
        t: ResTarget,
        user: UserInfo,
    ) -> Result<ApiResponse, ApiError> {
        let info = self
            .lock()
            .registry
            .get(&t.group, &t.version, &t.resource)
            .ok_or_else(ApiError::path_not_found)?;
        if info.namespaced != t.namespace.is_some() && t.name.is_some() {
            return Err(ApiError::path_not_found());
        }
        if !info.namespaced && t.namespace.is_some() {
            return Err(ApiError::path_not_found());
        }
        match t.sub.as_deref() {
            None => {}
            Some("status") if info.has_status => {}
            Some("finalize") if info.resource == "namespaces" => {}
            Some(_) => return Err(ApiError::path_not_found()),
        }
        let watch = req.flag("watch");
        let verb = verb_of(&req.method, t.name.is_some(), watch)?;
        if t.sub.is_some() && !matches!(verb, "get" | "update" | "patch") {
            return Err(ApiError::method_not_allowed());
        }
        let Some(hook) = self.shared.config.interceptor.clone() else {
            return self.serve_resource(req, t, info, user, verb).await;
        };
        let seen = Seen {
            verb,
            group: info.group.clone(),
            resource: info.resource.clone(),
            sub: t.sub.clone(),
            namespace: t.namespace.clone().unwrap_or_default(),
            name: t.name.clone().unwrap_or_default(),
            user_agent: req.user_agent.clone(),
        };
        if hook.0.before(&seen) == Gate::Hold {
            std::future::pending::<()>().await;
        }
        let result = self.serve_resource(req, t, info, user, verb).await;
        match &result {
            Ok(r) => {
                let body = match &r.body {
                    ApiBody::Json(v) => Some(v.as_ref()),
                    _ => None,
                };
                hook.0.after(&seen, r.status, body);
            }
            Err(e) => hook.0.after(&seen, e.code, None),
        }
        result
    }

    async fn serve_resource(
        &self,
        req: ApiRequest,
        t: ResTarget,
        info: Arc<ResourceInfo>,
        user: UserInfo,
        verb: &'static str,
    ) -> Result<ApiResponse, ApiError> {
        self.inject_faults(verb).await?;
        let ns = t.namespace.clone().unwrap_or_default();
        let name = t.name.clone().unwrap_or_default();
        let review = info.resource == "selfsubjectaccessreviews";
        if !review {
            self.authorize(
                &user,
                &Attributes {
                    verb,
                    group: &info.group,
                    resource: &info.resource,
                    sub: t.sub.as_deref(),
                    namespace: &ns,
                    name: &name,
                },
            )?;
        }
        let call = Call {
            req,
            info,
            ns,
            name,
            sub: t.sub,
            user,
        };
        match verb {
            "get" => self.get(&call),
            "list" => self.list(&call),
            "watch" => self.watch(&call),
            "create" if call.info.resource == "selfsubjectaccessreviews" => {
                let review = crate::write::decode_body(&call.req)?;
                Ok(ApiResponse::json(
                    201,
                    crate::rbac::self_review(self, &call.user, &review),
                ))
            }
            _ if call.info.resource == "selfsubjectaccessreviews" => {
                Err(ApiError::method_not_allowed())
            }
            "create" => self.create(call).await,
            "update" => self.update(call).await,
            "patch" => self.patch(call).await,
            "delete" => self.delete(call).await,
            _ => self.delete_collection(call).await,
        }
    }

    async fn inject_faults(&self, verb: &str) -> Result<(), ApiError> {
        let (latency, err) = match self.shared.faults.lock() {
            Ok(mut f) => (f.faults.latency, f.draw(verb)),
            Err(_) => return Ok(()),
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
