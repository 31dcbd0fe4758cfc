//! Requests and responses independent of transport: what the HTTP service and
//! the in-process client both hand to the server, and the path grammar.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use http::Method;
use serde_json::Value;

use crate::errors::ApiError;

/// A request as the server sees it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub accept: String,
    /// Bearer token from `Authorization`, if any.
    pub token: Option<String>,
    pub user_agent: String,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn new(method: Method, path: &str) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), parse_query(q)),
            None => (path.to_string(), Vec::new()),
        };
        ApiRequest {
            method,
            path,
            query,
            content_type: "application/json".into(),
            accept: "application/json".into(),
            token: None,
            user_agent: String::new(),
            body: Bytes::new(),
        }
    }

    pub fn with_json(mut self, body: &Value) -> Self {
        self.body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self
    }

    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.content_type = content_type.into();
        self.body = body.into();
        self
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1" | ""))
    }
}

/// A stream of newline-delimited JSON chunks (a watch body).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A response body.
pub enum ApiBody {
    /// A JSON document, shared with the store when it is a stored object.
    Json(Arc<Value>),
    Text(&'static str, Bytes),
    Stream(ChunkStream),
}

/// A response as the server produces it.
pub struct ApiResponse {
    pub status: u16,
    pub body: ApiBody,
    pub warnings: Vec<String>,
}

impl ApiResponse {
    pub fn json(status: u16, v: Value) -> Self {
        ApiResponse {
            status,
            body: ApiBody::Json(Arc::new(v)),
            warnings: Vec::new(),
        }
    }

    /// A stored object, served without copying it.
    pub fn shared(status: u16, v: Arc<Value>) -> Self {
        ApiResponse {
            status,
            body: ApiBody::Json(v),
            warnings: Vec::new(),
        }
    }

    pub fn ok(v: Value) -> Self {
        Self::json(200, v)
    }

    pub fn error(e: &ApiError) -> Self {
        Self::json(e.code, e.to_status())
    }
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            ApiBody::Json(v) => write!(f, "{} {v}", self.status),
            ApiBody::Text(_, b) => write!(f, "{} {} bytes", self.status, b.len()),
            ApiBody::Stream(_) => write!(f, "{} <stream>", self.status),
        }
    }
}

/// Decodes a `application/x-www-form-urlencoded` query string.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a resource request points.
#[derive(Debug, Clone, PartialEq)]
pub struct ResTarget {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Version,
    Health,
    Api,
    Apis,
    GroupVersion(String, String),
    OpenApiIndex,
    OpenApiDoc(String, String),
    OpenApiV2,
    Resource(ResTarget),
}

/// Parses a request path.
pub fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let s = |i: usize| segs.get(i).copied().filter(|x| !x.is_empty());
    match (s(0), segs.len()) {
        (Some("version"), 1) => return Ok(Target::Version),
        (Some("healthz" | "readyz" | "livez"), _) => return Ok(Target::Health),
        (Some("api"), 1) => return Ok(Target::Api),
        (Some("apis"), 1) => return Ok(Target::Apis),
        (Some("openapi"), _) => {
            return match (s(1), s(2), s(3), s(4)) {
                (Some("v3"), None, _, _) => Ok(Target::OpenApiIndex),
                (Some("v3"), Some("api"), Some(v), None) => {
                    Ok(Target::OpenApiDoc(String::new(), v.into()))
                }
                (Some("v3"), Some("apis"), Some(g), Some(v)) => {
                    Ok(Target::OpenApiDoc(g.into(), v.into()))
                }
                (Some("v2"), None, _, _) => Ok(Target::OpenApiV2),
                _ => Err(ApiError::path_not_found()),
            };
        }
        _ => {}
    }
    let (group, version, rest) = match (s(0), s(1), s(2)) {
        (Some("api"), Some(v), _) => ("", v, &segs[2..]),
        (Some("apis"), Some(g), Some(v)) => (g, v, &segs[3..]),
        _ => return Err(ApiError::path_not_found()),
    };
    if rest.is_empty() {
        return Ok(Target::GroupVersion(group.into(), version.into()));
    }
    if rest.iter().any(|x| x.is_empty()) {
        return Err(ApiError::path_not_found());
    }
    let own = |x: &str| x.to_string();
    let namespace_sub = group.is_empty()
        && rest.len() == 3
        && rest[0] == "namespaces"
        && matches!(rest[2], "status" | "finalize");
    let t = if rest[0] == "namespaces" && rest.len() >= 3 && !namespace_sub {
        if rest.len() > 5 {
            return Err(ApiError::path_not_found());
        }
        ResTarget {
            group: group.into(),
            version: version.into(),
            resource: own(rest[2]),
            namespace: Some(own(rest[1])),
            name: rest.get(3).map(|x| own(x)),
            sub: rest.get(4).map(|x| own(x)),
        }
    } else {
        if rest.len() > 3 {
            return Err(ApiError::path_not_found());
        }
        ResTarget {
            group: group.into(),
            version: version.into(),
            resource: own(rest[0]),
            namespace: None,
            name: rest.get(1).map(|x| own(x)),
            sub: rest.get(2).map(|x| own(x)),
        }
    };
    Ok(Target::Resource(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_paths_carry_namespace_name_and_subresource() {
        let t = parse_path("/apis/batch/v1/namespaces/ns/jobs/pi/status").unwrap();
        let Target::Resource(r) = t else {
            panic!("not a resource")
        };
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.sub.as_deref()
            ),
            ("batch", Some("ns"), Some("pi"), Some("status"))
        );
    }

    #[test]
    fn namespace_objects_and_their_status_are_cluster_paths() {
        let Target::Resource(r) = parse_path("/api/v1/namespaces/foo").unwrap() else {
            panic!("not a resource")
        };
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("namespaces", Some("foo"))
        );
        let Target::Resource(r) = parse_path("/api/v1/namespaces/foo/status").unwrap() else {
            panic!("not a resource")
        };
        assert_eq!(r.sub.as_deref(), Some("status"));
        assert!(r.namespace.is_none());
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/",
            "/foo",
            "/apis/g",
            "/api/v1/namespaces/a/b/c/d/e",
            "/openapi/v9",
        ] {
            assert_eq!(parse_path(p).map_err(|e| e.code), Err(404), "{p}");
        }
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x");
        assert_eq!(q[0].1, "app=web,tier in (a)");
        assert_eq!(q[2], ("x".to_string(), String::new()));
    }
}
