//! "This observed state gives these actions": the reconcile plan of spec 4
//! and appendix B, with the default policies (compiled natively, the same
//! source as the built-in Wasm plugins) and with failing ones.

use std::collections::BTreeSet;
use std::time::Duration;

use jobset_api::labels::*;
use jobset_api::{Embedded, JobSet, JobSetStatus, ReplicatedJobStatus};
use jobset_policy::NativeDefaults;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::actions::{Action, Terminal};
use crate::conditions::{is_true, types};
use crate::job_builder::build_job;
use crate::placement::{NodeInfo, Occupant, PriorityClasses};
use crate::plan::{Inputs, Plan, plan};
use crate::policy::{Decision, ErrorKind, PolicyEngine, PolicyError, Slot, records as p};

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

const BASE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: js, namespace: ns, uid: uid-1, generation: 1}
spec:
  network: {enableDNSHostnames: true}
  successPolicy: {operator: All}
  replicatedJobs:
  - name: a
    template: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}
  - name: b
    replicas: 3
    template: {spec: {parallelism: 2, completions: 2, template: {spec: {containers: [{name: c, image: i}]}}}}
"#;

fn jobset(extra_spec: &str) -> JobSet {
    let mut value: serde_json::Value = serde_yaml::from_str(BASE).unwrap();
    if !extra_spec.is_empty() {
        let extra: serde_json::Value = serde_yaml::from_str(extra_spec).unwrap();
        if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::from_value(value).unwrap()
}

fn with_status(mut js: JobSet, f: impl FnOnce(&mut JobSetStatus)) -> JobSet {
    let mut st = js.status.take().unwrap_or_default();
    f(&mut st);
    js.status = Some(st);
    js
}

fn all_jobs(js: &JobSet) -> Vec<Job> {
    js.spec
        .replicated_jobs
        .iter()
        .flat_map(|r| (0..r.replicas()).map(move |i| build_job(js, r, i, true)))
        .collect()
}

fn condition(job: &mut Job, type_: &str, reason: &str, message: &str, at: i64) {
    let st = job.status.get_or_insert_with(JobStatus::default);
    st.conditions
        .get_or_insert_with(Vec::new)
        .push(JobCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(ts(at))),
            ..Default::default()
        });
}

fn fail(job: &mut Job, reason: &str, message: &str, at: i64) {
    condition(job, "FailureTarget", reason, message, at);
    condition(job, "Failed", reason, message, at);
}

fn complete(job: &mut Job) {
    condition(job, "SuccessCriteriaMet", "CompletionsReached", "", 1);
    condition(job, "Complete", "CompletionsReached", "", 1);
}

fn ready(job: &mut Job) {
    let parallelism = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
    let st = job.status.get_or_insert_with(JobStatus::default);
    st.active = Some(parallelism);
    st.ready = Some(parallelism);
}

fn named<'a>(jobs: &'a mut [Job], name: &str) -> &'a mut Job {
    jobs.iter_mut()
        .find(|j| j.metadata.name.as_deref() == Some(name))
        .unwrap()
}

struct World {
    nodes: Vec<NodeInfo>,
    occupants: Vec<Occupant>,
    pvcs: BTreeSet<String>,
    service: bool,
    now: Timestamp,
    /// Feature gates that are on.
    gates: Vec<String>,
    priority_classes: PriorityClasses,
    /// The pods of an in-place JobSet, as its pod watch lists them.
    pods: Option<Vec<crate::in_place::PodFacts>>,
    /// The failed pods listed for an outcome plugin that asked.
    failed_pods: Option<crate::failed_pods::Collected>,
}

impl Default for World {
    fn default() -> Self {
        World {
            nodes: vec![],
            occupants: vec![],
            pvcs: BTreeSet::new(),
            service: true,
            now: ts(100),
            gates: vec!["RestartJob".to_string()],
            priority_classes: PriorityClasses::default(),
            pods: None,
            failed_pods: None,
        }
    }
}

fn run_with(js: &JobSet, jobs: &[Job], world: &World, engine: &dyn PolicyEngine) -> Plan {
    let jobs: Vec<std::sync::Arc<Job>> = jobs.iter().cloned().map(std::sync::Arc::new).collect();
    let inputs = Inputs {
        jobset: js,
        jobs: &jobs,
        service_exists: world.service,
        existing_pvcs: &world.pvcs,
        nodes: &world.nodes,
        occupants: &world.occupants,
        now: world.now,
        feature_gates: &world.gates,
        priority_classes: &world.priority_classes,
        pods: world.pods.as_deref(),
        failed_pods: world.failed_pods.as_ref(),
    };
    plan(inputs, engine).expect("plan succeeds")
}

fn run(js: &JobSet, jobs: &[Job]) -> Plan {
    run_with(js, jobs, &World::default(), &NativeDefaults)
}

/// Every Job the plan creates, in plan order.
fn created_jobs(plan: &Plan) -> Vec<&Embedded<Job>> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJobs(jobs) => Some(jobs.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn created(plan: &Plan) -> Vec<String> {
    created_jobs(plan)
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteJobs(n) => Some(n.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn status(plan: &Plan) -> &JobSetStatus {
    plan.status.as_ref().expect("the plan writes a status")
}

fn cond<'a>(plan: &'a Plan, type_: &str) -> Option<&'a Condition> {
    status(plan).conditions.iter().find(|c| c.type_ == type_)
}

fn event_reasons(plan: &Plan) -> Vec<String> {
    plan.events.iter().map(|e| e.reason.clone()).collect()
}

#[test]
fn a_new_jobset_creates_its_service_and_every_job() {
    let js = jobset("");
    let p = run_with(
        &js,
        &[],
        &World {
            service: false,
            ..Default::default()
        },
        &NativeDefaults,
    );
    assert!(matches!(p.actions[0], Action::CreateService(_)));
    assert_eq!(created(&p), ["js-a-0", "js-b-0", "js-b-1", "js-b-2"]);
    let rjs = &status(&p).replicated_jobs_status;
    assert_eq!(
        rjs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["b", "a"],
        "upstream's order: by name, last first"
    );
}

#[test]
fn pod_fields_of_a_newer_kubernetes_reach_the_created_jobs() {
    let js: JobSet = serde_yaml::from_str(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: js, namespace: ns, uid: uid-1, generation: 1}
spec:
  replicatedJobs:
  - name: w
    replicas: 2
    template:
      spec:
        template:
          spec:
            schedulingGroup: {podGroupName: workers}
            containers: [{name: c, image: i, futureKnob: 3}]
"#,
    )
    .unwrap();
    let p = run(&js, &[]);
    let jobs: Vec<serde_json::Value> = created_jobs(&p)
        .iter()
        .map(|j| serde_json::to_value(j).unwrap())
        .collect();
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["schedulingGroup"]["podGroupName"], "workers", "{job}");
        assert_eq!(pod["containers"][0]["futureKnob"], 3, "{job}");
        // The JobSet's own labels are still written over the template.
        assert_eq!(job["metadata"]["labels"][JOBSET_NAME_KEY], "js", "{job}");
    }
}

#[test]
fn existing_jobs_are_not_created_again() {
    let js = jobset("");
    let jobs = all_jobs(&js);
    let p = run(&js, &jobs[..2]);
    assert_eq!(created(&p), ["js-b-1", "js-b-2"]);
}

#[test]
fn a_suspended_jobset_creates_suspended_jobs_and_says_so() {
    let js = jobset("suspend: true");
    let p = run(&js, &[]);
    let jobs = created_jobs(&p);
    assert_eq!(jobs.len(), 4);
    assert!(
        jobs.iter()
            .all(|j| j.spec.as_ref().unwrap().suspend == Some(true))
    );
    let c = cond(&p, types::SUSPENDED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("True", "SuspendedJobs", "jobset is suspended")
    );
}

#[test]
fn running_jobs_of_a_suspended_jobset_are_suspended() {
    let js = jobset("suspend: true");
    let p = run(&js, &all_jobs(&jobset("")));
    let suspended: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SuspendJobs(n) => Some(n.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(suspended.len(), 4);
}

#[test]
fn without_a_failure_policy_the_first_failure_fails_the_jobset() {
    let js = jobset("");
    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-b-2"),
        "BackoffLimitExceeded",
        "pod failed",
        20,
    );
    fail(
        named(&mut jobs, "js-b-1"),
        "BackoffLimitExceeded",
        "pod failed",
        10,
    );
    let p = run(&js, &jobs);
    let c = cond(&p, types::FAILED).unwrap();
    assert_eq!(c.reason, "FailedJobs");
    assert!(
        c.message.starts_with(
            "jobset failed due to one or more job failures (first failed job: js-b-1)"
        ),
        "{}",
        c.message
    );
    assert!(
        c.message == "jobset failed due to one or more job failures (first failed job: js-b-1)",
        "upstream's message, not signed by the default plugin: {}",
        c.message
    );
    assert_eq!(status(&p).terminal_state, "Failed");
    assert_eq!(p.terminal, Some(Terminal::Failed));
    assert!(created(&p).is_empty(), "failures stop the reconcile");
    assert!(
        cond(&p, types::RESTARTING).is_none(),
        "a False condition is never created"
    );
}

#[test]
fn a_restart_bumps_the_counters_and_sets_restarting() {
    let js = jobset("failurePolicy: {maxRestarts: 2}");
    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-a-0"),
        "BackoffLimitExceeded",
        "boom",
        10,
    );
    let p = run(&js, &jobs);
    let st = status(&p);
    assert_eq!((st.restarts, st.restarts_count_towards_max), (1, 1));
    let c = cond(&p, types::RESTARTING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "DefaultFailurePolicy")
    );
    assert!(
        c.message
            .starts_with("applying RestartJobSet failure policy action (first failed job: js-a-0)")
    );
    assert_eq!(
        event_reasons(&p),
        ["DefaultFailurePolicy", "RestartJobSetFailurePolicyAction"]
    );
    assert!(created(&p).is_empty() && deleted(&p).is_empty());
}

#[test]
fn reaching_max_restarts_fails_the_jobset() {
    let js = with_status(jobset("failurePolicy: {maxRestarts: 1}"), |s| {
        s.restarts = 1;
        s.restarts_count_towards_max = 1;
    });
    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-a-0"),
        "BackoffLimitExceeded",
        "boom",
        10,
    );
    let p = run(&js, &jobs);
    assert_eq!(
        cond(&p, types::FAILED).unwrap().reason,
        "ReachedMaxRestarts"
    );
}

#[test]
fn ignore_max_restarts_restarts_without_counting() {
    let js = with_status(
        jobset(
            "failurePolicy: {maxRestarts: 0, rules: [{name: maint, action: RestartJobSetAndIgnoreMaxRestarts, onJobFailureReasons: [PodFailurePolicy]}]}",
        ),
        |s| s.restarts = 3,
    );
    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-b-0"),
        "PodFailurePolicy",
        "DisruptionTarget",
        10,
    );
    let p = run(&js, &jobs);
    let st = status(&p);
    assert_eq!((st.restarts, st.restarts_count_towards_max), (4, 0));
    assert_eq!(
        cond(&p, types::RESTARTING).unwrap().reason,
        "FailurePolicy_maint"
    );
    assert_eq!(
        event_reasons(&p),
        [
            "FailurePolicy_maint",
            "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction"
        ],
        "upstream's order: the condition's event, then the action's"
    );
}

#[test]
fn rules_are_matched_in_order_with_message_search_and_targets() {
    let spec = r#"
failurePolicy:
  maxRestarts: 5
  rules:
  - {name: onlyA, action: FailJobSet, targetReplicatedJobs: [a]}
  - {name: oom, action: FailJobSet, onJobFailureMessagePatterns: ["OOM[Kk]illed"]}
  - {name: rest, action: RestartJobSet}
"#;
    let js = jobset(spec);
    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-b-1"),
        "BackoffLimitExceeded",
        "container was OOMKilled at step 3",
        10,
    );
    let p = run(&js, &jobs);
    let c = cond(&p, types::FAILED).unwrap();
    assert_eq!(c.reason, "FailJobSetFailurePolicyAction");
    assert!(c.message.contains("first failed job: js-b-1"));

    let mut jobs = all_jobs(&js);
    fail(
        named(&mut jobs, "js-b-1"),
        "BackoffLimitExceeded",
        "exit code 1",
        10,
    );
    let p = run(&js, &jobs);
    assert_eq!(
        cond(&p, types::RESTARTING).unwrap().reason,
        "FailurePolicy_rest"
    );
}

#[test]
fn previous_attempt_jobs_are_deleted_and_recreated_once_gone() {
    let js0 = jobset("failurePolicy: {maxRestarts: 3}");
    let old = all_jobs(&js0);
    let js = with_status(js0, |s| s.restarts = 1);
    let p = run(&js, &old);
    assert_eq!(deleted(&p).len(), 4);
    assert!(created(&p).is_empty(), "Recreate waits for each namesake");
    // Two of the old Jobs are gone: exactly those two come back, attempt 1.
    let p = run(&js, &old[2..]);
    assert_eq!(created(&p), ["js-a-0", "js-b-0"]);
    let new_job = created_jobs(&p)[0].clone().into_inner();
    assert_eq!(new_job.metadata.labels.unwrap()[RESTART_ATTEMPT_KEY], "1");
}

#[test]
fn blocking_recreate_waits_for_every_previous_job() {
    let js0 = jobset("failurePolicy: {maxRestarts: 3, restartStrategy: BlockingRecreate}");
    let old = all_jobs(&js0);
    let js = with_status(js0, |s| s.restarts = 1);
    let p = run(&js, &old[3..]);
    assert!(created(&p).is_empty());
    let p = run(&js, &[]);
    assert_eq!(created(&p).len(), 4);
}

#[test]
fn jobs_being_deleted_are_not_deleted_again() {
    let js0 = jobset("");
    let mut old = all_jobs(&js0);
    old[0].metadata.deletion_timestamp = Some(Time(ts(5)));
    let js = with_status(js0, |s| s.restarts = 1);
    let p = run(&js, &old);
    assert_eq!(deleted(&p), ["js-b-0", "js-b-1", "js-b-2"]);
}

#[test]
fn all_jobs_succeeding_completes_the_jobset() {
    let js = jobset("");
    let mut jobs = all_jobs(&js);
    jobs.iter_mut().for_each(complete);
    let p = run(&js, &jobs);
    let c = cond(&p, types::COMPLETED).unwrap();
    assert_eq!(c.reason, "AllJobsCompleted");
    assert!(c.message.starts_with("jobset completed successfully"));
    assert_eq!(status(&p).terminal_state, "Completed");
    assert_eq!(p.terminal, Some(Terminal::Completed));
    assert_eq!(
        status(&p).replicated_jobs_status[0].succeeded,
        3,
        "b, then a"
    );
}

#[test]
fn any_with_targets_completes_on_one_targeted_success() {
    let js = jobset("successPolicy: {operator: Any, targetReplicatedJobs: [a]}");
    let mut jobs = all_jobs(&js);
    complete(named(&mut jobs, "js-b-0"));
    let p = run(&js, &jobs);
    assert!(cond_opt(&p, types::COMPLETED).is_none());
    complete(named(&mut jobs, "js-a-0"));
    let p = run(&js, &jobs);
    assert!(cond(&p, types::COMPLETED).is_some());
}

fn cond_opt<'a>(plan: &'a Plan, type_: &str) -> Option<&'a Condition> {
    plan.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

#[test]
fn failures_win_over_success_in_the_same_pass() {
    let js = jobset("successPolicy: {operator: Any}");
    let mut jobs = all_jobs(&js);
    complete(named(&mut jobs, "js-b-0"));
    fail(named(&mut jobs, "js-a-0"), "BackoffLimitExceeded", "x", 3);
    let p = run(&js, &jobs);
    assert!(cond(&p, types::FAILED).is_some());
    assert!(cond_opt(&p, types::COMPLETED).is_none());
}

fn finished(js: JobSet, at: i64) -> JobSet {
    with_status(js, |s| {
        s.conditions.push(Condition {
            type_: "Completed".into(),
            status: "True".into(),
            reason: "AllJobsCompleted".into(),
            message: "jobset completed successfully".into(),
            last_transition_time: Time(ts(at)),
            observed_generation: None,
        });
        s.terminal_state = "Completed".into();
    })
}

#[test]
fn a_finished_jobset_deletes_its_active_jobs_and_creates_nothing() {
    let js = finished(jobset(""), 10);
    let mut jobs = all_jobs(&js);
    complete(named(&mut jobs, "js-a-0"));
    let p = run(&js, &jobs);
    assert_eq!(deleted(&p), ["js-b-0", "js-b-1", "js-b-2"]);
    assert!(created(&p).is_empty());
}

#[test]
fn ttl_deletes_the_jobset_when_it_runs_out_and_waits_before() {
    let js = finished(jobset("ttlSecondsAfterFinished: 30"), 80);
    let p = run(&js, &[]);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
    assert!(!p.actions.contains(&Action::DeleteJobSet));
    let p = run_with(
        &js,
        &[],
        &World {
            now: ts(110),
            ..Default::default()
        },
        &NativeDefaults,
    );
    assert!(p.actions.contains(&Action::DeleteJobSet));
}

#[test]
fn a_foreign_manager_or_a_deletion_means_no_action_at_all() {
    let js = jobset("managedBy: kueue.x-k8s.io/multikueue");
    assert_eq!(run(&js, &[]), Plan::default());
    let mut js = jobset("");
    js.metadata.deletion_timestamp = Some(Time(ts(1)));
    assert_eq!(run(&js, &[]), Plan::default());
    let js = jobset("managedBy: jobset.sigs.k8s.io/jobset-controller");
    assert!(!created(&run(&js, &[])).is_empty());
}

#[test]
fn in_order_creates_one_replicated_job_at_a_time() {
    let js = jobset("startupPolicy: {startupPolicyOrder: InOrder}");
    let p = run(&js, &[]);
    assert_eq!(created(&p), ["js-a-0"]);
    let c = cond(&p, types::STARTUP_IN_PROGRESS).unwrap();
    assert_eq!(c.reason, "InOrderStartupPolicyInProgress");
    let mut jobs = all_jobs(&js);
    jobs.truncate(1);
    ready(&mut jobs[0]);
    let p = run(&js, &jobs);
    assert_eq!(created(&p), ["js-b-0", "js-b-1", "js-b-2"]);
    let mut jobs = all_jobs(&js);
    jobs.iter_mut().for_each(ready);
    let p = run(&js, &jobs);
    assert_eq!(
        cond(&p, types::STARTUP_COMPLETED).unwrap().reason,
        "InOrderStartupPolicyCompleted"
    );
}

#[test]
fn depends_on_gates_creation_even_while_suspended() {
    let spec = r#"
suspend: true
replicatedJobs:
- name: a
  template: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}
- name: b
  replicas: 2
  dependsOn: [{name: a, status: Complete}]
  template: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}
"#;
    let js = jobset(spec);
    assert_eq!(created(&run(&js, &[])), ["js-a-0"]);
    let mut js = js;
    js.spec.suspend = Some(false);
    let mut jobs = all_jobs(&js);
    jobs.truncate(1);
    ready(&mut jobs[0]);
    assert!(
        created(&run(&js, &jobs)).is_empty(),
        "Complete needs success, Ready is not enough"
    );
    complete(&mut jobs[0]);
    assert_eq!(created(&run(&js, &jobs)), ["js-b-0", "js-b-1"]);
}

#[test]
fn resume_merges_the_template_into_suspended_jobs() {
    let suspended = jobset("suspend: true");
    let jobs = all_jobs(&suspended);
    let js = jobset("suspend: false");
    let p = run(&js, &jobs);
    let resumed: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ResumeJob { job, .. } => Some(job.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resumed.len(), 4);
    assert!(
        resumed
            .iter()
            .all(|j| j.spec.as_ref().unwrap().suspend == Some(false))
    );
    // The condition False is only written over an existing one.
    assert!(cond_opt(&p, types::SUSPENDED).is_none());
    let was = with_status(js, |s| {
        s.conditions.push(Condition {
            type_: "Suspended".into(),
            status: "True".into(),
            reason: "SuspendedJobs".into(),
            message: "jobset is suspended".into(),
            last_transition_time: Time(ts(1)),
            observed_generation: None,
        })
    });
    let p = run(&was, &jobs);
    let c = cond(&p, types::SUSPENDED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ResumeJobs")
    );
}

#[test]
fn restart_job_recreates_one_index_without_a_restarting_condition() {
    let spec = "failurePolicy: {maxRestarts: 3, rules: [{name: one, action: RestartJob}]}";
    let js = jobset(spec);
    let mut jobs = all_jobs(&js);
    fail(named(&mut jobs, "js-b-1"), "BackoffLimitExceeded", "x", 3);
    let p = run(&js, &jobs);
    let b = status(&p)
        .replicated_jobs_status
        .iter()
        .find(|r| r.name == "b")
        .unwrap();
    assert_eq!(b.job_restarts, [0, 1, 0]);
    assert_eq!(b.job_restarts_count_towards_max, [0, 1, 0]);
    assert!(cond_opt(&p, types::RESTARTING).is_none());
    assert_eq!(event_reasons(&p), ["RestartJobFailurePolicyAction"]);
    assert_eq!(status(&p).restarts, 0);

    // Next reconcile: only that index is previous.
    let js = with_status(js, |s| {
        s.replicated_jobs_status = vec![ReplicatedJobStatus {
            name: "b".into(),
            job_restarts: vec![0, 1, 0],
            job_restarts_count_towards_max: vec![0, 1, 0],
            ..Default::default()
        }];
    });
    let p = run(&js, &jobs);
    assert_eq!(deleted(&p), ["js-b-1"]);
    let p = run(
        &js,
        &jobs
            .iter()
            .filter(|j| j.metadata.name.as_deref() != Some("js-b-1"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(created(&p), ["js-b-1"]);
}

#[test]
fn restart_job_with_its_gate_off_changes_nothing_and_is_retried() {
    // Upstream: the action's applier returns an error; the reconcile is
    // retried with nothing written, no condition and no event.
    let spec = "failurePolicy: {maxRestarts: 0, rules: [{name: one, action: RestartJob}]}";
    let js = with_status(jobset(spec), |s| {
        s.replicated_jobs_status = vec![ReplicatedJobStatus {
            name: "b".into(),
            job_restarts: vec![0, 2, 0],
            job_restarts_count_towards_max: vec![0, 2, 0],
            ..Default::default()
        }];
    });
    let mut jobs = all_jobs(&js);
    fail(named(&mut jobs, "js-b-1"), "BackoffLimitExceeded", "x", 3);
    let world = World {
        gates: vec![],
        ..Default::default()
    };
    let p = run_with(&js, &jobs, &world, &NativeDefaults);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(created(&p).is_empty() && deleted(&p).is_empty());
    assert!(p.requeue_after.is_some());
    assert!(
        p.decisions.iter().any(|d| d.contains(
            "RestartJob failure policy action cannot be used when the feature gate RestartJob is disabled"
        )),
        "{:?}",
        p.decisions
    );
    let st = status(&p);
    assert!(st.conditions.is_empty(), "{:?}", st.conditions);
    assert_eq!((st.restarts, st.restarts_count_towards_max), (0, 0));
    // Without the gate the per-index arrays are not kept, as upstream.
    let b = st
        .replicated_jobs_status
        .iter()
        .find(|r| r.name == "b")
        .unwrap();
    assert!(b.job_restarts.is_empty() && b.job_restarts_count_towards_max.is_empty());
    assert_eq!(b.failed, 1);
}

#[test]
fn without_the_restart_job_gate_jobs_carry_no_per_job_attempt() {
    let js = jobset("");
    let world = World {
        service: true,
        gates: vec![],
        ..Default::default()
    };
    let p = run_with(&js, &[], &world, &NativeDefaults);
    let jobs = created_jobs(&p);
    assert!(!jobs.is_empty());
    for job in jobs {
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[RESTART_ATTEMPT_KEY], "0");
        assert!(!labels.contains_key(JOB_RESTART_ATTEMPT_KEY), "{labels:?}");
    }
    let p = run(&js, &[]);
    for job in created_jobs(&p) {
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[JOB_RESTART_ATTEMPT_KEY],
            "0"
        );
    }
}

#[test]
fn all_jobs_ready_clears_an_existing_restarting_condition() {
    let js = with_status(jobset(""), |s| {
        s.conditions.push(Condition {
            type_: "RestartingJobSet".into(),
            status: "True".into(),
            reason: "DefaultFailurePolicy".into(),
            message: "m".into(),
            last_transition_time: Time(ts(1)),
            observed_generation: None,
        })
    });
    let mut jobs = all_jobs(&js);
    jobs.iter_mut().for_each(ready);
    let p = run(&js, &jobs);
    let c = cond(&p, types::RESTARTING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", "JobsReady", "all jobs are ready")
    );
    assert!(!is_true(&status(&p).conditions, types::RESTARTING));
}

#[test]
fn missing_claims_are_created() {
    let spec = r#"
volumeClaimPolicies:
- templates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce]}}]
"#;
    let js = jobset(spec);
    let p = run(&js, &all_jobs(&js));
    assert!(p.actions.iter().any(
        |a| matches!(a, Action::CreatePvcs(c) if c[0].metadata.name.as_deref() == Some("data-js"))
    ));
    let world = World {
        pvcs: ["data-js".to_string()].into(),
        ..Default::default()
    };
    let p = run_with(&js, &all_jobs(&js), &world, &NativeDefaults);
    assert!(!p.actions.iter().any(|a| matches!(a, Action::CreatePvcs(_))));
}

fn pools(n: usize) -> Vec<NodeInfo> {
    (0..n)
        .map(|i| NodeInfo {
            name: format!("n{i}"),
            labels: [("pool".to_string(), format!("p{i}"))].into(),
            ready: true,
        })
        .collect()
}

/// The test JobSet (with `extra_spec`), exclusive by "pool".
fn exclusive_by_pool(extra_spec: &str) -> JobSet {
    let mut js = jobset(extra_spec);
    js.metadata.annotations = Some([(EXCLUSIVE_KEY.to_string(), "pool".to_string())].into());
    js
}

/// Pool `value` held by another JobSet's Job at `priority`.
fn held(value: &str, priority: Option<i32>) -> Occupant {
    Occupant {
        topology_key: "pool".into(),
        value: Some(value.into()),
        job_key: "someone-else".into(),
        priority,
    }
}

#[test]
fn exclusive_jobs_get_distinct_free_domains_or_are_left_to_the_scheduler() {
    let js = exclusive_by_pool("");
    let world = World {
        nodes: pools(5),
        occupants: vec![held("p0", None)],
        ..Default::default()
    };
    let p = run_with(&js, &[], &world, &NativeDefaults);
    let jobs = created_jobs(&p);
    let pinned: BTreeSet<String> = jobs.iter().filter_map(|j| pin_of(j)).collect();
    assert_eq!(pinned.len(), 4, "four Jobs, four distinct pools");
    assert!(!pinned.contains("p0"), "an occupied pool is not used");

    // Two pools for four Jobs: every Job is created (its pods Pending where
    // an autoscaler sees them); two are pinned, the other two carry
    // upstream's exclusive affinities and no pin.
    let world = World {
        nodes: pools(2),
        ..Default::default()
    };
    let p = run_with(&js, &[], &world, &NativeDefaults);
    let jobs = created_jobs(&p);
    assert_eq!(jobs.len(), 4);
    assert!(p.waiting.is_empty(), "{:?}", p.waiting);
    let (pinned, free): (Vec<&Job>, Vec<&Job>) = jobs
        .iter()
        .map(|j| &***j)
        .partition(|j| pin_of(j).is_some());
    assert_eq!(pinned.len(), 2);
    for j in &pinned {
        let a = j
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref();
        let a = a.expect("a pinned Job keeps other exclusive Jobs' pods out too");
        assert!(a.pod_affinity.is_none(), "its pin keeps its pods together");
        assert!(a.pod_anti_affinity.is_some());
    }
    for j in &free {
        let (with, against) = pod_affinity(j).expect("exclusive affinities");
        let key = j.metadata.labels.as_ref().unwrap()[JOB_KEY].clone();
        assert_eq!(with.topology_key, "pool");
        assert_eq!(
            with.label_selector
                .as_ref()
                .unwrap()
                .match_expressions
                .as_ref()
                .unwrap()[0]
                .values
                .as_deref(),
            Some(&[key][..])
        );
        let exprs = against
            .label_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        let ops: Vec<(&str, &str)> = exprs
            .iter()
            .map(|e| (e.key.as_str(), e.operator.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                (JOB_KEY, "Exists"),
                (JOB_KEY, "NotIn"),
                (PRIORITY_KEY, "In")
            ]
        );
        assert_eq!(
            against.namespace_selector,
            Some(Default::default()),
            "every namespace"
        );
    }
    assert!(
        p.decisions
            .iter()
            .any(|d| d.contains("left to the scheduler")),
        "{:?}",
        p.decisions
    );

    // A Job left to the scheduler may be in any pool: while it runs, the
    // next exclusive JobSet of that priority gets no pin either.
    let mut held_anywhere = crate::placement::occupant_of(free[0]).expect("holds");
    assert_eq!(held_anywhere.value, None);
    held_anywhere.job_key = "another-jobsets-job".into();
    let world = World {
        nodes: pools(5),
        occupants: vec![held_anywhere],
        ..Default::default()
    };
    let p = run_with(&js, &[], &world, &NativeDefaults);
    let jobs = created_jobs(&p);
    assert_eq!(jobs.len(), 4);
    assert!(
        jobs.iter()
            .all(|j| pin_of(j).is_none() && pod_affinity(j).is_some())
    );
}

/// The exclusive pod affinity and anti-affinity terms of a Job's template.
fn pod_affinity(job: &Job) -> Option<(PodAffinityTerm, PodAffinityTerm)> {
    let a = job
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .affinity
        .as_ref()?;
    let with = a
        .pod_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let against = a
        .pod_anti_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    assert_eq!((with.len(), against.len()), (1, 1), "written once");
    Some((with[0].clone(), against[0].clone()))
}

/// The pod spec of a Job's (or a replicated job's) Job spec.
fn pod_of(spec: &mut Option<JobSpec>) -> &mut PodSpec {
    spec.as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("a pod spec")
}

/// The pool a Job's pod template is pinned to.
fn pin_of(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .node_selector
        .as_ref()?
        .get("pool")
        .cloned()
}

#[test]
fn a_suspended_jobset_holds_no_domain_and_is_placed_when_resumed() {
    let mut js = exclusive_by_pool("suspend: true");
    let world = World {
        nodes: pools(4),
        ..Default::default()
    };
    // Created suspended: every Job, none pinned, and no domain waited for.
    let p = run_with(&js, &[], &world, &NativeDefaults);
    let created = created_jobs(&p);
    assert_eq!(created.len(), 4);
    assert!(p.waiting.is_empty());
    for j in &created {
        assert_eq!(j.spec.as_ref().unwrap().suspend, Some(true));
        assert_eq!(pin_of(j), None, "{:?}", j.metadata.name);
    }
    let jobs: Vec<Job> = created.iter().map(|j| (***j).clone()).collect();
    // Suspended Jobs are nobody's occupants, even pinned ones.
    let mut pinned = jobs[0].clone();
    pod_of(&mut pinned.spec).node_selector = Some([("pool".to_string(), "p0".to_string())].into());
    assert!(crate::placement::occupant_of(&pinned).is_none());
    pinned.spec.as_mut().unwrap().suspend = Some(false);
    assert!(crate::placement::occupant_of(&pinned).is_some());

    // Resumed with one pool taken by another JobSet: three Jobs are pinned
    // to the three free pools; the fourth is resumed too, with no pin and
    // upstream's exclusive affinities, and its pods wait for a pool.
    js.spec.suspend = Some(false);
    let world = World {
        nodes: pools(4),
        occupants: vec![held("p2", None)],
        ..Default::default()
    };
    let p = run_with(&js, &jobs, &world, &NativeDefaults);
    let resumed: Vec<&Job> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ResumeJob { job, .. } => Some(&**job),
            _ => None,
        })
        .collect();
    assert_eq!(resumed.len(), 4, "{:?}", p.actions);
    let mut given: Vec<String> = resumed.iter().filter_map(|j| pin_of(j)).collect();
    given.sort();
    assert_eq!(given, ["p0", "p1", "p3"]);
    let unpinned: Vec<&&Job> = resumed.iter().filter(|j| pin_of(j).is_none()).collect();
    assert_eq!(unpinned.len(), 1);
    assert!(pod_affinity(unpinned[0]).is_some());
    assert!(p.waiting.is_empty(), "{:?}", p.waiting);
    // Pod affinity cannot be added to an existing Job: the terms were
    // written when it was created, and the resume leaves them as they are.
    for j in &jobs {
        assert!(pod_affinity(j).is_some(), "created with the terms");
    }
    let patch = crate::suspend::resume_patch(unpinned[0]);
    assert!(
        patch.pointer("/spec/template/spec/affinity").is_none(),
        "{patch}"
    );

    // A Job created suspended without them (by an earlier version) is not
    // resumed unpinned: it waits for a pool it can be pinned to.
    let bare: Vec<Job> = jobs
        .iter()
        .map(|j| {
            let mut j = j.clone();
            pod_of(&mut j.spec).affinity = None;
            j
        })
        .collect();
    let p = run_with(&js, &bare, &world, &NativeDefaults);
    let resumed = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::ResumeJob { .. }))
        .count();
    assert_eq!(resumed, 3, "{:?}", p.actions);
    assert_eq!(p.waiting.len(), 1, "{:?}", p.waiting);
    assert!(
        p.waiting[0].reason.contains("no exclusive pod affinity"),
        "{:?}",
        p.waiting
    );
}

#[test]
fn exclusivity_is_per_priority_resolved_from_the_priority_class() {
    // Exclusive Jobs whose pods name priorityClassName "high": the class's
    // value, not the template's unset priority, is what domains compare.
    let mut js = exclusive_by_pool("");
    for r in &mut js.spec.replicated_jobs {
        pod_of(&mut r.template.spec).priority_class_name = Some("high".into());
    }
    let classes = PriorityClasses {
        by_name: [("high".to_string(), 1000)].into(),
        defaults: [("low".to_string(), 10)].into(),
    };
    let pools_used = |occupant: Occupant| {
        let world = World {
            nodes: pools(5),
            occupants: vec![occupant],
            priority_classes: classes.clone(),
            ..Default::default()
        };
        let p = run_with(&js, &[], &world, &NativeDefaults);
        let jobs = created_jobs(&p);
        assert_eq!(jobs.len(), 4);
        for j in &jobs {
            let labels = j.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
            assert_eq!(labels.labels.as_ref().unwrap()[PRIORITY_KEY], "1000");
            assert_eq!(crate::placement::recorded_priority(j), Some(1000));
        }
        jobs.iter()
            .filter_map(|j| pin_of(j))
            .collect::<BTreeSet<_>>()
    };
    // p0 held at the same priority: not used; at another priority: used.
    assert!(!pools_used(held("p0", Some(1000))).contains("p0"));
    assert!(pools_used(held("p0", Some(10))).contains("p0"));
}

#[test]
fn the_node_selector_strategy_pins_by_namespaced_job() {
    let mut js = jobset("");
    js.metadata.annotations = Some(
        [
            (EXCLUSIVE_KEY.to_string(), "pool".to_string()),
            (NODE_SELECTOR_STRATEGY_KEY.to_string(), "true".to_string()),
        ]
        .into(),
    );
    let p = run(&js, &[]);
    let job = created_jobs(&p)[0].clone().into_inner();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.node_selector.unwrap()[NAMESPACED_JOB_KEY], "ns_js-a-0");
    assert_eq!(
        pod.tolerations.unwrap()[0].key.as_deref(),
        Some(NO_SCHEDULE_TAINT_KEY)
    );
}

#[test]
fn the_node_selector_strategy_needs_both_annotations_layered_as_upstream() {
    // (JobSet annotations, replicated job "a" annotations) -> whether "a"'s
    // Job is pinned by namespaced-job, and its exclusive annotation.
    let x = EXCLUSIVE_KEY;
    let s = NODE_SELECTOR_STRATEGY_KEY;
    type Annotations<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Annotations, Annotations, bool, Option<&str>); 7] = [
        (&[(x, "pool"), (s, "true")], &[], true, Some("pool")),
        (&[(s, "true")], &[], false, None),
        (&[], &[(s, "true")], false, None),
        (&[(x, "pool")], &[], false, Some("pool")),
        // A strategy on the template joins the JobSet's topology.
        (&[(x, "pool")], &[(s, "true")], true, Some("pool")),
        // The JobSet's strategy stays under the template's own topology.
        (
            &[(x, "pool"), (s, "true")],
            &[(x, "zone")],
            true,
            Some("zone"),
        ),
        (&[], &[(x, "pool"), (s, "true")], true, Some("pool")),
    ];
    let owned = |kv: &[(&str, &str)]| -> Option<std::collections::BTreeMap<String, String>> {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    };
    let world = World {
        nodes: pools(8)
            .into_iter()
            .map(|mut n| {
                let zone = n.labels["pool"].clone();
                n.labels.insert("zone".to_string(), zone);
                n
            })
            .collect(),
        ..Default::default()
    };
    for (i, (on_jobset, on_template, pinned_by_name, exclusive)) in cases.into_iter().enumerate() {
        let mut js = jobset("");
        js.metadata.annotations = owned(on_jobset);
        js.spec.replicated_jobs[0]
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations = owned(on_template);
        let p = run_with(&js, &[], &world, &NativeDefaults);
        let job = created_jobs(&p)
            .into_iter()
            .find(|j| j.metadata.name.as_deref() == Some("js-a-0"))
            .unwrap_or_else(|| panic!("case {i}: js-a-0 is created ({:?})", p.waiting))
            .clone()
            .into_inner();
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get(x).map(String::as_str),
            exclusive,
            "case {i}"
        );
        let selector = job
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.node_selector)
            .unwrap_or_default();
        assert_eq!(
            selector.get(NAMESPACED_JOB_KEY).map(String::as_str),
            pinned_by_name.then_some("ns_js-a-0"),
            "case {i}: {selector:?}"
        );
    }
}

/// An engine whose chosen slot always fails.
/// A policy whose plugin for one slot fails with `kind` (the default
/// plugins decide the other slots).
struct Failing(Slot, ErrorKind);

/// A plugin that traps.
#[allow(non_snake_case)]
fn Broken(slot: Slot) -> Failing {
    Failing(
        slot,
        ErrorKind::Trap {
            message: "unreachable executed".into(),
        },
    )
}

impl Failing {
    fn err(&self) -> PolicyError {
        PolicyError {
            plugin: "hostile@0000".into(),
            slot: self.0,
            kind: self.1.clone(),
        }
    }
}

impl PolicyEngine for Failing {
    fn decide_startup(&self, s: &p::Snapshot) -> Result<Decision<p::StartupVerdict>, PolicyError> {
        if self.0 == Slot::Startup {
            Err(self.err())
        } else {
            NativeDefaults.decide_startup(s)
        }
    }
    fn decide_outcome(
        &self,
        s: &p::Snapshot,
        _pods: &[p::JobPods],
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        if self.0 == Slot::Outcome {
            Err(self.err())
        } else {
            NativeDefaults.decide_outcome(s, &[])
        }
    }
    fn decide_in_place(
        &self,
        s: &p::Snapshot,
        r: &p::InPlaceRestart,
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        if self.0 == Slot::Outcome {
            Err(self.err())
        } else {
            NativeDefaults.decide_in_place(s, r)
        }
    }
    fn decide_placement(
        &self,
        s: &p::Snapshot,
        r: &p::PlacementRequest,
    ) -> Result<Decision<Vec<p::JobPlacement>>, PolicyError> {
        if self.0 == Slot::Placement {
            Err(self.err())
        } else {
            NativeDefaults.decide_placement(s, r)
        }
    }
}

#[test]
fn a_failing_outcome_plugin_holds_the_decision_and_never_fails_the_jobset() {
    let js = jobset("");
    let mut jobs = all_jobs(&js);
    fail(named(&mut jobs, "js-a-0"), "BackoffLimitExceeded", "x", 3);
    let p = run_with(&js, &jobs, &World::default(), &Broken(Slot::Outcome));
    let c = cond(&p, types::POLICY_FAILED).unwrap();
    assert_eq!(c.reason, "OutcomePluginFailed");
    assert!(
        c.message.contains("hostile@0000") && c.message.contains("unreachable"),
        "{}",
        c.message
    );
    assert!(cond_opt(&p, types::FAILED).is_none());
    assert_eq!(status(&p).terminal_state, "");
    assert!(p.requeue_after.is_some());
}

#[test]
fn a_failing_startup_plugin_creates_nothing_and_recovers_later() {
    let js = jobset("");
    let p = run_with(&js, &[], &World::default(), &Broken(Slot::Startup));
    assert!(created(&p).is_empty());
    assert_eq!(
        cond(&p, types::POLICY_FAILED).unwrap().reason,
        "StartupPluginFailed"
    );
    let js = with_status(js, |s| *s = status(&p).clone());
    let p = run(&js, &[]);
    assert_eq!(created(&p).len(), 4);
    let c = cond(&p, types::POLICY_FAILED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PolicySucceeded")
    );
}

#[test]
fn a_failing_placement_plugin_creates_nothing() {
    let js = jobset("");
    let p = run_with(&js, &[], &World::default(), &Broken(Slot::Placement));
    assert!(created(&p).is_empty());
    assert_eq!(
        cond(&p, types::POLICY_FAILED).unwrap().reason,
        "PlacementPluginFailed"
    );
}

#[test]
fn replicated_job_counts_follow_spec_2_6() {
    let js = jobset("");
    let mut jobs = all_jobs(&js);
    ready(named(&mut jobs, "js-b-0"));
    let b1 = named(&mut jobs, "js-b-1");
    b1.status = Some(JobStatus {
        active: Some(1),
        ready: Some(1),
        succeeded: Some(1),
        ..Default::default()
    });
    condition(
        named(&mut jobs, "js-b-2"),
        "FailureTarget",
        "BackoffLimitExceeded",
        "x",
        2,
    );
    let p = run(&js, &jobs);
    let names: Vec<&str> = status(&p)
        .replicated_jobs_status
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["b", "a"], "upstream's order: by name, last first");
    let b = &status(&p).replicated_jobs_status[0];
    assert_eq!((b.ready, b.active, b.failed, b.succeeded), (2, 2, 0, 0));
}

fn resized(plan: &Plan) -> Vec<(String, Option<i32>, Option<i32>)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::ResizeJobs(r) => Some(r.iter()),
            _ => None,
        })
        .flatten()
        .map(|r| (r.job.clone(), r.parallelism, r.completions))
        .collect()
}

/// The JobSet of BASE with replicated job "b" resized to `pods`.
fn b_resized(js: &JobSet, pods: i32) -> JobSet {
    let mut js = js.clone();
    let spec = js.spec.replicated_jobs[1].template.spec.as_mut().unwrap();
    spec.parallelism = Some(pods);
    spec.completions = Some(pods);
    js
}

#[test]
fn an_elastic_resize_reaches_the_unfinished_jobs_of_the_attempt_before_creation() {
    let js0 = jobset("");
    let mut jobs = all_jobs(&js0);
    complete(named(&mut jobs, "js-b-0"));
    jobs.retain(|j| j.metadata.name.as_deref() != Some("js-b-2"));
    let js = b_resized(&js0, 5);
    let elastic = World {
        gates: vec!["ElasticJobSet".to_string()],
        ..World::default()
    };
    let p = run_with(&js, &jobs, &elastic, &NativeDefaults);
    assert_eq!(resized(&p), [("js-b-1".to_string(), Some(5), Some(5))]);
    let resize_at = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::ResizeJobs(_)));
    let create_at = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::CreateJobs(_)));
    assert!(resize_at < create_at, "{:?}", p.actions);
    let new_b = created_jobs(&p)[0].clone().into_inner();
    assert_eq!(new_b.spec.unwrap().parallelism, Some(5));

    // Without the gate the Jobs keep their size.
    let p = run(&js, &jobs);
    assert!(resized(&p).is_empty(), "{:?}", p.actions);

    // Jobs of an earlier attempt are deleted, not resized.
    let js = with_status(b_resized(&js0, 1), |s| s.restarts = 1);
    let p = run_with(&js, &all_jobs(&js0), &elastic, &NativeDefaults);
    assert!(resized(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(deleted(&p).len(), 4);
}

/// BASE restarting in place: "a" runs 1 pod, "b" 3 Jobs of 2 pods.
fn in_place_jobset(max_restarts: i32) -> JobSet {
    let mut js = jobset(&format!(
        "failurePolicy: {{maxRestarts: {max_restarts}, restartStrategy: InPlaceRestart}}"
    ));
    let a = js.spec.replicated_jobs[0].template.spec.as_mut().unwrap();
    a.parallelism = Some(1);
    a.completions = Some(1);
    js
}

fn pod_at(name: &str, attempt: Option<&str>) -> crate::in_place::PodFacts {
    crate::in_place::PodFacts {
        name: name.to_string(),
        attempt: attempt.map(str::to_string),
        ..Default::default()
    }
}

/// The JobSet's seven pods, reporting `attempts` in order (None: the
/// agent has not written its annotation yet).
fn in_place_world(attempts: [Option<&str>; 7]) -> World {
    World {
        gates: vec!["InPlaceRestart".to_string()],
        pods: Some(
            attempts
                .iter()
                .enumerate()
                .map(|(i, a)| pod_at(&format!("p{i}"), *a))
                .collect(),
        ),
        ..World::default()
    }
}

/// The current in-place attempt the plan writes (none when it writes no
/// status or leaves the attempt unset).
fn current_attempt(p: &Plan) -> Option<i32> {
    p.status.as_ref()?.current_in_place_restart_attempt
}

fn in_place_run(js: &JobSet, world: &World) -> Plan {
    let jobs = all_jobs(js);
    run_with(js, &jobs, world, &NativeDefaults)
}

/// The reason of the Failed condition once pod `pod`'s containers have
/// restarted twice, past a one-restart budget.
fn failed_reason_past_the_budget(js: &JobSet, mut world: World, pod: usize) -> String {
    world.pods.as_mut().unwrap()[pod].max_restart_count = 2;
    let p = in_place_run(js, &world);
    cond(&p, types::FAILED).unwrap().reason.clone()
}

#[test]
fn every_pod_at_one_attempt_sets_the_current_attempt_and_lifts_the_barrier() {
    let js = in_place_jobset(3);
    let p = in_place_run(&js, &in_place_world([Some("0"); 7]));
    assert_eq!(status(&p).current_in_place_restart_attempt, Some(0));
    assert_eq!(status(&p).previous_in_place_restart_attempt, None);
    // One pod without its annotation yet: nothing moves.
    let mut attempts = [Some("0"); 7];
    attempts[6] = None;
    let p = in_place_run(&js, &in_place_world(attempts));
    assert_eq!(current_attempt(&p), None, "{:?}", p.status);
    // Not yet listed by the pod watch: nothing either.
    let world = World {
        pods: None,
        ..in_place_world([Some("0"); 7])
    };
    let p = in_place_run(&js, &world);
    assert_eq!(current_attempt(&p), None, "{:?}", p.status);
}

#[test]
fn a_pod_that_moved_on_makes_the_others_restart_in_place_then_all_run_the_new_attempt() {
    let js = with_status(in_place_jobset(3), |s| {
        s.current_in_place_restart_attempt = Some(0)
    });
    let mut attempts = [Some("0"); 7];
    attempts[3] = Some("1");
    let p = in_place_run(&js, &in_place_world(attempts));
    assert_eq!(status(&p).previous_in_place_restart_attempt, Some(0));
    assert_eq!(status(&p).current_in_place_restart_attempt, Some(0));
    assert!(cond_opt(&p, types::FAILED).is_none());

    // Every agent restarted and reports 1: the barrier lifts at attempt 1.
    let js = with_status(js, |s| s.previous_in_place_restart_attempt = Some(0));
    let p = in_place_run(&js, &in_place_world([Some("1"); 7]));
    assert_eq!(status(&p).current_in_place_restart_attempt, Some(1));
    assert_eq!(status(&p).previous_in_place_restart_attempt, Some(0));

    // The previous attempt never moves back while pods are recreated.
    let js = with_status(js, |s| s.previous_in_place_restart_attempt = Some(4));
    let p = in_place_run(&js, &in_place_world(attempts));
    assert!(
        p.status
            .as_ref()
            .is_none_or(|s| s.previous_in_place_restart_attempt == Some(4))
    );
}

#[test]
fn pods_past_max_restarts_fail_the_jobset_in_upstreams_words() {
    let js = in_place_jobset(1);
    let mut attempts = [Some("1"); 7];
    attempts[0] = Some("2");
    let p = in_place_run(&js, &in_place_world(attempts));
    let failed = cond(&p, types::FAILED).expect("Failed is set");
    assert_eq!(
        (failed.reason.as_str(), failed.message.as_str()),
        (
            "ReachedMaxRestarts",
            "jobset failed due to reaching max number of restarts"
        )
    );
    assert_eq!(status(&p).terminal_state, "Failed");
    assert_eq!(p.terminal, Some(Terminal::Failed));

    // Uncounted restarts of the JobSet do not count.
    let js2 = with_status(in_place_jobset(1), |s| s.restarts = 1);
    let p = in_place_run(&js2, &in_place_world(attempts));
    assert!(cond_opt(&p, types::FAILED).is_none());

    // A container restarting faster than the barrier can lift.
    let world = in_place_world([Some("0"); 7]);
    assert_eq!(
        failed_reason_past_the_budget(&js, world, 2),
        "ReachedMaxRestarts"
    );

    // Failed pods are replaced: what they report does not count.
    let mut world = in_place_world(attempts);
    world.pods.as_mut().unwrap()[0].failed = true;
    let p = in_place_run(&js, &world);
    assert!(cond_opt(&p, types::FAILED).is_none());
}

/// The default policies, but the in-place decision answers `action` and
/// keeps the state it was given.
struct InPlaceAnswers {
    action: p::Action,
    given: std::sync::Mutex<Option<p::InPlaceRestart>>,
}

impl InPlaceAnswers {
    fn new(action: p::Action) -> Self {
        InPlaceAnswers {
            action,
            given: std::sync::Mutex::default(),
        }
    }
    fn given(&self) -> p::InPlaceRestart {
        self.given.lock().unwrap().clone().expect("asked")
    }
}

impl PolicyEngine for InPlaceAnswers {
    fn decide_startup(&self, s: &p::Snapshot) -> Result<Decision<p::StartupVerdict>, PolicyError> {
        NativeDefaults.decide_startup(s)
    }
    fn decide_outcome(
        &self,
        s: &p::Snapshot,
        pods: &[p::JobPods],
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        NativeDefaults.decide_outcome(s, pods)
    }
    fn decide_in_place(
        &self,
        _: &p::Snapshot,
        r: &p::InPlaceRestart,
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        *self.given.lock().unwrap() = Some(r.clone());
        Ok(Decision {
            verdict: p::OutcomeVerdict {
                action: self.action.clone(),
                rule: Some("podLost".into()),
            },
            plugin: "recreate-on-node-loss@0123456789ab".into(),
            fallback_from: None,
        })
    }
    fn decide_placement(
        &self,
        s: &p::Snapshot,
        r: &p::PlacementRequest,
    ) -> Result<Decision<Vec<p::JobPlacement>>, PolicyError> {
        NativeDefaults.decide_placement(s, r)
    }
}

/// JobSet attempt 1: pod `p3` moved to in-place attempt 1 after a crash,
/// pod `p5-lost` was lost with its node (phase Failed; its replacement
/// `p5` reports 1), and `old-p1` failed in JobSet attempt 0.
fn lost_pod_world() -> World {
    let mut attempts = [Some("0"); 7];
    attempts[3] = Some("1");
    attempts[5] = Some("1");
    let mut world = in_place_world(attempts);
    let pods = world.pods.as_mut().unwrap();
    for pod in pods.iter_mut() {
        pod.jobset_attempt = Some(1);
    }
    pods[3].max_restart_count = 1;
    let mut lost = pod_at("p5-lost", Some("0"));
    lost.failed = true;
    lost.jobset_attempt = Some(1);
    lost.detail = Some(std::sync::Arc::new(p::FailedPod {
        name: "p5-lost".into(),
        completion_index: Some(1),
        node: "n7".into(),
        phase: "Failed".into(),
        reason: String::new(),
        started: None,
        finished: None,
        containers: Vec::new(),
        disruption: Some(p::Disruption {
            reason: "DeletionByTaintManager".into(),
            message: "node n7 is gone".into(),
        }),
    }));
    pods.push(lost);
    let mut old = pod_at("old-p1", Some("0"));
    old.failed = true;
    old.jobset_attempt = Some(0);
    pods.push(old);
    world
}

#[test]
fn the_outcome_plugin_is_told_which_pods_began_the_restart_or_were_lost() {
    let js = with_status(in_place_jobset(3), |s| {
        s.current_in_place_restart_attempt = Some(0);
        (s.restarts, s.restarts_count_towards_max) = (1, 1);
    });
    let engine = InPlaceAnswers::new(p::Action::Continue);
    let p = run_with(&js, &all_jobs(&js), &lost_pod_world(), &engine);
    let given = engine.given();
    let names: Vec<&str> = given.pods.iter().map(|p| p.name.as_str()).collect();
    // Above the current attempt, or failed; not the earlier attempt's pod.
    assert_eq!(names, ["p3", "p5", "p5-lost"]);
    assert_eq!(
        given.pods[2].disruption.as_ref().unwrap().reason,
        "DeletionByTaintManager"
    );
    assert_eq!(given.pods[0].phase, "Running");
    assert_eq!(
        (
            given.current,
            given.highest,
            given.expected,
            given.reporting
        ),
        (Some(0), Some(1), 7, 7)
    );
    assert!(!given.agreed);
    assert_eq!(given.max_container_restarts, 1);
    // `continue`: the others restart in place, as upstream.
    assert_eq!(status(&p).previous_in_place_restart_attempt, Some(0));
}

#[test]
fn a_plugin_that_answers_restart_jobset_recreates_instead_of_restarting_in_place() {
    let js = with_status(in_place_jobset(3), |s| {
        s.current_in_place_restart_attempt = Some(0);
        (s.restarts, s.restarts_count_towards_max) = (1, 1);
    });
    let engine = InPlaceAnswers::new(p::Action::RestartJobset(p::JobsetRestart {
        count_towards_max: true,
        condition_reason: "PodLostDuringInPlaceRestart".into(),
        message: "pod p5-lost was lost".into(),
        event_reason: "RecreateAfterPodLoss".into(),
        first_failed_job: "js-b-1".into(),
    }));
    let p = run_with(&js, &all_jobs(&js), &lost_pod_world(), &engine);
    assert_eq!(
        (status(&p).restarts, status(&p).restarts_count_towards_max),
        (2, 2)
    );
    // The attempts stay: the recreated pods report one past the current.
    assert_eq!(status(&p).previous_in_place_restart_attempt, None);
    let c = cond(&p, types::RESTARTING).expect("RestartingJobSet");
    assert_eq!(c.reason, "PodLostDuringInPlaceRestart");
    assert_eq!(
        c.message,
        "pod p5-lost was lost (policy recreate-on-node-loss@0123456789ab)"
    );
    assert!(
        p.decisions
            .iter()
            .any(|d| d.contains("in-place restart by recreate-on-node-loss@0123456789ab: recreate")),
        "{:?}",
        p.decisions
    );
    assert!(cond_opt(&p, types::FAILED).is_none());
}

#[test]
fn a_failing_outcome_plugin_holds_an_in_place_jobset_past_its_budget_and_never_fails_it() {
    let js = in_place_jobset(1);
    let mut attempts = [Some("1"); 7];
    attempts[0] = Some("5");
    let p = run_with(
        &js,
        &all_jobs(&js),
        &in_place_world(attempts),
        &Broken(Slot::Outcome),
    );
    assert!(cond_opt(&p, types::FAILED).is_none());
    assert_eq!(
        cond(&p, types::POLICY_FAILED).unwrap().reason,
        "OutcomePluginFailed"
    );
    assert_eq!(current_attempt(&p), None);
}

#[test]
fn an_unreadable_attempt_still_fails_a_jobset_whose_containers_are_past_the_budget() {
    // Upstream fails on the restart count before it reads the annotations.
    let js = in_place_jobset(1);
    let world = in_place_world([Some("0"), Some("zero"), None, None, None, None, None]);
    assert_eq!(
        failed_reason_past_the_budget(&js, world, 0),
        "ReachedMaxRestarts"
    );
}

#[test]
fn sizes_that_do_not_allow_in_place_restart_still_fail_a_jobset_past_the_budget() {
    // Upstream fails on the restart budget before it counts the pods.
    let mut js = in_place_jobset(1);
    js.spec.replicated_jobs[0]
        .template
        .spec
        .as_mut()
        .unwrap()
        .completions = Some(2);
    let world = in_place_world([Some("0"); 7]);
    assert_eq!(
        failed_reason_past_the_budget(&js, world, 0),
        "ReachedMaxRestarts"
    );
}

#[test]
fn without_the_gate_or_the_strategy_pods_change_nothing() {
    let js = in_place_jobset(1);
    let world = World {
        gates: vec![],
        ..in_place_world([Some("5"); 7])
    };
    let p = in_place_run(&js, &world);
    assert!(cond_opt(&p, types::FAILED).is_none());
    assert_eq!(current_attempt(&p), None, "{:?}", p.status);
}

#[test]
fn an_unreadable_attempt_is_an_error_naming_the_pod() {
    let js = in_place_jobset(1);
    let world = in_place_world([Some("0"), Some("zero"), None, None, None, None, None]);
    let jobs: Vec<std::sync::Arc<Job>> =
        all_jobs(&js).into_iter().map(std::sync::Arc::new).collect();
    let inputs = Inputs {
        jobset: &js,
        jobs: &jobs,
        service_exists: true,
        existing_pvcs: &world.pvcs,
        nodes: &world.nodes,
        occupants: &world.occupants,
        now: world.now,
        feature_gates: &world.gates,
        priority_classes: &world.priority_classes,
        pods: world.pods.as_deref(),
        failed_pods: world.failed_pods.as_ref(),
    };
    let err = plan(inputs, &NativeDefaults).unwrap_err().to_string();
    assert_eq!(
        err,
        "Pod p1: annotation jobset.sigs.k8s.io/in-place-restart-attempt is \"zero\"; it must be a non-negative integer"
    );
}

#[test]
fn an_outcome_decided_after_a_plugin_failure_clears_policy_failed() {
    let js = jobset("");
    let mut jobs = all_jobs(&js);
    for j in jobs.iter_mut() {
        complete(j);
    }
    let held = run_with(&js, &jobs, &World::default(), &Broken(Slot::Outcome));
    assert_eq!(
        cond(&held, types::POLICY_FAILED).unwrap().status,
        "True",
        "the broken plugin holds the decision"
    );
    let js = with_status(js, |s| *s = status(&held).clone());
    let p = run(&js, &jobs);
    assert_eq!(status(&p).terminal_state, "Completed");
    let c = cond(&p, types::POLICY_FAILED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PolicySucceeded"),
        "a JobSet the fixed plugin finished must not still say its policy failed"
    );
}

#[test]
fn a_plugin_being_compiled_holds_the_decision_and_says_so_without_failing() {
    let js = jobset("");
    let jobs = all_jobs(&js);
    let compiling = Failing(
        Slot::Startup,
        ErrorKind::Compiling {
            waited: Duration::from_millis(10),
        },
    );
    let p = run_with(&js, &[], &World::default(), &compiling);
    assert!(
        created_jobs(&p).is_empty(),
        "nothing is created before the startup plugin decides"
    );
    let c = cond(&p, types::POLICY_FAILED).expect("the JobSet says why it waits");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PluginCompiling")
    );
    assert_eq!(
        c.message,
        "policy plugin hostile@0000 (startup) is being compiled; the decision waits for it"
    );
    assert!(p.requeue_after.is_some(), "the decision is tried again");
    // Over a True PolicyFailed (an earlier version failed), the same.
    let failed = run_with(&js, &jobs, &World::default(), &Broken(Slot::Outcome));
    let js = with_status(js, |s| *s = status(&failed).clone());
    let p = run_with(&js, &[], &World::default(), &compiling);
    let c = cond(&p, types::POLICY_FAILED).expect("set");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PluginCompiling")
    );
}

/// The default policies, but the outcome plugin asks for pod facts and
/// keeps the pods it was given.
#[derive(Default)]
struct WantsPods {
    given: std::sync::Mutex<Option<Vec<p::JobPods>>>,
}

impl PolicyEngine for WantsPods {
    fn decide_startup(&self, s: &p::Snapshot) -> Result<Decision<p::StartupVerdict>, PolicyError> {
        NativeDefaults.decide_startup(s)
    }
    fn decide_outcome(
        &self,
        s: &p::Snapshot,
        pods: &[p::JobPods],
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        *self.given.lock().unwrap() = Some(pods.to_vec());
        NativeDefaults.decide_outcome(s, pods)
    }
    fn decide_in_place(
        &self,
        s: &p::Snapshot,
        r: &p::InPlaceRestart,
    ) -> Result<Decision<p::OutcomeVerdict>, PolicyError> {
        NativeDefaults.decide_in_place(s, r)
    }
    fn decide_placement(
        &self,
        s: &p::Snapshot,
        r: &p::PlacementRequest,
    ) -> Result<Decision<Vec<p::JobPlacement>>, PolicyError> {
        NativeDefaults.decide_placement(s, r)
    }
    fn wants(&self, _: &p::Snapshot, slot: Slot, input: &str) -> bool {
        slot == Slot::Outcome && input == jobset_policy::POD_FACTS
    }
}

/// Every Job of `js` with a UID of its own, `js-a-0` failed.
fn one_failed_with_uids(js: &JobSet) -> Vec<Job> {
    let mut jobs = all_jobs(js);
    for j in jobs.iter_mut() {
        j.metadata.uid = Some(format!("uid-{}", j.metadata.name.as_deref().unwrap()));
    }
    fail(named(&mut jobs, "js-a-0"), "BackoffLimitExceeded", "x", 3);
    jobs
}

fn facts_of(job: &str, exit_code: i32) -> crate::failed_pods::JobFacts {
    crate::failed_pods::JobFacts::Listed(std::sync::Arc::new(p::JobPods {
        job: job.to_string(),
        pods: vec![p::FailedPod {
            name: format!("{job}-pod"),
            completion_index: Some(0),
            node: "node-1".into(),
            phase: "Failed".into(),
            reason: String::new(),
            started: None,
            finished: None,
            containers: vec![p::ContainerExit {
                name: "main".into(),
                init: false,
                exit_code,
                signal: None,
                reason: "Error".into(),
                message: String::new(),
                restart_count: 0,
                started: None,
                finished: None,
            }],
            disruption: None,
        }],
        omitted: 0,
    }))
}

#[test]
fn an_outcome_plugin_that_asks_for_pods_waits_until_the_failed_jobs_pods_are_listed() {
    let js = jobset("");
    let jobs = one_failed_with_uids(&js);
    let engine = WantsPods::default();
    let p = run_with(&js, &jobs, &World::default(), &engine);
    assert!(p.pod_facts_missing);
    let needed: Vec<_> = p
        .pod_facts
        .iter()
        .map(|n| (n.job.as_str(), n.uid.as_str()))
        .collect();
    assert_eq!(needed, [("js-a-0", "uid-js-a-0")]);
    assert!(engine.given.lock().unwrap().is_none(), "not decided yet");
    assert_eq!(status(&p).restarts, 0);

    let world = World {
        failed_pods: Some([("uid-js-a-0".to_string(), facts_of("js-a-0", 137))].into()),
        ..World::default()
    };
    let p = run_with(&js, &jobs, &world, &engine);
    assert!(!p.pod_facts_missing);
    let given = engine.given.lock().unwrap().clone().unwrap();
    assert_eq!(given.len(), 1);
    assert_eq!(given[0].job, "js-a-0");
    assert_eq!(given[0].pods[0].containers[0].exit_code, 137);
    assert_eq!(p.pod_facts.len(), 1, "held until the outcome is applied");
    assert!(is_true(&status(&p).conditions, types::FAILED));
}

#[test]
fn a_pod_list_that_failed_holds_the_outcome_with_policy_failed_and_retries() {
    let js = jobset("");
    let jobs = one_failed_with_uids(&js);
    let world = World {
        failed_pods: Some(
            [(
                "uid-js-a-0".to_string(),
                crate::failed_pods::JobFacts::Failed(
                    "cannot list the pods of Job ns/js-a-0: 503".into(),
                ),
            )]
            .into(),
        ),
        ..World::default()
    };
    let engine = WantsPods::default();
    let p = run_with(&js, &jobs, &world, &engine);
    let c = cond(&p, types::POLICY_FAILED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "PodFactsUnavailable")
    );
    assert!(c.message.contains("js-a-0: 503"), "{}", c.message);
    assert!(
        engine.given.lock().unwrap().is_none(),
        "never on partial facts"
    );
    assert!(cond_opt(&p, types::FAILED).is_none());
    assert_eq!(p.requeue_after, Some(crate::plan::POLICY_RETRY));
}

#[test]
fn a_plugin_that_asks_for_no_pods_is_decided_at_once_with_none() {
    let js = jobset("");
    let jobs = one_failed_with_uids(&js);
    let p = run_with(&js, &jobs, &World::default(), &NativeDefaults);
    assert!(!p.pod_facts_missing);
    assert!(p.pod_facts.is_empty());
    assert!(is_true(&status(&p).conditions, types::FAILED));
}
