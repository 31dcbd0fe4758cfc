//! The Job controller of the simulated cluster, as Kubernetes runs it: it
//! watches Jobs and pods, asks `job_status::plan` what to do, and carries
//! it out through the API (status first, then finalizers, deletions and
//! creations), so counts survive pod deletion as with the real controller.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::informer::{Change, Informer};
use super::job_pods::{TRACKING_FINALIZER, build_pod, pod_name};
use super::job_status::{JobMemory, plan};
use super::recorder::Recorder;
use super::util::{
    Rng, Timers, controller_uid, is_deleting, is_terminal, key_of, meta, sleep_until,
};
use crate::client::{PatchKind, Resource, SimClient};
use crate::clock::Clock;

const COMPONENT: &str = "job-controller";

/// The Job controller's state; `run` drives it until the task is aborted.
pub struct JobController {
    client: SimClient,
    jobs: Informer,
    pods: Informer,
    clock: Clock,
    rec: Recorder,
    rng: Rng,
    memory: BTreeMap<String, JobMemory>,
    job_by_uid: BTreeMap<String, String>,
    pods_by_owner: BTreeMap<String, BTreeSet<String>>,
    orphans: BTreeSet<String>,
    dirty: BTreeSet<String>,
    timers: Timers<String>,
}

enum Wake {
    Job(Change),
    Pod(Change),
    Timer,
}

impl JobController {
    pub fn new(client: SimClient, clock: Clock, rec: Recorder, seed: u64) -> Self {
        JobController {
            jobs: Informer::new(client.clone(), Resource::jobs()),
            pods: Informer::new(client.clone(), Resource::pods()),
            client,
            clock,
            rec,
            rng: Rng::new(seed ^ 0x6a6f_6273),
            memory: BTreeMap::new(),
            job_by_uid: BTreeMap::new(),
            pods_by_owner: BTreeMap::new(),
            orphans: BTreeSet::new(),
            dirty: BTreeSet::new(),
            timers: Timers::default(),
        }
    }

    pub async fn run(mut self) {
        loop {
            let wake = tokio::select! {
                biased;
                c = self.jobs.next() => Wake::Job(c),
                c = self.pods.next() => Wake::Pod(c),
                _ = sleep_until(self.timers.next_deadline()) => Wake::Timer,
            };
            self.on_wake(wake);
            loop {
                if let Some(c) = self.jobs.try_next() {
                    self.on_wake(Wake::Job(c));
                } else if let Some(c) = self.pods.try_next() {
                    self.on_wake(Wake::Pod(c));
                } else {
                    break;
                }
            }
            for key in std::mem::take(&mut self.orphans) {
                self.release_orphan(&key).await;
            }
            for key in std::mem::take(&mut self.dirty) {
                self.reconcile(&key).await;
            }
        }
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Timer => {
                for key in self.timers.due(Instant::now()) {
                    self.dirty.insert(key);
                }
            }
            Wake::Job(Change::Applied(job)) => {
                let key = key_of(&job);
                self.job_by_uid
                    .insert(meta(&job, "uid").to_string(), key.clone());
                self.dirty.insert(key);
            }
            Wake::Job(Change::Deleted(job)) => {
                let uid = meta(&job, "uid").to_string();
                self.job_by_uid.remove(&uid);
                self.memory.remove(&uid);
                for pod in self.pods_by_owner.get(&uid).into_iter().flatten() {
                    self.orphans.insert(pod.clone());
                }
            }
            Wake::Pod(change) => {
                let pod = change.object();
                let key = key_of(pod);
                let Some(owner) = controller_uid(pod, "Job").map(String::from) else {
                    if has_tracking(pod) {
                        self.orphans.insert(key);
                    }
                    return;
                };
                match &change {
                    Change::Applied(_) => {
                        self.pods_by_owner
                            .entry(owner.clone())
                            .or_default()
                            .insert(key.clone());
                    }
                    Change::Deleted(_) => {
                        if let Some(set) = self.pods_by_owner.get_mut(&owner) {
                            set.remove(&key);
                            if set.is_empty() {
                                self.pods_by_owner.remove(&owner);
                            }
                        }
                    }
                }
                match self.job_by_uid.get(&owner) {
                    Some(job) => {
                        self.dirty.insert(job.clone());
                    }
                    None if has_tracking(pod) => {
                        self.orphans.insert(key);
                    }
                    None => {}
                }
            }
        }
    }

    fn requeue(&mut self, key: &str, after: Duration) {
        self.timers.at(Instant::now() + after, key.to_string());
    }

    /// A pod whose Job is gone keeps nothing to count: its finalizer goes
    /// once it has stopped (or never started).
    async fn release_orphan(&mut self, key: &str) {
        let Some(pod) = self.pods.cache.get(key).cloned() else {
            return;
        };
        let owner_alive =
            controller_uid(&pod, "Job").is_some_and(|u| self.job_by_uid.contains_key(u));
        if owner_alive || !has_tracking(&pod) {
            return;
        }
        let unscheduled = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if is_terminal(&pod) || unscheduled || !is_deleting(&pod) {
            self.release(&pod).await;
        }
    }

    async fn release(&mut self, pod: &Value) -> bool {
        let rest: Vec<Value> = pod
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.as_str() != Some(TRACKING_FINALIZER))
            .cloned()
            .collect();
        let fins = if rest.is_empty() {
            Value::Null
        } else {
            json!(rest)
        };
        let patch = json!({"metadata": {"finalizers": fins}});
        let ns = meta(pod, "namespace");
        match self
            .client
            .patch(
                &Resource::pods(),
                Some(ns),
                meta(pod, "name"),
                PatchKind::Merge,
                &patch,
            )
            .await
        {
            Ok(obj) => {
                if is_deleting(&obj) && rest.is_empty() {
                    self.pods.forget(&key_of(pod));
                } else {
                    self.pods.apply(obj);
                }
                true
            }
            Err(e) if e.code == 404 => true,
            Err(e) => {
                tracing::debug!(pod = %key_of(pod), error = %e.message, "releasing the tracking finalizer failed");
                false
            }
        }
    }

    async fn reconcile(&mut self, key: &str) {
        let Some(job) = self.jobs.cache.get(key).cloned() else {
            return;
        };
        let uid = meta(&job, "uid").to_string();
        let pods: Vec<Value> = self
            .pods_by_owner
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.cache.get(k).cloned())
            .collect();
        if is_deleting(&job) {
            for pod in pods.iter().filter(|p| has_tracking(p)) {
                let unscheduled = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty);
                if is_terminal(pod) || unscheduled {
                    self.release(pod).await;
                }
            }
            return;
        }
        let refs: Vec<&Value> = pods.iter().collect();
        let mem = self.memory.entry(uid.clone()).or_default().clone();
        let now = self.clock.now_secs();
        let now_str = crate::clock::format_rfc3339(now);
        let mono = self.rec.elapsed().as_millis() as u64;
        let p = plan(&job, &refs, &mem, now, &now_str, mono);
        let ns = meta(&job, "namespace").to_string();
        if let Some(status) = &p.status {
            let patch = json!({"status": status});
            match self
                .client
                .patch_status(
                    &Resource::jobs(),
                    Some(&ns),
                    meta(&job, "name"),
                    PatchKind::Merge,
                    &patch,
                )
                .await
            {
                Ok(obj) => self.jobs.apply(obj),
                Err(e) => {
                    tracing::debug!(job = key, error = %e.message, "job status write failed; retrying");
                    self.requeue(key, Duration::from_secs(1));
                    return;
                }
            }
            for c in &p.new_conditions {
                self.rec.record(COMPONENT, "JobCondition", key, c.clone());
            }
        }
        {
            let m = self.memory.entry(uid.clone()).or_default();
            let mut any_failed = false;
            for (pod_uid, failed) in &p.newly_counted {
                m.counted.insert(pod_uid.clone());
                any_failed |= *failed;
            }
            if any_failed {
                m.last_failure = Some(mono);
            }
            if p.started {
                m.started_ms = Some(mono);
            }
            m.consecutive_failures = p.consecutive_failures;
        }
        let mut retry = false;
        for name in &p.release {
            if let Some(pod) = pods.iter().find(|x| meta(x, "name") == name) {
                retry |= !self.release(pod).await;
            }
        }
        for (name, for_suspend) in &p.delete {
            match self
                .client
                .delete(&Resource::pods(), Some(&ns), name, None)
                .await
            {
                Ok(obj) => {
                    if *for_suspend && let Some(m) = self.memory.get_mut(&uid) {
                        m.suspend_deleted.insert(meta(&obj, "uid").to_string());
                    }
                    self.rec.record(
                        COMPONENT,
                        "PodDeleted",
                        &format!("{ns}/{name}"),
                        String::new(),
                    );
                    if is_deleting(&obj) {
                        self.pods.apply(obj);
                    } else {
                        self.pods.forget(&format!("{ns}/{name}"));
                    }
                }
                Err(e) if e.code == 404 => {}
                Err(_) => retry = true,
            }
        }
        for new in &p.create {
            let name = pod_name(meta(&job, "name"), new.index, &mut self.rng);
            let pod = build_pod(&job, &name, new.index, new.index_failures);
            match self.client.create(&Resource::pods(), Some(&ns), &pod).await {
                Ok(obj) => {
                    let detail = new.index.map(|i| format!("index={i}")).unwrap_or_default();
                    self.rec
                        .record(COMPONENT, "PodCreated", &key_of(&obj), detail);
                    self.pods_by_owner
                        .entry(uid.clone())
                        .or_default()
                        .insert(key_of(&obj));
                    self.pods.apply(obj);
                }
                Err(e) => {
                    tracing::debug!(job = key, error = %e.message, "pod creation failed; retrying");
                    retry = true;
                    break;
                }
            }
        }
        if retry {
            self.requeue(key, Duration::from_secs(1));
        }
        if let Some(at) = p.requeue_at {
            self.requeue(key, Duration::from_millis(at.saturating_sub(mono).max(1)));
        }
    }
}

fn has_tracking(pod: &Value) -> bool {
    pod.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(TRACKING_FINALIZER)))
}
