//! Request observation for reliability tests: an [`Interceptor`] set in
//! `SimConfig` sees every resource request before it is served (and may hold
//! it forever, as the requests of a crashed client never arrive) and its
//! outcome after. It never changes an answer the server gives.

use std::sync::Arc;

use serde_json::Value;

/// One resource request as an interceptor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection`.
    pub verb: &'static str,
    pub group: String,
    /// The plural resource name (`jobs`, `jobsets`, ...).
    pub resource: String,
    /// `status` for the status subresource.
    pub sub: Option<String>,
    pub namespace: String,
    /// Empty for creates and collections; the created object has the name.
    pub name: String,
    /// The client's `User-Agent`, which tells clients apart.
    pub user_agent: String,
}

impl Seen {
    /// Whether the request changes something.
    pub fn is_write(&self) -> bool {
        !matches!(self.verb, "get" | "list" | "watch")
    }
}

/// What becomes of a request before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Serve it.
    Pass,
    /// Never answer (the caller waits until it gives up or is dropped).
    Hold,
}

/// Sees requests; implementations keep their own records.
pub trait Interceptor: Send + Sync {
    /// Called before a request is served (before injected faults).
    fn before(&self, _req: &Seen) -> Gate {
        Gate::Pass
    }
    /// Called once a request was answered, with the status code and, for
    /// JSON answers, the body (the stored object after a write).
    fn after(&self, _req: &Seen, _status: u16, _body: Option<&Value>) {}
}

/// An interceptor shared by the server and the test that set it.
#[derive(Clone)]
pub struct SharedInterceptor(pub Arc<dyn Interceptor>);

impl std::fmt::Debug for SharedInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedInterceptor")
    }
}
