#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (TLS,
client certificates, RBAC, service-account tokens), kube-controller-manager
(the Job, garbage-collector, TTL-after-finished, namespace and
service-account controllers), kube-scheduler, and kwok playing the
kubelets of fake nodes (the layout of `jobset run --nodes default`, from
nodes.yaml) through the Stages in stages.yaml.

    python3 tests/realcluster/cluster.py up [--dir DIR]     # prints where the kubeconfig and logs are
    python3 tests/realcluster/cluster.py env --dir DIR      # export KUBECONFIG=...
    python3 tests/realcluster/cluster.py status --dir DIR
    python3 tests/realcluster/cluster.py down --dir DIR [--keep]
    python3 tests/realcluster/cluster.py smoke              # test_smoke.py: up, check, down

From Python: `with ControlPlane.up() as cp: cp.kubectl("get", "nodes")`;
leaving the block ends every process, also on an exception, SIGINT or
SIGTERM. The binaries come from build.sh (built on first use, cached after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pki import Pki, cert_user, kubeconfig_text  # noqa: E402
from procs import alive, free_port, healthy, listed, port_taken, run, stop_all, tail  # noqa: E402, F401

HERE = Path(__file__).resolve().parent
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KCM_CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
)


class StartError(RuntimeError):
    """A component that did not come up, with the end of its log."""


def bin_dir() -> Path:
    """The cached binaries, built by build.sh when missing;
    JOBSET_REALCLUSTER_BIN_DIR names a folder of them to use instead."""
    if os.environ.get("JOBSET_REALCLUSTER_BIN_DIR"):
        return Path(os.environ["JOBSET_REALCLUSTER_BIN_DIR"])
    out = subprocess.run(["bash", str(HERE / "build.sh"), "--print-bin-dir"], stdout=subprocess.PIPE, text=True,
                         timeout=7200)
    if out.returncode != 0:
        raise StartError("tests/realcluster/build.sh failed (its output above names the component)")
    return Path(out.stdout.strip().splitlines()[-1])


class ControlPlane:
    """One running control plane; `down()` (or leaving the `with` block,
    however it is left) ends every process it started."""

    # How often a component is started again when a port chosen free was
    # taken before it could bind it.
    PORT_ATTEMPTS = 3

    def __init__(self, folder: Path, bins: Path):
        self.dir = folder
        self.bins = bins
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.kubeconfig = str(folder / "admin.kubeconfig")
        self.server = ""
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.node_count = 0

    # ---------------------------------------------------------------- up
    @classmethod
    def up(cls, dir: str | None = None, bins: Path | None = None, nodes_file: Path | None = None,
           quiet: bool = False) -> "ControlPlane":
        """Starts a control plane and waits until it is ready; on any failure
        (or SIGINT/SIGTERM meanwhile) stops what was started, keeps `dir` for
        its logs, and raises."""
        folder = Path(dir) if dir else Path(tempfile.mkdtemp(prefix="realcluster-"))
        folder.mkdir(parents=True, exist_ok=True)
        if any(up for _, _, up in listed(folder)):
            raise StartError(f"{folder} has a running control plane already; stop it with `down --dir {folder}`")
        (folder / "pids").unlink(missing_ok=True)
        cp = cls(folder, bins or bin_dir())
        cp._trap_signals()
        try:
            cp._start(nodes_file or HERE / "nodes.yaml", quiet)
        except BaseException as e:
            cp.down(keep=True)
            if isinstance(e, StartError):
                e.args = (f"{e}\n(every process started was stopped; the logs are in {cp.logs})",)
            raise
        return cp

    def __enter__(self) -> "ControlPlane":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # The planes of this process that are up, and the signal handlers that
    # were in place before the first of them.
    _live: set[int] = set()
    _saved_handlers: dict[int, object] = {}

    def _trap_signals(self) -> None:
        """SIGTERM (and SIGHUP) become an exception, like SIGINT already is,
        so that `with` blocks and `up` stop the processes, which run in
        sessions of their own and would otherwise outlive us. A handler the
        program set itself is left alone."""
        def interrupted(signum, _frame):
            raise KeyboardInterrupt(f"signal {signum}")

        if not ControlPlane._live:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                try:
                    if signal.getsignal(sig) in (signal.SIG_DFL, None):
                        ControlPlane._saved_handlers[sig] = signal.signal(sig, interrupted)
                except ValueError:  # not the main thread: the caller handles signals
                    pass
        ControlPlane._live.add(id(self))

    def _restore_signals(self) -> None:
        ControlPlane._live.discard(id(self))
        if ControlPlane._live:
            return
        for sig, handler in ControlPlane._saved_handlers.items():
            try:
                signal.signal(sig, handler)
            except ValueError:
                pass
        ControlPlane._saved_handlers.clear()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen([str(self.bins / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = proc
        with open(self.dir / "pids", "a") as f:
            f.write(f"{proc.pid} {name}\n")
        return proc

    def _launch(self, name: str, args, ready, timeout: float) -> None:
        """Starts a component with `args()` (which picks its ports afresh
        each time) and waits for `ready()`; starts it again on other ports
        when one was taken meanwhile."""
        for attempt in range(1, self.PORT_ATTEMPTS + 1):
            self._spawn(name, args())
            try:
                self._wait(name, ready, timeout)
                return
            except StartError:
                if attempt == self.PORT_ATTEMPTS or not port_taken(self.logs / f"{name}.log"):
                    raise
                os.replace(self.logs / f"{name}.log", self.logs / f"{name}.{attempt}.log")

    def _wait(self, name: str, ready, timeout: float) -> None:
        start = time.monotonic()
        deadline = start + timeout
        proc = self.procs[name]
        log = self.logs / f"{name}.log"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartError(f"{name} exited with code {proc.returncode}; the end of its log ({log}):\n{tail(log)}")
            try:
                if ready():
                    self.timings[name] = time.monotonic() - start
                    return
            except (OSError, subprocess.SubprocessError, RuntimeError, ValueError):
                pass
            time.sleep(0.25)
        raise StartError(f"{name} was not ready within {timeout:.0f} s; the end of its log ({log}):\n{tail(log)}")

    def _start(self, nodes_file: Path, quiet: bool) -> None:
        say = (lambda *_: None) if quiet else (lambda m: print(f"realcluster: {m}", file=sys.stderr, flush=True))
        t0 = time.monotonic()
        say(f"starting in {self.dir}")
        self.pki = Pki(self.dir / "pki")
        self._start_etcd()
        say(f"etcd on 127.0.0.1:{self.ports['etcd']}")
        self._start_apiserver()
        say(f"kube-apiserver on {self.server}")
        self._start_controller_manager()
        self._start_scheduler()
        say("kube-controller-manager and kube-scheduler healthy")
        self._start_kwok()
        self._create_nodes(nodes_file)
        self._wait("kwok", self._nodes_ready, 120)
        say(f"{self.node_count} nodes Ready")
        # The default ServiceAccount shows the namespace and service-account
        # controllers at work.
        self._wait("kube-controller-manager", self._default_namespace_ready, 120)
        self.timings["total"] = time.monotonic() - t0
        say(f"ready in {self.timings['total']:.1f} s; kubeconfig {self.kubeconfig}; logs in {self.logs}")

    def _start_etcd(self) -> None:
        def args():
            client, peer = free_port(), free_port()
            self.ports["etcd"], self.ports["etcd-peer"] = client, peer
            self.etcd_url = f"http://127.0.0.1:{client}"
            shutil.rmtree(self.dir / "etcd", ignore_errors=True)
            return [
                "--name", "realcluster", "--data-dir", str(self.dir / "etcd"),
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"realcluster=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync", "--log-level", "warn", "--quota-backend-bytes", str(4 << 30),
            ]

        def ready():
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        self._launch("etcd", args, ready, 60)

    def _start_apiserver(self) -> None:
        crt, key = self.pki.serving()

        def args():
            port = self.ports["kube-apiserver"] = free_port()
            self.server = f"https://127.0.0.1:{port}"
            self.apiserver_args = [
                "--etcd-servers", self.etcd_url,
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(port),
                "--tls-cert-file", str(crt), "--tls-private-key-file", str(key),
                "--client-ca-file", str(self.pki.ca_crt),
                "--authorization-mode", "Node,RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(self.pki.sa_pub),
                "--service-account-signing-key-file", str(self.pki.sa_key),
                "--endpoint-reconciler-type", "none",
                "--service-cluster-ip-range", "10.96.0.0/16",
                # Pods of a new namespace must not wait for its default
                # ServiceAccount (nothing here mounts its token), and new
                # nodes must not carry the not-ready taint that only the
                # node lifecycle controller, which fake nodes do not need,
                # removes. The webhook admission plugins stay on.
                "--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                "--profiling=false",
                "--v", "1",
            ]
            return self.apiserver_args

        self._launch("kube-apiserver", args, self._apiserver_ready, 180)

    def _apiserver_ready(self) -> bool:
        self._write_admin_kubeconfig()
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=5).returncode == 0

    def restart_apiserver(self, down_for: float = 2.0) -> float:
        """Kills kube-apiserver (SIGKILL) and starts it again on the same
        port after `down_for` seconds, etcd keeping every object; returns
        how long it answered nothing."""
        proc = self.procs["kube-apiserver"]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        down = time.monotonic()
        time.sleep(down_for)
        os.replace(self.logs / "kube-apiserver.log", self.logs / f"kube-apiserver.before-{int(time.time())}.log")
        self._spawn("kube-apiserver", self.apiserver_args)
        self._wait("kube-apiserver", self._apiserver_ready, 180)
        return time.monotonic() - down

    def _write_admin_kubeconfig(self) -> None:
        if not hasattr(self, "_admin_cert"):
            self._admin_cert = self.pki.client("admin", "realcluster-admin", "system:masters")
        Path(self.kubeconfig).write_text(kubeconfig_text(self.server, self.pki.ca_crt, cert_user(*self._admin_cert)))

    def _component_kubeconfig(self, name: str, cn: str, org: str | None = None) -> Path:
        """A kubeconfig with a client certificate of a component's own."""
        path = self.dir / f"{name}.kubeconfig"
        path.write_text(kubeconfig_text(self.server, self.pki.ca_crt, cert_user(*self.pki.client(name, cn, org))))
        return path

    def _start_controller_manager(self) -> None:
        config = self._component_kubeconfig("kcm", "system:kube-controller-manager")

        def args():
            port = self.ports["kube-controller-manager"] = free_port()
            return [
                "--kubeconfig", str(config),
                "--authentication-kubeconfig", str(config), "--authorization-kubeconfig", str(config),
                "--bind-address", "127.0.0.1", "--secure-port", str(port),
                "--controllers", ",".join(KCM_CONTROLLERS),
                "--service-account-private-key-file", str(self.pki.sa_key),
                "--root-ca-file", str(self.pki.ca_crt),
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                # The defaults (20/30 QPS, 5 Job syncs) would make the Job
                # controller the bottleneck of any comparison.
                "--kube-api-qps", "500", "--kube-api-burst", "1000",
                "--concurrent-job-syncs", "20", "--concurrent-gc-syncs", "20",
                "--v", "1",
            ]

        self._launch("kube-controller-manager", args, lambda: healthy(self.ports["kube-controller-manager"]), 120)

    def _start_scheduler(self) -> None:
        kubeconfig = self._component_kubeconfig("scheduler", "system:kube-scheduler")
        config = self.dir / "scheduler.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 500, "burst": 1000},
            "leaderElection": {"leaderElect": False},
        }))

        def args():
            port = self.ports["kube-scheduler"] = free_port()
            return [
                "--config", str(config),
                "--authentication-kubeconfig", str(kubeconfig), "--authorization-kubeconfig", str(kubeconfig),
                "--bind-address", "127.0.0.1", "--secure-port", str(port),
                "--v", "1",
            ]

        self._launch("kube-scheduler", args, lambda: healthy(self.ports["kube-scheduler"]), 120)

    def _start_kwok(self) -> None:
        config = self._component_kubeconfig("kwok", "realcluster-kwok", "system:masters")

        def args():
            port = self.ports["kwok"] = free_port()
            return [
                "--kubeconfig", str(config),
                "--config", str(HERE / "stages.yaml"),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
                "--cidr", "10.244.0.0/16", "--node-ip", "10.0.0.1",
                "--server-address", f"127.0.0.1:{port}",
            ]

        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['kwok']}/healthz", timeout=2) as r:
                return r.status == 200

        self._launch("kwok", args, ready, 60)

    def _create_nodes(self, nodes_file: Path) -> None:
        docs = [d for d in _yaml_docs(nodes_file.read_text()) if d]
        for node in docs:
            node.setdefault("metadata", {}).setdefault("annotations", {})["kwok.x-k8s.io/node"] = "fake"
            node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = "0"
            # The simulator's nodeInfo is partial; a kubelet reports every
            # field, and the API server's schema requires them all.
            node.get("status", {}).pop("nodeInfo", None)
        self.node_count = len(docs)
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        self.kubectl("create", "-f", "-", input=body)

    def _nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False, timeout=10)
        if out.returncode != 0:
            return False
        items = json.loads(out.stdout)["items"]
        ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n.get("status", {}).get("conditions", []))]
        return len(items) == self.node_count and len(ready) == self.node_count

    def _default_namespace_ready(self) -> bool:
        out = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False, timeout=10)
        return out.returncode == 0

    # ------------------------------------------------------------ using it
    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60):
        return run(["kubectl", "--kubeconfig", self.kubeconfig, *args], check=check, input=input, timeout=timeout)

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Until the CRD's Established condition is True (`kubectl wait`
        fails outright while the CRD has no conditions yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.kubectl("get", "crd", crd, "-o", "json", check=False)
            if out.returncode == 0 and any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in json.loads(out.stdout).get("status", {}).get("conditions") or []
            ):
                return
            time.sleep(0.3)
        raise RuntimeError(f"CRD {crd} was not Established within {timeout:.0f} s")

    def service_account_kubeconfig(self, namespace: str, name: str, path: str | Path, hours: int = 6) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount by a token
        from the TokenRequest API (no admin certificate in it)."""
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={hours}h").stdout.strip()
        path = Path(path)
        path.write_text(kubeconfig_text(self.server, self.pki.ca_crt, {"token": token}))
        return path

    def status(self) -> dict[str, str]:
        return {n: ("running" if p.poll() is None else f"exited {p.returncode}") for n, p in self.procs.items()}

    # --------------------------------------------------------------- down
    def down(self, keep: bool = False) -> None:
        """Ends every process (SIGTERM, then SIGKILL after five seconds)
        and removes the folder unless `keep`."""
        stop_all([p.pid for p in reversed(list(self.procs.values()))])
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        self._restore_signals()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _yaml_docs(text: str):
    try:
        import yaml

        return list(yaml.safe_load_all(text))
    except ImportError:  # kubectl converts when PyYAML is not there
        out = run(["kubectl", "create", "--dry-run=client", "-o", "json", "-f", "-"], input=text)
        data = json.loads(out.stdout)
        return data.get("items", [data])


def down_dir(folder: Path, keep: bool) -> int:
    """Ends the processes listed in DIR/pids (an `up` from another shell)."""
    if not (folder / "pids").exists():
        print(f"nothing to stop: no {folder / 'pids'}", file=sys.stderr)
        return 1
    procs = listed(folder)
    running = [(pid, name) for pid, name, up in reversed(procs) if up]
    stop_all([pid for pid, _ in running])
    for pid, name in running:
        print(f"stopped {name} ({pid})" if not alive(pid) else f"could not stop {name} ({pid})")
    left = [pid for pid, _ in running if alive(pid)]
    if not keep and not left:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if left else 0


def status(folder: Path) -> int:
    procs = listed(folder)
    if not procs:
        print(f"no control plane in {folder}")
        return 1
    for pid, name, up in procs:
        print(f"{name}: {'running' if up else 'gone'} ({pid})")
    kubeconfig = folder / "admin.kubeconfig"
    ready = kubeconfig.exists() and run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                                        check=False, timeout=10).returncode == 0
    print(f"kube-apiserver /readyz: {'ok' if ready else 'not ready'}")
    latest = {name: up for _, name, up in procs}  # a component started again counts by its last PID
    return 0 if ready and all(latest.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--dir")
    p_up.add_argument("--nodes", help="a YAML file of Node objects (default: nodes.yaml beside this script)")
    for name in ("down", "status", "env"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        if name == "down":
            p.add_argument("--keep", action="store_true")
    sub.add_parser("smoke", help="run test_smoke.py: up, check, down")
    args = parser.parse_args()
    if args.cmd == "smoke":
        import test_smoke

        return test_smoke.main()
    if args.cmd == "up":
        try:
            cp = ControlPlane.up(args.dir, nodes_file=Path(args.nodes) if args.nodes else None)
        except StartError as e:
            print(f"realcluster: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("realcluster: interrupted; what was started is stopped", file=sys.stderr)
            return 130
        # The processes outlive this command; `down --dir` ends them.
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"# dir: {cp.dir}; logs: {cp.logs}; stop with: python3 {__file__} down --dir {cp.dir}")
        return 0
    folder = Path(args.dir)
    if args.cmd == "down":
        return down_dir(folder, args.keep)
    if args.cmd == "env":
        print(f"export KUBECONFIG={folder / 'admin.kubeconfig'}")
        return 0
    return status(folder)

if __name__ == "__main__":
    sys.exit(main())
