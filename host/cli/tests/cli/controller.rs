//! `jobset controller` as an operator runs it: a separate process talking
//! to `jobset sim serve` over HTTP through a kubeconfig, with metrics,
//! health, leader election and a clean stop on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::common::{Proc, serve_sim};

const JOBSET: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: hello, namespace: default}
spec:
  replicatedJobs:
  - name: workers
    replicas: 3
    template: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}
"#;

fn jobset() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jobset"))
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("addr")
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

async fn register_crd(client: &Client) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(&PostParams::default(), &jobset_api::crd::crd())
        .await
        .expect("CRD registered");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_controller_creates_jobs_serves_metrics_and_releases_its_lease_on_sigterm() {
    let dir = tempdir();
    let dir = dir.path();
    let kc = dir.join("kubeconfig");
    let _sim = serve_sim(&kc, &[]);
    let rt = runtime();
    let client = rt.block_on(client(&kc));
    rt.block_on(register_crd(&client));
    let (metrics, health) = (free_addr(), free_addr());
    let mut ctl = Proc(
        jobset()
            .args([
                "controller",
                "--leader-elect",
                "--lease-namespace",
                "default",
            ])
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("jobset controller starts"),
    );
    wait_for("/healthz answers", Duration::from_secs(60), || {
        get(health, "/healthz").0 == 200
    });
    wait_for("/readyz is ok", Duration::from_secs(60), || {
        get(health, "/readyz").0 == 200
    });
    rt.block_on(async {
        let js = jobset_api::parse_jobset_yaml(JOBSET).expect("fixture");
        let api: Api<jobset_api::JobSet> = Api::namespaced(client.clone(), "default");
        api.create(&PostParams::default(), &js)
            .await
            .expect("JobSet created");
    });
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    wait_for("the JobSet's 3 Jobs exist", Duration::from_secs(30), || {
        rt.block_on(jobs.list(&ListParams::default()))
            .map(|l| l.items.len() == 3)
            .unwrap_or(false)
    });
    let (code, text) = get(metrics, "/metrics");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert!(text.contains("jobset_reconcile_total"), "{text}");
    assert!(
        text.contains("jobset_policy_decision_duration_seconds_count{plugin=\"default-"),
        "{text}"
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let held = rt
        .block_on(leases.get("jobset-controller-leader"))
        .expect("the Lease exists");
    assert!(held.spec.and_then(|s| s.holder_identity).is_some());
    let pid = ctl.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = ctl.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    if let Some(mut e) = ctl.0.stderr.take() {
        let _ = e.read_to_string(&mut logs);
    }
    assert_eq!(status.code(), Some(0), "{logs}");
    let released = rt
        .block_on(leases.get("jobset-controller-leader"))
        .expect("the Lease exists");
    assert_eq!(
        released.spec.and_then(|s| s.holder_identity),
        None,
        "released on SIGTERM; logs: {logs}"
    );
}

#[test]
fn a_missing_or_broken_kubeconfig_is_bad_input_naming_the_file() {
    let dir = tempdir();
    let dir = dir.path();
    let missing = dir.join("no-such-kubeconfig");
    let out = jobset()
        .arg("controller")
        .arg("--kubeconfig")
        .arg(&missing)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-kubeconfig"), "{err}");

    let broken = dir.join("broken-kubeconfig");
    std::fs::write(&broken, "apiVersion: v1\nkind: Config\nclusters: [oops\n").expect("write");
    let out = jobset()
        .arg("controller")
        .arg("--kubeconfig")
        .arg(&broken)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("broken-kubeconfig"), "{err}");
}

#[test]
fn an_unreachable_server_is_retried_and_logged_without_a_panic() {
    let dir = tempdir();
    let dir = dir.path();
    let kc = dir.join("kubeconfig");
    let nobody = free_addr();
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{nobody}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write");
    let health = free_addr();
    let mut ctl = Proc(
        jobset()
            .arg("controller")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["--metrics-addr", &free_addr().to_string()])
            .args(["--health-addr", &health.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    wait_for("/healthz answers", Duration::from_secs(60), || {
        get(health, "/healthz").0 == 200
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(health, "/readyz").0, 503, "not ready without a server");
    assert!(ctl.0.try_wait().expect("wait").is_none(), "still running");
    let _ = Command::new("kill")
        .args(["-TERM", &ctl.0.id().to_string()])
        .status();
    let _ = ctl.0.wait();
    let mut logs = String::new();
    if let Some(mut e) = ctl.0.stderr.take() {
        let _ = e.read_to_string(&mut logs);
    }
    assert!(logs.matches("unreachable; retrying").count() >= 2, "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A plugin ConfigMap in `jobset-system`, packed by `jobset policy pack`
/// (signed when `key` is given).
fn packed_plugin(
    dir: &Path,
    name: &str,
    key: Option<&Path>,
) -> k8s_openapi::api::core::v1::ConfigMap {
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::write(&wasm, jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE).expect("writes");
    let mut cmd = jobset();
    cmd.args(["policy", "pack"])
        .arg(&wasm)
        .args(["--name", name]);
    if let Some(k) = key {
        cmd.arg("--sign").arg(k);
    }
    let out = cmd.output().expect("jobset policy pack runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).expect("a ConfigMap")
}

#[test]
fn with_trusted_keys_the_controller_rejects_an_unsigned_plugin_with_an_event_and_runs_a_signed_one()
{
    let dir = tempdir();
    let dir = dir.path();
    let key = dir.join("signing.key");
    let made = jobset()
        .args(["policy", "keygen", "--out"])
        .arg(&key)
        .output()
        .expect("keygen runs");
    let public = String::from_utf8_lossy(&made.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key, to trust: "))
        .expect("a public key")
        .to_string();
    let kc = dir.join("kubeconfig");
    let _sim = serve_sim(&kc, &[]);
    let rt = runtime();
    let client = rt.block_on(client(&kc));
    rt.block_on(async {
        register_crd(&client).await;
        let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "jobset-system"}}))
                .expect("ns"),
        )
        .await
        .expect("namespace created");
    });
    let (metrics, health) = (free_addr(), free_addr());
    let _ctl = Proc(
        jobset()
            .args([
                "controller",
                "--plugin-namespace",
                "jobset-system",
                "--trusted-plugin-keys",
                &public,
            ])
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("jobset controller starts"),
    );
    wait_for("/readyz is ok", Duration::from_secs(60), || {
        get(health, "/readyz").0 == 200
    });
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "jobset-system");
    rt.block_on(async {
        cms.create(
            &PostParams::default(),
            &packed_plugin(dir, "unsigned", None),
        )
        .await
        .expect("created");
        cms.create(
            &PostParams::default(),
            &packed_plugin(dir, "signed", Some(&key)),
        )
        .await
        .expect("created");
    });
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "jobset-system");
    wait_for(
        "the unsigned plugin is rejected with an event",
        Duration::from_secs(30),
        || {
            rt.block_on(events.list(&ListParams::default()))
            .map(|l| {
                l.items.iter().any(|e| {
                    e.reason.as_deref() == Some("PluginRejected")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("jobset-policy-unsigned")
                        && e.note.as_deref().is_some_and(|n| {
                            n.contains("plugin unsigned may not run here: it carries no policy.jobset.dev/signature annotation")
                        })
                })
            })
            .unwrap_or(false)
        },
    );
    // What the plugins cost, and the limits, in the metrics: the signed
    // plugin is in force (verified; compiled when a JobSet selects it).
    wait_for(
        "the signed plugin is in force",
        Duration::from_secs(30),
        || {
            get(metrics, "/metrics")
                .1
                .lines()
                .any(|l| l == "jobset_plugins_in_force 1")
        },
    );
    let rejected_signed = rt
        .block_on(events.list(&ListParams::default()))
        .map(|l| {
            l.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("jobset-policy-signed")
            })
        })
        .unwrap_or(true);
    assert!(!rejected_signed, "the signed plugin was rejected");
    let (code, text) = get(metrics, "/metrics");
    assert_eq!(code, 200, "{text}");
    for line in [
        "jobset_plugins_in_force 1",
        "jobset_plugin_limit_per_namespace 16",
        "jobset_compiled_plugins_limit 64",
        // Verified, and compiled only when a JobSet selects it.
        "jobset_plugins_pending 1",
        "jobset_plugins_compiling 0",
        "jobset_plugin_compile_deadline_milliseconds 10000",
        "jobset_plugin_compiles_abandoned_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("jobset_compiled_plugin_bytes ") && !l.ends_with(" 0")),
        "{text}"
    );
}
