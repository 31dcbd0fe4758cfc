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

/// Registers the CRD and creates `namespaces`.
async fn prepare(client: &Client, namespaces: &[&str]) {
    register_crd(client).await;
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in namespaces {
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("ns"),
        )
        .await
        .expect("namespace created");
    }
}

/// `jobset controller ARGS` on the kubeconfig, serving metrics and health
/// on free ports (returned), its log dropped; ready when this returns.
fn ready_controller(kc: &Path, args: &[&str]) -> (Proc, SocketAddr) {
    let (metrics, health) = (free_addr(), free_addr());
    let ctl = Proc(
        jobset()
            .arg("controller")
            .args(args)
            .arg("--kubeconfig")
            .arg(kc)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("jobset controller starts"),
    );
    wait_for("/readyz is ok", Duration::from_secs(60), || {
        get(health, "/readyz").0 == 200
    });
    (ctl, metrics)
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
            .arg("--record-decisions")
            .arg(dir.join("decisions"))
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
    // Each decision is recorded, for `jobset policy replay`.
    let startup = std::fs::read_dir(dir.join("decisions"))
        .expect("the recording folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-default-hello-startup.yaml"))
        .expect("a recorded startup decision");
    let recorded = jobset_policy::recording::Recording::from_yaml(
        &std::fs::read_to_string(&startup).expect("reads"),
    )
    .expect("a recording");
    assert_eq!(
        (recorded.jobset.as_str(), recorded.slot),
        ("default/hello", jobset_policy::Slot::Startup)
    );
    assert!(recorded.plugin.starts_with("default-startup@") && recorded.verdict.is_some());
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
    rt.block_on(prepare(&client, &["jobset-system"]));
    let (_ctl, metrics) = ready_controller(
        &kc,
        &[
            "--plugin-namespace",
            "jobset-system",
            "--trusted-plugin-keys",
            &public,
        ],
    );
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
        "jobset_plugin_compile_deadline_milliseconds 5000",
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

/// Resident memory of a process, from /proc (Linux), in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The value of a metric line `name value`.
fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    get(addr, "/metrics").1.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A plugin ConfigMap in `namespace` whose component is the example plugin
/// under a sha256 of its own (a custom section naming `name` appended).
fn distinct_plugin(namespace: &str, name: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    let mut wasm = jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE.to_vec();
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    wasm.push(0);
    wasm.push(payload.len() as u8);
    wasm.extend_from_slice(&payload);
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"policy.jobset.dev/plugin": name},
        },
        "binaryData": {"plugin.wasm": base64_encode(&wasm)},
    }))
    .expect("a ConfigMap")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tenant_jobset(name: &str, namespace: &str, plugin: Option<&str>) -> jobset_api::JobSet {
    let annotations = plugin
        .map(|p| format!("annotations: {{policy.jobset.dev/outcome: {p}}}, "))
        .unwrap_or_default();
    jobset_api::parse_jobset_yaml(&format!(
        r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {{name: {name}, {annotations}namespace: {namespace}}}
spec:
  replicatedJobs:
  - name: workers
    replicas: 2
    template: {{spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: busybox}}]}}}}}}}}
"#
    ))
    .expect("fixture")
}

fn completed(js: &jobset_api::JobSet) -> bool {
    js.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Completed" && c.status == "True")
    })
}

#[test]
fn a_flood_of_500_plugin_configmaps_in_one_namespace_compiles_nothing_and_healthy_jobsets_finish() {
    let dir = tempdir();
    let dir = dir.path();
    let kc = dir.join("kubeconfig");
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, "defaultDuration: 2s\nstartDelay: 0s\n").expect("writes");
    let _sim = crate::common::serve_sim_with(
        &kc,
        "on",
        &["--scenario", scenario.to_str().expect("utf-8")],
    );
    let rt = runtime();
    let client = rt.block_on(client(&kc));
    rt.block_on(prepare(&client, &["jobset-system", "tenant"]));
    let (ctl, metrics) = ready_controller(
        &kc,
        &["--plugin-namespace", "jobset-system", "--namespace-plugins"],
    );
    let pid = ctl.0.id();
    let compiled_before = metric(metrics, "jobset_compiled_plugins").expect("the metric");
    let rss_before = rss(pid);
    let jobsets: Api<jobset_api::JobSet> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let mut rss_peak = rss_before;
    rt.block_on(async {
        for i in 0..3 {
            jobsets
                .create(
                    &PostParams::default(),
                    &tenant_jobset(&format!("healthy-{i}"), "default", None),
                )
                .await
                .expect("created");
        }
    });
    // The flood arrives from another client while the healthy JobSets run.
    let flood = {
        let kc = kc.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            let flooder = rt.block_on(self::client(&kc));
            let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(flooder, "tenant");
            let started = Instant::now();
            for i in 0..500 {
                rt.block_on(cms.create(
                    &PostParams::default(),
                    &distinct_plugin("tenant", &format!("p{i}")),
                ))
                .expect("created");
            }
            started.elapsed()
        })
    };
    wait_for(
        "the healthy JobSets complete",
        Duration::from_secs(180),
        || {
            rss_peak = rss_peak.max(rss(pid));
            (0..3).all(|i| {
                rt.block_on(jobsets.get(&format!("healthy-{i}")))
                    .is_ok_and(|js| completed(&js))
            })
        },
    );
    let healthy_done = started.elapsed();
    while !flood.is_finished() {
        rss_peak = rss_peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let flooded = flood.join().expect("the flood thread");
    wait_for(
        "the flood is refused past the limit",
        Duration::from_secs(120),
        || {
            rss_peak = rss_peak.max(rss(pid));
            metric(metrics, "jobset_plugins_in_force") == Some(16)
                && metric(metrics, "jobset_plugins_pending") == Some(16)
        },
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "tenant");
    wait_for(
        "an event on each refused ConfigMap",
        Duration::from_secs(120),
        || {
            rt.block_on(events.list(&ListParams::default()))
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|e| {
                            e.reason.as_deref() == Some("PluginRejected")
                                && e.note.as_deref().is_some_and(|n| {
                                    n.contains("namespace tenant already has 16 plugins in force")
                                })
                        })
                        .count()
                        == 484
                })
                .unwrap_or(false)
        },
    );
    assert_eq!(
        metric(metrics, "jobset_compiled_plugins"),
        Some(compiled_before),
        "the flood compiled nothing"
    );
    let rss_after = rss(pid);
    eprintln!(
        "flood of 500 ConfigMaps: created in {flooded:?}, healthy JobSets (2 s pods) done {healthy_done:?} after they were created; \
         controller RSS {} MiB before, {} MiB at peak, {} MiB after",
        rss_before >> 20,
        rss_peak >> 20,
        rss_after >> 20
    );
    // The flood's bytes (500 components of about 190 KB, 95 MB) pass
    // through the watch; only the 16 accepted ones are kept.
    let flood_bytes = 500 * jobset_policy::builtin::EXAMPLE_PREEMPTION_AWARE.len() as u64;
    assert!(
        rss_after.saturating_sub(rss_before) < flood_bytes / 2,
        "the controller kept the flood: {} MiB before, {} MiB after ({} MiB of ConfigMaps)",
        rss_before >> 20,
        rss_after >> 20,
        flood_bytes >> 20
    );
    // A tenant JobSet selecting one of its plugins compiles that one alone.
    rt.block_on(async {
        let tenant: Api<jobset_api::JobSet> = Api::namespaced(client.clone(), "tenant");
        tenant
            .create(
                &PostParams::default(),
                &tenant_jobset("uses-p3", "tenant", Some("p3")),
            )
            .await
            .expect("created");
    });
    let tenant: Api<jobset_api::JobSet> = Api::namespaced(client.clone(), "tenant");
    wait_for(
        "the tenant JobSet completes",
        Duration::from_secs(180),
        || {
            rt.block_on(tenant.get("uses-p3"))
                .is_ok_and(|js| completed(&js))
        },
    );
    assert_eq!(
        metric(metrics, "jobset_compiled_plugins"),
        Some(compiled_before + 1)
    );
    assert_eq!(metric(metrics, "jobset_plugins_pending"), Some(15));
}
