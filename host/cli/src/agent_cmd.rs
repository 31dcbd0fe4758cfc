//! `jobset agent`: the in-place restart agent (gate InPlaceRestart) for a
//! pod's container, from the controller's own image. It does what
//! upstream's in-place-restart-agent does, with the same environment: it
//! watches its JobSet, reports its pod's attempt in the annotation
//! `jobset.sigs.k8s.io/in-place-restart-attempt`, waits at the barrier
//! until the controller sets `status.currentInPlaceRestartAttempt` to it,
//! then runs `WORKER_COMMAND` (main container mode) or answers its startup
//! probe (sidecar mode), and exits with `IN_PLACE_RESTART_EXIT_CODE` when
//! the controller marks its attempt as outdated, so that the container's
//! restart rule restarts the pod in place. Its decisions are
//! `jobset_api::in_place`'s, the ones the simulated cluster plays too.
//!
//! Environment: `JOBSET_NAME`, `POD_NAME` (required), `WORKER_COMMAND`, or
//! `STARTUP_PROBE_PATH` / `STARTUP_PROBE_PORT` (default `/barrier-is-down`
//! on 8081), `IN_PLACE_RESTART_EXIT_CODE` (default 1). The namespace is the
//! pod's service account namespace, or `--namespace`.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use jobset_api::JobSet;
use jobset_api::in_place::{Agent, JobSetView, Step, Then};
use jobset_api::labels::IN_PLACE_RESTART_ATTEMPT_KEY;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::outcome::{Failure, bad_input};

/// The field manager of the agent's annotation, as upstream's agent names it.
const FIELD_MANAGER: &str = "in-place-restart-agent";
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Options of `jobset agent`; the rest comes from the environment, as for
/// upstream's agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Kubeconfig to use instead of the pod's service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the pod and its JobSet (default: the service account's).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// How the barrier is lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Run this shell command; the agent exits with its exit code.
    Main { command: String },
    /// Answer HTTP GET `path` on `port` with 200 (the startup probe).
    Sidecar { path: String, port: u16 },
}

/// What the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    namespace: String,
    jobset: String,
    pod: String,
    mode: Mode,
    restart_exit_code: i32,
}

impl Settings {
    /// Main container mode: the agent of `pod` runs `command` once the
    /// barrier is down (for running the agent in-process, as tests do).
    pub fn main(namespace: &str, jobset: &str, pod: &str, command: &str) -> Settings {
        Settings {
            namespace: namespace.to_string(),
            jobset: jobset.to_string(),
            pod: pod.to_string(),
            mode: Mode::Main {
                command: command.to_string(),
            },
            restart_exit_code: 1,
        }
    }

    /// Reads the settings, naming the variable that is missing or wrong.
    fn from(
        get: impl Fn(&str) -> Option<String>,
        namespace: Option<String>,
    ) -> Result<Settings, String> {
        let set = |name: &str| get(name).filter(|v| !v.is_empty());
        let required = |name: &str| {
            set(name).ok_or_else(|| format!("environment variable {name} must be set"))
        };
        let namespace = match namespace {
            Some(ns) => ns,
            None => std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "reading the namespace from {NAMESPACE_FILE}: {e} (is the service account token mounted? or pass --namespace)"
                    )
                })?,
        };
        let restart_exit_code = match set("IN_PLACE_RESTART_EXIT_CODE") {
            None => 1,
            Some(raw) => raw.trim().parse().map_err(|_| {
                format!("environment variable IN_PLACE_RESTART_EXIT_CODE is {raw:?}; it must be an integer")
            })?,
        };
        let probe_path = set("STARTUP_PROBE_PATH");
        let probe_port = set("STARTUP_PROBE_PORT");
        let mode = match set("WORKER_COMMAND") {
            Some(_) if probe_path.is_some() || probe_port.is_some() => {
                return Err(
                    "WORKER_COMMAND (main container mode) cannot be set with STARTUP_PROBE_PATH or STARTUP_PROBE_PORT (sidecar mode)"
                        .to_string(),
                );
            }
            Some(command) => Mode::Main { command },
            None => {
                let raw = probe_port.unwrap_or_else(|| "8081".to_string());
                let port = raw.trim().parse().map_err(|_| {
                    format!("environment variable STARTUP_PROBE_PORT is {raw:?}; it must be a port number")
                })?;
                Mode::Sidecar {
                    path: probe_path.unwrap_or_else(|| "/barrier-is-down".to_string()),
                    port,
                }
            }
        };
        Ok(Settings {
            namespace,
            jobset: required("JOBSET_NAME")?,
            pod: required("POD_NAME")?,
            mode,
            restart_exit_code,
        })
    }
}

/// Runs the agent; it ends the process with the exit code its protocol
/// gives (the worker's, or the in-place restart code).
pub fn run(args: AgentArgs) -> Result<(), Failure> {
    let settings =
        Settings::from(|n| std::env::var(n).ok(), args.namespace.clone()).map_err(bad_input)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let code = rt.block_on(async {
        let config = crate::controller_cmd::load_config(&args.kubeconfig).await?;
        let client =
            kube::Client::try_from(config).map_err(|e| Failure::Internal(e.to_string()))?;
        serve(client, settings).await
    })?;
    std::process::exit(code);
}

/// A worker process, or a probe server, once the barrier is down.
enum Lifted {
    None,
    Worker(tokio::process::Child),
    Probe(tokio::task::JoinHandle<std::io::Result<()>>),
}

/// Runs the agent with `client` until it must exit; the exit code.
pub async fn serve(client: kube::Client, settings: Settings) -> Result<i32, Failure> {
    let jobsets: Api<JobSet> = Api::namespaced(client.clone(), &settings.namespace);
    let pods: Api<Pod> = Api::namespaced(client, &settings.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", settings.jobset));
    let mut seen = watcher::watcher(jobsets, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    tracing::info!(jobset = %settings.jobset, pod = %settings.pod, mode = ?settings.mode, "agent started; the barrier is up");
    let mut agent = Agent::default();
    let mut last: Option<JobSetView> = None;
    let mut lifted = Lifted::None;
    let mut retry: Option<tokio::time::Instant> = None;
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::Internal(e.to_string()))?;
    loop {
        let view = tokio::select! {
            ev = seen.next() => match ev {
                Some(Ok(js)) => Some(JobSetView::of(&js)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "JobSet watch failed; retrying");
                    None
                }
                None => return Err(Failure::Internal("the JobSet watch ended".into())),
            },
            _ = sleep_until(retry) => {
                retry = None;
                last
            }
            code = wait_lifted(&mut lifted) => return Ok(code),
            _ = term_signal(&mut term) => {
                stop(&mut lifted).await;
                return Ok(128 + 15);
            }
            _ = tokio::signal::ctrl_c() => {
                stop(&mut lifted).await;
                return Ok(128 + 2);
            }
        };
        let Some(view) = view else { continue };
        last = Some(view);
        let step = agent.step(view);
        if let Some(attempt) = step.report {
            if let Err(e) = report(&pods, &settings, attempt).await {
                tracing::warn!(error = %e, attempt, "could not write the pod's attempt; retrying in a second");
                retry = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                continue;
            }
            tracing::info!(attempt, "reported the pod's in-place restart attempt");
        }
        agent = agent.after(step);
        match act(step, &settings, &mut lifted) {
            Some(code) => {
                stop(&mut lifted).await;
                return Ok(code);
            }
            None => continue,
        }
    }
}

/// Carries out a step's action; `Some(code)` when the agent must exit.
fn act(step: Step, settings: &Settings, lifted: &mut Lifted) -> Option<i32> {
    match step.then {
        Then::Wait => None,
        Then::RestartInPlace => {
            tracing::info!(
                exit_code = settings.restart_exit_code,
                "attempt outdated: exiting to restart the pod in place"
            );
            Some(settings.restart_exit_code)
        }
        Then::LiftBarrier => {
            tracing::info!("the barrier is down");
            match &settings.mode {
                Mode::Main { command } => match spawn_worker(command) {
                    Ok(child) => *lifted = Lifted::Worker(child),
                    Err(e) => {
                        tracing::error!(error = %e, "the worker command could not start");
                        return Some(1);
                    }
                },
                Mode::Sidecar { path, port } => {
                    *lifted = Lifted::Probe(tokio::spawn(probe_server(path.clone(), *port)));
                }
            }
            None
        }
    }
}

/// Writes the pod's attempt with server-side apply, as upstream's agent.
async fn report(pods: &Api<Pod>, s: &Settings, attempt: i32) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": s.pod, "namespace": s.namespace,
                     "annotations": {IN_PLACE_RESTART_ATTEMPT_KEY: attempt.to_string()}}
    });
    pods.patch(
        &s.pod,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

/// The worker: `$SHELL -c COMMAND` (bash, else sh, when SHELL is unset),
/// with the agent's output.
fn spawn_worker(command: &str) -> std::io::Result<tokio::process::Child> {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .map(String::from)
        })
        .unwrap_or_else(|| "sh".to_string());
    tokio::process::Command::new(shell)
        .arg("-c")
        .arg(command)
        .kill_on_drop(true)
        .spawn()
}

/// Ends when what the barrier let run ends, with the agent's exit code.
async fn wait_lifted(lifted: &mut Lifted) -> i32 {
    match lifted {
        Lifted::None => std::future::pending().await,
        Lifted::Worker(child) => match child.wait().await {
            Ok(status) => {
                let code = status.code().unwrap_or_else(|| {
                    #[cfg(unix)]
                    {
                        use std::os::unix::process::ExitStatusExt;
                        128 + status.signal().unwrap_or(0)
                    }
                    #[cfg(not(unix))]
                    1
                });
                tracing::info!(exit_code = code, "the worker ended");
                code
            }
            Err(e) => {
                tracing::error!(error = %e, "waiting for the worker failed");
                1
            }
        },
        Lifted::Probe(task) => match task.await {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the startup probe server failed");
                1
            }
            Err(_) => 1,
        },
    }
}

async fn stop(lifted: &mut Lifted) {
    match lifted {
        Lifted::Worker(child) => {
            let _ = child.kill().await;
        }
        Lifted::Probe(task) => task.abort(),
        Lifted::None => {}
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
async fn term_signal(term: &mut tokio::signal::unix::Signal) {
    term.recv().await;
}

/// Answers `GET path` with 200 and anything else with 404, until stopped.
async fn probe_server(path: String, port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, %path, "answering the startup probe");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let path = path.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let target = head.split_whitespace().nth(1).unwrap_or("");
            let target = target.split('?').next().unwrap_or("");
            let reply: &[u8] = if head.starts_with("GET ") && target == path {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = conn.write_all(reply).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from(
            |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            Some("ns".to_string()),
        )
    }

    #[test]
    fn the_environment_chooses_the_mode_as_upstreams_agent_reads_it() {
        let main = settings(&[
            ("JOBSET_NAME", "js"),
            ("POD_NAME", "p"),
            ("WORKER_COMMAND", "train"),
        ])
        .unwrap();
        assert_eq!(
            main.mode,
            Mode::Main {
                command: "train".into()
            }
        );
        assert_eq!(main.restart_exit_code, 1);
        let sidecar = settings(&[
            ("JOBSET_NAME", "js"),
            ("POD_NAME", "p"),
            ("IN_PLACE_RESTART_EXIT_CODE", "42"),
        ])
        .unwrap();
        assert_eq!(
            sidecar.mode,
            Mode::Sidecar {
                path: "/barrier-is-down".into(),
                port: 8081
            }
        );
        assert_eq!(sidecar.restart_exit_code, 42);
    }

    #[test]
    fn a_missing_or_wrong_variable_is_named() {
        assert_eq!(
            settings(&[("POD_NAME", "p")]).unwrap_err(),
            "environment variable JOBSET_NAME must be set"
        );
        let both = settings(&[
            ("JOBSET_NAME", "js"),
            ("POD_NAME", "p"),
            ("WORKER_COMMAND", "train"),
            ("STARTUP_PROBE_PORT", "9000"),
        ])
        .unwrap_err();
        assert!(
            both.starts_with("WORKER_COMMAND (main container mode) cannot be set"),
            "{both}"
        );
        let code = settings(&[
            ("JOBSET_NAME", "js"),
            ("POD_NAME", "p"),
            ("IN_PLACE_RESTART_EXIT_CODE", "x"),
        ])
        .unwrap_err();
        assert!(
            code.contains("IN_PLACE_RESTART_EXIT_CODE is \"x\""),
            "{code}"
        );
    }
}
