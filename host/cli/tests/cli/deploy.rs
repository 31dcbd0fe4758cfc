//! deploy/ and the admission webhooks through kubectl (the real binary)
//! against `jobset sim serve` subprocesses: the kustomize base renders and
//! applies server-side; with `--controller` the webhooks default and
//! validate JobSets; with the webhook down, admission fails closed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::{Proc, repo, serve_sim};

/// A `jobset sim serve` subprocess, stopped on drop.
struct Serve {
    _process: Proc,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        Serve {
            _process: serve_sim(&kubeconfig, extra),
            dir,
            kubeconfig,
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

fn kustomize() -> String {
    kustomize_at("deploy")
}

/// `kubectl kustomize` of a directory of the repository.
fn kustomize_at(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join(dir))
        .output()
        .expect("kubectl kustomize runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_kustomize_base_renders_every_part_and_applies_server_side_into_sim_serve() {
    let rendered = kustomize();
    for kind in [
        "kind: Namespace",
        "kind: CustomResourceDefinition",
        "kind: ServiceAccount",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Role\n",
        "kind: RoleBinding",
        "kind: Deployment",
        "kind: Service\n",
        "kind: MutatingWebhookConfiguration",
        "kind: ValidatingWebhookConfiguration",
        "name: jobset-controller-config",
        "name: jobset-policy-default-startup",
        "name: jobset-policy-default-outcome",
        "name: jobset-policy-default-placement",
    ] {
        assert!(rendered.contains(kind), "the render lacks {kind:?}");
    }
    let sim = Serve::start(&[]);
    let out = sim.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=deploy-test",
            "-f",
            "-",
        ],
        Some(&rendered),
    );
    assert!(
        out.contains("deployment.apps/jobset-controller serverside-applied"),
        "{out}"
    );
    let got = sim.ok(
        &[
            "get",
            "deployment",
            "-n",
            "jobset-system",
            "jobset-controller",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(got, "2");
    let crd = sim.ok(
        &["get", "crd", "jobsets.jobset.x-k8s.io", "-o", "name"],
        None,
    );
    assert!(crd.contains("jobsets.jobset.x-k8s.io"), "{crd}");
    // Applying again is a no-op, not a conflict.
    sim.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=deploy-test",
            "-f",
            "-",
        ],
        Some(&rendered),
    );
}

const POD: &str = "template: {spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}}";

fn jobset(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"
    )
}

#[test]
fn kubectl_sees_defaulting_and_is_refused_invalid_jobsets_naming_each_field() {
    let sim = Serve::start(&["--controller"]);
    sim.ok(
        &["create", "-f", "-"],
        Some(&jobset(
            "good",
            &format!("  replicatedJobs:\n  - {{name: w, replicas: 2, {POD}}}"),
        )),
    );
    let got = sim.ok(&["get", "jobset", "good", "-o", "json"], None);
    let js: serde_json::Value = serde_json::from_str(&got).expect("JSON");
    assert_eq!(
        js.pointer("/spec/successPolicy/operator"),
        Some(&"All".into())
    );
    assert_eq!(
        js.pointer("/spec/startupPolicy/startupPolicyOrder"),
        Some(&"AnyOrder".into())
    );
    assert_eq!(
        js.pointer("/spec/replicatedJobs/0/template/spec/completionMode"),
        Some(&"Indexed".into())
    );
    assert_eq!(
        js.pointer("/spec/replicatedJobs/0/template/spec/template/spec/restartPolicy"),
        Some(&"OnFailure".into())
    );
    assert_eq!(
        js.pointer("/spec/network/enableDNSHostnames"),
        Some(&true.into())
    );

    let indexed = |extra: &str| {
        format!(
            "template: {{spec: {{completionMode: Indexed, {extra} template: {{spec: {{containers: [{{name: c, image: i}}]}}}}}}}}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "  replicatedJobs:\n  - {{name: a, dependsOn: [{{name: b, status: Ready}}], {POD}}}\n  - {{name: b, {POD}}}"
            ),
            "spec.replicatedJobs[0].dependsOn",
        ),
        (
            format!(
                "  replicatedJobs:\n  - {{name: a, {POD}}}\n  - {{name: b, dependsOn: [{{name: ghost, status: Ready}}], {POD}}}"
            ),
            "spec.replicatedJobs[1].dependsOn[0].name",
        ),
        (
            format!("  replicatedJobs:\n  - {{name: a, {POD}}}\n  - {{name: a, {POD}}}"),
            // The CRD's list-map keys answer before the webhook, in
            // kube-apiserver's words.
            "spec.replicatedJobs[1]: Duplicate value: {\"name\":\"a\"}",
        ),
        (
            format!("  replicatedJobs:\n  - {{name: Bad_Name, {POD}}}"),
            "spec.replicatedJobs[0].name",
        ),
        (
            format!("  replicatedJobs:\n  - {{name: {}, {POD}}}", "w".repeat(70)),
            "spec.replicatedJobs[0].name",
        ),
        (
            format!("  replicatedJobs:\n  - {{name: w, groupName: Not_A_Label, {POD}}}"),
            "spec.replicatedJobs[0].groupName",
        ),
        (
            format!("  network: {{subdomain: Bad.Sub}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"),
            "spec.network.subdomain",
        ),
        (
            format!(
                "  network: {{subdomain: {}}}\n  replicatedJobs:\n  - {{name: w, {POD}}}",
                "s".repeat(64)
            ),
            "spec.network.subdomain",
        ),
        (
            format!("  managedBy: not-a-domain-path\n  replicatedJobs:\n  - {{name: w, {POD}}}"),
            "spec.managedBy",
        ),
        (
            format!(
                "  managedBy: example.com/{}\n  replicatedJobs:\n  - {{name: w, {POD}}}",
                "m".repeat(60)
            ),
            "spec.managedBy",
        ),
        (
            format!(
                "  successPolicy: {{operator: All, targetReplicatedJobs: [w, ghost]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.successPolicy.targetReplicatedJobs[1]",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: r, action: FailJobSet, targetReplicatedJobs: [w, ghost]}}]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.failurePolicy.rules[0].targetReplicatedJobs[1]",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: r, action: FailJobSet, onJobFailureReasons: [NotAReason]}}]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.failurePolicy.rules[0].onJobFailureReasons[0]",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: r, action: FailJobSet}}, {{name: r, action: FailJobSet}}]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.failurePolicy.rules[1].name",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: '1 bad name', action: FailJobSet}}]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.failurePolicy.rules[0].name",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: {}, action: FailJobSet}}]}}\n  replicatedJobs:\n  - {{name: w, {POD}}}",
                "r".repeat(129)
            ),
            "spec.failurePolicy.rules[0].name",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, rules: [{{name: r, action: RestartJob}}]}}\n  replicatedJobs:\n  - {{name: w, replicas: 1025, {POD}}}"
            ),
            // deploy/ leaves upstream's alpha gates off, as upstream does.
            "spec.failurePolicy.rules[0].action",
        ),
        (
            format!(
                "  coordinator: {{replicatedJob: ghost, jobIndex: 0, podIndex: 0}}\n  replicatedJobs:\n  - {{name: w, {POD}}}"
            ),
            "spec.coordinator.replicatedJob",
        ),
        (
            format!(
                "  coordinator: {{replicatedJob: w, jobIndex: 5, podIndex: 0}}\n  replicatedJobs:\n  - {{name: w, replicas: 2, {POD}}}"
            ),
            "spec.coordinator.jobIndex",
        ),
        (
            format!(
                "  replicatedJobs:\n  - {{name: w, {}}}",
                indexed("parallelism: 2147483647,")
            )
            .replace("name: w,", "name: w, replicas: 2,"),
            "spec.replicatedJobs[0]",
        ),
        (
            format!(
                "  failurePolicy: {{maxRestarts: 1, restartStrategy: InPlaceRestart}}\n  replicatedJobs:\n  - {{name: w, {}}}",
                indexed("backoffLimit: 3, completions: 2, parallelism: 2,")
            ),
            "spec.failurePolicy.restartStrategy",
        ),
        (
            format!("  replicatedJobs:\n  - {{name: w, replicas: -1, {POD}}}"),
            "spec.replicatedJobs[0].replicas",
        ),
        (
            format!(
                "  startupPolicy: {{startupPolicyOrder: InOrder}}\n  replicatedJobs:\n  - {{name: a, {POD}}}\n  - {{name: b, dependsOn: [{{name: a, status: Ready}}], {POD}}}"
            ),
            // The CRD's CEL rule answers before the webhook.
            "spec: Invalid value: StartupPolicy and DependsOn APIs are mutually exclusive",
        ),
        (
            "  replicatedJobs:\n  - {name: w, replicas: two, template: {}}".to_string(),
            "spec.replicatedJobs[0].replicas",
        ),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (i, (spec, path)) in cases.iter().enumerate() {
        let out = sim.run(
            &["create", "-f", "-"],
            Some(&jobset(&format!("bad-{i}"), spec)),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(path) {
            failures.push(format!("case {i} ({path}): {stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let listed = sim.ok(&["get", "jobsets", "-o", "name"], None);
    assert_eq!(
        listed.trim(),
        "jobset.jobset.x-k8s.io/good",
        "nothing invalid got in"
    );

    // An update touching an immutable field is refused, naming it.
    let err = sim.fails(
        &[
            "patch",
            "jobset",
            "good",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicatedJobs/0/replicas","value":5}]"#,
        ],
        None,
    );
    assert!(err.contains("spec.replicatedJobs"), "{err}");
    let err = sim.fails(
        &[
            "patch",
            "jobset",
            "good",
            "--type=merge",
            "-p",
            r#"{"spec":{"managedBy":"example.com/other"}}"#,
        ],
        None,
    );
    assert!(err.contains("spec.managedBy"), "{err}");
    // A mutable field still changes.
    sim.ok(
        &[
            "patch",
            "jobset",
            "good",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
        None,
    );
}

#[test]
fn a_webhook_that_is_down_blocks_admission_with_a_clear_message() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let sim = Serve::start(&[]);
    let crd = std::fs::read_to_string(repo().join("deploy/crd/jobsets.jobset.x-k8s.io.yaml"))
        .expect("the CRD");
    sim.ok(&["apply", "--server-side", "-f", "-"], Some(&crd));
    // The deploy configurations, reached by URL at a port nobody serves.
    let hooks = std::fs::read_to_string(repo().join("deploy/webhook/webhooks.yaml"))
        .expect("the configurations");
    let mut docs = Vec::new();
    for doc in hooks.split("\n---\n") {
        let mut v: serde_json::Value = serde_yaml::from_str(doc).expect("a YAML document");
        if v.get("webhooks").is_none() {
            continue;
        }
        for h in v["webhooks"].as_array_mut().into_iter().flatten() {
            let path = h["clientConfig"]["service"]["path"]
                .as_str()
                .unwrap_or("/")
                .to_string();
            h["clientConfig"] = serde_json::json!({"url": format!("http://{closed}{path}")});
        }
        docs.push(serde_json::to_string(&v).expect("JSON"));
    }
    for d in &docs {
        sim.ok(&["apply", "--server-side", "-f", "-"], Some(d));
    }
    let err = sim.fails(
        &["create", "-f", "-"],
        Some(&jobset(
            "blocked",
            &format!("  replicatedJobs:\n  - {{name: w, {POD}}}"),
        )),
    );
    assert!(
        err.contains("failed calling webhook \"mjobset.kb.io\""),
        "the message names the webhook: {err}"
    );
    let listed = sim.ok(&["get", "jobsets", "-o", "name"], None);
    assert!(listed.trim().is_empty(), "nothing got in: {listed}");
}

#[test]
fn namespace_plugins_are_off_in_the_base_and_on_with_the_component() {
    let base = kustomize();
    assert!(base.contains("NAMESPACE_PLUGINS: \"false\""), "{base}");
    assert!(base.contains("--namespace-plugins=$(NAMESPACE_PLUGINS)"));
    assert!(!base.contains("jobset-controller-namespace-plugins"));
    let with = kustomize_at("examples/namespace-plugins");
    assert!(with.contains("NAMESPACE_PLUGINS: \"true\""), "{with}");
    // The ClusterRole and its binding to the controller's ServiceAccount.
    assert_eq!(
        with.matches("name: jobset-controller-namespace-plugins")
            .count(),
        3,
        "{with}"
    );
}

#[test]
fn the_deployment_passes_the_controller_only_flags_it_has_with_the_settings_of_its_configmap() {
    let rendered = kustomize();
    let docs: Vec<serde_yaml::Value> = rendered
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).expect("YAML"))
        .collect();
    let of = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("the render has {kind} {name}"))
            .clone()
    };
    let settings = of("ConfigMap", "jobset-controller-config");
    let deployment = of("Deployment", "jobset-controller");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("the controller's args")
        .iter()
        .map(|a| {
            let mut a = a.as_str().expect("a string").to_string();
            // $(VAR) from the ConfigMap, as the kubelet expands it.
            while let Some(start) = a.find("$(") {
                let end = start + a[start..].find(')').expect("a closing parenthesis");
                let var = &a[start + 2..end];
                let value = settings["data"][var]
                    .as_str()
                    .unwrap_or_else(|| panic!("{var} is not in jobset-controller-config"));
                a.replace_range(start..=end, value);
            }
            a
        })
        .collect();
    assert!(
        args.iter().any(|a| a == "--compile-plugins-on-demand=true")
            && args
                .iter()
                .any(|a| a == "--plugin-compile-deadline-ms=5000"),
        "{args:?}"
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    jobset::cli::check_args(&args).unwrap_or_else(|e| panic!("jobset {args:?}: {e}"));
}
