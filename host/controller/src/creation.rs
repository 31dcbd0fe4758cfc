//! Which Jobs are created in this reconcile (spec 4.4, 4.5): the replicated
//! jobs the startup verdict lets start, their missing indexes (a Job waits
//! until its namesake of an earlier attempt is gone; BlockingRecreate waits
//! for all of them), placed by the placement verdict.

use std::collections::{BTreeMap, BTreeSet};

use jobset_api::{Embedded, RESTART_JOB_GATE, RestartStrategy, naming};
use k8s_openapi::api::batch::v1::Job;

use crate::actions::{Action, Waiting};
use crate::job_builder::build_job;
use crate::observe::Buckets;
use crate::placement::{
    Occupant, PriorityClasses, apply_exclusive_affinity, apply_pin, domains,
    has_exclusive_pod_affinity, is_domain_exclusive, is_unpinned_exclusive, node_fits, pending_job,
};
use crate::plan::Planner;
use crate::policy::{Decision, PolicyEngine, Slot, invalid_verdict, records as p};

fn blocking_recreate(planner: &Planner<'_>) -> bool {
    planner
        .inputs
        .jobset
        .spec
        .failure_policy
        .as_ref()
        .is_some_and(|f| f.restart_strategy() == RestartStrategy::BlockingRecreate)
}

/// Plans the creation of missing Jobs (a plugin that fails sets
/// `PolicyFailed` on the planner).
pub(crate) fn plan_creation(
    planner: &mut Planner<'_>,
    buckets: &Buckets<'_>,
    snap: &p::Snapshot,
    startup: &Decision<p::StartupVerdict>,
    policies: &dyn PolicyEngine,
) {
    let js = planner.inputs.jobset;
    for name in startup.verdict.create.iter().chain(&startup.verdict.resume) {
        if js.spec.replicated_job(name).is_none() {
            planner.policy_failed(&invalid_verdict(
                Slot::Startup,
                &startup.plugin,
                format!("invalid verdict: {name:?} is not a replicated job of this JobSet"),
            ));
            return;
        }
    }
    if !buckets.previous.is_empty() && blocking_recreate(planner) {
        return;
    }
    let present: BTreeSet<&str> = buckets
        .all()
        .filter_map(|j| j.metadata.name.as_deref())
        .collect();
    let jobset_name = js.metadata.name.as_deref().unwrap_or_default();
    let per_job_restarts = planner.inputs.gate_on(RESTART_JOB_GATE);
    let mut to_create: Vec<(Embedded<Job>, p::PendingJob)> = Vec::new();
    for rjob in &js.spec.replicated_jobs {
        if !startup.verdict.create.contains(&rjob.name) {
            continue;
        }
        for index in 0..rjob.replicas() {
            // The name alone says whether the Job exists; build only the
            // missing ones.
            let name = naming::job_name(jobset_name, &rjob.name, i64::from(index));
            if present.contains(name.as_str()) {
                continue;
            }
            let mut job = Embedded::with_preserved_from(
                build_job(js, rjob, index, per_job_restarts),
                &rjob.template,
            );
            let mut pending = pending_job(&job, &rjob.name, index);
            if is_domain_exclusive(&pending) {
                record_priority(&mut job, &mut pending, planner.inputs.priority_classes);
            }
            to_create.push((job, pending));
        }
    }
    if to_create.is_empty() {
        return;
    }
    let suspended = js.spec.is_suspended();
    // A suspended JobSet's Jobs have no pods and hold no domain; they are
    // placed when they are resumed.
    let (verdicts, plugin) = if suspended {
        (BTreeMap::new(), String::new())
    } else {
        let refs: Vec<(&Job, &p::PendingJob)> = to_create.iter().map(|(j, p)| (&**j, p)).collect();
        match place(planner, snap, policies, &refs) {
            Some(placed) => placed,
            None => return,
        }
    };
    let mut jobs = Vec::new();
    for (mut job, pending) in to_create {
        match verdicts.get(&pending.name) {
            Some(p::Placement::Wait(reason)) => {
                planner.plan.waiting.push(Waiting {
                    job: pending.name.clone(),
                    reason: format!("{reason} (policy {plugin})"),
                });
                planner.requeue(crate::plan::POLICY_RETRY);
                continue;
            }
            Some(p::Placement::Pin(pin)) => {
                pinned_decision(planner, &plugin, &pending.name, pin);
                apply_pin(&mut job, pin);
            }
            Some(p::Placement::Unchanged) | None => {}
        }
        if suspended {
            // Pod affinity cannot be added to a Job once it exists (only
            // node affinity is mutable while it is suspended): a Job created
            // suspended carries the terms from the start, inert until it is
            // resumed, pinned or not.
            if is_domain_exclusive(&pending) {
                apply_exclusive_affinity(&mut job);
            }
        } else {
            left_to_scheduler(planner, &plugin, &pending, &mut job);
        }
        jobs.push(job);
    }
    if !planner.plan.waiting.is_empty() {
        planner.plan.decisions.push(format!(
            "placement by {}: {} Job(s) wait, not created yet",
            plugin,
            planner.plan.waiting.len()
        ));
    }
    if !jobs.is_empty() {
        planner.plan.actions.push(Action::CreateJobs(jobs));
    }
}

/// Writes upstream's exclusive affinities into an exclusive Job about to
/// run (see [`apply_exclusive_affinity`]); one that no pin places (no
/// domain was free, or the plugin left it alone) is still created, and its
/// pods wait for a domain where the scheduler and autoscalers see them.
fn left_to_scheduler(
    planner: &mut Planner<'_>,
    plugin: &str,
    pending: &p::PendingJob,
    job: &mut Job,
) {
    if !is_domain_exclusive(pending) {
        return;
    }
    apply_exclusive_affinity(job);
    if is_unpinned_exclusive(job) {
        unpinned_decision(planner, plugin, pending);
    }
}

fn unpinned_decision(planner: &mut Planner<'_>, plugin: &str, pending: &p::PendingJob) {
    let key = pending.exclusive_topology.as_deref().unwrap_or_default();
    planner.plan.decisions.push(format!(
        "placement by {plugin}: {} left to the scheduler, exclusive by {key} (no domain pinned)",
        pending.name
    ));
}

fn pinned_decision(planner: &mut Planner<'_>, plugin: &str, job: &str, pin: &p::Pin) {
    let at: Vec<String> = pin
        .node_selector
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    planner.plan.decisions.push(format!(
        "placement by {plugin}: {job} pinned to {}",
        at.join(",")
    ));
}

/// The placement verdicts for Jobs about to run (created or resumed), and
/// the plugin that gave them: one decision per replicated job, since its
/// Jobs share a pod template and so are offered the domains of the nodes
/// that template fits; domains given to earlier groups count as held for
/// later ones. `None` when the plugin failed (reported on the planner).
pub(crate) fn place(
    planner: &mut Planner<'_>,
    snap: &p::Snapshot,
    policies: &dyn PolicyEngine,
    jobs: &[(&Job, &p::PendingJob)],
) -> Option<(BTreeMap<String, p::Placement>, String)> {
    let mut verdicts: BTreeMap<String, p::Placement> = BTreeMap::new();
    let mut plugin = String::new();
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (_, pending)) in jobs.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(r, _)| *r == pending.replicated_job)
        {
            Some((_, v)) => v.push(i),
            None => groups.push((pending.replicated_job.as_str(), vec![i])),
        }
    }
    for (_, members) in &groups {
        let sample = jobs[members[0]].0;
        let nodes: Vec<_> = planner
            .inputs
            .nodes
            .iter()
            .filter(|n| node_fits(n, sample))
            .cloned()
            .collect();
        let keys: BTreeSet<String> = members
            .iter()
            .filter_map(|&i| jobs[i].1.exclusive_topology.clone())
            .collect();
        let request = p::PlacementRequest {
            jobs: members.iter().map(|&i| jobs[i].1.clone()).collect(),
            domains: domains(
                &nodes,
                &planner.occupants,
                &keys,
                planner.inputs.priority_classes.resolve(&Default::default()),
            ),
        };
        let placed = match policies.decide_placement(snap, &request) {
            Ok(d) => d,
            Err(f) => {
                planner.policy_failed(&f);
                return None;
            }
        };
        for jp in &placed.verdict {
            if !request.jobs.iter().any(|j| j.name == jp.job) {
                planner.policy_failed(&invalid_verdict(
                    Slot::Placement,
                    &placed.plugin,
                    format!("{:?} is not a Job about to be created", jp.job),
                ));
                return None;
            }
            verdicts.insert(jp.job.clone(), jp.placement.clone());
        }
        // Who holds what once these Jobs exist, for the groups after this
        // one: a pinned Job its domain; an exclusive Job no pin places,
        // since the scheduler picks its domain, every domain of its key.
        for pending in request.jobs.iter().filter(|j| is_domain_exclusive(j)) {
            let Some(key) = &pending.exclusive_topology else {
                continue;
            };
            let value = match verdicts.get(&pending.name) {
                Some(p::Placement::Wait(_)) => continue,
                Some(p::Placement::Pin(pin)) => pin
                    .node_selector
                    .iter()
                    .find(|kv| &kv.key == key)
                    .map(|kv| kv.value.clone()),
                Some(p::Placement::Unchanged) | None => None,
            };
            planner.occupants.push(Occupant {
                topology_key: key.clone(),
                value,
                job_key: pending.job_key.clone(),
                priority: pending.priority,
            });
        }
        plugin = placed.plugin;
    }
    Some((verdicts, plugin))
}

/// Places the exclusive Jobs about to be resumed (their domain was not
/// held while they were suspended) and writes each pin into the Job to
/// write; an unpinned one is resumed with the exclusive terms it was
/// created with. Returns the positions of the Jobs that stay suspended and
/// wait (the plugin said so, or an unpinned Job lacks the terms, which
/// cannot be added to an existing Job); or `None` when the plugin failed
/// (then nothing is resumed in this reconcile).
pub(crate) fn place_resumed(
    planner: &mut Planner<'_>,
    snap: &p::Snapshot,
    policies: &dyn PolicyEngine,
    resumed: &mut [Job],
) -> Option<BTreeSet<usize>> {
    let pending: Vec<(usize, p::PendingJob)> = resumed
        .iter()
        .enumerate()
        .filter_map(|(i, job)| {
            let labels = job.metadata.labels.as_ref()?;
            let rjob = labels.get(jobset_api::labels::REPLICATED_JOB_NAME_KEY)?;
            let index = labels
                .get(jobset_api::labels::JOB_INDEX_KEY)?
                .parse()
                .ok()?;
            let pending = pending_job(job, rjob, index);
            is_domain_exclusive(&pending).then_some((i, pending))
        })
        .collect();
    let mut waiting = BTreeSet::new();
    if pending.is_empty() {
        return Some(waiting);
    }
    let refs: Vec<(&Job, &p::PendingJob)> =
        pending.iter().map(|(i, p)| (&resumed[*i], p)).collect();
    let (verdicts, plugin) = place(planner, snap, policies, &refs)?;
    for (i, pending) in &pending {
        match verdicts.get(&pending.name) {
            Some(p::Placement::Pin(pin)) => {
                pinned_decision(planner, &plugin, &pending.name, pin);
                apply_pin(&mut resumed[*i], pin);
            }
            Some(p::Placement::Wait(reason)) => {
                waiting.insert(*i);
                planner.plan.waiting.push(Waiting {
                    job: pending.name.clone(),
                    reason: format!("{reason} (policy {plugin})"),
                });
                planner.requeue(crate::plan::POLICY_RETRY);
            }
            Some(p::Placement::Unchanged) | None => {}
        }
        let job = &resumed[*i];
        if waiting.contains(i) || !is_unpinned_exclusive(job) {
            continue;
        }
        if has_exclusive_pod_affinity(job) {
            unpinned_decision(planner, &plugin, pending);
        } else {
            // Made without the exclusive terms (by an earlier version, or
            // another controller), and they cannot be added now: it stays
            // suspended until a domain can be pinned.
            waiting.insert(*i);
            planner.plan.waiting.push(Waiting {
                job: pending.name.clone(),
                reason: format!(
                    "no domain pinned and the Job has no exclusive pod affinity (policy {plugin})"
                ),
            });
            planner.requeue(crate::plan::POLICY_RETRY);
        }
    }
    Some(waiting)
}

/// Writes the priority the pods of an exclusive Job will have (resolved as
/// admission resolves it) into its pod template as
/// `jobset.sigs.k8s.io/priority`, the label upstream puts on such pods, and
/// into its placement record: exclusivity is per priority, and the label
/// keeps the value the Job was placed with.
fn record_priority(job: &mut Job, pending: &mut p::PendingJob, classes: &PriorityClasses) {
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    let Some(priority) = spec.template.spec.as_ref().and_then(|p| classes.resolve(p)) else {
        return;
    };
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(
            jobset_api::labels::PRIORITY_KEY.to_string(),
            priority.to_string(),
        );
    pending.priority = Some(priority);
}
