//! Argument parsing and dispatch for the `jobset` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::outcome::Failure;
use crate::output::Output;
use crate::{agent_cmd, controller_cmd, policy_cmd, run, sim_cmd};

/// JobSet controller with policies as WebAssembly plugins, and a simulated
/// cluster to run it on.
#[derive(Parser, Debug)]
#[command(name = "jobset", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run JobSet manifests on the embedded simulated cluster, in virtual time.
    Run(run::RunArgs),
    /// Run the controller against a cluster (kubeconfig or in-cluster).
    Controller(Box<controller_cmd::ControllerArgs>),
    /// The simulated cluster.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Inspect, test and pack policy plugins.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Print the JobSet CustomResourceDefinition (YAML).
    Crd,
    /// The in-place restart agent, as a pod's container (gate InPlaceRestart).
    Agent(agent_cmd::AgentArgs),
}

/// Runs the command line; exit codes: 0 success, 1 failure, 2 bad input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match &cli.command {
        Command::Controller(args) => init_logs("info", args.log_json),
        // A plugin's failure is the command's own output and exit code
        // here; the runtime's warning would only repeat it.
        Command::Policy(_) => init_logs("error", false),
        Command::Agent(_) => init_logs("info", false),
        _ => init_logs("warn", false),
    }
    let result: Result<(), Failure> = match cli.command {
        Command::Controller(args) => controller_cmd::run(*args),
        Command::Run(args) => run::run(args, &Output::stdout()),
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Crd => crate::outcome::emit(&jobset_api::crd::crd_yaml()),
        Command::Agent(args) => agent_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// Whether `jobset ARGS...` parses, without running it; the error says
/// which argument is wrong. Lets a test check the arguments `deploy/`
/// gives the controller against its flags.
pub fn check_args(args: &[&str]) -> Result<(), String> {
    Cli::try_parse_from(std::iter::once("jobset").chain(args.iter().copied()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs `jobset ARGS...` in-process with its output captured, as tests do:
/// the exit code and everything the command wrote (error messages
/// included). Only `run` is captured; other commands write to stdout.
pub fn run_captured(args: &[&str]) -> (u8, String) {
    let cli = match Cli::try_parse_from(std::iter::once("jobset").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => return (2, e.to_string()),
    };
    let (out, captured) = Output::buffer();
    let result = match cli.command {
        Command::Run(args) => run::run(args, &out),
        Command::Controller(args) => controller_cmd::run(*args),
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Crd => Ok(()),
        Command::Agent(args) => agent_cmd::run(args),
    };
    match result {
        Ok(()) => (0, captured.text()),
        Err(f) => {
            let code = f.code();
            out.line(&f.message());
            (code, captured.text())
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (else `level`), as JSON when
/// asked or when `JOBSET_LOG_FORMAT=json`.
fn init_logs(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json || std::env::var("JOBSET_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
