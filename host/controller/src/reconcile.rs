//! One reconcile of one JobSet: observe (from the index), plan, apply,
//! write the status once, then emit the queued events. Also the per-object
//! error backoff. Runs inside one tracing span per reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobset_api::{JobSet, JobSetStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use tracing::Instrument;

use crate::actions::{Action, EventSpec, Terminal};
use crate::apply::Applier;
use crate::clock::Clock;
use crate::error::ControllerError;
use crate::events::{Event, Recorder, regarding};
use crate::failed_pods::{Collected, FailedPods};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::placement::occupant_of;
use crate::plan::{Inputs, Plan, plan};
use crate::pod_watch::PodWatches;
use crate::policy::PolicyEngine;

/// What a reconcile reports to an observer (`jobset run` shows it).
#[derive(Clone, Debug)]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub plan: Plan,
}

/// Called after every successful reconcile.
pub type Observer = Arc<dyn Fn(&Report) + Send + Sync>;

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub index: Index,
    pub policies: Arc<dyn PolicyEngine>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub clock: Clock,
    pub feature_gates: Vec<String>,
    pub observer: Option<Observer>,
    /// Consecutive failures per JobSet, for the error backoff.
    failures: Mutex<HashMap<ObjectRef<JobSet>, u32>>,
    /// JobSets waiting for a placement (reconciled again when Nodes change).
    waiting: Mutex<HashMap<ObjectRef<JobSet>, ()>>,
    /// The pod watches of in-place JobSets.
    pub pod_watches: Option<Arc<PodWatches>>,
    /// Held by a reconcile of an exclusive JobSet from reading who holds
    /// which domain until its own pins are reserved, so that two JobSets
    /// planned in parallel never pick the same free domain.
    placing: Mutex<()>,
    /// Spaces out the status writes that change only a JobSet's counts.
    pub status_pacing: StatusPacing,
    /// Failed pods of failed Jobs held for outcome plugins that asked.
    pub failed_pods: FailedPods,
}

/// Spaces out status writes that change nothing but a JobSet's
/// `replicatedJobsStatus` counts: within `interval` of the JobSet's last
/// status write such a write waits (the reconcile comes back when the
/// interval ends), so a burst of Job changes makes one write rather than
/// one per Job. Conditions, restarts and the terminal state are written at
/// once. Upstream reconciles one JobSet at a time, which folds a burst in
/// its work queue to a similar effect; ours reconciles in parallel and
/// would otherwise write each intermediate count.
#[derive(Default)]
pub struct StatusPacing {
    interval: Duration,
    last: Mutex<HashMap<ObjectRef<JobSet>, tokio::time::Instant>>,
}

/// Entries kept before the ones older than the interval are dropped.
const PACING_KEPT: usize = 1024;

impl StatusPacing {
    /// Pacing with this interval; zero writes every change at once.
    pub fn new(interval: Duration) -> Self {
        StatusPacing {
            interval,
            last: Mutex::default(),
        }
    }

    /// How long a counts-only write of this JobSet must still wait.
    fn wait(&self, key: &ObjectRef<JobSet>) -> Option<Duration> {
        if self.interval.is_zero() {
            return None;
        }
        let now = tokio::time::Instant::now();
        let last = self.last.lock().ok()?;
        let due = *last.get(key)? + self.interval;
        (due > now).then(|| due - now)
    }

    /// Notes a status write of this JobSet.
    fn wrote(&self, key: ObjectRef<JobSet>) {
        if self.interval.is_zero() {
            return;
        }
        let now = tokio::time::Instant::now();
        if let Ok(mut last) = self.last.lock() {
            last.insert(key, now);
            if last.len() > PACING_KEPT {
                last.retain(|_, t| now.duration_since(*t) < self.interval);
            }
        }
    }
}

/// Whether `new` differs from `stored` in the counts only.
fn counts_only(stored: Option<&JobSetStatus>, new: &JobSetStatus) -> bool {
    let none = JobSetStatus::default();
    let stored = stored.unwrap_or(&none);
    let mut same_counts = new.clone();
    same_counts
        .replicated_jobs_status
        .clone_from(&stored.replicated_jobs_status);
    same_counts == *stored
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        index: Index,
        policies: Arc<dyn PolicyEngine>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        clock: Clock,
        feature_gates: Vec<String>,
        observer: Option<Observer>,
    ) -> Self {
        Context {
            client,
            index,
            policies,
            metrics,
            recorder,
            clock,
            feature_gates,
            observer,
            failures: Mutex::default(),
            waiting: Mutex::default(),
            placing: Mutex::default(),
            pod_watches: None,
            status_pacing: StatusPacing::default(),
            failed_pods: FailedPods::new(crate::failed_pods::DEFAULT_PODS_PER_JOB),
        }
    }

    /// The JobSets that wait for a topology domain.
    pub fn waiting(&self) -> Vec<ObjectRef<JobSet>> {
        self.waiting
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Emits the plan's events about the JobSet as it is after the status write
/// (its new resource version), as upstream does.
async fn emit(recorder: &Recorder, reference: &ObjectReference, events: &[EventSpec]) {
    for e in events {
        let ev = Event::reconciling(e.type_, e.reason.clone(), e.message.clone());
        if let Err(err) = recorder.publish(&ev, reference).await {
            tracing::warn!(error = %err, reason = %e.reason, "could not emit event");
        }
    }
}

/// Reconciles one JobSet.
pub async fn reconcile(js: Arc<JobSet>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let name = js.metadata.name.clone().unwrap_or_default();
    let namespace = js.metadata.namespace.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", jobset = %name, namespace = %namespace);
    let started = Instant::now();
    let worker = ctx.metrics.worker();
    let result = reconcile_inner(&js, &ctx).instrument(span).await;
    drop(worker);
    let key = ObjectRef::from_obj(js.as_ref());
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(|e| e.metric_label()),
        result.as_ref().is_ok_and(|a| *a != Requeue::await_change()),
    );
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&key);
    }
    result
}

/// Observes the index and plans one reconcile (with its plugin calls).
fn plan_now(js: &JobSet, ctx: &Context, failed_pods: &Collected) -> Result<Plan, ControllerError> {
    let uid = js.metadata.uid.clone().unwrap_or_default();
    let namespace = js.metadata.namespace.clone().unwrap_or_default();
    let jobs = ctx.index.jobs_of(&uid);
    let service_name = jobset_api::naming::headless_service_name(js).to_string();
    let existing_pvcs = ctx.index.pvcs_in(&namespace);
    let nodes = ctx.index.nodes();
    // A poisoned lock only means another plan panicked; the unit it guards
    // holds no data.
    let _placing =
        uses_exclusive_placement(js).then(|| ctx.placing.lock().unwrap_or_else(|e| e.into_inner()));
    let occupants = ctx.index.occupants();
    let priority_classes = ctx.index.priority_classes();
    let pods = ctx.index.pods_of(&(
        namespace.clone(),
        js.metadata.name.clone().unwrap_or_default(),
    ));
    let inputs = Inputs {
        jobset: js,
        jobs: &jobs,
        service_exists: ctx.index.has_service(&namespace, &service_name),
        existing_pvcs: &existing_pvcs,
        nodes: &nodes,
        occupants: &occupants,
        now: ctx.clock.now(),
        feature_gates: &ctx.feature_gates,
        priority_classes: &priority_classes,
        pods: pods.as_deref(),
        failed_pods: Some(failed_pods),
    };
    let planned = plan(inputs, ctx.policies.as_ref())?;
    reserve_pins(&ctx.index, &namespace, &planned);
    Ok(planned)
}

/// Plans off the async runtime: planning makes the plugin calls, so the
/// runtime's thread serves other reconciles (and, in-process, the
/// simulator) while plugins decide.
async fn plan_off_runtime(
    js: &Arc<JobSet>,
    ctx: &Arc<Context>,
    failed_pods: Collected,
) -> Result<Plan, ControllerError> {
    let planned = {
        let (js, ctx) = (Arc::clone(js), Arc::clone(ctx));
        jobset_policy::off_runtime(move || plan_now(&js, &ctx, &failed_pods)).await
    };
    planned.map_err(|e| ControllerError::Planning {
        jobset: format!(
            "{}/{}",
            js.metadata.namespace.as_deref().unwrap_or_default(),
            js.metadata.name.as_deref().unwrap_or_default()
        ),
        detail: e.0,
    })?
}

/// Whether a Job of the JobSet is exclusive by topology, by the same
/// layering of annotations the Jobs are built with.
fn uses_exclusive_placement(js: &JobSet) -> bool {
    js.spec.replicated_jobs.iter().any(|r| {
        crate::job_builder::placement_annotations(js, r)
            .contains_key(jobset_api::labels::EXCLUSIVE_KEY)
    })
}

/// Records the domains the plan pins Jobs to (created or resumed) as held
/// before anything is written.
fn reserve_pins(index: &Index, namespace: &str, plan: &Plan) {
    for action in &plan.actions {
        let jobs: Vec<&Job> = match action {
            Action::CreateJobs(jobs) => jobs.iter().map(|j| &**j).collect(),
            Action::ResumeJob { job, .. } => vec![&**job],
            _ => continue,
        };
        for job in jobs {
            if let (Some(name), Some(o)) = (job.metadata.name.as_deref(), occupant_of(job)) {
                index.reserve(namespace, name, o);
            }
        }
    }
}

async fn reconcile_inner(js: &Arc<JobSet>, ctx: &Arc<Context>) -> Result<Requeue, ControllerError> {
    let namespace = js.metadata.namespace.clone().unwrap_or_default();
    if let Some(watches) = &ctx.pod_watches {
        let key = (
            namespace.clone(),
            js.metadata.name.clone().unwrap_or_default(),
        );
        if crate::in_place::wants_pod_watch(js, &ctx.feature_gates) {
            watches.ensure(&key);
        } else {
            watches.release(&key);
        }
    }
    let uid = js.metadata.uid.clone().unwrap_or_default();
    let collected = ctx.failed_pods.listed(&uid);
    let mut plan = plan_off_runtime(js, ctx, collected.clone()).await?;
    if plan.pod_facts_missing {
        // The outcome plugin asked for the failed pods of Jobs not listed
        // yet: one LIST each, then the plan again with them.
        let per_job = ctx.failed_pods.per_job();
        let lists = plan
            .pod_facts
            .iter()
            .filter(|n| !collected.contains_key(&n.uid))
            .map(|n| async {
                let facts = crate::failed_pods::list(&ctx.client, &namespace, n, per_job).await;
                (n.uid.clone(), facts)
            });
        let found = futures::future::join_all(lists).await;
        for (_, facts) in &found {
            ctx.metrics
                .pod_facts_listed(matches!(facts, crate::failed_pods::JobFacts::Listed(_)));
        }
        let collected = ctx.failed_pods.store(&uid, found);
        plan = plan_off_runtime(js, ctx, collected).await?;
        if plan.pod_facts_missing {
            // Another Job failed meanwhile: its pods are listed next time.
            plan.requeue_after = Some(Duration::ZERO);
        }
    }
    // Only a JobSet that held or needs facts can change what is held: the
    // reconciles of every other JobSet skip both locks.
    if !collected.is_empty() || !plan.pod_facts.is_empty() {
        ctx.failed_pods.retain(&uid, &plan.pod_facts);
        ctx.metrics.set_pod_facts_held(ctx.failed_pods.pods_held());
    }
    let js: &JobSet = js;
    for d in &plan.decisions {
        tracing::info!(decision = %d, "policy decision");
    }
    let applier = Applier {
        client: &ctx.client,
        jobset: js,
        index: &ctx.index,
        recorder: &ctx.recorder,
    };
    applier.apply(&plan.actions).await?;

    let key = ObjectRef::from_obj(js);
    let mut paced = None;
    if let Some(status) = &plan.status
        && plan.events.is_empty()
        && counts_only(js.status.as_ref(), status)
    {
        paced = ctx.status_pacing.wait(&key);
    }
    if let Some(status) = plan.status.as_ref().filter(|_| paced.is_none()) {
        let api: Api<JobSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut updated = js.clone();
        updated.status = Some(status.clone());
        updated.metadata.managed_fields = None;
        let name = js.metadata.name.clone().unwrap_or_default();
        let written = api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(|e| ControllerError::Api {
                action: "write status of JobSet".to_string(),
                object: name.clone(),
                source: Box::new(e),
            })?;
        match plan.terminal {
            Some(Terminal::Completed) => ctx.metrics.jobset_completed(&namespace, &name),
            Some(Terminal::Failed) => ctx.metrics.jobset_failed(&namespace, &name),
            None => {}
        }
        ctx.status_pacing.wrote(key.clone());
        emit(&ctx.recorder, &regarding(&written), &plan.events).await;
    }

    if let Ok(mut w) = ctx.waiting.lock() {
        if plan.waiting.is_empty() {
            w.remove(&key);
        } else {
            w.insert(key, ());
        }
    }
    if let Some(observer) = &ctx.observer {
        observer(&Report {
            namespace,
            name: js.metadata.name.clone().unwrap_or_default(),
            plan: plan.clone(),
        });
    }
    Ok(match (plan.requeue_after, paced) {
        (Some(a), Some(b)) => Requeue::requeue(a.min(b)),
        (Some(d), None) | (None, Some(d)) => Requeue::requeue(d),
        (None, None) => Requeue::await_change(),
    })
}

/// The first retry after an error, doubled per consecutive failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Per-object exponential backoff without jitter (reproducible under a
/// virtual clock); a conflict is retried at once, since the cache catches up.
pub fn error_policy(js: Arc<JobSet>, err: &ControllerError, ctx: Arc<Context>) -> Requeue {
    let key = ObjectRef::from_obj(js.as_ref());
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    tracing::warn!(jobset = ?js.metadata.name, error = %err, failures = n, "reconcile failed");
    if err.is_conflict() && n < 3 {
        return Requeue::requeue(Duration::from_millis(50));
    }
    let factor = 1u32 << (n.saturating_sub(1)).min(16);
    Requeue::requeue((BACKOFF_MIN * factor).min(BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobset_api::ReplicatedJobStatus;

    fn counts(ready: i32) -> JobSetStatus {
        JobSetStatus {
            replicated_jobs_status: vec![ReplicatedJobStatus {
                name: "workers".to_string(),
                ready,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_a_change_of_counts_is_paced() {
        let stored = counts(1);
        assert!(counts_only(Some(&stored), &counts(2)));
        assert!(counts_only(None, &counts(2)));
        let mut restarted = counts(2);
        restarted.restarts = 1;
        assert!(!counts_only(Some(&stored), &restarted));
        let mut finished = counts(2);
        finished.terminal_state = "Completed".to_string();
        assert!(!counts_only(Some(&stored), &finished));
    }

    #[tokio::test(start_paused = true)]
    async fn a_counts_write_waits_out_the_interval_after_the_last_write() {
        let pacing = StatusPacing::new(Duration::from_secs(1));
        let a = ObjectRef::<JobSet>::new("a").within("ns");
        let b = ObjectRef::<JobSet>::new("b").within("ns");
        assert_eq!(pacing.wait(&a), None, "a first write goes at once");
        pacing.wrote(a.clone());
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(pacing.wait(&a), Some(Duration::from_millis(700)));
        assert_eq!(pacing.wait(&b), None, "another JobSet is not held");
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(pacing.wait(&a), None);
        let off = StatusPacing::new(Duration::ZERO);
        off.wrote(a.clone());
        assert_eq!(off.wait(&a), None, "an interval of zero never waits");
    }
}
