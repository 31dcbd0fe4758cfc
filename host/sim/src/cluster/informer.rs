//! A watch-backed cache of one resource for a cluster component: lists once,
//! then watches from the list's resourceVersion, re-watches when a stream
//! ends (after a virtual second, so a dropped watch never spins) and relists
//! on `410 Gone`. It never writes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::util::{key_of, rv_of};
use crate::client::{Resource, SimClient};

/// What changed in the cache.
#[derive(Debug, Clone)]
pub enum Change {
    /// Added or modified: the new object.
    Applied(Value),
    /// Gone: its last state.
    Deleted(Value),
}

impl Change {
    pub fn object(&self) -> &Value {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// The cache plus its watch.
pub struct Informer {
    client: SimClient,
    res: Resource,
    rv: Option<String>,
    stream: Option<BoxStream<'static, crate::client::WatchEvent>>,
    queue: VecDeque<Change>,
    /// Objects by `namespace/name`.
    pub cache: BTreeMap<String, Value>,
}

impl Informer {
    pub fn new(client: SimClient, res: Resource) -> Self {
        Informer {
            client,
            res,
            rv: None,
            stream: None,
            queue: VecDeque::new(),
            cache: BTreeMap::new(),
        }
    }

    /// The next change. Safe to cancel (in `select!`): nothing is lost.
    pub async fn next(&mut self) -> Change {
        loop {
            if let Some(c) = self.queue.pop_front() {
                return c;
            }
            if self.rv.is_none() {
                if let Err(e) = self.relist().await {
                    tracing::debug!(resource = %self.res.resource, error = %e.message, "list failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
            if self.stream.is_none() {
                let rv = self.rv.clone();
                match self
                    .client
                    .watch(&self.res, None, rv.as_deref(), None)
                    .await
                {
                    Ok(s) => self.stream = Some(s.boxed()),
                    Err(e) if e.code == 410 => self.rv = None,
                    Err(e) => {
                        tracing::debug!(resource = %self.res.resource, error = %e.message, "watch failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match stream.next().await {
                None => {
                    self.stream = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Some(ev) => self.on_event(ev.kind.as_str(), ev.object),
            }
        }
    }

    /// A change that is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Change> {
        self.next().now_or_never()
    }

    fn on_event(&mut self, kind: &str, obj: Value) {
        match kind {
            "ADDED" | "MODIFIED" => {
                self.bump_rv(&obj);
                self.apply(obj);
            }
            "DELETED" => {
                self.bump_rv(&obj);
                if self.cache.remove(&key_of(&obj)).is_some() {
                    self.queue.push_back(Change::Deleted(obj));
                }
            }
            "ERROR" => {
                // Expired (410) or anything else: start over from a list.
                self.stream = None;
                self.rv = None;
            }
            _ => {}
        }
    }

    fn bump_rv(&mut self, obj: &Value) {
        let rv = rv_of(obj);
        let cur = self
            .rv
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0);
        if rv > cur {
            self.rv = Some(rv.to_string());
        }
    }

    /// Takes in an object this component just wrote, so its next decision
    /// sees the write before the watch brings it. Older versions are ignored.
    pub fn apply(&mut self, obj: Value) {
        let key = key_of(&obj);
        if let Some(old) = self.cache.get(&key)
            && rv_of(old) >= rv_of(&obj)
        {
            return;
        }
        self.cache.insert(key, obj.clone());
        self.queue.push_back(Change::Applied(obj));
    }

    async fn relist(&mut self) -> Result<(), crate::errors::ApiError> {
        let list = self.client.list(&self.res, None, None).await?;
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let items: Vec<Value> = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let fresh: BTreeMap<String, Value> = items.into_iter().map(|o| (key_of(&o), o)).collect();
        let gone: Vec<String> = self
            .cache
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(o) = self.cache.remove(&k) {
                self.queue.push_back(Change::Deleted(o));
            }
        }
        for (k, o) in fresh {
            if self.cache.get(&k) != Some(&o) {
                self.cache.insert(k, o.clone());
                self.queue.push_back(Change::Applied(o));
            }
        }
        self.rv = Some(rv);
        self.stream = None;
        Ok(())
    }
}

impl Informer {
    /// Drops an object this component just saw removed by its own write.
    pub fn forget(&mut self, key: &str) {
        if let Some(o) = self.cache.remove(key) {
            self.queue.push_back(Change::Deleted(o));
        }
    }
}
