//! The scheduler of the simulated cluster: watches pods, nodes and
//! namespaces, tries pending pods in arrival order whenever the cluster
//! changed since their last attempt, binds a fitting pod to the least
//! allocated node (ties by name), and marks the rest `PodScheduled=False`
//! with kube-scheduler's reason and message. Pods whose PodGroup or DRA
//! claims nothing in the cluster provides wait with the reason why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::filters::{World, anti_holders, fit_error, reasons};
use super::informer::{Change, Informer};
use super::recorder::Recorder;
use super::references::missing_reference;
use super::resources::{allocatable, pod_requests};
use super::util::{Timers, is_deleting, is_terminal, key_of, meta, sleep_until, str_at};
use crate::client::{PatchKind, Resource, SimClient};
use crate::clock::Clock;

const COMPONENT: &str = "scheduler";

struct Pending {
    seq: u64,
    tried_at: Option<u64>,
    message: String,
}

/// The scheduler's state.
pub struct Scheduler {
    client: SimClient,
    pods: Informer,
    nodes: Informer,
    namespaces: Informer,
    clock: Clock,
    rec: Recorder,
    /// Pod key → (node, requests) for pods holding resources on a node.
    assigned: BTreeMap<String, (String, BTreeMap<String, i64>)>,
    requested: BTreeMap<String, BTreeMap<String, i64>>,
    pending: BTreeMap<String, Pending>,
    seq: u64,
    generation: u64,
    retry: Timers<()>,
}

enum Wake {
    Pod(Change),
    Node,
    Namespace,
    Retry,
}

impl Scheduler {
    pub fn new(client: SimClient, clock: Clock, rec: Recorder) -> Self {
        Scheduler {
            pods: Informer::new(client.clone(), Resource::pods()),
            nodes: Informer::new(client.clone(), Resource::nodes()),
            namespaces: Informer::new(client.clone(), Resource::new("", "v1", "namespaces")),
            client,
            clock,
            rec,
            assigned: BTreeMap::new(),
            requested: BTreeMap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            generation: 1,
            retry: Timers::default(),
        }
    }

    pub async fn run(mut self) {
        loop {
            let wake = tokio::select! {
                biased;
                _ = self.namespaces.next() => Wake::Namespace,
                _ = self.nodes.next() => Wake::Node,
                c = self.pods.next() => Wake::Pod(c),
                _ = sleep_until(self.retry.next_deadline()) => Wake::Retry,
            };
            self.on_wake(wake);
            loop {
                if self.namespaces.try_next().is_some() {
                    self.on_wake(Wake::Namespace);
                } else if self.nodes.try_next().is_some() {
                    self.on_wake(Wake::Node);
                } else if let Some(c) = self.pods.try_next() {
                    self.on_wake(Wake::Pod(c));
                } else {
                    break;
                }
            }
            self.schedule_pending().await;
        }
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Namespace | Wake::Node => self.generation += 1,
            Wake::Retry => {
                self.retry.due(tokio::time::Instant::now());
                self.generation += 1;
            }
            Wake::Pod(Change::Applied(pod)) => self.account(&pod),
            Wake::Pod(Change::Deleted(pod)) => {
                let key = key_of(&pod);
                self.pending.remove(&key);
                self.unassign(&key);
            }
        }
    }

    fn unassign(&mut self, key: &str) {
        if let Some((node, req)) = self.assigned.remove(key) {
            if let Some(used) = self.requested.get_mut(&node) {
                for (r, q) in req {
                    *used.entry(r).or_default() -= q;
                }
            }
            self.generation += 1;
        }
    }

    /// Keeps the per-node requests and the pending queue in step with a pod.
    fn account(&mut self, pod: &Value) {
        let key = key_of(pod);
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() {
            let waiting = !is_deleting(pod) && !is_terminal(pod);
            if waiting && !self.pending.contains_key(&key) {
                self.seq += 1;
                let message = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                    .map(|c| str_at(c, "/message").to_string())
                    .unwrap_or_default();
                self.pending.insert(
                    key,
                    Pending {
                        seq: self.seq,
                        tried_at: None,
                        message,
                    },
                );
            } else if !waiting {
                self.pending.remove(&key);
            } else if let Some(p) = self.pending.get_mut(&key) {
                // The pod itself changed (gates lifted, tolerations added): look again.
                p.tried_at = None;
            }
            return;
        }
        self.pending.remove(&key);
        if is_terminal(pod) {
            self.unassign(&key);
        } else if !self.assigned.contains_key(&key) {
            let mut req = pod_requests(pod);
            *req.entry("pods".into()).or_default() += 1000;
            let used = self.requested.entry(node.to_string()).or_default();
            for (r, q) in &req {
                *used.entry(r.clone()).or_default() += q;
            }
            self.assigned.insert(key, (node.to_string(), req));
            self.generation += 1;
        }
    }

    async fn schedule_pending(&mut self) {
        let generation = self.generation;
        let mut order: Vec<(u64, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.tried_at.is_none_or(|g| g < generation))
            .map(|(k, p)| (p.seq, k.clone()))
            .collect();
        order.sort();
        for (_, key) in order {
            let Some(pod) = self.pods.cache.get(&key).cloned() else {
                self.pending.remove(&key);
                continue;
            };
            if let Some(p) = self.pending.get_mut(&key) {
                p.tried_at = Some(self.generation);
            }
            self.try_one(&key, &pod).await;
        }
    }

    async fn try_one(&mut self, key: &str, pod: &Value) {
        let gated = pod
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if gated {
            self.mark_unschedulable(
                key,
                pod,
                "SchedulingGated",
                "Scheduling is blocked due to non-empty scheduling gates",
            )
            .await;
            return;
        }
        if let Some(why) = missing_reference(&self.client, pod).await {
            let message = format!("0/{} nodes are available: {why}.", self.nodes.cache.len());
            self.mark_unschedulable(key, pod, "Unschedulable", &message)
                .await;
            return;
        }
        let (best, histogram) = {
            let assigned: Vec<(&Value, &str)> = self
                .assigned
                .iter()
                .filter_map(|(k, (n, _))| self.pods.cache.get(k).map(|p| (p, n.as_str())))
                .collect();
            let nodes: BTreeMap<&str, &Value> = self
                .nodes
                .cache
                .values()
                .map(|n| (meta(n, "name"), n))
                .collect();
            let namespaces: BTreeMap<&str, &Value> = self
                .namespaces
                .cache
                .values()
                .map(|n| (meta(n, "name"), n))
                .collect();
            let world = World {
                nodes: &nodes,
                anti_holders: anti_holders(&assigned),
                assigned,
                namespaces: &namespaces,
                requested: &self.requested,
            };
            let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
            let mut best: Option<(i64, String)> = None;
            let want = pod_requests(pod);
            for (name, node) in &nodes {
                let why = reasons(pod, node, &world);
                if why.is_empty() {
                    let score = free_score(node, self.requested.get(*name), &want);
                    if best.as_ref().is_none_or(|(s, _)| score > *s) {
                        best = Some((score, name.to_string()));
                    }
                } else {
                    for r in why {
                        *histogram.entry(r).or_default() += 1;
                    }
                }
            }
            (best.map(|(_, n)| n), (histogram, nodes.len()))
        };
        match best {
            Some(node) => self.bind(key, pod, &node).await,
            None => {
                let message = fit_error(histogram.1, &histogram.0);
                self.mark_unschedulable(key, pod, "Unschedulable", &message)
                    .await;
            }
        }
    }

    async fn bind(&mut self, key: &str, pod: &Value, node: &str) {
        let ns = meta(pod, "namespace");
        let name = meta(pod, "name");
        let patch = json!({"spec": {"nodeName": node}});
        let bound = match self
            .client
            .patch(&Resource::pods(), Some(ns), name, PatchKind::Merge, &patch)
            .await
        {
            Ok(obj) => obj,
            Err(e) => {
                tracing::debug!(pod = key, error = %e.message, "binding failed; retrying");
                self.retry
                    .at(tokio::time::Instant::now() + Duration::from_secs(1), ());
                return;
            }
        };
        self.rec
            .record(COMPONENT, "Bound", key, format!("node={node}"));
        self.pods.apply(bound.clone());
        self.account(&bound);
        let now = self.clock.now_rfc3339();
        let mut conditions: Vec<Value> = bound
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        let status = json!({"status": {"conditions": conditions}});
        match self
            .client
            .patch_status(&Resource::pods(), Some(ns), name, PatchKind::Merge, &status)
            .await
        {
            Ok(obj) => self.pods.apply(obj),
            Err(e) => tracing::debug!(pod = key, error = %e.message, "writing PodScheduled failed"),
        }
    }

    async fn mark_unschedulable(&mut self, key: &str, pod: &Value, reason: &str, message: &str) {
        if self.pending.get(key).is_some_and(|p| p.message == message) {
            return;
        }
        let now = self.clock.now_rfc3339();
        let mut conditions: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(
            json!({"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                               "lastProbeTime": null, "lastTransitionTime": now}),
        );
        let status = json!({"status": {"conditions": conditions}});
        let ns = meta(pod, "namespace");
        match self
            .client
            .patch_status(
                &Resource::pods(),
                Some(ns),
                meta(pod, "name"),
                PatchKind::Merge,
                &status,
            )
            .await
        {
            Ok(obj) => {
                self.rec.record(COMPONENT, reason, key, message.to_string());
                if let Some(p) = self.pending.get_mut(key) {
                    p.message = message.to_string();
                }
                self.pods.apply(obj);
            }
            Err(e) => {
                tracing::debug!(pod = key, error = %e.message, "writing PodScheduled=False failed");
                self.retry
                    .at(tokio::time::Instant::now() + Duration::from_secs(1), ());
            }
        }
    }
}

/// Least-allocated score: the share of the node left free after placing the
/// pod, averaged over the resources it asks for (thousandths).
fn free_score(
    node: &Value,
    used: Option<&BTreeMap<String, i64>>,
    want: &BTreeMap<String, i64>,
) -> i64 {
    let alloc = allocatable(node);
    let names: BTreeSet<&String> = want.keys().filter(|k| want[*k] > 0).collect();
    if names.is_empty() {
        let pods_free = alloc.get("pods").copied().unwrap_or(0)
            - used.and_then(|u| u.get("pods")).copied().unwrap_or(0);
        return pods_free;
    }
    let mut total = 0i64;
    for r in &names {
        let cap = alloc.get(*r).copied().unwrap_or(0).max(1);
        let left = cap - used.and_then(|u| u.get(*r)).copied().unwrap_or(0) - want[*r];
        total += left * 1000 / cap;
    }
    total / names.len() as i64
}
