//! The pod watches of in-place JobSets: one watch per JobSet that restarts
//! in place (gate InPlaceRestart), selected by its `jobset-name` label in
//! its namespace, started when a reconcile first sees it and ended when it
//! finishes, is deleted, or no longer restarts in place. A cluster without
//! such a JobSet runs no pod watch at all. What the watches see goes into
//! the index as [`PodFacts`], and a change reconciles the JobSet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use jobset_api::JobSet;
use jobset_api::labels::JOBSET_NAME_KEY;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

use crate::in_place::PodFacts;
use crate::index::{Index, NsName};
use crate::metrics::Metrics;

/// The running pod watches, by JobSet.
pub struct PodWatches {
    client: Client,
    index: Index,
    metrics: Arc<Metrics>,
    trigger: mpsc::UnboundedSender<ObjectRef<JobSet>>,
    running: Mutex<HashMap<NsName, tokio::task::JoinHandle<()>>>,
}

impl PodWatches {
    pub fn new(
        client: Client,
        index: Index,
        metrics: Arc<Metrics>,
        trigger: mpsc::UnboundedSender<ObjectRef<JobSet>>,
    ) -> Self {
        PodWatches {
            client,
            index,
            metrics,
            trigger,
            running: Mutex::default(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<NsName, tokio::task::JoinHandle<()>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the pod watch of `jobset` unless it runs.
    pub fn ensure(&self, jobset: &NsName) {
        let mut running = self.running();
        if running.get(jobset).is_some_and(|t| !t.is_finished()) {
            return;
        }
        tracing::info!(namespace = %jobset.0, jobset = %jobset.1, "watching the pods of an in-place JobSet");
        let task = tokio::spawn(watch_pods(
            self.client.clone(),
            self.index.clone(),
            self.metrics.clone(),
            jobset.clone(),
            self.trigger.clone(),
        ));
        running.insert(jobset.clone(), task);
        self.metrics
            .set_pod_watches(running.len(), self.index.pod_count());
    }

    /// Ends the pod watch of `jobset`, if any, and forgets its pods.
    pub fn release(&self, jobset: &NsName) {
        let mut running = self.running();
        if let Some(task) = running.remove(jobset) {
            task.abort();
            tracing::info!(namespace = %jobset.0, jobset = %jobset.1, "no longer watching the pods of a JobSet");
            self.index.forget_pods(jobset);
            self.metrics
                .set_pod_watches(running.len(), self.index.pod_count());
        }
    }
}

impl Drop for PodWatches {
    fn drop(&mut self) {
        for (_, task) in self.running().drain() {
            task.abort();
        }
    }
}

async fn watch_pods(
    client: Client,
    index: Index,
    metrics: Arc<Metrics>,
    jobset: NsName,
    mut trigger: mpsc::UnboundedSender<ObjectRef<JobSet>>,
) {
    let api: Api<Pod> = Api::namespaced(client, &jobset.0);
    let selector = format!("{JOBSET_NAME_KEY}={}", jobset.1);
    let owner = ObjectRef::new(&jobset.1).within(&jobset.0);
    let mut stream = watcher::watcher(api, watcher::Config::default().labels(&selector))
        .backoff(crate::controller::steady())
        .boxed();
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Apply(pod)) => index.upsert_pod(&jobset, PodFacts::of(&pod)),
            Ok(Event::Delete(pod)) => {
                index.remove_pod(&jobset, pod.metadata.name.as_deref().unwrap_or_default())
            }
            Ok(Event::Init) => {
                buffer.clear();
                false
            }
            Ok(Event::InitApply(pod)) => {
                buffer.push(PodFacts::of(&pod));
                false
            }
            Ok(Event::InitDone) => {
                index.reset_pods(&jobset, std::mem::take(&mut buffer));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, namespace = %jobset.0, jobset = %jobset.1, "pod watch failed; retrying");
                false
            }
        };
        if changed {
            metrics.set_watched_pods(index.pod_count());
            let _ = trigger.send(owner.clone()).await;
        }
    }
}
