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
use crate::placement::{Occupant, apply_pin, domains, node_fits, pending_job};
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

/// Plans the creation of missing Jobs; returns false when a plugin failed.
pub(crate) fn plan_creation(
    planner: &mut Planner<'_>,
    buckets: &Buckets<'_>,
    snap: &p::Snapshot,
    startup: &Decision<p::StartupVerdict>,
    policies: &dyn PolicyEngine,
) -> bool {
    let js = planner.inputs.jobset;
    for name in startup.verdict.create.iter().chain(&startup.verdict.resume) {
        if js.spec.replicated_job(name).is_none() {
            planner.policy_failed(&invalid_verdict(
                Slot::Startup,
                &startup.plugin,
                format!("invalid verdict: {name:?} is not a replicated job of this JobSet"),
            ));
            return false;
        }
    }
    if !buckets.previous.is_empty() && blocking_recreate(planner) {
        return true;
    }
    let present: BTreeSet<&str> = buckets
        .all()
        .filter_map(|j| j.metadata.name.as_deref())
        .collect();
    let jobset_name = js.metadata.name.as_deref().unwrap_or_default();
    let per_job_restarts = snap.feature_gates.iter().any(|g| g == RESTART_JOB_GATE);
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
            let job = Embedded::with_preserved_from(
                build_job(js, rjob, index, per_job_restarts),
                &rjob.template,
            );
            let pending = pending_job(&job, &rjob.name, index);
            to_create.push((job, pending));
        }
    }
    if to_create.is_empty() {
        return true;
    }
    // One placement decision per replicated job: its Jobs share a pod
    // template, so they are offered the domains of the nodes that template
    // fits; domains given to earlier groups count as held for later ones.
    let mut occupants = planner.inputs.occupants.to_vec();
    let mut verdicts: BTreeMap<String, p::Placement> = BTreeMap::new();
    let mut plugin = String::new();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, (_, pending)) in to_create.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(r, _)| *r == pending.replicated_job)
        {
            Some((_, v)) => v.push(i),
            None => groups.push((pending.replicated_job.clone(), vec![i])),
        }
    }
    for (_, members) in &groups {
        let sample = &to_create[members[0]].0;
        let nodes: Vec<_> = planner
            .inputs
            .nodes
            .iter()
            .filter(|n| node_fits(n, sample))
            .cloned()
            .collect();
        let keys: BTreeSet<String> = members
            .iter()
            .filter_map(|&i| to_create[i].1.exclusive_topology.clone())
            .collect();
        let request = p::PlacementRequest {
            jobs: members.iter().map(|&i| to_create[i].1.clone()).collect(),
            domains: domains(&nodes, &occupants, &keys),
        };
        let placed = match policies.decide_placement(snap, &request) {
            Ok(d) => d,
            Err(f) => {
                planner.policy_failed(&f);
                return false;
            }
        };
        for jp in &placed.verdict {
            let Some(pending) = request.jobs.iter().find(|j| j.name == jp.job) else {
                planner.policy_failed(&invalid_verdict(
                    Slot::Placement,
                    &placed.plugin,
                    format!("{:?} is not a Job about to be created", jp.job),
                ));
                return false;
            };
            if let (p::Placement::Pin(pin), Some(key)) =
                (&jp.placement, &pending.exclusive_topology)
                && let Some(kv) = pin.node_selector.iter().find(|kv| &kv.key == key)
            {
                occupants.push(Occupant {
                    topology_key: key.clone(),
                    value: kv.value.clone(),
                    job_key: pending.job_key.clone(),
                    priority: pending.priority,
                });
            }
            verdicts.insert(jp.job.clone(), jp.placement.clone());
        }
        plugin = placed.plugin;
    }
    let mut jobs = Vec::new();
    for (mut job, pending) in to_create {
        match verdicts.get(&pending.name) {
            Some(p::Placement::Wait(reason)) => {
                planner.plan.waiting.push(Waiting {
                    job: pending.name.clone(),
                    reason: format!("{reason} (policy {plugin})"),
                });
                planner.requeue(crate::plan::POLICY_RETRY);
            }
            Some(p::Placement::Pin(pin)) => {
                let at: Vec<String> = pin
                    .node_selector
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                planner.plan.decisions.push(format!(
                    "placement by {plugin}: {} pinned to {}",
                    pending.name,
                    at.join(",")
                ));
                apply_pin(&mut job, pin);
                jobs.push(job);
            }
            Some(p::Placement::Unchanged) | None => jobs.push(job),
        }
    }
    if !planner.plan.waiting.is_empty() {
        planner.plan.decisions.push(format!(
            "placement by {}: {} Job(s) wait for a free domain",
            plugin,
            planner.plan.waiting.len()
        ));
    }
    if !jobs.is_empty() {
        planner.plan.actions.push(Action::CreateJobs(jobs));
    }
    true
}
