//! kubectl (the real binary) against the simulator on loopback: CRDs and
//! custom resources with client-side and server-side apply, printer columns,
//! wait, status patches, stale replaces, foreground deletion and `get -w`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobset_sim::{Sim, SimConfig, write_kubeconfig};

/// A simulator serving on loopback, and a kubectl configured for it (its
/// own HOME and cache, so runs never share state).
pub(crate) struct Cluster {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) sim: Sim,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

pub(crate) fn start() -> Cluster {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sim = Sim::new(SimConfig::default());
    let addr = rt.block_on(async {
        sim.serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve")
    });
    write_kubeconfig(&kubeconfig, addr, None).expect("kubeconfig");
    Cluster {
        rt,
        sim,
        dir,
        kubeconfig,
    }
}

impl Cluster {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"));
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl runs");
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

    /// Runs kubectl, asserting success; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
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

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
              color: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn configmap(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {data}\n")
}

fn widget(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: example.io/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  color: blue\n{extra}"
    )
}

#[test]
fn kubectl_applies_a_crd_then_custom_resources_and_prints_their_columns() {
    let c = start();
    assert!(c.ok(&["apply", "-f", "-"], Some(CRD)).contains("created"));
    c.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.io",
            "--timeout=20s",
        ],
        None,
    );
    assert!(
        c.ok(&["apply", "-f", "-"], Some(&widget("client", "")))
            .contains("widget.example.io/client created")
    );
    let again = c.ok(
        &["apply", "-f", "-"],
        Some(&widget("client", "  size: 7\n")),
    );
    assert!(again.contains("configured"), "{again}");
    let ssa = c.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&widget("server", "  size: 5\n")),
    );
    assert!(ssa.contains("serverside-applied"), "{ssa}");
    let table = c.ok(&["get", "widgets"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("NAME")
            && lines[0].contains("SIZE")
            && lines[0].contains("READY")
            && lines[0].contains("AGE"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("client") && l.contains(" 7 ")),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("server") && l.contains(" 5 ")),
        "{table}"
    );
    // Schema defaults and the short name.
    c.ok(&["apply", "-f", "-"], Some(&widget("defaulted", "")));
    let explained = c.ok(&["explain", "widgets.spec"], None);
    assert!(
        explained.contains("size") && explained.contains("color"),
        "{explained}"
    );
    let resources = c.ok(&["api-resources", "--api-group=example.io"], None);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
    let size = c.ok(
        &["get", "wd", "defaulted", "-o", "jsonpath={.spec.size}"],
        None,
    );
    assert_eq!(size, "3");
    // Unknown fields are rejected under kubectl's default strict validation.
    let err = c.fails(
        &["apply", "-f", "-"],
        Some(&widget("strict", "  bogus: 1\n")),
    );
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    let typo = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata: {a: b}\nstrinData: {c: d}\n";
    let err = c.fails(&["apply", "-f", "-"], Some(typo));
    assert!(err.contains("unknown field \"strinData\""), "{err}");
}

#[test]
fn kubectl_waits_for_a_condition_set_through_the_status_subresource() {
    let c = start();
    c.ok(&["apply", "-f", "-"], Some(CRD));
    c.ok(&["apply", "-f", "-"], Some(&widget("w", "")));
    let wait = c
        .command(&["wait", "--for=condition=Ready", "widget/w", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl wait");
    std::thread::sleep(Duration::from_millis(700));
    let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
    c.ok(
        &[
            "patch",
            "widget",
            "w",
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ],
        None,
    );
    let out = wait.wait_with_output().expect("wait output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    // The main endpoint ignores status; the status endpoint changed only status.
    let ready = c.ok(
        &[
            "get",
            "widget",
            "w",
            "-o",
            "jsonpath={.status.conditions[0].status}",
        ],
        None,
    );
    assert_eq!(ready, "True");
    assert!(
        c.ok(&["get", "widgets"], None)
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("True"))
    );
}

#[test]
fn kubectl_replace_with_a_stale_resource_version_gets_409() {
    let c = start();
    c.ok(&["apply", "-f", "-"], Some(&configmap("cfg", "a: '1'")));
    let stale = c.ok(&["get", "configmap", "cfg", "-o", "yaml"], None);
    c.ok(
        &[
            "patch",
            "configmap",
            "cfg",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
        None,
    );
    let err = c.fails(&["replace", "-f", "-"], Some(&stale));
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );
    let err = c.fails(&["get", "configmap", "missing"], None);
    assert!(err.contains("configmaps \"missing\" not found"), "{err}");
}

#[test]
fn kubectl_foreground_deletion_removes_dependents_first() {
    let c = start();
    c.ok(&["apply", "-f", "-"], Some(&configmap("owner", "a: '1'")));
    let uid = c.ok(
        &[
            "get",
            "configmap",
            "owner",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    let dep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  finalizers: [example.io/hold]\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}, blockOwnerDeletion: true}}\n"
    );
    c.ok(&["apply", "-f", "-"], Some(&dep));
    c.ok(
        &[
            "delete",
            "configmap",
            "owner",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    );
    // The owner waits for its blocking dependent, which is being deleted.
    let owner_fin = c.ok(
        &[
            "get",
            "configmap",
            "owner",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
        None,
    );
    assert!(owner_fin.contains("foregroundDeletion"), "{owner_fin}");
    let dep_ts = c.ok(
        &[
            "get",
            "configmap",
            "dependent",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        None,
    );
    assert!(!dep_ts.is_empty());
    // Releasing the dependent lets it go, and then the owner.
    c.ok(
        &[
            "patch",
            "configmap",
            "dependent",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    let err = c.fails(&["get", "configmap", "dependent"], None);
    assert!(err.contains("not found"), "{err}");
    let err = c.fails(&["get", "configmap", "owner"], None);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn kubectl_get_watch_prints_new_objects() {
    let c = start();
    let mut child = c
        .command(&["get", "configmaps", "-w", "--request-timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    c.ok(&["apply", "-f", "-"], Some(&configmap("watched", "x: y")));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.starts_with("watched") => {
                seen = true;
                break;
            }
            _ => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "kubectl get -w printed the new configmap");
}

#[test]
fn kubectl_applies_built_in_kinds_client_side_and_server_side() {
    let c = start();
    let job = |img: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\n  labels: {{app: pi}}\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: {img}\n        env: [{{name: A, value: '1'}}]\n"
        )
    };
    assert!(
        c.ok(&["apply", "-f", "-"], Some(&job("perl:1")))
            .contains("job.batch/pi created")
    );
    assert!(
        c.ok(&["apply", "-f", "-"], Some(&job("perl:2")))
            .contains("configured")
    );
    let img = c.ok(
        &[
            "get",
            "job",
            "pi",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(img, "perl:2");
    let out = c.ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&job("perl:3")),
    );
    assert!(out.contains("serverside-applied"), "{out}");
    c.ok(&["describe", "job", "pi"], None);
    let table = c.ok(&["get", "jobs"], None);
    assert!(
        table.contains("STATUS") && table.contains("Suspended"),
        "{table}"
    );
    c.ok(&["delete", "job", "pi"], None);
}

#[test]
fn kubectl_creates_a_list_and_names_a_kind_no_server_serves() {
    let c = start();
    c.ok(&["apply", "-f", "-"], Some(CRD));
    // A `kind: List`: kubectl validates it with the OpenAPI v2 document
    // (protobuf), then creates each item; the server checks each one.
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}\n",
        configmap("listed", "k: v").replace('\n', "\n  "),
        widget("listed", "").trim_end().replace('\n', "\n  ")
    );
    let out = c.ok(&["create", "-f", "-"], Some(&list));
    assert!(
        out.contains("configmap/listed created")
            && out.contains("widget.example.io/listed created"),
        "{out}"
    );
    let bad = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n",
        widget("odd", "  shape: round\n")
            .trim_end()
            .replace('\n', "\n  ")
    );
    let err = c.fails(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("unknown field \"spec.shape\""), "{err}");
    // A kind nothing serves: kubectl's own words, from discovery.
    let err = c.fails(
        &["create", "-f", "-"],
        Some("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"),
    );
    assert!(
        err.contains("no matches for kind \"Workflow\" in version \"argoproj.io/v1alpha1\""),
        "{err}"
    );
}

#[test]
fn kubectl_typed_create_commands_send_protobuf_the_server_understands() {
    let c = start();
    c.ok(&["create", "namespace", "team"], None);
    c.ok(
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "team",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        None,
    );
    c.ok(
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "team",
            "--from-literal=pw=hunter2",
        ],
        None,
    );
    c.ok(&["create", "serviceaccount", "bot", "-n", "team"], None);
    c.ok(
        &[
            "create",
            "role",
            "reader",
            "-n",
            "team",
            "--verb=get,list",
            "--resource=configmaps",
        ],
        None,
    );
    c.ok(
        &[
            "create",
            "rolebinding",
            "bot-reads",
            "-n",
            "team",
            "--role=reader",
            "--serviceaccount=team:bot",
        ],
        None,
    );
    let data = c.ok(
        &[
            "get",
            "configmap",
            "cfg",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.a},{.data.b}",
        ],
        None,
    );
    assert_eq!(data, "1,2");
    let pw = c.ok(
        &[
            "get",
            "secret",
            "s",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.pw}",
        ],
        None,
    );
    assert_eq!(pw, "aHVudGVyMg==");
    let verbs = c.ok(
        &[
            "get",
            "role",
            "reader",
            "-n",
            "team",
            "-o",
            "jsonpath={.rules[0].verbs}",
        ],
        None,
    );
    assert!(verbs.contains("get") && verbs.contains("list"), "{verbs}");
    let subject = c.ok(
        &[
            "get",
            "rolebinding",
            "bot-reads",
            "-n",
            "team",
            "-o",
            "jsonpath={.subjects[0].name}/{.roleRef.name}",
        ],
        None,
    );
    assert_eq!(subject, "bot/reader");
    let label = c.ok(
        &[
            "get",
            "namespace",
            "team",
            "-o",
            "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
        ],
        None,
    );
    assert_eq!(label, "team");
}

#[test]
fn kubectl_with_rbac_on_is_refused_as_a_real_server_words_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, (addr, ca), bot_token) = rt.block_on(async {
        let mut config = SimConfig {
            rbac: true,
            ..SimConfig::default()
        };
        config
            .tokens
            .insert("root".into(), jobset_sim::UserInfo::admin());
        let sim = Sim::new(config);
        let token = sim.mint_service_account_token("default", "bot");
        let served = sim
            .serve_tls("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        (sim, served, token)
    });
    let admin = Cluster {
        rt,
        sim,
        dir,
        kubeconfig: PathBuf::new(),
    };
    let admin_kc = admin.dir.path().join("admin");
    let bot_kc = admin.dir.path().join("bot");
    jobset_sim::write_tls_kubeconfig(&admin_kc, addr, &ca, Some("root")).expect("kubeconfig");
    jobset_sim::write_tls_kubeconfig(&bot_kc, addr, &ca, Some(&bot_token)).expect("kubeconfig");
    let as_admin = Cluster {
        kubeconfig: admin_kc,
        ..admin
    };
    assert!(
        as_admin
            .ok(&["get", "namespaces"], None)
            .contains("kube-system")
    );
    let bot = Cluster {
        kubeconfig: bot_kc,
        ..as_admin
    };
    let err = bot.fails(&["get", "configmaps"], None);
    assert!(
        err.contains("configmaps is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let out = bot.run(&["auth", "can-i", "list", "configmaps"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
