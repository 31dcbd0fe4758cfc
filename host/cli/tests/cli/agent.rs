//! `jobset agent` as the containers of a JobSet's pods run it: real agent
//! processes against `jobset sim serve` with the controller and the gate
//! InPlaceRestart on. The test plays the kubelet: it starts each pod's
//! agent, and starts it again when it exits (a container restarting in
//! place). The simulated pods run no agent of their own here.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Proc, serve_sim_with};

const IN_PLACE: &str = "apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: ipr}
spec:
  failurePolicy: {maxRestarts: 3, restartStrategy: InPlaceRestart}
  replicatedJobs:
  - name: w
    template:
      spec:
        completionMode: Indexed
        parallelism: 2
        completions: 2
        backoffLimit: 2147483647
        podReplacementPolicy: Failed
        template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}
";

fn kubectl(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> (bool, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = input {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("written");
    }
    let out = child.wait_with_output().expect("kubectl ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn agent(kubeconfig: &Path, pod: &str, worker: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(["agent", "--namespace", "default", "--kubeconfig"])
        .arg(kubeconfig)
        .env("JOBSET_NAME", "ipr")
        .env("POD_NAME", pod)
        .env("WORKER_COMMAND", worker)
        .env("SHELL", "/bin/sh")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("jobset agent starts");
    Proc(child)
}

/// Waits for the agent to exit; its exit code.
fn exit_code(agent: &mut Proc, limit: Duration) -> i32 {
    let child: &mut Child = &mut agent.0;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the agent is waited for") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            start.elapsed() < limit,
            "the agent did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jsonpath(kubeconfig: &Path, args: &[&str], path: &str) -> String {
    let output = format!("jsonpath={path}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", &output]);
    kubectl(kubeconfig, &all, None).1
}

#[test]
fn agents_report_wait_at_the_barrier_and_restart_their_pods_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let scenario = dir.path().join("pods.yaml");
    // Every watch ends after a second: the agents (and the controller)
    // watch again, and an agent that already reported does not report
    // again or restart for it.
    std::fs::write(
        &scenario,
        "defaultDuration: 1h\nstartDelay: 0.1s\napi: {dropWatchesAfter: 1s}\n",
    )
    .expect("scenario");
    let scenario_arg = scenario.display().to_string();
    let _sim = serve_sim_with(
        &kubeconfig,
        "on",
        &[
            "--controller",
            "--feature-gates",
            "InPlaceRestart=true",
            "--scenario",
            &scenario_arg,
        ],
    );
    let (ok, out) = kubectl(&kubeconfig, &["create", "-f", "-"], Some(IN_PLACE));
    assert!(ok, "{out}");
    let pods_of = || -> Vec<String> {
        let names = jsonpath(
            &kubeconfig,
            &[
                "get",
                "pods",
                "-l",
                "jobset.sigs.k8s.io/jobset-name=ipr",
                "--field-selector=status.phase=Running",
            ],
            "{.items[*].metadata.name}",
        );
        let mut v: Vec<String> = names.split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    wait_for("both pods run", Duration::from_secs(60), || {
        pods_of().len() == 2
    });
    let pods = pods_of();
    let status = |field: &str| {
        jsonpath(
            &kubeconfig,
            &["get", "jobset", "ipr"],
            &format!("{{.status.{field}}}"),
        )
    };

    // Both agents report 0 and wait; the controller lifts the barrier at 0.
    // Pod 1's worker then crashes with exit code 3, and so does its agent.
    let mut a0 = agent(&kubeconfig, &pods[0], "sleep 600");
    let mut a1 = agent(&kubeconfig, &pods[1], "sleep 3; exit 3");
    wait_for(
        "currentInPlaceRestartAttempt is 0",
        Duration::from_secs(60),
        || status("currentInPlaceRestartAttempt") == "0",
    );
    // Watches dropped meanwhile: both agents still run their workers.
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        a0.0.try_wait().expect("waited").is_none() && a1.0.try_wait().expect("waited").is_none(),
        "an agent exited on a dropped watch"
    );
    assert_eq!(
        exit_code(&mut a1, Duration::from_secs(30)),
        3,
        "the worker's exit code"
    );

    // Pod 1's container restarts in place: its new agent reports 1. The
    // controller marks attempt 0 outdated, and pod 0's agent exits with the
    // in-place restart code (1) to join.
    let _a1 = agent(&kubeconfig, &pods[1], "sleep 600");
    assert_eq!(
        exit_code(&mut a0, Duration::from_secs(60)),
        1,
        "the in-place restart exit code"
    );
    assert_eq!(status("previousInPlaceRestartAttempt"), "0");
    let annotation = jsonpath(
        &kubeconfig,
        &["get", "pod", &pods[1]],
        "{.metadata.annotations.jobset\\.sigs\\.k8s\\.io/in-place-restart-attempt}",
    );
    assert_eq!(annotation, "1");

    // Pod 0's new agent reports 1 too: the barrier lifts at 1 and its
    // worker runs to the end; the agent exits with the worker's code.
    let mut a0 = agent(&kubeconfig, &pods[0], "exit 0");
    wait_for(
        "currentInPlaceRestartAttempt is 1",
        Duration::from_secs(60),
        || status("currentInPlaceRestartAttempt") == "1",
    );
    assert_eq!(exit_code(&mut a0, Duration::from_secs(30)), 0);
    // The same pods throughout.
    assert_eq!(pods_of(), pods);
}

#[test]
fn an_agent_without_its_environment_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(["agent", "--namespace", "default"])
        .env_remove("JOBSET_NAME")
        .env("POD_NAME", "p")
        .output()
        .expect("jobset agent runs");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("environment variable JOBSET_NAME must be set"),
        "{text}"
    );
}
