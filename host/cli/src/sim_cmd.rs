//! `jobset sim serve`: a simulated cluster on loopback for kubectl and
//! tests, optionally with its Job controller, scheduler and kubelets, and
//! optionally with the JobSet controller in the same process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use jobset_controller::ControllerConfig;
use jobset_controller::metrics::Metrics;
use jobset_sim::cluster::{Cluster, ClusterConfig};
use jobset_sim::{Sim, SimConfig};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::outcome::{Failure, bad_input, emit};

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Options of `jobset sim serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write a kubeconfig for kubectl and kube-rs.
    #[arg(long, default_value = "jobset-sim.kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Enforce RBAC (serves HTTPS; the kubeconfig carries an admin token).
    #[arg(long)]
    pub rbac: bool,
    /// Run the simulated Job controller (off: drive Job status by hand).
    #[arg(long, value_enum, default_value = "on")]
    pub job_controller: OnOff,
    /// Also run the JobSet controller in this process.
    #[arg(long)]
    pub controller: bool,
    /// Node layout (see `jobset run --nodes`).
    #[arg(long, default_value = "default")]
    pub nodes: String,
    /// What the simulated workloads do (see `jobset run --scenario`); time
    /// runs at wall-clock speed here, so keep durations short.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Async worker threads for the simulator (and the in-process
    /// controller); 0 means one per CPU core.
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Feature gates of the in-process controller and its admission
    /// webhooks, as `jobset controller --feature-gates` takes them.
    #[arg(long, value_delimiter = ',')]
    pub feature_gates: Vec<String>,
}

/// The sim subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Serve a simulated cluster on loopback.
    Serve(ServeArgs),
    /// Print the Node objects of a node layout as YAML documents, so that
    /// another cluster (a real control plane with fake nodes) can have
    /// the same nodes as the simulated one.
    Nodes(NodesArgs),
}

/// Options of `jobset sim nodes`.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Node layout (see `jobset run --nodes`).
    #[arg(long, default_value = "default")]
    pub nodes: String,
}

/// The Node objects of `--nodes` as YAML documents, status included
/// (capacity, allocatable, a Ready condition).
fn print_nodes(args: &NodesArgs) -> Result<(), Failure> {
    let layout = crate::run::load_nodes(&args.nodes)?;
    let mut out = String::new();
    for node in layout.node_objects() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&node).map_err(|e| Failure::Internal(e.to_string()))?);
    }
    emit(&out)
}

/// Runs a sim subcommand.
pub fn run(cmd: SimCommand) -> Result<(), Failure> {
    let args = match cmd {
        SimCommand::Serve(args) => args,
        SimCommand::Nodes(args) => return print_nodes(&args),
    };
    if args.rbac && args.controller {
        return Err(bad_input(
            "--controller with --rbac: run the controller separately with a service-account kubeconfig".to_string(),
        ));
    }
    let nodes = crate::run::load_nodes(&args.nodes)?;
    let scenario = crate::run::load_scenario(args.scenario.as_deref())?;
    let gates = crate::controller_cmd::feature_gates(&args.feature_gates)?;
    let rt = crate::threads::server_runtime(args.worker_threads)?;
    rt.block_on(async move {
        let sim = Sim::new(SimConfig {
            rbac: args.rbac,
            graceful_pod_deletion: args.job_controller == OnOff::On,
            ..Default::default()
        });
        let _cluster = Cluster::start(
            &sim,
            ClusterConfig {
                nodes,
                scenario,
                seed: 1,
                job_controller: args.job_controller == OnOff::On,
            },
        )
        .await
        .map_err(|e| Failure::Internal(format!("starting the simulated cluster: {e}")))?;
        let _controller = if args.controller {
            let client = Client::new(sim.service(), "default");
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            crds.create(&PostParams::default(), &jobset_api::crd())
                .await
                .map_err(|e| Failure::Internal(format!("registering the JobSet CRD: {e}")))?;
            // The controller's namespace, where plugin ConfigMaps that serve
            // every namespace are installed (as deploy/ creates it).
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(crate::run::CONTROLLER_NAMESPACE.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            };
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .map_err(|e| {
                    Failure::Internal(format!(
                        "creating namespace {}: {e}",
                        crate::run::CONTROLLER_NAMESPACE
                    ))
                })?;
            // Defaulting and validation for kubectl users, as on a cluster.
            jobset_controller::webhook::serve_on_loopback(
                client.clone(),
                crate::webhook_args::gates(&gates),
                std::future::pending::<()>(),
            )
            .await
            .map_err(|e| Failure::Internal(format!("starting the admission webhooks: {e}")))?;
            let registry = crate::controller_cmd::plugin_registry(
                crate::run::CONTROLLER_NAMESPACE,
                true,
                Default::default(),
            )?;
            Some(tokio::spawn(crate::controller_cmd::run_wired(
                client,
                ControllerConfig {
                    feature_gates: gates,
                    ..ControllerConfig::default()
                },
                registry,
                Arc::new(Metrics::default()),
                std::future::pending::<()>(),
            )))
        } else {
            None
        };
        let opts = jobset_sim::ServeOptions {
            listen: args.listen,
            kubeconfig_out: args.kubeconfig_out,
            rbac: args.rbac,
        };
        jobset_sim::serve::serve_sim(&sim, opts)
            .await
            .map_err(|e| Failure::Internal(e.to_string()))
    })
}
