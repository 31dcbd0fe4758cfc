//! Wiring: the watches that feed the index (Jobs with the JobSet label,
//! Services as metadata only, Nodes as a projection, plugin ConfigMaps) and
//! the kube-runtime controller over JobSets that reconciles many JobSets
//! in parallel, never one twice at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::events::Recorder;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use jobset_api::JobSet;
use jobset_api::labels::JOBSET_NAME_KEY;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Service};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as RuntimeConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

use crate::clock::Clock;
use crate::health::Health;
use crate::index::{Index, controller_name};
use crate::job_builder::JOBSET_KIND;
use crate::metrics::Metrics;
use crate::pod_watch::PodWatches;
use crate::policy::{CompileNotice, Metered, PluginConfigMaps, PolicyEngine, ShadowReport};
use crate::reconcile::{Context, Observer, error_policy, reconcile};

/// The label that marks a ConfigMap as a policy plugin.
pub const PLUGIN_LABEL: &str = "policy.jobset.dev/plugin";

/// How the controller runs.
#[derive(Clone)]
pub struct ControllerConfig {
    /// JobSets reconciled at once.
    pub concurrency: u16,
    /// Feature gates that are on (upstream names); none by default.
    pub feature_gates: Vec<String>,
    /// The reporting controller name on events.
    pub reporter: String,
    pub clock: Clock,
    pub observer: Option<Observer>,
    /// Where the watches report that they have synced (for `/readyz`).
    pub health: Arc<Health>,
    /// The one namespace whose plugin ConfigMaps are watched; `None`
    /// watches every namespace (namespace plugins).
    pub plugin_watch_namespace: Option<String>,
    /// The shortest time between two status writes of one JobSet that
    /// change only its counts (`StatusPacing`); zero writes each change.
    pub status_interval: Duration,
    /// Failed pods kept per failed Job for an outcome plugin that asks
    /// for pod facts.
    pub failed_pods_per_job: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            concurrency: 16,
            // Upstream's alpha gates are all off unless turned on.
            feature_gates: Vec::new(),
            // The reporting controller of upstream's events.
            reporter: "jobset".to_string(),
            clock: Clock::wall(),
            observer: None,
            health: Arc::new(Health::default()),
            plugin_watch_namespace: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
            failed_pods_per_job: crate::failed_pods::DEFAULT_PODS_PER_JOB,
        }
    }
}

/// The default of `ControllerConfig::status_interval`.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// A retry schedule without jitter, so runs under a virtual clock repeat.
pub(crate) struct SteadyBackoff {
    next: Duration,
}

impl Iterator for SteadyBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for SteadyBackoff {
    fn reset(&mut self) {
        self.next = Duration::from_millis(800);
    }
}

pub(crate) fn steady() -> SteadyBackoff {
    SteadyBackoff {
        next: Duration::from_millis(800),
    }
}

/// Every object of a cluster-scoped kind, watched with the steady backoff.
fn watch_cluster<K>(
    client: Client,
) -> futures::stream::BoxStream<'static, watcher::Result<Event<K>>>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(Api::<K>::all(client), watcher::Config::default())
        .backoff(steady())
        .boxed()
}

fn owner_of_job(job: &Job) -> Option<ObjectRef<JobSet>> {
    let ns = job.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(controller_name(job)?).within(ns))
}

fn owner_of_meta(meta: &kube::api::ObjectMeta) -> Option<ObjectRef<JobSet>> {
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == JOBSET_KIND)?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

type Trigger = mpsc::UnboundedSender<ObjectRef<JobSet>>;

async fn watch_jobs(client: Client, index: Index, health: Arc<Health>, mut tx: Trigger) {
    let api: Api<Job> = Api::all(client);
    let cfg = watcher::Config::default().labels(JOBSET_NAME_KEY);
    let mut stream = watcher::watcher(api, cfg)
        .modify(crate::index::slim)
        .backoff(steady())
        .boxed();
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(job)) => {
                let owner = owner_of_job(&job);
                index.upsert_job(job);
                if let Some(o) = owner {
                    let _ = tx.send(o).await;
                }
            }
            Ok(Event::Delete(job)) => {
                index.remove_deleted_job(&job);
                if let Some(o) = owner_of_job(&job) {
                    let _ = tx.send(o).await;
                }
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(job)) => buffer.push(job),
            Ok(Event::InitDone) => {
                let owners: Vec<_> = buffer.iter().filter_map(owner_of_job).collect();
                index.reset_jobs(std::mem::take(&mut buffer));
                health.watch_synced("jobs");
                for o in owners {
                    let _ = tx.send(o).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "Job watch failed; retrying"),
        }
    }
}

async fn watch_services(client: Client, index: Index, health: Arc<Health>, mut tx: Trigger) {
    let api: Api<PartialObjectMeta<Service>> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .backoff(steady())
        .boxed();
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev @ (Event::Apply(_) | Event::Delete(_))) => {
                let (m, deleted) = match ev {
                    Event::Delete(m) => (m, true),
                    Event::Apply(m) => {
                        let going = m.metadata.deletion_timestamp.is_some();
                        (m, going)
                    }
                    _ => continue,
                };
                let ns = m.metadata.namespace.clone().unwrap_or_default();
                let name = m.metadata.name.clone().unwrap_or_default();
                let Some(owner) = owner_of_meta(&m.metadata) else {
                    continue;
                };
                // A Delete event and an object being deleted both mean gone.
                index.set_service(&ns, &name, !deleted);
                let _ = tx.send(owner).await;
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(m)) => {
                if owner_of_meta(&m.metadata).is_some() {
                    buffer.push((
                        m.metadata.namespace.clone().unwrap_or_default(),
                        m.metadata.name.clone().unwrap_or_default(),
                    ));
                }
            }
            Ok(Event::InitDone) => {
                index.reset_services(std::mem::take(&mut buffer));
                health.watch_synced("services");
            }
            Err(e) => tracing::warn!(error = %e, "Service watch failed; retrying"),
        }
    }
}

async fn watch_nodes(
    client: Client,
    index: Index,
    ctx: Arc<Context>,
    health: Arc<Health>,
    mut tx: Trigger,
) {
    let mut stream = watch_cluster::<Node>(client);
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Apply(n)) => {
                index.upsert_node(&n);
                true
            }
            Ok(Event::Delete(n)) => {
                index.remove_node(n.metadata.name.as_deref().unwrap_or(""));
                true
            }
            Ok(Event::Init) => {
                buffer.clear();
                false
            }
            Ok(Event::InitApply(n)) => {
                buffer.push(n);
                false
            }
            Ok(Event::InitDone) => {
                index.reset_nodes(&std::mem::take(&mut buffer));
                health.watch_synced("nodes");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "Node watch failed; retrying");
                false
            }
        };
        if changed {
            for js in ctx.waiting() {
                let _ = tx.send(js).await;
            }
        }
    }
}

/// PriorityClasses, so exclusivity compares the priority admission gives
/// pods. Not part of readiness: without this watch (a role without the
/// permission) pods of a JobSet count with priority 0 unless they set one.
async fn watch_priority_classes(client: Client, index: Index) {
    let mut stream = watch_cluster::<PriorityClass>(client);
    let mut buffer = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(pc)) => index.upsert_priority_class(&pc),
            Ok(Event::Delete(pc)) => {
                index.remove_priority_class(pc.metadata.name.as_deref().unwrap_or(""));
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(pc)) => buffer.push(pc),
            Ok(Event::InitDone) => index.reset_priority_classes(&std::mem::take(&mut buffer)),
            Err(e) => tracing::warn!(error = %e, "PriorityClass watch failed; retrying"),
        }
    }
}

async fn watch_plugins(
    client: Client,
    namespace: Option<String>,
    plugins: Arc<dyn PluginConfigMaps>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    health: Arc<Health>,
    mut all: mpsc::UnboundedSender<()>,
) {
    let api: Api<ConfigMap> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let cfg = watcher::Config::default().labels(PLUGIN_LABEL);
    let mut stream = watcher::watcher(api, cfg).backoff(steady()).boxed();
    metrics.set_plugins(plugins.stats());
    // Plugins compiled on demand end off this task: a failure is reported
    // on its ConfigMap like a rejected update, and either way the JobSets
    // waiting for it are reconciled again.
    let (compiled_tx, mut compiled) = mpsc::unbounded::<CompileNotice>();
    plugins.on_compiled(Box::new(move |notice| {
        let _ = compiled_tx.unbounded_send(notice.clone());
    }));
    // Shadow decisions: counted, logged, and a divergence reported once
    // per JobSet, attempt and slot as an event on the JobSet.
    let (shadow_tx, mut shadows) = mpsc::unbounded::<ShadowReport>();
    plugins.on_shadow(Box::new(move |report| {
        let _ = shadow_tx.unbounded_send(report.clone());
    }));
    let mut diverged: std::collections::HashSet<(String, i32, &'static str)> =
        std::collections::HashSet::new();
    // The plugin ConfigMaps seen, to name them in those reports.
    let mut seen: HashMap<String, ObjectReference> = HashMap::new();
    let rejected = |why: String| crate::events::Event {
        type_: crate::conditions::EventType::Warning,
        reason: "PluginRejected".to_string(),
        action: "LoadPlugin".to_string(),
        note: why,
    };
    loop {
        let ev = tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => ev,
                None => return,
            },
            Some(notice) = compiled.next() => {
                metrics.set_plugins(plugins.stats());
                if let (Some(why), Some(reference)) = (notice.error, seen.get(&notice.configmap)) {
                    let why = format!("plugin {} was not compiled: {why}", notice.plugin);
                    let _ = recorder.publish(&rejected(why), reference).await;
                }
                let _ = all.send(()).await;
                continue;
            }
            Some(report) = shadows.next() => {
                shadow_report(&report, &metrics, &recorder, &mut diverged).await;
                continue;
            }
        };
        match ev {
            Ok(Event::Apply(cm)) | Ok(Event::InitApply(cm)) => {
                let reference = crate::events::regarding(&cm);
                seen.insert(configmap_key(&cm), reference.clone());
                let outcome = plugins.upsert(&cm);
                metrics.set_plugins(plugins.stats());
                if let Err(why) = outcome {
                    tracing::warn!(configmap = ?cm.metadata.name, reason = %why, "plugin rejected; the last good version stays in force");
                    let _ = recorder.publish(&rejected(why), &reference).await;
                }
                let _ = all.send(()).await;
            }
            Ok(Event::Delete(cm)) => {
                seen.remove(&configmap_key(&cm));
                plugins.remove(
                    cm.metadata.namespace.as_deref().unwrap_or(""),
                    cm.metadata.name.as_deref().unwrap_or(""),
                );
                metrics.set_plugins(plugins.stats());
                let _ = all.send(()).await;
            }
            Ok(Event::InitDone) => health.watch_synced("plugins"),
            Ok(Event::Init) => {}
            Err(e) => tracing::warn!(error = %e, "plugin ConfigMap watch failed; retrying"),
        }
    }
}

/// Counts and logs a shadow decision; the first divergence of a JobSet's
/// attempt in a slot becomes a Normal `ShadowDiverged` event on it naming
/// both plugins and both verdicts.
async fn shadow_report(
    report: &ShadowReport,
    metrics: &Metrics,
    recorder: &Recorder,
    diverged: &mut std::collections::HashSet<(String, i32, &'static str)>,
) {
    let slot = report.slot.as_str();
    metrics.shadow(slot, &report.active, &report.shadow, report.result.as_str());
    use jobset_policy::shadow::ShadowResult;
    match report.result {
        ShadowResult::Agree => return,
        ShadowResult::ShadowFailed => {
            tracing::info!(jobset = %report.jobset, slot, shadow = %report.shadow,
                error = %report.shadow_verdict, "shadow plugin failed; the active decision stands");
            return;
        }
        ShadowResult::Diverge => {}
    }
    tracing::info!(jobset = %report.jobset, slot, active = %report.active, shadow = %report.shadow,
        active_verdict = %report.active_verdict, shadow_verdict = %report.shadow_verdict,
        "shadow plugin diverges");
    if diverged.len() > 100_000 {
        diverged.clear();
    }
    if !diverged.insert((report.uid.clone(), report.attempt, slot)) {
        return;
    }
    let (namespace, name) = report
        .jobset
        .split_once('/')
        .unwrap_or(("", &report.jobset));
    let cut = |v: &str| -> String {
        if v.len() <= 300 {
            v.to_string()
        } else {
            let mut end = 300;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &v[..end])
        }
    };
    let ev = crate::events::Event {
        type_: crate::conditions::EventType::Normal,
        reason: "ShadowDiverged".to_string(),
        action: "ShadowDecision".to_string(),
        note: format!(
            "shadow plugin {} would decide {} differently from {} (attempt {}): active {}; shadow {}",
            report.shadow,
            slot,
            report.active,
            report.attempt,
            cut(&report.active_verdict),
            cut(&report.shadow_verdict)
        ),
    };
    let reference = ObjectReference {
        api_version: Some("jobset.x-k8s.io/v1alpha2".to_string()),
        kind: Some(JOBSET_KIND.to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        uid: Some(report.uid.clone()),
        ..Default::default()
    };
    let _ = recorder.publish(&ev, &reference).await;
}

/// `namespace/name` of a ConfigMap, as a [`CompileNotice`] names it.
fn configmap_key(cm: &ConfigMap) -> String {
    format!(
        "{}/{}",
        cm.metadata.namespace.as_deref().unwrap_or(""),
        cm.metadata.name.as_deref().unwrap_or("")
    )
}

/// Aborts the spawned watch tasks when the controller's future ends or is
/// dropped (leadership lost), so that nothing of it keeps running.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>, Arc<Health>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
        self.1.watches_stopped();
    }
}

/// Runs the controller until `shutdown` resolves. Dropping the returned
/// future stops every task it started at once (nothing keeps writing).
pub async fn run(
    client: Client,
    config: ControllerConfig,
    policies: Arc<dyn PolicyEngine>,
    plugins: Option<Arc<dyn PluginConfigMaps>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let index = Index::default();
    let health = config.health.clone();
    let recorder = Recorder::new(
        client.clone(),
        config.reporter.clone(),
        config.clock.clone(),
    );
    metrics.set_max_concurrent(config.concurrency);
    let plugin_metrics = metrics.clone();
    let policies: Arc<dyn PolicyEngine> = Arc::new(Metered {
        inner: policies,
        metrics: metrics.clone(),
    });
    let (tx, rx) = mpsc::unbounded();
    let pod_watches = Arc::new(PodWatches::new(
        client.clone(),
        index.clone(),
        metrics.clone(),
        tx.clone(),
    ));
    let mut context = Context::new(
        client.clone(),
        index.clone(),
        policies,
        metrics,
        recorder.clone(),
        config.clock.clone(),
        config.feature_gates.clone(),
        config.observer.clone(),
    );
    context.pod_watches = Some(pod_watches.clone());
    context.status_pacing = crate::reconcile::StatusPacing::new(config.status_interval);
    context.failed_pods = crate::failed_pods::FailedPods::new(config.failed_pods_per_job);
    let ctx = Arc::new(context);
    let forget_facts = ctx.clone();
    let (all_tx, all_rx) = mpsc::unbounded();
    for w in ["jobsets", "jobs", "services", "nodes"] {
        health.watch_started(w);
    }
    let mut tasks = vec![
        tokio::spawn(watch_jobs(
            client.clone(),
            index.clone(),
            health.clone(),
            tx.clone(),
        )),
        tokio::spawn(watch_services(
            client.clone(),
            index.clone(),
            health.clone(),
            tx.clone(),
        )),
        tokio::spawn(watch_nodes(
            client.clone(),
            index.clone(),
            ctx.clone(),
            health.clone(),
            tx.clone(),
        )),
        tokio::spawn(watch_priority_classes(client.clone(), index.clone())),
        recorder.spawn_flusher(),
    ];
    if let Some(plugins) = plugins {
        health.watch_started("plugins");
        tasks.push(tokio::spawn(watch_plugins(
            client.clone(),
            config.plugin_watch_namespace.clone(),
            plugins,
            plugin_metrics,
            recorder,
            health.clone(),
            all_tx,
        )));
    }
    // The JobSet watch is built here rather than by `Controller::new` so
    // that its first full list can be reported to `/readyz`.
    let jobsets: Api<JobSet> = Api::all(client);
    let writer = kube::runtime::reflector::store::Writer::<JobSet>::default();
    let reader = writer.as_reader();
    let synced = health.clone();
    let trigger = kube::runtime::reflector(
        writer,
        watcher::watcher(jobsets, watcher::Config::default()),
    )
    .inspect(move |ev| match ev {
        Ok(Event::InitDone) => synced.watch_synced("jobsets"),
        // A deleted JobSet is never reconciled again: its pod watch ends
        // here, and so do the pod facts held for it.
        Ok(Event::Delete(js)) => {
            pod_watches.release(&(
                js.metadata.namespace.clone().unwrap_or_default(),
                js.metadata.name.clone().unwrap_or_default(),
            ));
            forget_facts
                .failed_pods
                .forget(js.metadata.uid.as_deref().unwrap_or_default());
        }
        _ => {}
    })
    .applied_objects();
    let controller = Controller::for_stream(trigger, reader)
        .with_config(RuntimeConfig::default().concurrency(config.concurrency))
        .trigger_backoff(steady());
    let _guard = AbortOnDrop(tasks, health);
    controller
        .reconcile_on(rx)
        .reconcile_all_on(all_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
