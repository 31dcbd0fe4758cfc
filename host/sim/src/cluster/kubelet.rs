//! The kubelets of every simulated node, as one component: a pod bound to a
//! Ready node starts after the scenario's start delay, becomes Ready, runs
//! for its planned time and ends Succeeded or Failed with an exit code; a
//! deleted pod stops within its grace period; a node that stops being Ready
//! fails its pods with a DisruptionTarget condition. The only writer of pod status after binding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::informer::{Change, Informer};
use super::job_pods::pod_index;
use super::recorder::Recorder;
use super::scenario::{ConditionSpec, PodFacts, PodPlan, Scenario};
use super::util::{
    Timers, condition_true, controller_uid, is_deleting, is_terminal, key_of, meta, phase,
    sleep_until, str_at,
};
use crate::client::{PatchKind, Resource, SimClient};
use crate::clock::Clock;
use jobset_api::in_place::{Agent, JobSetView, Then};
use jobset_api::labels::{IN_PLACE_RESTART_ATTEMPT_KEY, JOBSET_NAME_KEY as JOBSET_NAME_LABEL};

const COMPONENT: &str = "kubelet";

/// Requests to the kubelet from tests and timed faults.
#[derive(Debug)]
pub enum KubeletCommand {
    /// The pod's containers exit now with this code (and optional condition).
    FailPod {
        key: String,
        exit_code: i32,
        condition: Option<ConditionSpec>,
        done: oneshot::Sender<bool>,
    },
    /// Every running pod of the Job exits with code 1.
    FailJob {
        namespace: String,
        name: String,
        done: oneshot::Sender<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Start,
    Finish,
    Terminate,
    /// The agent looks at its JobSet (after it starts or restarts).
    Agent,
}

#[derive(Debug, Clone)]
struct Run {
    uid: String,
    generation: u64,
    started_at: Option<String>,
    plan: Option<PodPlan>,
    restarts: u32,
    stopping: bool,
    /// The in-place restart agent this pod's container runs, if it does.
    agent: Option<AgentRun>,
}

/// The agent of a pod (see `jobset_api::in_place`): the kubelet plays it,
/// since a simulated container runs no program.
#[derive(Debug, Clone)]
struct AgentRun {
    state: Agent,
    /// `namespace/name` of its JobSet.
    jobset: String,
    /// `IN_PLACE_RESTART_EXIT_CODE` (default 1).
    exit_code: i32,
}

/// The kubelets' state.
pub struct Kubelet {
    client: SimClient,
    pods: Informer,
    nodes: Informer,
    scenario: Scenario,
    clock: Clock,
    rec: Recorder,
    commands: mpsc::UnboundedReceiver<KubeletCommand>,
    runs: BTreeMap<String, Run>,
    timers: Timers<(String, u64, Task)>,
    generation: u64,
    down: BTreeSet<String>,
    node_ips: BTreeMap<String, String>,
    /// Failed pods by (owning Job UID, completion index).
    failed_by: BTreeMap<(String, Option<u32>), BTreeSet<String>>,
    next_ip: u32,
    /// JobSets, watched once a pod runs an in-place restart agent.
    jobsets: Option<Informer>,
}

enum Wake {
    Pod(Change),
    Node(Change),
    JobSet(Change),
    Timer,
    Command(Option<KubeletCommand>),
}

impl Kubelet {
    pub fn new(
        client: SimClient,
        scenario: Scenario,
        clock: Clock,
        rec: Recorder,
        commands: mpsc::UnboundedReceiver<KubeletCommand>,
    ) -> Self {
        Kubelet {
            pods: Informer::new(client.clone(), Resource::pods()),
            nodes: Informer::new(client.clone(), Resource::nodes()),
            client,
            scenario,
            clock,
            rec,
            commands,
            runs: BTreeMap::new(),
            timers: Timers::default(),
            generation: 0,
            down: BTreeSet::new(),
            node_ips: BTreeMap::new(),
            failed_by: BTreeMap::new(),
            next_ip: 0,
            jobsets: None,
        }
    }

    pub async fn run(mut self) {
        let mut commands_open = true;
        loop {
            let wake = tokio::select! {
                biased;
                c = self.nodes.next() => Wake::Node(c),
                c = self.pods.next() => Wake::Pod(c),
                c = next_of(&mut self.jobsets) => Wake::JobSet(c),
                _ = sleep_until(self.timers.next_deadline()) => Wake::Timer,
                c = self.commands.recv(), if commands_open => Wake::Command(c),
            };
            if let Wake::Command(None) = wake {
                commands_open = false;
            }
            self.on_wake(wake).await;
            loop {
                if let Some(c) = self.nodes.try_next() {
                    self.on_wake(Wake::Node(c)).await;
                } else if let Some(c) = self.pods.try_next() {
                    self.on_wake(Wake::Pod(c)).await;
                } else if let Some(c) = self.jobsets.as_mut().and_then(Informer::try_next) {
                    self.on_wake(Wake::JobSet(c)).await;
                } else {
                    break;
                }
            }
        }
    }

    async fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Pod(Change::Applied(pod)) => {
                self.note_failure(&pod);
                self.on_pod(&pod);
            }
            Wake::Pod(Change::Deleted(pod)) => {
                self.runs.remove(&key_of(&pod));
            }
            Wake::Node(Change::Applied(node)) => {
                let name = meta(&node, "name").to_string();
                if !self.node_ips.contains_key(&name) {
                    self.next_ip += 1;
                    let ip = format!("10.128.{}.{}", self.next_ip / 250, self.next_ip % 250 + 2);
                    self.node_ips.insert(name.clone(), ip);
                }
                if condition_true(&node, "Ready") {
                    if self.down.remove(&name) {
                        self.rec
                            .record(COMPONENT, "NodeReady", &name, String::new());
                    }
                } else if self.down.insert(name.clone()) {
                    self.node_failed(&name).await;
                }
            }
            Wake::Node(Change::Deleted(node)) => {
                let name = meta(&node, "name").to_string();
                if self.down.insert(name.clone()) {
                    self.node_failed(&name).await;
                }
            }
            Wake::Timer => {
                for (key, generation, task) in self.timers.due(Instant::now()) {
                    if self
                        .runs
                        .get(&key)
                        .is_some_and(|r| r.generation == generation)
                    {
                        self.fire(&key, task).await;
                    }
                }
            }
            Wake::JobSet(Change::Applied(js)) => {
                let jobset = key_of(&js);
                let agents: Vec<String> = self
                    .runs
                    .iter()
                    .filter(|(_, r)| r.agent.as_ref().is_some_and(|a| a.jobset == jobset))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in agents {
                    self.agent_step(&key).await;
                }
            }
            Wake::JobSet(Change::Deleted(_)) => {}
            Wake::Command(Some(cmd)) => self.command(cmd).await,
            Wake::Command(None) => {}
        }
    }

    fn schedule(&mut self, key: &str, after: Duration, task: Task) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(r) = self.runs.get_mut(key) {
            r.generation = generation;
        }
        self.timers
            .at(Instant::now() + after, (key.to_string(), generation, task));
    }

    fn on_pod(&mut self, pod: &Value) {
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() || is_terminal(pod) || !self.node_ips.contains_key(node) {
            return;
        }
        let key = key_of(pod);
        let uid = meta(pod, "uid").to_string();
        if self.runs.get(&key).is_some_and(|r| r.uid != uid) {
            self.runs.remove(&key);
        }
        if is_deleting(pod) {
            let started = self.runs.get(&key).is_some_and(|r| r.started_at.is_some());
            if self.runs.get(&key).is_some_and(|r| r.stopping) {
                return;
            }
            let grace = pod
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(30);
            let mut wait = Duration::from_secs(grace);
            if let Some(s) = self.scenario.shutdown {
                wait = wait.min(s.0);
            }
            if !started {
                wait = Duration::ZERO;
            }
            let run = self.runs.entry(key.clone()).or_insert_with(|| Run {
                uid,
                generation: 0,
                started_at: None,
                plan: None,
                restarts: 0,
                stopping: true,
                agent: None,
            });
            run.stopping = true;
            self.schedule(&key, wait, Task::Terminate);
            return;
        }
        if self.runs.contains_key(&key) || self.down.contains(node) {
            return;
        }
        self.runs.insert(
            key.clone(),
            Run {
                uid,
                generation: 0,
                started_at: None,
                plan: None,
                restarts: 0,
                stopping: false,
                agent: None,
            },
        );
        let delay = self.scenario.start_delay.0;
        self.schedule(&key, delay, Task::Start);
    }

    /// How many earlier pods of the same Job (and index) failed.
    fn retry_of(&self, pod: &Value) -> u32 {
        let Some(owner) = controller_uid(pod, "Job") else {
            return 0;
        };
        let mine = key_of(pod);
        self.failed_by
            .get(&(owner.to_string(), pod_index(pod)))
            .map_or(0, |s| s.iter().filter(|k| **k != mine).count() as u32)
    }

    /// Keeps the count of failed pods per Job and index that `retry_of` reads.
    fn note_failure(&mut self, pod: &Value) {
        if phase(pod) != "Failed" {
            return;
        }
        if let Some(owner) = controller_uid(pod, "Job") {
            self.failed_by
                .entry((owner.to_string(), pod_index(pod)))
                .or_default()
                .insert(key_of(pod));
        }
    }

    async fn fire(&mut self, key: &str, task: Task) {
        let Some(pod) = self.pods.cache.get(key).cloned() else {
            self.runs.remove(key);
            return;
        };
        match task {
            Task::Start => self.start(key, &pod).await,
            Task::Finish => {
                let Some(plan) = self.runs.get(key).and_then(|r| r.plan.clone()) else {
                    return;
                };
                self.finish(key, &pod, plan.exit_code, plan.condition.as_ref(), false)
                    .await;
            }
            Task::Terminate => self.finish(key, &pod, 143, None, true).await,
            Task::Agent => self.agent_step(key).await,
        }
    }

    /// The agent of the pod `key` looks at its JobSet and acts: reports its
    /// attempt, lifts its barrier (the worker runs its planned time), or
    /// exits so that the pod restarts in place.
    async fn agent_step(&mut self, key: &str) {
        let Some(agent) = self.runs.get(key).and_then(|r| r.agent.clone()) else {
            return;
        };
        let Some(pod) = self.pods.cache.get(key).cloned() else {
            return;
        };
        if is_terminal(&pod) || is_deleting(&pod) {
            return;
        }
        let Some(js) = self
            .jobsets
            .as_ref()
            .and_then(|i| i.cache.get(&agent.jobset))
        else {
            // Looked at again when the JobSet watch brings it.
            return;
        };
        let step = agent.state.step(JobSetView::of_json(js));
        if let Some(attempt) = step.report {
            let patch = json!({"metadata": {"annotations": {IN_PLACE_RESTART_ATTEMPT_KEY: attempt.to_string()}}});
            match self
                .client
                .patch(
                    &Resource::pods(),
                    Some(meta(&pod, "namespace")),
                    meta(&pod, "name"),
                    PatchKind::Merge,
                    &patch,
                )
                .await
            {
                Ok(obj) => {
                    self.pods.apply(obj);
                    self.rec.record(
                        COMPONENT,
                        "AgentReported",
                        key,
                        format!("attempt={attempt}"),
                    );
                }
                Err(e) => {
                    tracing::debug!(pod = %key, error = %e.message, "the agent could not annotate its pod");
                    self.schedule(key, Duration::from_secs(1), Task::Agent);
                    return;
                }
            }
        }
        if let Some(a) = self.runs.get_mut(key).and_then(|r| r.agent.as_mut()) {
            a.state = a.state.after(step);
        }
        match step.then {
            Then::Wait => {}
            Then::LiftBarrier => {
                let run = self
                    .runs
                    .get(key)
                    .and_then(|r| r.plan.as_ref())
                    .map_or(Duration::ZERO, |p| p.run);
                self.rec.record(
                    COMPONENT,
                    "BarrierLifted",
                    key,
                    format!("run={}s", run.as_secs()),
                );
                self.schedule(key, run, Task::Finish);
            }
            Then::RestartInPlace => {
                self.rec.record(
                    COMPONENT,
                    "AgentRestarts",
                    key,
                    format!("exit={}", agent.exit_code),
                );
                self.finish(key, &pod, agent.exit_code, None, false).await;
            }
        }
    }

    async fn start(&mut self, key: &str, pod: &Value) {
        if is_terminal(pod) || is_deleting(pod) {
            return;
        }
        let node = str_at(pod, "/spec/nodeName").to_string();
        if let Some((container, image)) = invalid_image(pod) {
            self.refuse_image(key, pod, &container, &image).await;
            return;
        }
        let facts = PodFacts::of(pod, self.retry_of(pod));
        let plan = self.scenario.plan(&facts, self.rec.elapsed());
        let now = self.clock.now_rfc3339();
        let host_ip = self.node_ips.get(&node).cloned().unwrap_or_default();
        let pod_ip = format!(
            "10.{}.{}.{}",
            64 + (self.generation / 62_500) % 64,
            (self.generation / 250) % 250,
            self.generation % 250 + 2
        );
        let statuses: Vec<Value> = containers(pod)
            .iter()
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                       "containerID": format!("sim://{}-{name}", meta(pod, "uid")),
                       "ready": true, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let status = json!({"status": {
            "phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now,
            "conditions": pod_conditions(pod, true, &now),
            "containerStatuses": statuses,
        }});
        if self.write_status(pod, &status).await {
            self.rec.record(
                COMPONENT,
                "Started",
                key,
                format!(
                    "node={node} run={}s exit={}",
                    plan.run.as_secs(),
                    plan.exit_code
                ),
            );
            if let Some(r) = self.runs.get_mut(key) {
                r.started_at = Some(now);
                r.plan = Some(plan.clone());
            }
            if self.start_agent(key, pod) {
                self.schedule(key, Duration::ZERO, Task::Agent);
            } else {
                self.schedule(key, plan.run, Task::Finish);
            }
        } else {
            self.schedule(key, Duration::from_secs(1), Task::Start);
        }
    }

    /// Leaves the pod Pending with the container waiting, as a kubelet does
    /// for an image reference it cannot parse.
    async fn refuse_image(&mut self, key: &str, pod: &Value, container: &str, image: &str) {
        let message = format!(
            "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
        );
        let field = if pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| str_at(c, "/name") == container))
        {
            "initContainerStatuses"
        } else {
            "containerStatuses"
        };
        let status = json!({"status": {
            "phase": "Pending",
            field: [{"name": container, "image": image, "ready": false, "restartCount": 0,
                     "state": {"waiting": {"reason": "InvalidImageName", "message": message}}}],
        }});
        if self.write_status(pod, &status).await {
            self.rec
                .record(COMPONENT, "InvalidImageName", key, message.clone());
        } else {
            self.schedule(key, Duration::from_secs(1), Task::Start);
        }
    }

    /// Ends a pod's containers with `exit_code`.
    async fn finish(
        &mut self,
        key: &str,
        pod: &Value,
        exit_code: i32,
        extra: Option<&ConditionSpec>,
        stopped: bool,
    ) {
        if is_terminal(pod) {
            return;
        }
        // A pod failed with a condition (a disruption) is gone, whatever its
        // restart policy; an ordinary crash restarts the container in place.
        let restart = !stopped && extra.is_none() && restarts_in_place(pod, exit_code);
        if restart {
            self.restart(key, pod, exit_code).await;
            return;
        }
        let now = self.clock.now_rfc3339();
        let started = self.runs.get(key).and_then(|r| r.started_at.clone());
        let restarts = self.runs.get(key).map_or(0, |r| r.restarts);
        let statuses: Vec<Value> = containers(pod)
            .iter()
            .map(|(name, image)| {
                let term = match &started {
                    Some(s) => json!({"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                                      "startedAt": s, "finishedAt": now,
                                      "containerID": format!("sim://{}-{name}", meta(pod, "uid"))}),
                    None => json!({"exitCode": 137, "reason": "ContainerStatusUnknown",
                                   "message": "The container could not be located when the pod was terminated"}),
                };
                json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                       "ready": false, "started": false, "restartCount": restarts,
                       "state": {"terminated": term}})
            })
            .collect();
        let mut conditions = pod_conditions(pod, false, &now);
        if let Some(c) = extra
            && let Some(a) = conditions.as_array_mut()
        {
            a.retain(|x| x["type"] != c.kind.as_str());
            a.push(json!({"type": c.kind, "status": "True", "reason": c.reason,
                          "message": c.message, "lastProbeTime": null, "lastTransitionTime": now}));
        }
        let phase = if exit_code == 0 && !stopped {
            "Succeeded"
        } else {
            "Failed"
        };
        let patch = json!({"status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses}});
        if self.write_status(pod, &patch).await {
            let reason = extra.map(|c| format!(" {}", c.reason)).unwrap_or_default();
            let action = if stopped { "Stopped" } else { phase };
            self.rec
                .record(COMPONENT, action, key, format!("exit={exit_code}{reason}"));
            self.runs.remove(key);
        } else {
            let task = if stopped {
                Task::Terminate
            } else {
                Task::Finish
            };
            self.schedule(key, Duration::from_secs(1), task);
        }
    }

    /// `restartPolicy: OnFailure`: the container starts again in place,
    /// after the kubelet's crash-loop back-off.
    async fn restart(&mut self, key: &str, pod: &Value, exit_code: i32) {
        let now = self.clock.now_rfc3339();
        let restarts = self.runs.get(key).map_or(0, |r| r.restarts) + 1;
        let facts = PodFacts::of(pod, self.retry_of(pod) + restarts);
        let plan = self.scenario.plan(&facts, self.rec.elapsed());
        let statuses: Vec<Value> = containers(pod)
            .iter()
            .map(|(name, image)| {
                json!({"name": name, "image": image, "ready": true, "started": true, "restartCount": restarts,
                       "state": {"running": {"startedAt": now}},
                       "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "finishedAt": now}}})
            })
            .collect();
        if self
            .write_status(pod, &json!({"status": {"containerStatuses": statuses}}))
            .await
        {
            self.rec.record(
                COMPONENT,
                "Restarted",
                key,
                format!("exit={exit_code} restarts={restarts}"),
            );
            if let Some(r) = self.runs.get_mut(key) {
                r.restarts = restarts;
                r.plan = Some(plan.clone());
            }
            let backoff = crash_loop_backoff(restarts);
            if self.start_agent(key, pod) {
                // A new agent: no attempt yet, its barrier up.
                self.schedule(key, backoff, Task::Agent);
            } else {
                self.schedule(key, backoff + plan.run, Task::Finish);
            }
        } else {
            self.schedule(key, Duration::from_secs(1), Task::Finish);
        }
    }

    /// Starts the in-place restart agent of pod `key` afresh if its
    /// container runs one; whether it does.
    fn start_agent(&mut self, key: &str, pod: &Value) -> bool {
        let Some(exit_code) = agent_exit_code(pod) else {
            return false;
        };
        let jobset = match super::util::label(pod, JOBSET_NAME_LABEL) {
            Some(name) => format!("{}/{name}", meta(pod, "namespace")),
            None => return false,
        };
        if self.jobsets.is_none() {
            self.jobsets = Some(Informer::new(self.client.clone(), Resource::jobsets()));
        }
        if let Some(r) = self.runs.get_mut(key) {
            r.agent = Some(AgentRun {
                state: Agent::default(),
                jobset,
                exit_code,
            });
        }
        true
    }

    async fn write_status(&mut self, pod: &Value, patch: &Value) -> bool {
        let ns = meta(pod, "namespace");
        match self
            .client
            .patch_status(
                &Resource::pods(),
                Some(ns),
                meta(pod, "name"),
                PatchKind::Merge,
                patch,
            )
            .await
        {
            Ok(obj) => {
                self.pods.apply(obj);
                true
            }
            Err(e) => {
                tracing::debug!(pod = %key_of(pod), error = %e.message, "pod status write failed");
                e.code == 404
            }
        }
    }

    /// The node is gone or NotReady: its pods fail with DisruptionTarget.
    async fn node_failed(&mut self, node: &str) {
        self.rec
            .record(COMPONENT, "NodeNotReady", node, String::new());
        let victims: Vec<Value> = self
            .pods
            .cache
            .values()
            .filter(|p| str_at(p, "/spec/nodeName") == node && !is_terminal(p))
            .cloned()
            .collect();
        let cond = ConditionSpec {
            kind: "DisruptionTarget".into(),
            reason: "DeletionByTaintManager".into(),
            message: "Taint manager: deleting due to NoExecute taint".into(),
        };
        for pod in victims {
            let key = key_of(&pod);
            self.runs.entry(key.clone()).or_insert_with(|| Run {
                uid: meta(&pod, "uid").to_string(),
                generation: 0,
                started_at: None,
                plan: None,
                restarts: 0,
                stopping: true,
                agent: None,
            });
            self.finish(&key, &pod, 137, Some(&cond), true).await;
        }
    }

    async fn command(&mut self, cmd: KubeletCommand) {
        match cmd {
            KubeletCommand::FailPod {
                key,
                exit_code,
                condition,
                done,
            } => {
                let ok = match self.pods.cache.get(&key).cloned() {
                    Some(pod) if !is_terminal(&pod) => {
                        self.runs.entry(key.clone()).or_insert_with(|| Run {
                            uid: meta(&pod, "uid").to_string(),
                            generation: 0,
                            started_at: None,
                            plan: None,
                            restarts: 0,
                            stopping: false,
                            agent: None,
                        });
                        if let Some(r) = self.runs.get_mut(&key) {
                            r.generation = 0;
                        }
                        self.finish(&key, &pod, exit_code, condition.as_ref(), false)
                            .await;
                        true
                    }
                    _ => false,
                };
                let _ = done.send(ok);
            }
            KubeletCommand::FailJob {
                namespace,
                name,
                done,
            } => {
                let pods: Vec<Value> = self
                    .pods
                    .cache
                    .values()
                    .filter(|p| {
                        meta(p, "namespace") == namespace
                            && super::util::label(p, super::scenario::JOB_NAME_LABEL)
                                == Some(name.as_str())
                            && phase(p) == "Running"
                    })
                    .cloned()
                    .collect();
                let n = pods.len();
                for pod in pods {
                    let key = key_of(&pod);
                    if let Some(r) = self.runs.get_mut(&key) {
                        r.generation = 0;
                    }
                    self.finish(&key, &pod, 1, None, false).await;
                }
                let _ = done.send(n);
            }
        }
    }
}

/// The first container (init containers first) whose image is not a valid
/// reference, such as a `<CHANGE ME>` placeholder.
fn invalid_image(pod: &Value) -> Option<(String, String)> {
    let valid = |image: &str| {
        !image.is_empty()
            && image
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
    };
    ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .map(|c| {
            (
                str_at(c, "/name").to_string(),
                str_at(c, "/image").to_string(),
            )
        })
        .find(|(_, image)| !valid(image))
}

fn containers(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                str_at(c, "/name").to_string(),
                str_at(c, "/image").to_string(),
            )
        })
        .collect()
}

/// The pod's conditions with Ready and ContainersReady set to `ready`.
fn pod_conditions(pod: &Value, ready: bool, now: &str) -> Value {
    let mut out: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (status, reason) = if ready {
        ("True", None)
    } else {
        ("False", Some("PodCompleted"))
    };
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ] {
        let (s, r) = match kind {
            "Ready" | "ContainersReady" => (status, reason),
            "PodReadyToStartContainers" if !ready => ("False", None),
            _ => ("True", None),
        };
        let mut c =
            json!({"type": kind, "status": s, "lastProbeTime": null, "lastTransitionTime": now});
        if let Some(r) = r {
            c["reason"] = json!(r);
        }
        match out.iter_mut().find(|x| x["type"] == kind) {
            Some(existing) if existing["status"] == s => {}
            Some(existing) => *existing = c,
            None => out.push(c),
        }
    }
    json!(out)
}

/// The next change of an informer that may not run yet (then: never).
async fn next_of(informer: &mut Option<Informer>) -> Change {
    match informer {
        Some(i) => i.next().await,
        None => std::future::pending().await,
    }
}

/// Whether a container's exit with `exit_code` restarts it in place: the
/// pod's `restartPolicy` (OnFailure, Always) for a failure, or a
/// `restartPolicyRules` entry of one of its containers (action `Restart`
/// or `RestartAllContainers`) whose `exitCodes` take the code. A simulated
/// pod's containers end together, so any container's rule applies.
fn restarts_in_place(pod: &Value, exit_code: i32) -> bool {
    if exit_code != 0 && matches!(str_at(pod, "/spec/restartPolicy"), "OnFailure" | "Always") {
        return true;
    }
    all_containers(pod).any(|c| {
        c.get("restartPolicyRules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|rule| {
                let action = str_at(rule, "/action");
                let listed = rule
                    .pointer("/exitCodes/values")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|x| x.as_i64() == Some(i64::from(exit_code))));
                let takes = match str_at(rule, "/exitCodes/operator") {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                matches!(action, "Restart" | "RestartAllContainers") && takes
            })
    })
}

/// Init containers, then containers.
fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/spec/initContainers", "/spec/containers"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
}

/// The exit code of the in-place restart agent, if one of the pod's
/// containers runs it: a container whose environment names `JOBSET_NAME`
/// and `POD_NAME`, as upstream's agent (and `jobset agent`) requires;
/// `IN_PLACE_RESTART_EXIT_CODE` gives the code, 1 by default.
fn agent_exit_code(pod: &Value) -> Option<i32> {
    all_containers(pod).find_map(|c| {
        let env: Vec<&Value> = c
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let has = |name: &str| env.iter().any(|e| str_at(e, "/name") == name);
        if !(has("JOBSET_NAME") && has("POD_NAME")) {
            return None;
        }
        let code = env
            .iter()
            .find(|e| str_at(e, "/name") == "IN_PLACE_RESTART_EXIT_CODE")
            .and_then(|e| str_at(e, "/value").parse().ok())
            .unwrap_or(1);
        Some(code)
    })
}

/// The kubelet's back-off before restarting a crashed container: 10 s,
/// doubling per restart, at most 5 minutes.
fn crash_loop_backoff(restarts: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << restarts.saturating_sub(1).min(5));
    Duration::from_secs(secs.min(300))
}
