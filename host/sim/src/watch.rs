//! Watches: newline-delimited JSON events from a resourceVersion (or from the
//! current state), selector transitions as ADDED/DELETED, bookmarks, 410 for
//! a compacted version, and `timeoutSeconds` measured on tokio time so a
//! paused clock never sees a watch end without time passing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::errors::ApiError;
use crate::handler::Call;
use crate::read::{Filters, Form, form_of, meta};
use crate::registry::ResourceInfo;
use crate::request::{ApiBody, ApiResponse};
use crate::sim::Sim;
use crate::store::EventKind;

/// A watch in progress.
struct Watch {
    sim: Sim,
    info: Arc<ResourceInfo>,
    res: String,
    ns: Option<String>,
    filters: Filters,
    form: Form,
    last_rv: u64,
    pending: VecDeque<Bytes>,
    deadline: Option<Instant>,
    bookmarks: Option<Duration>,
    next_bookmark: Instant,
    rx: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// An event line for a stored object, serialised without copying it.
fn shared_line(kind: &str, obj: &Value) -> Bytes {
    let mut v = Vec::with_capacity(512);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    if serde_json::to_writer(&mut v, obj).is_err() {
        return line(kind, obj.clone());
    }
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

impl Watch {
    fn bookmark(&self, initial_end: bool) -> Bytes {
        let mut m = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": m}),
        )
    }

    fn in_scope(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| meta(obj, "namespace") == ns)
            && self.filters.matches(obj)
    }

    /// Collects new events from the history; false when the watch must end.
    fn poll_store(&mut self) {
        let sim = self.sim.clone();
        let state = sim.lock();
        let events = match state.events_since(self.last_rv) {
            Ok(e) => e,
            Err(oldest) => {
                self.pending.push_back(line(
                    "ERROR",
                    ApiError::gone(self.last_rv, oldest).to_status(),
                ));
                self.done = true;
                return;
            }
        };
        for e in events {
            if *e.res != *self.res {
                continue;
            }
            let now = self.in_scope(&e.obj);
            let kind = match e.kind {
                EventKind::Modified => {
                    let before = e.prev.as_ref().is_some_and(|p| self.in_scope(p));
                    match (before, now) {
                        (true, true) => Some("MODIFIED"),
                        (false, true) => Some("ADDED"),
                        (true, false) => Some("DELETED"),
                        (false, false) => None,
                    }
                }
                k => now.then_some(k.as_str()),
            };
            if let Some(k) = kind {
                let reshape = crate::conversion::converts(&self.info);
                let l = if self.form == Form::Object && !reshape {
                    shared_line(k, &e.obj)
                } else {
                    line(k, self.sim.render_one(&self.info, &e.obj, &self.form))
                };
                self.pending.push_back(l);
            }
        }
        self.last_rv = state.rv;
    }

    async fn next(mut self) -> Option<(Bytes, Self)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((b, self));
            }
            if self.done {
                return None;
            }
            self.poll_store();
            if !self.pending.is_empty() || self.done {
                continue;
            }
            let deadline = self.deadline;
            let bookmark_at = self.bookmarks.map(|_| self.next_bookmark);
            // No timer is armed for what is not configured: an idle watch
            // must not make a paused clock jump.
            let until = |at: Option<Instant>| async move {
                match at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = until(deadline) => {
                    self.done = true;
                }
                _ = until(bookmark_at) => {
                    if let Some(every) = self.bookmarks {
                        self.next_bookmark = Instant::now() + every;
                        self.pending.push_back(self.bookmark(false));
                    }
                }
            }
        }
    }
}

impl Sim {
    pub(crate) fn watch(&self, call: &Call) -> Result<ApiResponse, ApiError> {
        let mut filters = Filters::from_call(call)?;
        if !call.name.is_empty() {
            let by_name =
                crate::selectors::FieldSelector::parse(&format!("metadata.name={}", call.name))?;
            filters.fields = by_name;
        }
        let rv_param = call.req.param("resourceVersion").unwrap_or_default();
        let requested: Option<u64> =
            match rv_param {
                "" | "0" => None,
                s => Some(s.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {s:?}"))
                })?),
            };
        let send_initial = call.req.flag("sendInitialEvents");
        let bookmarks_on = call.req.flag("allowWatchBookmarks");
        let timeout = match call.req.param("timeoutSeconds") {
            Some(t) if !t.is_empty() => match t.parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(Duration::from_secs(n)),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid timeoutSeconds {t:?}"
                    )));
                }
            },
            _ => Some(Duration::from_secs(1800)),
        };
        let drop_after = self
            .shared
            .faults
            .lock()
            .ok()
            .and_then(|f| f.faults.drop_watches_after);
        let timeout = match (timeout, drop_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let form = form_of(&call.req.accept, call.req.param("includeObject"));
        let rx = self.shared.rv_tx.subscribe();
        let ns = (!call.ns.is_empty()).then(|| call.ns.clone());
        let every = self.shared.config.bookmark_interval;
        let mut w = Watch {
            sim: self.clone(),
            info: call.info.clone(),
            res: call.info.store_key(),
            ns,
            filters,
            form,
            last_rv: 0,
            pending: VecDeque::new(),
            deadline: timeout.map(|t| Instant::now() + t),
            bookmarks: bookmarks_on.then_some(every),
            next_bookmark: Instant::now() + every,
            rx,
            done: false,
        };
        let gone = requested.is_some()
            && !send_initial
            && self
                .shared
                .faults
                .lock()
                .map(|mut f| f.draw_gone())
                .unwrap_or(false);
        match requested {
            Some(rv) if gone => {
                let oldest = self.lock().rv;
                w.pending
                    .push_back(line("ERROR", ApiError::gone(rv, oldest).to_status()));
                w.done = true;
            }
            Some(rv) if !send_initial => w.last_rv = rv,
            _ => {
                let state = self.lock();
                for o in state.list(&w.res, w.ns.as_deref()) {
                    if w.filters.matches(o) {
                        w.pending
                            .push_back(line("ADDED", self.render_one(&w.info, o, &w.form)));
                    }
                }
                w.last_rv = state.rv;
                drop(state);
                if send_initial && bookmarks_on {
                    let b = w.bookmark(true);
                    w.pending.push_back(b);
                }
            }
        }
        let stream = futures::stream::unfold(w, Watch::next);
        Ok(ApiResponse {
            status: 200,
            body: ApiBody::Stream(Box::pin(stream)),
            warnings: Vec::new(),
        })
    }
}
