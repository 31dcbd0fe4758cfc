//! Plan: the pure heart of a reconcile (spec 4.1). From the observed
//! JobSet, its Jobs and the cluster's topology, plus the verdicts of the
//! policy plugins, it computes the API actions, the new status, the events
//! to emit after the status write, and when to look again. It never calls
//! the API; the policy plugins are called here and only here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jobset_api::labels::JOBSET_CONTROLLER_NAME;
use jobset_api::status::{TERMINAL_STATE_COMPLETED, TERMINAL_STATE_FAILED};
use jobset_api::{ELASTIC_JOBSET_GATE, JobSet, JobSetStatus, RESTART_JOB_GATE};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::actions::{Action, EventSpec, Terminal, Waiting};
use crate::conditions::{DesiredCondition, EventType, is_true, set_condition, types};
use crate::error::ControllerError;
use crate::failed_pods::{Collected, JobFacts, Needed};
use crate::in_place::PodFacts;
use crate::observe::{Buckets, bucket_jobs, replicated_jobs_status, same_replicated_jobs_status};
use crate::placement::{NodeInfo, Occupant, PriorityClasses};
use crate::policy::{ErrorKind, PolicyEngine, PolicyError, records as p};
use crate::{creation, in_place, outcome, resources, scaling, snapshot, suspend, ttl};

/// How long a decision held by a failed plugin waits before it is retried.
pub const POLICY_RETRY: Duration = Duration::from_secs(5);

/// Everything a reconcile observed.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub jobset: &'a JobSet,
    /// The Jobs whose controller owner is this JobSet (by UID), shared with
    /// the index rather than copied per reconcile.
    pub jobs: &'a [Arc<Job>],
    pub service_exists: bool,
    /// Names of the PVCs that exist in the JobSet's namespace.
    pub existing_pvcs: &'a BTreeSet<String>,
    pub nodes: &'a [NodeInfo],
    /// Domains held by exclusive Jobs anywhere in the cluster.
    pub occupants: &'a [Occupant],
    pub now: Timestamp,
    /// Feature gates that are on, by upstream name.
    pub feature_gates: &'a [String],
    /// The PriorityClasses, to resolve the priority exclusivity compares.
    pub priority_classes: &'a PriorityClasses,
    /// The pods of an in-place JobSet, once its pod watch listed them.
    pub pods: Option<&'a [PodFacts]>,
    /// The failed pods of failed Jobs listed so far for an outcome plugin
    /// that asked for them, by Job UID (see [`crate::failed_pods`]).
    pub failed_pods: Option<&'a Collected>,
}

impl Inputs<'_> {
    /// Whether the feature gate `name` (upstream's name) is on.
    pub fn gate_on(&self, name: &str) -> bool {
        self.feature_gates.iter().any(|g| g == name)
    }
}

/// What a reconcile does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// API actions, in order.
    pub actions: Vec<Action>,
    /// The new status, when it differs from the stored one.
    pub status: Option<JobSetStatus>,
    /// Events to emit once the status write succeeded.
    pub events: Vec<EventSpec>,
    /// A terminal transition, for the metrics.
    pub terminal: Option<Terminal>,
    /// When to reconcile again even if nothing changes.
    pub requeue_after: Option<Duration>,
    /// Jobs that could not be created yet, and why.
    pub waiting: Vec<Waiting>,
    /// The decisions taken, `slot by plugin: what`, for logs and `jobset run`.
    pub decisions: Vec<String>,
    /// The failed Jobs whose pods the outcome plugin asked for (empty when
    /// it asked for none): their facts are kept while this is so.
    pub pod_facts: Vec<Needed>,
    /// Set when some of those were not listed yet: the plan stopped before
    /// the outcome decision, and is made again once they are.
    pub pod_facts_missing: bool,
}

/// The state a plan builds up.
pub(crate) struct Planner<'a> {
    pub inputs: Inputs<'a>,
    pub status: JobSetStatus,
    pub plan: Plan,
    /// The domains held: the inputs' occupants plus the pins this plan
    /// gave so far (creations and resumes place against the same board).
    pub occupants: Vec<Occupant>,
    /// Whether a plugin failed in this pass (`policy_failed` was called).
    pub plugin_failed: bool,
}

impl Planner<'_> {
    pub(crate) fn condition(&mut self, c: DesiredCondition) {
        if set_condition(&mut self.status.conditions, &c, self.inputs.now) {
            self.plan.events.push(EventSpec {
                type_: c.event,
                reason: c.reason,
                message: c.message,
            });
        }
    }

    pub(crate) fn requeue(&mut self, after: Duration) {
        self.plan.requeue_after = Some(match self.plan.requeue_after {
            Some(d) => d.min(after),
            None => after,
        });
    }

    /// Holds a decision whose plugin failed: `PolicyFailed=True` naming the
    /// plugin, slot and error, and a retry.
    pub(crate) fn policy_failed(&mut self, f: &PolicyError) {
        self.plugin_failed = true;
        if let ErrorKind::Compiling { .. } = f.kind {
            // Not a failure: the decision waits for the plugin's compile,
            // and the end of that compile reconciles the JobSet again.
            // Shown even on a JobSet without the condition yet (our own
            // condition type: upstream's rule of adding only True ones is
            // for its own).
            let waiting =
                DesiredCondition::false_(types::POLICY_FAILED, "PluginCompiling", f.to_string());
            if !self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == types::POLICY_FAILED)
            {
                self.status.conditions.push(Condition {
                    type_: waiting.type_.clone(),
                    status: "False".to_string(),
                    reason: waiting.reason.clone(),
                    message: waiting.message.clone(),
                    last_transition_time: Time(self.inputs.now),
                    observed_generation: None,
                });
                self.plan.events.push(EventSpec {
                    type_: waiting.event,
                    reason: waiting.reason,
                    message: waiting.message,
                });
            } else {
                self.condition(waiting);
            }
            self.plan.decisions.push(format!(
                "{} by {}: waiting for its compile",
                f.slot.as_str(),
                f.plugin
            ));
            self.requeue(POLICY_RETRY);
            return;
        }
        let slot = f.slot.as_str();
        let mut reason = slot[..1].to_uppercase();
        reason.push_str(&slot[1..]);
        reason.push_str("PluginFailed");
        self.condition(DesiredCondition::true_(
            types::POLICY_FAILED,
            reason,
            f.to_string(),
            EventType::Warning,
        ));
        self.plan.decisions.push(format!(
            "{} by {}: failed: {}",
            f.slot.as_str(),
            f.plugin,
            f.kind
        ));
        self.requeue(POLICY_RETRY);
    }

    pub(crate) fn finish(&mut self, state: &str, terminal: Terminal) {
        self.status.terminal_state = state.to_string();
        self.plan.terminal = Some(terminal);
    }

    /// Completes the JobSet, as upstream's `setJobSetCompletedCondition`:
    /// Completed with `reason` and `message`, Restarting false, terminal
    /// state Completed.
    pub(crate) fn complete(&mut self, reason: impl Into<String>, message: impl Into<String>) {
        self.condition(DesiredCondition::true_(
            types::COMPLETED,
            reason,
            message,
            EventType::Normal,
        ));
        self.condition(DesiredCondition::false_(
            types::RESTARTING,
            "JobSetCompleted",
            "jobset completed successfully",
        ));
        self.finish(TERMINAL_STATE_COMPLETED, Terminal::Completed);
    }

    /// Fails the JobSet, as upstream's `setJobSetFailedCondition`: Failed
    /// with `reason` and `message`, Restarting false, terminal state Failed.
    pub(crate) fn fail(&mut self, reason: impl Into<String>, message: impl Into<String>) {
        self.condition(DesiredCondition::true_(
            types::FAILED,
            reason,
            message,
            EventType::Warning,
        ));
        self.condition(DesiredCondition::false_(
            types::RESTARTING,
            "JobSetFailed",
            "jobset failed",
        ));
        self.finish(TERMINAL_STATE_FAILED, Terminal::Failed);
    }
}

/// The failed pods an outcome plugin asked for, in the order of the
/// snapshot's Jobs; none when the decision must wait for them (not listed
/// yet: the reconcile lists them and plans again; or the list failed:
/// PolicyFailed, retried). An empty list when the plugin asked for none.
fn failed_pods(
    planner: &mut Planner<'_>,
    buckets: &Buckets<'_>,
    snap: &p::Snapshot,
    policies: &dyn PolicyEngine,
) -> Option<Vec<p::JobPods>> {
    use jobset_policy::{POD_FACTS, Slot};
    if buckets.failed.is_empty() || !policies.wants(snap, Slot::Outcome, POD_FACTS) {
        return Some(Vec::new());
    }
    let mut needed: Vec<Needed> = buckets
        .failed
        .iter()
        .map(|j| Needed {
            job: j.metadata.name.clone().unwrap_or_default(),
            uid: j.metadata.uid.clone().unwrap_or_default(),
        })
        .collect();
    needed.sort_by(|a, b| a.job.cmp(&b.job));
    planner.plan.pod_facts = needed.clone();
    let empty = Collected::new();
    let collected = planner.inputs.failed_pods.unwrap_or(&empty);
    let mut pods = Vec::with_capacity(needed.len());
    for n in &needed {
        match collected.get(&n.uid) {
            None => {
                planner.plan.pod_facts_missing = true;
                return None;
            }
            Some(JobFacts::Failed(why)) => {
                planner.plugin_failed = true;
                planner.condition(DesiredCondition::true_(
                    types::POLICY_FAILED,
                    "PodFactsUnavailable",
                    format!("{why}; the outcome decision waits for them and is retried"),
                    EventType::Warning,
                ));
                planner
                    .plan
                    .decisions
                    .push(format!("outcome: waiting for pod facts: {why}"));
                planner.requeue(POLICY_RETRY);
                return None;
            }
            Some(JobFacts::Listed(facts)) => pods.push((**facts).clone()),
        }
    }
    Some(pods)
}

/// Whether this controller acts on `js` at all: not being deleted, and
/// managed here (no `managedBy`, or this controller's name).
pub(crate) fn acts_on(js: &JobSet) -> bool {
    js.metadata.deletion_timestamp.is_none()
        && js
            .spec
            .managed_by
            .as_deref()
            .is_none_or(|m| m == JOBSET_CONTROLLER_NAME)
}

pub(crate) fn is_finished(js: &JobSet) -> bool {
    js.status.as_ref().is_some_and(|s| {
        is_true(&s.conditions, types::COMPLETED) || is_true(&s.conditions, types::FAILED)
    })
}

fn undeleted_names(jobs: &[&Job]) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

/// Computes the plan of one reconcile.
pub fn plan(inputs: Inputs<'_>, policies: &dyn PolicyEngine) -> Result<Plan, ControllerError> {
    let js = inputs.jobset;
    if !acts_on(js) {
        return Ok(Plan::default());
    }
    let per_job_restarts = inputs.gate_on(RESTART_JOB_GATE);
    let buckets = bucket_jobs(js, inputs.jobs, per_job_restarts)?;
    let stored = js.status.clone().unwrap_or_default();
    let mut planner = Planner {
        inputs,
        status: stored.clone(),
        plan: Plan::default(),
        occupants: inputs.occupants.to_vec(),
        plugin_failed: false,
    };
    let counts = replicated_jobs_status(js, &buckets, per_job_restarts);
    if !same_replicated_jobs_status(&counts, &stored.replicated_jobs_status) {
        // Stored in upstream's order, by name from last to first (its
        // change check sorts the slice it then writes); readers that
        // index the list see what they see under upstream.
        let mut written = counts.clone();
        written.sort_by(|a, b| b.name.cmp(&a.name));
        planner.status.replicated_jobs_status = written;
    }

    if is_finished(js) {
        let active = undeleted_names(&buckets.active);
        if !active.is_empty() {
            planner.plan.actions.push(Action::DeleteJobs(active));
        }
        ttl::plan_ttl(&mut planner)?;
        return Ok(finalize(planner, &stored));
    }

    let previous = undeleted_names(&buckets.previous);
    if !previous.is_empty() {
        planner.plan.actions.push(Action::DeleteJobs(previous));
    }

    let suspended = js.spec.is_suspended();
    let replicas: i64 = js
        .spec
        .replicated_jobs
        .iter()
        .map(|r| i64::from(r.replicas()))
        .sum();
    let ready: i64 = counts
        .iter()
        .map(|c| i64::from(c.ready + c.succeeded))
        .sum();
    if !suspended && ready == replicas {
        planner.condition(DesiredCondition::false_(
            types::RESTARTING,
            "JobsReady",
            "all jobs are ready",
        ));
    }

    let snap = snapshot::build(js, &buckets, &counts, inputs.now, inputs.feature_gates);
    if !buckets.failed.is_empty() || !buckets.successful.is_empty() {
        let pods = match failed_pods(&mut planner, &buckets, &snap, policies) {
            Some(pods) => pods,
            None => return Ok(finalize(planner, &stored)),
        };
        match policies.decide_outcome(&snap, &pods) {
            Err(f) => {
                planner.policy_failed(&f);
                return Ok(finalize(planner, &stored));
            }
            Ok(decided) => {
                if outcome::apply_outcome(&mut planner, &snap, &decided) {
                    // The JobSet finishes or restarts here: a failure of
                    // an earlier pass (a plugin since fixed) is over.
                    if !planner.plugin_failed {
                        planner.condition(policy_succeeded());
                    }
                    return Ok(finalize(planner, &stored));
                }
            }
        }
    }

    if crate::job_builder::dns_hostnames_enabled(js) && !inputs.service_exists {
        planner.plan.actions.push(Action::CreateService(Box::new(
            resources::headless_service(js),
        )));
    }
    let missing_pvcs: Vec<_> = resources::claims(js)
        .into_iter()
        .filter(|c| {
            c.metadata
                .name
                .as_ref()
                .is_some_and(|n| !inputs.existing_pvcs.contains(n))
        })
        .collect();
    if !missing_pvcs.is_empty() {
        planner.plan.actions.push(Action::CreatePvcs(missing_pvcs));
    }
    if inputs.gate_on(ELASTIC_JOBSET_GATE)
        && let Some(resize) = scaling::plan_scaling(js, &buckets.active)
    {
        planner.plan.actions.push(resize);
    }

    let startup = match policies.decide_startup(&snap) {
        Ok(d) => Some(d),
        Err(f) => {
            planner.policy_failed(&f);
            None
        }
    };
    if let Some(decided) = &startup {
        creation::plan_creation(&mut planner, &buckets, &snap, decided, policies);
    }
    plan_suspend_resume(
        &mut planner,
        &buckets,
        startup.as_ref().map(|d| &d.verdict),
        &snap,
        policies,
    );
    if let Some(decided) = &startup
        && !suspended
    {
        match decided.verdict.in_order {
            p::InOrderCondition::InProgress => planner.condition(DesiredCondition::true_(
                types::STARTUP_IN_PROGRESS,
                "InOrderStartupPolicyInProgress",
                "in order startup policy is in progress",
                EventType::Normal,
            )),
            p::InOrderCondition::Completed => planner.condition(DesiredCondition::true_(
                types::STARTUP_COMPLETED,
                "InOrderStartupPolicyCompleted",
                "in order startup policy has completed",
                EventType::Normal,
            )),
            p::InOrderCondition::None => {}
        }
    }
    if in_place::uses_in_place_restart(js, inputs.feature_gates) {
        in_place::plan_in_place(&mut planner, inputs.pods, &snap, policies)?;
    }
    if !planner.plugin_failed {
        planner.condition(policy_succeeded());
    }
    Ok(finalize(planner, &stored))
}

/// `PolicyFailed=False`: every plugin asked in this pass decided.
fn policy_succeeded() -> DesiredCondition {
    DesiredCondition::false_(
        types::POLICY_FAILED,
        "PolicySucceeded",
        "the policy plugins decided",
    )
}

/// Suspends every running Job of a suspended JobSet; resumes the Jobs of
/// the replicated jobs the startup verdict lets resume otherwise, placing
/// the exclusive ones. A placement plugin that fails sets `PolicyFailed`.
fn plan_suspend_resume(
    planner: &mut Planner<'_>,
    buckets: &Buckets<'_>,
    verdict: Option<&p::StartupVerdict>,
    snap: &p::Snapshot,
    policies: &dyn PolicyEngine,
) {
    let js = planner.inputs.jobset;
    if js.spec.is_suspended() {
        let to_suspend: Vec<String> = buckets
            .active
            .iter()
            .filter(|j| !suspend::is_suspended(j))
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        if !to_suspend.is_empty() {
            planner.plan.actions.push(Action::SuspendJobs(to_suspend));
        }
        planner.condition(DesiredCondition::true_(
            types::SUSPENDED,
            "SuspendedJobs",
            "jobset is suspended",
            EventType::Normal,
        ));
        planner.condition(DesiredCondition::false_(
            types::RESTARTING,
            "JobSetSuspended",
            "jobset is suspended",
        ));
        return;
    }
    let Some(verdict) = verdict else { return };
    let mut resumed: Vec<(Job, bool)> = Vec::new();
    for rjob in &js.spec.replicated_jobs {
        if !verdict.resume.contains(&rjob.name) {
            continue;
        }
        for job in &buckets.active {
            let of_rjob = job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(jobset_api::labels::REPLICATED_JOB_NAME_KEY))
                .is_some_and(|n| *n == rjob.name);
            if of_rjob && suspend::is_suspended(job) {
                resumed.push((
                    suspend::resumed(job, rjob),
                    suspend::needs_start_time_cleared(job),
                ));
            }
        }
    }
    let (mut jobs, clear): (Vec<Job>, Vec<bool>) = resumed.into_iter().unzip();
    let Some(waiting) = crate::creation::place_resumed(planner, snap, policies, &mut jobs) else {
        return;
    };
    for (i, (job, clear_start_time)) in jobs.into_iter().zip(clear).enumerate() {
        if !waiting.contains(&i) {
            planner.plan.actions.push(Action::ResumeJob {
                job: Box::new(job),
                clear_start_time,
            });
        }
    }
    if verdict.in_order != p::InOrderCondition::InProgress {
        planner.condition(DesiredCondition::false_(
            types::SUSPENDED,
            "ResumeJobs",
            "jobset is resumed",
        ));
    }
}

/// Keeps the status only when it changed.
fn finalize(mut planner: Planner<'_>, stored: &JobSetStatus) -> Plan {
    if planner.status != *stored {
        planner.plan.status = Some(planner.status);
    }
    planner.plan
}
