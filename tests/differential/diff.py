#!/usr/bin/env python3
"""The differential suite: every scenario under the upstream JobSet
controller and under ours, each on a real control plane of its own
(kube-apiserver, etcd, the Job controller, the scheduler and kwok nodes;
see tests/realcluster), and optionally under ours on `jobset sim serve`.
What a user or a tool sees is compared field by field; a difference is a
failure unless `allowlist.yaml` lists it with its reason.

    python3 tests/differential/diff.py [--backends upstream,ours,sim] [--only NAME ...]

Prints a table per scenario and ends with `N passed, M failed`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "realcluster"))

import yaml  # noqa: E402
from procs import stop_all  # noqa: E402  (tests/realcluster)

import kueue  # noqa: E402
import scenarios as scenario_mod  # noqa: E402
from observe import Observer, flatten, normalise_text  # noqa: E402
from pods import PodDriver  # noqa: E402

WEBHOOK_NAMES = ("jobset-mutating-webhook-configuration", "jobset-validating-webhook-configuration")
# Alpha gates on for both controllers where the scenarios need them; the
# others stay at upstream's default (off).
FEATURE_GATES = {"RestartJob": True, "InPlaceRestart": False, "ElasticJobSet": False}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], check: bool = True, input: str | None = None, env=None, timeout: float = 120):
    out = subprocess.run(cmd, capture_output=True, text=True, input=input, env=env, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({out.returncode}): {out.stderr.strip()}")
    return out


class Kubectl:
    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig

    def __call__(self, args: list[str], check: bool = True, input: str | None = None, timeout: float = 60):
        return run(["kubectl", "--kubeconfig", self.kubeconfig, *args], check=check, input=input, timeout=timeout)


def make_webhook_certs(folder: Path) -> tuple[Path, str]:
    """A CA and a serving certificate for 127.0.0.1; returns the folder
    with tls.crt and tls.key, and the CA bundle (base64 PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=differential-webhook-ca",
         "-keyout", str(ca_key), "-out", str(ca_crt)])
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.csr")])
    run(["openssl", "x509", "-req", "-in", str(folder / "tls.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(folder / "tls.crt")])
    import base64

    return folder, base64.b64encode(ca_crt.read_bytes()).decode()


def webhook_configs(port: int, ca_bundle: str, pods: bool) -> str:
    """Both webhook configurations, reaching the controller by URL."""

    def hook(name, path, rules, extra=None):
        h = {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle},
            "rules": rules,
        }
        h.update(extra or {})
        return h

    js_rules = lambda ops: [{"apiGroups": ["jobset.x-k8s.io"], "apiVersions": ["v1alpha2"], "operations": ops,
                             "resources": ["jobsets"], "scope": "Namespaced"}]
    pod_rules = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                  "scope": "Namespaced"}]
    only_jobset_pods = {"objectSelector": {"matchExpressions": [{"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}]}}
    mutating = [hook("mjobset.kb.io", "/mutate-jobset-x-k8s-io-v1alpha2-jobset", js_rules(["CREATE"]))]
    validating = [hook("vjobset.kb.io", "/validate-jobset-x-k8s-io-v1alpha2-jobset", js_rules(["CREATE", "UPDATE"]))]
    if pods:
        mutating.append(hook("mpod.kb.io", "/mutate--v1-pod", pod_rules, only_jobset_pods))
        validating.append(hook("vpod.kb.io", "/validate--v1-pod", pod_rules, only_jobset_pods))
    docs = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": WEBHOOK_NAMES[0]}, "webhooks": mutating},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": WEBHOOK_NAMES[1]}, "webhooks": validating},
    ]
    return yaml.safe_dump_all(docs)


def wait_tcp(port: int, proc: subprocess.Popen, what: str, log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Backend:
    """An API server with a JobSet controller behind it."""

    name = ""
    real = True

    def __init__(self, work: Path, bin_dir: Path | None, jobset_bin: Path):
        self.work = work
        self.bin_dir = bin_dir
        self.jobset_bin = jobset_bin
        self.procs: list[subprocess.Popen] = []
        # Processes that outlive a controller restart (Kueue); ended by close().
        self.services: list[subprocess.Popen] = []
        self.kubectl: Kubectl | None = None
        self.plane = None
        self.driver: PodDriver | None = None
        self.controller_log: Path | None = None
        # The plane's nodes (None: tests/realcluster/nodes.yaml).
        self.nodes_file: Path | None = None
        # The gates the controller runs with now.
        self.gates: dict[str, bool] = dict(FEATURE_GATES)
        # Spans of wall-clock time (seconds since the epoch) in which a
        # forbidden answer is the API server's doing, not a missing rule:
        # a kube-apiserver just started answers 403 until its RBAC
        # informers have synced.
        self.apiserver_restarts: list[tuple[float, float]] = []

    def excused(self, at: float | None) -> bool:
        """Whether a log line written at `at` falls in a restart span (with
        30 s after it for the authorizer's caches to fill)."""
        return at is not None and any(start <= at <= end + 30 for start, end in self.apiserver_restarts)

    def gate_flag(self) -> str:
        return ",".join(f"{g}={'true' if on else 'false'}" for g, on in self.gates.items())

    def use_gates(self, gates: dict[str, bool]) -> None:
        """Runs the controller with `gates` from now on: stopped and
        installed again when they differ (the plane and its objects stay)."""
        if gates == self.gates:
            return
        self.gates = dict(gates)
        self.stop_controller()
        self.install()

    def start_plane(self) -> None:
        from cluster import ControlPlane  # tests/realcluster

        self.plane = ControlPlane.up(dir=str(self.work / "plane"), bins=self.bin_dir, quiet=True,
                                     nodes_file=self.nodes_file)
        self.kubectl = Kubectl(self.plane.kubeconfig)
        self.driver = PodDriver(self.kubectl)
        self.driver.start()

    def spawn(self, cmd: list[str], log_name: str, env=None) -> subprocess.Popen:
        path = self.work / f"{log_name}.log"
        handle = open(path, "w")
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_controller(self) -> None:
        """Takes the controller out as an operator replacing it would: its
        webhook configurations first (upstream's pod webhook fails closed),
        then its process. The plane stays up."""
        self.kubectl(["delete", "mutatingwebhookconfiguration", WEBHOOK_NAMES[0], "--ignore-not-found"])
        self.kubectl(["delete", "validatingwebhookconfiguration", WEBHOOK_NAMES[1], "--ignore-not-found"])
        self.end_procs()

    def end_procs(self) -> None:
        """Ends the processes this backend started (each in a session of its
        own: SIGTERM, then SIGKILL after ten seconds) and reaps them."""
        stop_all([p.pid for p in self.procs if p.poll() is None], grace=10)
        for p in self.procs:
            p.wait()
        self.procs.clear()

    def adopt(self, other: "Backend") -> None:
        """Shares another backend's plane (and pod driver), to install a
        controller there after that backend's controller is stopped."""
        self.plane, self.kubectl, self.driver = other.plane, other.kubectl, other.driver

    def close(self) -> None:
        if self.driver:
            self.driver.stop()
        self.end_procs()
        self.procs, self.services = self.services, []
        self.end_procs()
        if self.plane is not None:
            self.plane.down()

    def prepare(self, scenario) -> Kubectl:
        """The API server a scenario runs against (the shared one here)."""
        assert self.kubectl
        self.driver.register(scenario.namespace, scenario.pods)
        return self.kubectl

    def finish(self, scenario) -> None:
        pass

    def problems(self) -> list[str]:
        return list(self.driver.errors) if self.driver else []


class Upstream(Backend):
    name = "upstream"

    def setup(self) -> None:
        self.start_plane()
        self.install()

    def install(self) -> None:
        """Upstream's CRD, its controller and its webhooks (pods included) on
        the plane this backend holds."""
        k = self.kubectl
        crd = self.bin_dir / "jobset-upstream-crd.yaml"  # copied there by build.sh
        k(["apply", "--server-side", "-f", str(crd)])
        self.plane.wait_established("jobsets.jobset.x-k8s.io")
        certs, ca = make_webhook_certs(self.work / "webhook-certs")
        port, metrics, health = free_port(), free_port(), free_port()
        config = {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "internalCertManagement": {"enable": False},
            "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(certs)},
            "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
            "leaderElection": {"leaderElect": False},
            "featureGates": self.gates,
        }
        cfg = self.work / "upstream-config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.controller_log = self.work / "upstream-controller.log"
        proc = self.spawn([str(self.bin_dir / "jobset-upstream"), "--config", str(cfg), "--kubeconfig", self.plane.kubeconfig],
                          "upstream-controller")
        wait_tcp(port, proc, "the upstream controller's webhook server", self.controller_log)
        k(["apply", "-f", "-"], input=webhook_configs(port, ca, pods=True))


def log_time(line: str) -> float | None:
    """The UTC time a controller log line starts with, in seconds since
    the epoch; None when it has none."""
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", line)
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()


class Ours(Backend):
    name = "ours"
    # Flags every controller this backend starts gets (the bench sets them).
    extra_args: tuple = ()

    def setup(self) -> None:
        self.start_plane()
        self.install()

    def install(self) -> None:
        """deploy/'s CRD, RBAC and plugins, and our controller under the
        ServiceAccount deploy/rbac binds, on the plane this backend holds."""
        k = self.kubectl
        deploy = REPO / "deploy"
        k(["apply", "--server-side", "-f", str(deploy / "crd")])
        self.plane.wait_established("jobsets.jobset.x-k8s.io")
        k(["apply", "--server-side", "-f", str(deploy / "namespace.yaml"), "-f", str(deploy / "rbac"),
           "-f", str(deploy / "plugins")])
        token = k(["create", "token", "jobset-controller", "-n", "jobset-system", "--duration=6h"]).stdout.strip()
        sa_kubeconfig = self.work / "controller.kubeconfig"
        admin = yaml.safe_load(Path(self.plane.kubeconfig).read_text())
        cluster = admin["clusters"][0]["cluster"]
        sa_kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "plane", "cluster": cluster}],
            "users": [{"name": "jobset-controller", "user": {"token": token}}],
            "contexts": [{"name": "controller", "context": {"cluster": "plane", "user": "jobset-controller"}}],
            "current-context": "controller",
        }))
        self.sa_kubeconfig = sa_kubeconfig
        self.start_controller()

    def start_controller(self, name: str = "ours-controller", extra: tuple = (), env: dict | None = None,
                         webhooks: bool = True) -> subprocess.Popen:
        """One `jobset controller` process as deployed (its service
        account, its settings); `extra` flags and `env` on top. With
        `webhooks`, the webhook configurations point at it."""
        certs, ca = make_webhook_certs(self.work / f"{name}-webhook-certs")
        port, metrics, health = free_port(), free_port(), free_port()
        log_path = self.work / f"{name}.log"
        if webhooks:
            self.controller_log = log_path
        proc = self.spawn([
            str(self.jobset_bin), "controller", "--kubeconfig", str(self.sa_kubeconfig),
            "--cert-dir", str(certs), "--webhook-addr", f"127.0.0.1:{port}",
            "--metrics-addr", f"127.0.0.1:{metrics}", "--health-addr", f"127.0.0.1:{health}",
            "--plugin-namespace", "jobset-system", "--feature-gates", self.gate_flag(), *self.extra_args, *extra,
        ], name, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), **(env or {})))
        wait_tcp(port, proc, f"{name}'s webhook server", log_path)
        if webhooks:
            self.kubectl(["apply", "-f", "-"], input=webhook_configs(port, ca, pods=False))
        return proc

    def problems(self) -> list[str]:
        out = super().problems()
        text = self.controller_log.read_text(errors="replace") if self.controller_log else ""
        forbidden = [
            l for l in text.splitlines()
            if "forbidden" in l.lower() and not self.excused(log_time(l))
        ]
        if forbidden:
            out.append(f"{len(forbidden)} forbidden request(s) in the controller's log, first: {forbidden[0][:300]}")
        return out


class Sim(Backend):
    """Our controller on `jobset sim serve`: one simulated cluster per
    scenario. Its pods end the way they do on the real control plane: the
    simulated kubelet runs them, and the same pod driver writes their end
    (the simulated kubelet honours a status written from outside, as
    kwok's stages do), so both play a scenario file by one clock."""

    name = "sim"
    real = False

    def setup(self) -> None:
        self.servers: dict[str, tuple[subprocess.Popen, PodDriver]] = {}
        self.lock = threading.Lock()
        self.errors: list[str] = []

    def prepare(self, scenario) -> Kubectl:
        folder = self.work / scenario.namespace
        folder.mkdir(parents=True, exist_ok=True)
        # Pods start and stop as kwok's Stages make them on the real control
        # plane (tests/realcluster/stages.yaml) and run until the driver
        # ends them.
        (folder / "pods.scenario.yaml").write_text(
            yaml.safe_dump({"defaultDuration": "24h", "startDelay": "0.2s", "shutdown": "0.2s"}))
        kubeconfig = folder / "kubeconfig"
        gates = ",".join(f"{g}={'true' if on else 'false'}" for g, on in {**FEATURE_GATES, **scenario.gates}.items())
        proc = subprocess.Popen(
            [str(self.jobset_bin), "sim", "serve", "--controller", "--listen", "127.0.0.1:0",
             "--kubeconfig-out", str(kubeconfig), "--scenario", str(folder / "pods.scenario.yaml"),
             "--feature-gates", gates],
            stdout=subprocess.PIPE, stderr=open(folder / "sim.log", "w"), text=True, start_new_session=True,
        )
        with self.lock:
            self.procs.append(proc)
        line = proc.stdout.readline()
        if "ready on" not in line:
            raise RuntimeError(f"jobset sim serve did not start: {line}\n{tail(folder / 'sim.log')}")
        k = Kubectl(str(kubeconfig))
        driver = PodDriver(k)
        driver.register(scenario.namespace, scenario.pods)
        driver.start()
        with self.lock:
            self.servers[scenario.name] = (proc, driver)
        return k

    def finish(self, scenario) -> None:
        with self.lock:
            proc, driver = self.servers.pop(scenario.name, (None, None))
        if driver:
            driver.stop()
            self.errors += driver.errors
        if proc and proc.poll() is None:
            stop_all([proc.pid], grace=10)
            proc.wait()

    def problems(self) -> list[str]:
        return list(self.errors)


# ------------------------------------------------------------------ running


def admission_answer(out: subprocess.CompletedProcess, namespace: str) -> dict:
    text = (out.stdout if out.returncode == 0 else out.stderr).strip()
    # The file name kubectl prints is ours (stdin), not the server's.
    text = re.sub(r'error when (creating|patching) "[^"]*"', r"error when \1", text)
    return {"accepted": out.returncode == 0, "answer": normalise_text(text, namespace)}


def apply_step(k: Kubectl, ns: str, step: dict) -> subprocess.CompletedProcess:
    """A timed update of a JobSet: a merge patch (`patch`) or a JSON patch
    (`json`, for changes inside lists, as Kueue makes them); or what an
    in-place restart agent writes: `agents: {pods: SELECTOR, attempt: N}`
    annotates the selected pods with their attempt; or `create`, a
    manifest created at this point of the scenario."""
    if "create" in step:
        return k(["create", "-n", ns, "-f", "-"], check=False, input=step["create"])
    if "agents" in step:
        agents = step["agents"]
        out = k(["annotate", "pods", "-n", ns, "-l", agents["pods"], "--overwrite",
                 f"jobset.sigs.k8s.io/in-place-restart-attempt={agents['attempt']}"], check=False)
        # Pod names are random; how many pods the agents speak for is not.
        annotated = sum(1 for line in out.stdout.splitlines() if line.endswith(" annotated"))
        return subprocess.CompletedProcess(out.args, out.returncode, f"{annotated} pod(s) annotated", out.stderr)
    if "json" in step:
        kind, body = "json", step["json"]
    else:
        kind, body = "merge", step["patch"]
    return k(["patch", "jobset", step["jobset"], "-n", ns, f"--type={kind}", "-p", json.dumps(body)], check=False)


def play(backend: Backend, scenario) -> dict:
    ns = scenario.namespace
    k = backend.prepare(scenario)
    try:
        if scenario.kueue:
            # Created with its label in one request: a label added after
            # the namespace exists can reach the API server's webhook
            # selector (and Kueue's cache) after the first JobSet, which
            # then runs without Kueue.
            k(["create", "-f", "-"], input=yaml.safe_dump({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {kueue.NAMESPACE_LABEL: "true"}}}))
            kueue.wait_managed(k, ns)
        else:
            k(["create", "namespace", ns])
        result: dict = {"admission": []}
        for doc in scenario.manifests:
            doc = json.loads(json.dumps(doc))
            if isinstance(doc.get("metadata"), dict) and "namespace" in doc["metadata"]:
                doc["metadata"]["namespace"] = ns
            out = k(["create", "-n", ns, "-f", "-"], check=False, input=yaml.safe_dump(doc))
            result["admission"].append(admission_answer(out, ns))
        observer = Observer(k, ns, kueue=scenario.kueue, count_running=scenario.count_running)
        start = time.monotonic()
        steps = sorted(scenario.steps, key=lambda s: s.get("after", 0))
        if scenario.kind == "admission":
            for step in steps:
                result["admission"].append(admission_answer(apply_step(k, ns, step), ns))
            return result
        finished_at = None
        timed_out = False
        while True:
            now = time.monotonic() - start
            while steps and steps[0].get("after", 0) <= now:
                step = steps.pop(0)
                result.setdefault("steps", []).append(admission_answer(apply_step(k, ns, step), ns))
            observer.poll()
            if scenario.settle is not None:
                if now >= scenario.settle and not steps:
                    break
            else:
                jobsets = observer.get("jobsets.jobset.x-k8s.io")
                done = bool(jobsets) and all(
                    any(c.get("type") in ("Completed", "Failed") and c.get("status") == "True"
                        for c in (js.get("status") or {}).get("conditions") or [])
                    for js in jobsets
                )
                if not jobsets:
                    # Deleted (TTL), or nothing was admitted: nothing to wait for.
                    done = now > 5 or not any(a["accepted"] for a in result["admission"])
                if done and finished_at is None:
                    finished_at = now
                # Kueue's scenarios wait longer: upstream's event recorder is
                # asynchronous, and its last events there came late under load.
                linger = 8 if scenario.kueue else 3
                if finished_at is not None and now - finished_at >= linger and not steps:
                    break
            if now > scenario.timeout:
                timed_out = True
                break
            time.sleep(0.5)
        result.update(observer.final())
        result["timedOut"] = timed_out
        return result
    finally:
        backend.finish(scenario)


def run_backend(backend: Backend, scenarios, parallel: int) -> dict[str, dict]:
    log(f"{backend.name}: starting")
    t0 = time.monotonic()
    if not backend.real:
        # Kueue runs on the real control plane only.
        scenarios = [s for s in scenarios if not s.kueue]
    backend.setup()
    if backend.real and any(s.kueue for s in scenarios):
        kueue.start(backend, free_port, make_webhook_certs, wait_tcp)
        log(f"{backend.name}: Kueue ready")
    log(f"{backend.name}: ready in {time.monotonic() - t0:.0f} s; playing {len(scenarios)} scenarios, {parallel} at a time")
    results: dict[str, dict] = {}
    # Scenarios that need other gates run after the rest, one set at a time
    # (a real-cluster backend runs one controller for all its scenarios).
    groups: dict[tuple, list] = {}
    for s in scenarios:
        gates = {**FEATURE_GATES, **s.gates}
        groups.setdefault(tuple(sorted(gates.items())), []).append(s)
    default = tuple(sorted(FEATURE_GATES.items()))
    for key in sorted(groups, key=lambda k: k != default):
        if backend.real:
            if dict(key) != backend.gates:
                log(f"{backend.name}: restarting the controller with gates {dict(key)}")
            backend.use_gates(dict(key))
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = {pool.submit(play, backend, s): s for s in groups[key]}
            for f in concurrent.futures.as_completed(futures):
                s = futures[f]
                try:
                    results[s.name] = f.result()
                except Exception as e:  # a scenario that cannot run is a failure of its own
                    results[s.name] = {"error": str(e)}
                log(f"{backend.name}: {s.name} done ({len(results)}/{len(scenarios)})")
    results["__problems__"] = {"problems": backend.problems()}
    log(f"{backend.name}: all scenarios in {time.monotonic() - t0:.0f} s")
    return results


# --------------------------------------------------------------- comparing


def load_allowlist() -> list[dict]:
    entries = yaml.safe_load((HERE / "allowlist.yaml").read_text()) or []
    for i, e in enumerate(entries):
        missing = {"compare", "scenario", "reason"} - set(e)
        if not {"path", "eventReasons", "conditionTypes"} & set(e):
            missing.add("path, eventReasons or conditionTypes")
        if missing:
            raise SystemExit(f"allowlist.yaml entry {i}: missing {sorted(missing)}")
        if len(str(e["reason"]).strip()) < 20:
            raise SystemExit(f"allowlist.yaml entry {i}: the reason must say why ({e['reason']!r})")
    return entries


def covers(entry, compare: str, scenario: str) -> bool:
    """Whether an allowlist entry is about this comparison and scenario
    (its `scenario` glob matches and none of its `unless` globs does)."""
    return (entry["compare"] == compare and fnmatch.fnmatch(scenario, entry["scenario"])
            and not any(fnmatch.fnmatch(scenario, g) for g in entry.get("unless", [])))


def allowed(entries, compare: str, scenario: str, path: str):
    for e in entries:
        if "path" in e and covers(e, compare, scenario) and re.search(e["path"], path):
            return e
    return None


def without_events(entries, label: str, scenario: str, observed: dict) -> tuple[dict, list[str]]:
    """The observation without the events that an allowlist entry's
    `eventReasons` names for this comparison and scenario (they would shift
    every later event), nor their counts, and which were taken out."""
    reasons = {r for e in entries if covers(e, label, scenario) for r in e.get("eventReasons", [])}
    types = {t for e in entries if covers(e, label, scenario) for t in e.get("conditionTypes", [])}
    dropped: list[str] = []
    if types and isinstance(observed.get("jobsets"), dict):
        # JobSet conditions of those types, likewise (one would shift the
        # index of every later condition).
        jobsets = {}
        for name, js in observed["jobsets"].items():
            conds = ((js or {}).get("status") or {}).get("conditions")
            if isinstance(conds, list):
                dropped += [f"condition:{c.get('type')}" for c in conds if c.get("type") in types]
                js = dict(js, status=dict(js["status"], conditions=[c for c in conds if c.get("type") not in types]))
            jobsets[name] = js
        observed = dict(observed, jobsets=jobsets)
    if not reasons or "events" not in observed:
        return observed, dropped
    kept = [e for e in observed["events"] if e.get("reason") not in reasons]
    dropped += [e["reason"] for e in observed["events"] if e.get("reason") in reasons]
    counts = {r: n for r, n in (observed.get("eventCounts") or {}).items() if r not in reasons}
    return dict(observed, events=kept, eventCounts=counts), dropped


def compare(entries, label: str, scenario: str, left: dict, right: dict) -> tuple[list, list]:
    left, dropped_left = without_events(entries, label, scenario, left)
    right, dropped_right = without_events(entries, label, scenario, right)
    a, b = flatten(left), flatten(right)
    diverged, allowed_rows = [], []
    for reason in sorted(set(dropped_left) ^ set(dropped_right)):
        if reason.startswith("condition:"):
            kind, what = "conditions(type=", reason.split(":", 1)[1]
            entry = next(e for e in entries if what in e.get("conditionTypes", []))
        else:
            kind, what = "events(reason=", reason
            entry = next(e for e in entries if reason in e.get("eventReasons", []))
        allowed_rows.append((f"{kind}{what})", reason in dropped_left, reason in dropped_right, entry))
    for path in sorted(set(a) | set(b)):
        va, vb = a.get(path, "<absent>"), b.get(path, "<absent>")
        if va == vb:
            continue
        entry = allowed(entries, label, scenario, path)
        (allowed_rows if entry else diverged).append((path, va, vb, entry))
    return diverged, allowed_rows


def short(v, width: int = 60) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 1] + "…"


def play_backends(names, kinds, scenarios, work: Path, bin_dir, jobset_bin, parallel: int) -> dict[str, dict]:
    observed: dict[str, dict] = {}
    for n in names:
        backend = kinds[n](work / n, bin_dir, jobset_bin)
        backend.work.mkdir(parents=True)
        try:
            observed[n] = run_backend(backend, scenarios, parallel)
        finally:
            backend.close()
    return observed


def evaluate(entries, scenarios, observed: dict[str, dict]) -> tuple[dict[str, list[str]], dict[str, bool], int]:
    """Per scenario: the report lines and whether it passed; and how many
    differences the allowlist accepted."""
    pairs = [(a, b) for a, b in (("upstream", "ours"), ("ours", "sim")) if a in observed and b in observed]
    lines: dict[str, list[str]] = {}
    passed: dict[str, bool] = {}
    allowed_total = 0
    for s in scenarios:
        out = lines.setdefault(s.name, [])
        ok = True
        for a, b in pairs:
            label = f"{a}-{b}"
            if s.kueue and "sim" in (a, b):
                out.append(f"  {label}: not compared (Kueue runs on the real control plane only)")
                continue
            ra, rb = observed[a].get(s.name, {}), observed[b].get(s.name, {})
            for side, r in ((a, ra), (b, rb)):
                if "error" in r:
                    out.append(f"  {label}: {side} could not run it: {r['error']}")
                    ok = False
                if r.get("timedOut"):
                    out.append(f"  {label}: {side} timed out before every JobSet finished")
            diverged, allowed_rows = compare(entries, label, s.name, ra, rb)
            allowed_total += len(allowed_rows)
            if not diverged:
                out.append(f"  {label}: same in {len(flatten(ra))} fields"
                           + (f", {len(allowed_rows)} allowed differences" if allowed_rows else ""))
            for path, va, vb, entry in diverged:
                ok = False
                out.append(f"  {label}: DIFFERS {path}: {a}={short(va)} {b}={short(vb)}")
            for path, va, vb, entry in allowed_rows:
                out.append(f"  {label}: allowed {path}: {a}={short(va)} {b}={short(vb)} ({entry['reason'][:60]})")
        passed[s.name] = ok
    return lines, passed, allowed_total


def binaries(jobset: str, plane: bool = True) -> tuple[Path, Path | None]:
    """Our jobset binary (it must exist), and the folder of the real control
    plane's binaries (built, or found in the cache) when `plane`."""
    jobset_bin = Path(jobset)
    if not jobset_bin.exists():
        raise SystemExit(f"no jobset binary at {jobset_bin} (cargo build -p jobset, or --jobset PATH)")
    if not plane:
        return jobset_bin, None
    out = run(["bash", str(REPO / "tests" / "realcluster" / "build.sh"), "--print-bin-dir"], timeout=3600)
    return jobset_bin, Path(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="upstream,ours,sim")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--parallel", type=int, default=12)
    parser.add_argument("--jobset", default=str(REPO / "target" / "debug" / "jobset"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, results)")
    parser.add_argument("--results", help="write every backend's observations here as JSON")
    parser.add_argument("--reuse", help="observations of an earlier --results file, for the backends not run now")
    parser.add_argument("--reruns", type=int, default=2,
                        help="play a scenario that differs again, on fresh backends, this many times; it passes "
                             "if a rerun agrees (timing can reorder what two controllers do), and is reported")
    args = parser.parse_args()

    started = time.monotonic()
    scenarios = scenario_mod.load(args.only)
    entries = load_allowlist()
    # `--backends none --reuse FILE` compares earlier observations only.
    names = [b.strip() for b in args.backends.split(",") if b.strip() and b.strip() != "none"]
    jobset_bin, bin_dir = binaries(args.jobset, any(n in ("upstream", "ours") for n in names))
    work = Path(tempfile.mkdtemp(prefix="jobset-differential-"))
    log(f"work folder {work}; {len(scenarios)} scenarios; backends {names}")
    kinds = {"upstream": Upstream, "ours": Ours, "sim": Sim}
    observed: dict[str, dict] = {}
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        observed.update({k: v for k, v in earlier.items() if k not in names})
    flaky: dict[str, list[str]] = {}
    try:
        observed.update(play_backends(names, kinds, scenarios, work / "run-0", bin_dir, jobset_bin, args.parallel))
        lines, passed, allowed_total = evaluate(entries, scenarios, observed)
        for attempt in range(1, args.reruns + 1):
            again = [s for s in scenarios if not passed[s.name]]
            if not again or not names:
                break
            log(f"rerun {attempt}: {len(again)} scenario(s) differed: {[s.name for s in again]}")
            fresh = play_backends(names, kinds, again, work / f"run-{attempt}", bin_dir, jobset_bin, args.parallel)
            merged = {n: dict(observed.get(n, {})) for n in set(observed) | set(fresh)}
            for n, results in fresh.items():
                merged[n].update({k: v for k, v in results.items() if k != "__problems__"})
                merged[n].setdefault("__problems__", {"problems": []})["problems"] += results["__problems__"]["problems"]
            l2, p2, _ = evaluate(entries, again, merged)
            for s in again:
                if p2[s.name]:
                    flaky[s.name] = lines[s.name]
                    lines[s.name], passed[s.name] = l2[s.name], True
            observed = merged
    finally:
        if args.results:
            Path(args.results).write_text(json.dumps(observed, indent=1, sort_keys=True))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    # Failed scenarios are printed last, so the end of a long log (all a CI
    # summary may keep) shows what failed and why.
    for s in sorted(scenarios, key=lambda s: passed[s.name], reverse=True):
        print(f"\n== {s.name} ({s.kind}): {'passed' if passed[s.name] else 'FAILED'}")
        print("\n".join(lines[s.name]))
        if s.name in flaky:
            print("  differed on the first run, agreed on a rerun; the first run said:")
            print("\n".join("    " + l.strip() for l in flaky[s.name] if "DIFFERS" in l or "could not" in l))
    failed = sum(1 for s in scenarios if not passed[s.name])
    problems = 0
    for n in observed:
        for p in observed.get(n, {}).get("__problems__", {}).get("problems", []):
            print(f"\n{n}: {p}")
            problems += 1
    print(f"\ndifferential: {len(scenarios)} scenarios, {allowed_total} allowed differences, "
          f"{len(flaky)} agreed only on a rerun, {problems} backend problems, {time.monotonic() - started:.0f} s")
    print(f"{len(scenarios) - failed} passed, {failed + problems} failed")
    if failed:
        # What made each fail, without its allowed lines, at the very end.
        for s in scenarios:
            if not passed[s.name]:
                why = [l.strip() for l in lines[s.name] if "DIFFERS" in l or "could not" in l]
                print(f"failed: {s.name}")
                print("\n".join("  " + l for l in why[:40]))
                if len(why) > 40:
                    print(f"  ... and {len(why) - 40} more")
    return 0 if failed + problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
