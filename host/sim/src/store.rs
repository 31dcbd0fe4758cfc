//! The in-memory object store: one map per stored resource, a global
//! resourceVersion, a bounded event history for watches, and the indexes
//! garbage collection needs (uid → object, owner uid → dependents).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::registry::Registry;

/// Identifies a stored object: (store key `group/resource`, namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub res: Arc<str>,
    pub namespace: String,
    pub name: String,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history for watches.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventKind,
    pub res: Arc<str>,
    pub obj: Arc<Value>,
    /// The object before a modification (for selector transitions).
    pub prev: Option<Arc<Value>>,
}

/// Work left for garbage collection after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum GcTask {
    /// An object with this uid is gone: its dependents may follow.
    OwnerGone(String),
    /// An owner in foreground deletion may be ready to go.
    CheckForeground(String),
    /// A terminating namespace may now be empty.
    CheckNamespace(String),
    /// A new object with owners: it follows an owner already in foreground
    /// deletion.
    NewDependent(ObjKey),
}

type Table = BTreeMap<(String, String), Arc<Value>>;

/// Everything behind the store lock.
#[derive(Debug)]
pub struct State {
    pub rv: u64,
    tables: HashMap<Arc<str>, Table>,
    history: VecDeque<Event>,
    history_cap: usize,
    /// The newest resourceVersion no longer in the history.
    pub compacted: u64,
    pub registry: Registry,
    by_uid: HashMap<String, ObjKey>,
    dependents: HashMap<String, HashSet<ObjKey>>,
    pub gc_queue: VecDeque<GcTask>,
    pub uid_counter: u64,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The owner uids an object names.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
        .collect()
}

impl State {
    pub fn new(registry: Registry, history_cap: usize) -> Self {
        State {
            rv: 1,
            tables: HashMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(16),
            compacted: 0,
            registry,
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            gc_queue: VecDeque::new(),
            uid_counter: 0,
        }
    }

    fn intern(&mut self, res: &str) -> Arc<str> {
        if let Some((k, _)) = self.tables.get_key_value(res) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(res);
        self.tables.insert(k.clone(), Table::new());
        k
    }

    pub fn get(&self, res: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.tables
            .get(res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn get_key(&self, key: &ObjKey) -> Option<Arc<Value>> {
        self.get(&key.res, &key.namespace, &key.name)
    }

    /// Objects of a resource, optionally in one namespace, in (namespace, name) order.
    pub fn list<'a>(
        &'a self,
        res: &str,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        let Some(t) = self.tables.get(res) else {
            return Box::new(std::iter::empty());
        };
        match ns {
            Some(ns) => Box::new(
                t.range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(t.values()),
        }
    }

    /// Stored resource keys (for namespace deletion).
    pub fn resource_keys(&self) -> Vec<Arc<str>> {
        self.tables.keys().cloned().collect()
    }

    /// Whether any object lives in namespace `ns`.
    pub fn namespace_in_use(&self, ns: &str) -> bool {
        self.tables
            .keys()
            .any(|res| self.list(res, Some(ns)).next().is_some())
    }

    pub fn count(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }

    pub fn key_of_uid(&self, uid: &str) -> Option<&ObjKey> {
        self.by_uid.get(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        let mut v: Vec<ObjKey> = self
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        let n = self.uid_counter;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (n >> 16) as u32 ^ 0x5a17_0000,
            n & 0xffff,
            (n >> 3) & 0xfff,
            (n >> 7) & 0xfff,
            n.wrapping_mul(0x9e37_79b9_7f4a) & 0xffff_ffff_ffff
        )
    }

    fn index(&mut self, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
        let old_owners = old.map(owner_uids).unwrap_or_default();
        let new_owners = new.map(owner_uids).unwrap_or_default();
        for o in old_owners.iter().filter(|o| !new_owners.contains(o)) {
            if let Some(set) = self.dependents.get_mut(o) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(o);
                }
            }
        }
        for o in new_owners.iter().filter(|o| !old_owners.contains(o)) {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(key.clone());
        }
        match (old, new) {
            (Some(o), None) => {
                self.by_uid.remove(meta_str(o, "uid"));
            }
            (None, Some(n)) => {
                self.by_uid
                    .insert(meta_str(n, "uid").to_string(), key.clone());
            }
            _ => {}
        }
    }

    fn record(
        &mut self,
        kind: EventKind,
        res: Arc<str>,
        obj: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        self.history.push_back(Event {
            rv: self.rv,
            kind,
            res,
            obj,
            prev,
        });
        while self.history.len() > self.history_cap {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// Stores `obj` (new or replacing), stamping a fresh resourceVersion.
    pub fn put(&mut self, res: &str, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let res = self.intern(res);
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let key = ObjKey {
            res: res.clone(),
            namespace: ns.clone(),
            name: name.clone(),
        };
        let obj = Arc::new(obj);
        let old = self
            .tables
            .get_mut(&res)
            .and_then(|t| t.insert((ns, name), obj.clone()));
        self.index(&key, old.as_deref(), Some(&obj));
        let kind = if old.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        if let Some(old) = &old
            && meta_str(old, "uid") != meta_str(&obj, "uid")
        {
            self.by_uid.remove(meta_str(old, "uid"));
            self.by_uid
                .insert(meta_str(&obj, "uid").to_string(), key.clone());
        }
        let created = old.is_none();
        self.record(kind, res, obj.clone(), old);
        if created && !owner_uids(&obj).is_empty() {
            self.gc_queue.push_back(GcTask::NewDependent(key));
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            self.gc_queue
                .push_back(GcTask::CheckForeground(meta_str(&obj, "uid").to_string()));
        }
        obj
    }

    /// Removes an object for good, recording a DELETED event at a new version.
    pub fn remove(&mut self, key: &ObjKey) -> Option<Arc<Value>> {
        let old = self
            .tables
            .get_mut(&key.res)?
            .remove(&(key.namespace.clone(), key.name.clone()))?;
        self.rv += 1;
        let mut last = (*old).clone();
        if let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(self.rv.to_string()));
        }
        self.index(key, Some(&old), None);
        let last = Arc::new(last);
        self.record(EventKind::Deleted, key.res.clone(), last.clone(), None);
        let uid = meta_str(&last, "uid").to_string();
        self.gc_queue.push_back(GcTask::OwnerGone(uid));
        for owner in owner_uids(&last) {
            self.gc_queue.push_back(GcTask::CheckForeground(owner));
        }
        if !key.namespace.is_empty() {
            self.gc_queue
                .push_back(GcTask::CheckNamespace(key.namespace.clone()));
        }
        Some(last)
    }

    /// Events after `rv` (oldest first), or `Err(oldest)` when `rv` was compacted.
    pub fn events_since(&self, rv: u64) -> Result<impl Iterator<Item = &Event>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": uid}})
    }

    #[test]
    fn every_write_gets_a_higher_resource_version() {
        let mut s = State::new(Registry::with_builtins(), 100);
        let a = s.put("/pods", pod("a", "1"));
        let b = s.put("/pods", pod("b", "2"));
        let rv = |o: &Value| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&b) > rv(&a));
        assert_eq!(s.list("/pods", Some("default")).count(), 2);
        assert_eq!(s.list("/pods", Some("other")).count(), 0);
    }

    #[test]
    fn a_small_history_compacts_old_versions() {
        let mut s = State::new(Registry::with_builtins(), 16);
        for i in 0..40 {
            s.put("/pods", pod(&format!("p{i}"), &i.to_string()));
        }
        assert!(s.events_since(2).is_err());
        assert_eq!(s.events_since(s.rv - 3).map(|e| e.count()).ok(), Some(3));
    }

    #[test]
    fn dependents_are_indexed_by_owner_uid() {
        let mut s = State::new(Registry::with_builtins(), 100);
        let mut p = pod("child", "c1");
        p["metadata"]["ownerReferences"] =
            json!([{"uid": "owner-1", "name": "o", "kind": "Job", "apiVersion": "batch/v1"}]);
        s.put("/pods", p);
        assert_eq!(s.dependents_of("owner-1").len(), 1);
        let key = s.dependents_of("owner-1")[0].clone();
        s.remove(&key);
        assert!(s.dependents_of("owner-1").is_empty());
        assert!(s.key_of_uid("c1").is_none());
    }
}
