//! Deletion with finalizers and ownerReference garbage collection: Background
//! (dependents follow their owner), Foreground (owner waits, with the
//! `foregroundDeletion` finalizer, for blocking dependents) and Orphan.
//! Runs synchronously under the store lock so the order of events is fixed.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::read::meta;
use crate::store::{GcTask, ObjKey, State};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// How dependents are treated when an owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    if f.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        obj["metadata"]["finalizers"] = json!(f);
    }
}

fn without_owner(obj: &Value, owner_uid: &str) -> Value {
    let mut o = obj.clone();
    if let Some(refs) = o
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        if refs.is_empty()
            && let Some(m) = o["metadata"].as_object_mut()
        {
            m.remove("ownerReferences");
        }
    }
    o
}

/// Deletes one object. Returns its last state and whether it is gone
/// (false: it waits on finalizers, with a deletionTimestamp).
pub fn delete_object(
    state: &mut State,
    key: &ObjKey,
    policy: Propagation,
    now: &str,
) -> Option<(Arc<Value>, bool)> {
    let current = state.get_key(key)?;
    let uid = meta(&current, "uid").to_string();
    let mut obj = (*current).clone();
    let mut fins = finalizers(&obj);
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
    match policy {
        Propagation::Orphan => {
            for dep in state.dependents_of(&uid) {
                if let Some(d) = state.get_key(&dep) {
                    let d = without_owner(&d, &uid);
                    state.put(&dep.res, d);
                }
            }
        }
        Propagation::Foreground => {
            let deps = state.dependents_of(&uid);
            if !deps.is_empty() && !fins.iter().any(|f| f == FOREGROUND) {
                fins.push(FOREGROUND.into());
            }
        }
        Propagation::Background => {}
    }
    if deleting && !fins.is_empty() && fins == finalizers(&current) {
        return Some((current, false));
    }
    if fins.is_empty() {
        let last = state.remove(key)?;
        return Some((last, true));
    }
    set_finalizers(&mut obj, &fins);
    if !deleting {
        obj["metadata"]["deletionTimestamp"] = json!(now);
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    let stored = state.put(&key.res, obj);
    if fins.iter().any(|f| f == FOREGROUND) {
        for dep in state.dependents_of(&uid) {
            delete_object(state, &dep, Propagation::Foreground, now);
        }
        state.gc_queue.push_back(GcTask::CheckForeground(uid));
    }
    Some((stored, false))
}

fn blocks(dep: &Value, owner_uid: &str) -> bool {
    dep.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| {
            r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
        })
}

/// Works through the queued garbage-collection tasks until none are left.
pub fn run(state: &mut State, now: &str) {
    let mut budget = 1_000_000usize;
    while let Some(task) = state.gc_queue.pop_front() {
        budget -= 1;
        if budget == 0 {
            tracing::warn!("garbage collection stopped after too many steps");
            state.gc_queue.clear();
            return;
        }
        match task {
            GcTask::OwnerGone(uid) => {
                for dep in state.dependents_of(&uid) {
                    let Some(d) = state.get_key(&dep) else {
                        continue;
                    };
                    let others_alive = crate::store::owner_uids(&d)
                        .iter()
                        .any(|o| *o != uid && state.key_of_uid(o).is_some());
                    if others_alive {
                        let d = without_owner(&d, &uid);
                        state.put(&dep.res, d);
                    } else {
                        let policy = if d.pointer("/metadata/deletionTimestamp").is_some() {
                            Propagation::Background
                        } else {
                            default_policy(&dep.res)
                        };
                        delete_object(state, &dep, policy, now);
                        // A deleted dependent with finalizers keeps its dangling
                        // reference; it goes once its finalizers are removed.
                    }
                }
            }
            GcTask::CheckNamespace(ns) => {
                let terminating = state
                    .get("/namespaces", "", &ns)
                    .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some());
                if terminating && !state.namespace_in_use(&ns) {
                    let key = ObjKey {
                        res: Arc::from("/namespaces"),
                        namespace: String::new(),
                        name: ns,
                    };
                    state.remove(&key);
                }
            }
            GcTask::NewDependent(key) => {
                // A controller acting on a stale cache can create a dependent
                // after its owner's foreground deletion began (the Job
                // controller replacing a pod of a Job being deleted). The
                // deletion already reached the dependents that existed, so
                // this one is deleted now, as the real garbage collector
                // does; the owner would otherwise wait for it forever.
                let Some(dep) = state.get_key(&key) else {
                    continue;
                };
                let owner = crate::store::owner_uids(&dep).into_iter().find(|owner| {
                    state
                        .key_of_uid(owner)
                        .and_then(|k| state.get_key(k))
                        .is_some_and(|o| {
                            o.pointer("/metadata/deletionTimestamp").is_some()
                                && finalizers(&o).iter().any(|f| f == FOREGROUND)
                        })
                });
                if let Some(owner) = owner {
                    delete_object(state, &key, Propagation::Foreground, now);
                    state.gc_queue.push_back(GcTask::CheckForeground(owner));
                }
            }
            GcTask::CheckForeground(uid) => {
                let Some(key) = state.key_of_uid(&uid).cloned() else {
                    continue;
                };
                let Some(owner) = state.get_key(&key) else {
                    continue;
                };
                let fins = finalizers(&owner);
                if owner.pointer("/metadata/deletionTimestamp").is_none()
                    || !fins.iter().any(|f| f == FOREGROUND)
                {
                    continue;
                }
                let blocked = state
                    .dependents_of(&uid)
                    .iter()
                    .filter_map(|k| state.get_key(k))
                    .any(|d| blocks(&d, &uid));
                if blocked {
                    continue;
                }
                let rest: Vec<String> = fins.into_iter().filter(|f| f != FOREGROUND).collect();
                if rest.is_empty() {
                    state.remove(&key);
                } else {
                    let mut o = (*owner).clone();
                    set_finalizers(&mut o, &rest);
                    state.put(&key.res, o);
                }
            }
        }
    }
}

/// The propagation used when a client names none. Jobs keep the legacy
/// default of orphaning their pods, as a real server does.
pub fn default_policy(store_key: &str) -> Propagation {
    if store_key == "batch/jobs" {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn obj(name: &str, uid: &str, owner: Option<(&str, bool)>, fins: &[&str]) -> Value {
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns", "uid": uid}});
        if let Some((ou, block)) = owner {
            o["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": ou, "blockOwnerDeletion": block}]);
        }
        if !fins.is_empty() {
            o["metadata"]["finalizers"] = json!(fins);
        }
        o
    }

    fn key(name: &str) -> ObjKey {
        ObjKey {
            res: Arc::from("/configmaps"),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn background_deletion_takes_dependents_along() {
        let mut s = State::new(Registry::with_builtins(), 1000);
        s.put("/configmaps", obj("owner", "u1", None, &[]));
        s.put("/configmaps", obj("child", "u2", Some(("u1", false)), &[]));
        delete_object(&mut s, &key("owner"), Propagation::Background, "t");
        run(&mut s, "t");
        assert!(s.get_key(&key("child")).is_none());
    }

    #[test]
    fn orphan_deletion_keeps_dependents_without_the_reference() {
        let mut s = State::new(Registry::with_builtins(), 1000);
        s.put("/configmaps", obj("owner", "u1", None, &[]));
        s.put("/configmaps", obj("child", "u2", Some(("u1", false)), &[]));
        delete_object(&mut s, &key("owner"), Propagation::Orphan, "t");
        run(&mut s, "t");
        let child = s.get_key(&key("child")).expect("child kept");
        assert!(child.pointer("/metadata/ownerReferences").is_none());
    }

    /// "owner" (uid u1) deleted in the foreground while `child` (uid u2), a
    /// blocking dependent with a finalizer, holds it up.
    fn owner_deleted_in_foreground_waiting_for(child: &str) -> State {
        let mut s = State::new(Registry::with_builtins(), 1000);
        s.put("/configmaps", obj("owner", "u1", None, &[]));
        s.put(
            "/configmaps",
            obj(child, "u2", Some(("u1", true)), &["x/hold"]),
        );
        delete_object(&mut s, &key("owner"), Propagation::Foreground, "t");
        run(&mut s, "t");
        s
    }

    /// A dependent created while its owner waits in foreground deletion is
    /// deleted too, so the owner can go; one created for a live owner stays.
    /// (`put` queues the check for every new object with owners.)
    #[test]
    fn a_dependent_created_during_foreground_deletion_follows_its_owner() {
        let mut s = owner_deleted_in_foreground_waiting_for("first");
        assert!(
            s.get_key(&key("owner")).is_some(),
            "the owner waits for first"
        );

        s.put("/configmaps", obj("late", "u3", Some(("u1", true)), &[]));
        run(&mut s, "t");
        assert!(
            s.get_key(&key("late")).is_none(),
            "the late dependent is deleted"
        );

        let mut first = (*s.get_key(&key("first")).expect("first waits")).clone();
        set_finalizers(&mut first, &[]);
        s.put("/configmaps", first);
        s.remove(&key("first"));
        run(&mut s, "t");
        assert!(s.get_key(&key("owner")).is_none(), "then the owner goes");

        s.put("/configmaps", obj("boss", "u4", None, &[]));
        s.put("/configmaps", obj("kept", "u5", Some(("u4", true)), &[]));
        run(&mut s, "t");
        assert!(s.get_key(&key("kept")).is_some(), "a live owner keeps it");
    }

    #[test]
    fn foreground_owner_waits_for_a_blocking_dependent_with_a_finalizer() {
        let mut s = owner_deleted_in_foreground_waiting_for("child");
        let owner = s.get_key(&key("owner")).expect("owner waits");
        assert_eq!(owner["metadata"]["finalizers"], json!([FOREGROUND]));
        assert!(
            s.get_key(&key("child"))
                .is_some_and(|c| c.pointer("/metadata/deletionTimestamp").is_some())
        );
        // The child's finalizer goes: the child, then the owner, are removed.
        let mut c = (*s.get_key(&key("child")).unwrap()).clone();
        set_finalizers(&mut c, &[]);
        s.put("/configmaps", c);
        s.remove(&key("child"));
        run(&mut s, "t");
        assert!(s.get_key(&key("owner")).is_none());
    }
}
