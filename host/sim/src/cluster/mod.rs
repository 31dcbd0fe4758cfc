//! The simulated cluster behind the API server: nodes, a Job controller, a
//! scheduler and kubelets, all tasks on the current tokio runtime talking to
//! the server through `SimClient` like any other client, on tokio time (so
//! a paused clock makes hours pass in moments), deterministic for a seed.

pub mod changes;
pub mod faults;
mod filters;
pub mod informer;
pub mod job_controller;
pub mod job_pods;
pub mod job_status;
pub mod kubelet;
pub mod nodes;
pub mod pod_failure_policy;
pub mod recorder;
mod references;
pub mod resources;
pub mod scenario;
pub mod scheduler;
pub mod util;
pub mod workload;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{PatchKind, Resource, SimClient};
use crate::errors::ApiError;
use crate::sim::Sim;

pub use kubelet::KubeletCommand;
pub use nodes::NodeLayout;
pub use recorder::{ClusterEvent, Recorder};
pub use scenario::{ConditionSpec, Scenario};

/// What can go wrong setting up or driving the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node layout: {0}")]
    Layout(String),
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("the API answered {}: {}", .0.code, .0.message)]
    Api(#[from] ApiError),
}

impl ClusterError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ClusterError::Layout(_) => "layout",
            ClusterError::Scenario(_) => "scenario",
            ClusterError::Api(_) => "api",
        }
    }
}

/// How the cluster is set up.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub nodes: NodeLayout,
    pub scenario: Scenario,
    /// Seeds pod names and the server's API faults.
    pub seed: u64,
    /// Run the Job controller (off: tests write Job status by hand).
    pub job_controller: bool,
}

impl ClusterConfig {
    /// The configuration `jobset sim serve` builds from its flags:
    /// `--job-controller on|off`, an optional node layout (`default`, a
    /// compact `pools=4,nodes=4,tpu=4`, or YAML) and an optional scenario file.
    pub fn for_serve(
        job_controller: &str,
        nodes: Option<&str>,
        scenario: Option<&std::path::Path>,
        seed: u64,
    ) -> Result<Self, ClusterError> {
        let job_controller = match job_controller {
            "on" | "true" => true,
            "off" | "false" => false,
            other => {
                return Err(ClusterError::Scenario(format!(
                    "--job-controller: {other:?} is neither on nor off"
                )));
            }
        };
        Ok(ClusterConfig {
            nodes: NodeLayout::parse(nodes.unwrap_or("default"))?,
            scenario: match scenario {
                Some(p) => Scenario::from_file(p)?,
                None => Scenario::default(),
            },
            seed,
            job_controller,
        })
    }
}

/// Starts clusters.
pub struct Cluster;

/// A running cluster. Dropping it stops its components.
pub struct ClusterHandle {
    sim: Sim,
    client: SimClient,
    recorder: Recorder,
    kubelet: mpsc::UnboundedSender<KubeletCommand>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Registers the nodes, applies the scenario's API faults, and spawns the
    /// scheduler, the kubelets, the Job controller (if asked) and the timed
    /// faults on the current runtime.
    pub async fn start(sim: &Sim, config: ClusterConfig) -> Result<ClusterHandle, ClusterError> {
        let client = sim.client("jobset-sim-cluster");
        for node in config.nodes.node_objects() {
            let status = node.get("status").cloned().unwrap_or_else(|| json!({}));
            let name = node
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match client.create(&Resource::nodes(), None, &node).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            client
                .patch_status(
                    &Resource::nodes(),
                    None,
                    &name,
                    PatchKind::Merge,
                    &json!({"status": status}),
                )
                .await?;
        }
        if let Some(f) = config.scenario.server_faults(config.seed) {
            sim.set_faults(f);
        }
        let recorder = Recorder::new();
        let clock = sim.clock().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let scheduler = scheduler::Scheduler::new(
            sim.client("default-scheduler"),
            clock.clone(),
            recorder.clone(),
        );
        tasks.push(tokio::spawn(scheduler.run()));
        let kubelet = kubelet::Kubelet::new(
            sim.client("kubelet"),
            config.scenario.clone(),
            clock.clone(),
            recorder.clone(),
            rx,
        );
        tasks.push(tokio::spawn(kubelet.run()));
        if config.job_controller {
            let jc = job_controller::JobController::new(
                sim.client("job-controller"),
                clock.clone(),
                recorder.clone(),
                config.seed,
            );
            tasks.push(tokio::spawn(jc.run()));
        }
        if !config.scenario.faults.is_empty() {
            tasks.push(tokio::spawn(faults::run_timed(
                sim.client("node-lifecycle-controller"),
                clock,
                recorder.clone(),
                tx.clone(),
                config.scenario.faults.clone(),
            )));
        }
        if !config.scenario.changes.is_empty() {
            tasks.push(tokio::spawn(changes::run_changes(
                sim.client("kubectl"),
                recorder.clone(),
                config.scenario.changes.clone(),
            )));
        }
        Ok(ClusterHandle {
            sim: sim.clone(),
            client,
            recorder,
            kubelet: tx,
            tasks,
        })
    }
}

impl ClusterHandle {
    /// A client writing as the cluster.
    pub fn client(&self) -> SimClient {
        self.client.clone()
    }

    /// Everything the components did so far, in order.
    pub fn events(&self) -> Vec<ClusterEvent> {
        self.recorder.snapshot()
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The pod's containers exit now with `exit_code` (0: it succeeds).
    /// False when the pod is unknown or already finished.
    pub async fn fail_pod(&self, namespace: &str, name: &str, exit_code: i32) -> bool {
        self.fail_pod_with(namespace, name, exit_code, None).await
    }

    /// As `fail_pod`, adding a pod condition (for example DisruptionTarget).
    pub async fn fail_pod_with(
        &self,
        namespace: &str,
        name: &str,
        exit_code: i32,
        condition: Option<ConditionSpec>,
    ) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = KubeletCommand::FailPod {
            key: format!("{namespace}/{name}"),
            exit_code,
            condition,
            done,
        };
        if self.kubelet.send(cmd).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Every running pod of the Job exits with code 1; returns how many.
    pub async fn fail_job(&self, namespace: &str, name: &str) -> usize {
        let (done, rx) = oneshot::channel();
        let cmd = KubeletCommand::FailJob {
            namespace: namespace.into(),
            name: name.into(),
            done,
        };
        if self.kubelet.send(cmd).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// The node goes NotReady (tainted unreachable); its pods fail.
    pub async fn fail_node(&self, name: &str) -> Result<(), ClusterError> {
        faults::fail_node(&self.client, self.sim.clock(), &self.recorder, name).await
    }

    /// Every node labelled `key=value` fails; returns how many.
    pub async fn fail_domain(&self, key: &str, value: &str) -> Result<usize, ClusterError> {
        faults::fail_domain(&self.client, self.sim.clock(), &self.recorder, key, value).await
    }

    /// The node is Ready again.
    pub async fn recover_node(&self, name: &str) -> Result<(), ClusterError> {
        faults::recover_node(&self.client, self.sim.clock(), &self.recorder, name).await
    }

    /// Stops every component.
    pub fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_turn_the_job_controller_on_and_off_and_refuse_anything_else() {
        let on = ClusterConfig::for_serve("on", Some("pools=1,nodes=2"), None, 1).expect("on");
        assert!(on.job_controller);
        assert_eq!(on.nodes.node_count(), 2);
        let off = ClusterConfig::for_serve("off", None, None, 1).expect("off");
        assert!(!off.job_controller);
        assert_eq!(off.nodes, NodeLayout::default());
        let e = ClusterConfig::for_serve("maybe", None, None, 1)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("\"maybe\"")));
    }

    #[test]
    fn a_missing_scenario_file_is_named_in_the_error() {
        let e = ClusterConfig::for_serve(
            "on",
            None,
            Some(std::path::Path::new("/nonexistent/s.yaml")),
            1,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("/nonexistent/s.yaml"), "{e}");
    }
}
