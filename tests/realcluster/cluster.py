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

From Python: `with ControlPlane.up() as cp: cp.kubectl("get", "nodes")`.
The binaries come from build.sh (built on first use, cached after).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, check=True, input=None, timeout=120, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, cmd))}` failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out


def bin_dir() -> Path:
    """The cached binaries, built by build.sh when missing."""
    out = subprocess.run(["bash", str(HERE / "build.sh"), "--print-bin-dir"], stdout=subprocess.PIPE, text=True,
                         timeout=7200)
    if out.returncode != 0:
        raise StartError("tests/realcluster/build.sh failed (its output above names the component)")
    return Path(out.stdout.strip().splitlines()[-1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Pki:
    """A CA, the API server's serving certificate, client certificates and
    the service-account signing key, made with openssl."""

    def __init__(self, folder: Path):
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca_crt = folder / "ca.key", folder / "ca.crt"
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=realcluster-ca",
                      "-keyout", self.ca_key, "-out", self.ca_crt)
        self.sa_key, self.sa_pub = folder / "sa.key", folder / "sa.pub"
        self._openssl("genrsa", "-out", self.sa_key, "2048")
        self._openssl("rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub)

    def _openssl(self, *args):
        run(["openssl", *map(str, args)])

    def issue(self, name: str, subject: str, ext: str) -> tuple[Path, Path]:
        key, csr, crt = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.crt"
        extfile = self.dir / f"{name}.ext"
        extfile.write_text(ext)
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", key, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-days", "7", "-extfile", extfile, "-out", crt)
        return crt, key

    def serving(self) -> tuple[Path, Path]:
        return self.issue(
            "apiserver", "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
        )

    def client(self, name: str, cn: str, org: str | None = None) -> tuple[Path, Path]:
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        return self.issue(name, subject, "extendedKeyUsage=clientAuth\n")


def kubeconfig_text(server: str, ca: Path, user: dict) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "realcluster", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "realcluster", "context": {"cluster": "realcluster", "user": "user"}}],
        "current-context": "realcluster",
    }
    return json.dumps(doc, indent=1)


def cert_user(crt: Path, key: Path) -> dict:
    return {
        "client-certificate-data": base64.b64encode(crt.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }


class ControlPlane:
    """One running control plane; `down()` (or leaving the `with` block,
    however it is left) ends every process it started."""

    def __init__(self, folder: Path, bins: Path):
        self.dir = folder
        self.bins = bins
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.kubeconfig = str(folder / "admin.kubeconfig")
        self.server = ""
        self.timings: dict[str, float] = {}

    # ---------------------------------------------------------------- up
    @classmethod
    def up(cls, dir: str | None = None, bins: Path | None = None, nodes_file: Path | None = None,
           quiet: bool = False) -> "ControlPlane":
        folder = Path(dir) if dir else Path(tempfile.mkdtemp(prefix="realcluster-"))
        folder.mkdir(parents=True, exist_ok=True)
        cp = cls(folder, bins or bin_dir())
        try:
            cp._start(nodes_file or HERE / "nodes.yaml", quiet)
        except BaseException:
            cp.down(keep=True)
            raise
        return cp

    def __enter__(self) -> "ControlPlane":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen([str(self.bins / name.split("#")[0]), *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        with open(self.dir / "pids", "a") as f:
            f.write(f"{proc.pid} {name}\n")
        return proc

    def _wait(self, name: str, ready, timeout: float) -> None:
        start = time.monotonic()
        deadline = start + timeout
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartError(f"{name} exited with code {proc.returncode}; the end of its log "
                                 f"({self.logs / (name + '.log')}):\n{tail(self.logs / (name + '.log'))}")
            try:
                if ready():
                    self.timings[name] = time.monotonic() - start
                    return
            except (OSError, subprocess.SubprocessError, RuntimeError):
                pass
            time.sleep(0.25)
        raise StartError(f"{name} was not ready within {timeout:.0f} s; the end of its log "
                         f"({self.logs / (name + '.log')}):\n{tail(self.logs / (name + '.log'))}")

    def _start(self, nodes_file: Path, quiet: bool) -> None:
        say = (lambda *_: None) if quiet else (lambda m: print(f"realcluster: {m}", file=sys.stderr, flush=True))
        t0 = time.monotonic()
        pki = Pki(self.dir / "pki")
        self.pki = pki

        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        self._spawn("etcd", [
            "--name", "realcluster", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"realcluster=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn", "--quota-backend-bytes", str(4 << 30),
        ])
        self._wait("etcd", lambda: socket.create_connection(("127.0.0.1", client_port), timeout=1).close() is None, 60)
        say(f"etcd on {etcd_url}")

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        crt, key = pki.serving()
        self._spawn("kube-apiserver", [
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(port),
            "--tls-cert-file", str(crt), "--tls-private-key-file", str(key),
            "--client-ca-file", str(pki.ca_crt),
            "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(pki.sa_pub),
            "--service-account-signing-key-file", str(pki.sa_key),
            "--endpoint-reconciler-type", "none",
            "--service-cluster-ip-range", "10.96.0.0/16",
            # Pods of a new namespace must not wait for its default
            # ServiceAccount (nothing here mounts its token), and new nodes
            # must not carry the not-ready taint that only the node
            # lifecycle controller, which fake nodes do not need, removes.
            "--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
            "--allow-privileged=true",
            "--profiling=false",
            "--v", "1",
        ])
        admin_crt, admin_key = pki.client("admin", "realcluster-admin", "system:masters")
        Path(self.kubeconfig).write_text(kubeconfig_text(self.server, pki.ca_crt, cert_user(admin_crt, admin_key)))
        self._wait("kube-apiserver", lambda: self.kubectl("get", "--raw", "/readyz", check=False, timeout=5).returncode == 0,
                   180)
        say(f"kube-apiserver on {self.server}")

        kcm_crt, kcm_key = pki.client("kcm", "system:kube-controller-manager")
        kcm_config = self.dir / "kcm.kubeconfig"
        kcm_config.write_text(kubeconfig_text(self.server, pki.ca_crt, cert_user(kcm_crt, kcm_key)))
        self._spawn("kube-controller-manager", [
            "--kubeconfig", str(kcm_config),
            "--authentication-kubeconfig", str(kcm_config), "--authorization-kubeconfig", str(kcm_config),
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--controllers", ",".join(KCM_CONTROLLERS),
            "--service-account-private-key-file", str(pki.sa_key),
            "--root-ca-file", str(pki.ca_crt),
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            # The defaults (20/30) would make the Job controller the
            # bottleneck of any comparison.
            "--kube-api-qps", "500", "--kube-api-burst", "1000",
            "--concurrent-job-syncs", "20", "--concurrent-gc-syncs", "20",
            "--v", "1",
        ])

        sched_crt, sched_key = pki.client("scheduler", "system:kube-scheduler")
        sched_kubeconfig = self.dir / "scheduler.kubeconfig"
        sched_kubeconfig.write_text(kubeconfig_text(self.server, pki.ca_crt, cert_user(sched_crt, sched_key)))
        sched_config = self.dir / "scheduler.yaml"
        sched_config.write_text(json.dumps({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(sched_kubeconfig), "qps": 500, "burst": 1000},
            "leaderElection": {"leaderElect": False},
        }))
        self._spawn("kube-scheduler", [
            "--config", str(sched_config),
            "--authentication-kubeconfig", str(sched_kubeconfig), "--authorization-kubeconfig", str(sched_kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--v", "1",
        ])

        kwok_crt, kwok_key = pki.client("kwok", "realcluster-kwok", "system:masters")
        kwok_config = self.dir / "kwok.kubeconfig"
        kwok_config.write_text(kubeconfig_text(self.server, pki.ca_crt, cert_user(kwok_crt, kwok_key)))
        self._spawn("kwok", [
            "--kubeconfig", str(kwok_config),
            "--config", str(HERE / "stages.yaml"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--cidr", "10.244.0.0/16", "--node-ip", "10.0.0.1",
            "--server-address", f"127.0.0.1:{free_port()}",
        ])

        self._create_nodes(nodes_file)
        self._wait("kwok", self._nodes_ready, 120)
        self._wait("kube-controller-manager", lambda: self._default_namespace_ready(), 120)
        self._wait("kube-scheduler", lambda: self.procs["kube-scheduler"].poll() is None and
                   "Serving securely" in (self.logs / "kube-scheduler.log").read_text(errors="replace"), 60)
        self.timings["total"] = time.monotonic() - t0
        say(f"ready in {self.timings['total']:.1f} s: {self.node_count} nodes; kubeconfig {self.kubeconfig}; "
            f"logs in {self.logs}")

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
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False, timeout=10).returncode == 0

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
        for name, proc in reversed(list(self.procs.items())):
            _stop(proc.pid)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _kill(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(pid: int) -> None:
    """SIGTERM, then SIGKILL after five seconds."""
    _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    _kill(pid, signal.SIGKILL)


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
    pids = folder / "pids"
    if not pids.exists():
        print(f"nothing to stop: no {pids}", file=sys.stderr)
        return 1
    for line in reversed(pids.read_text().splitlines()):
        pid, name = line.split(" ", 1)
        _stop(int(pid))
        print(f"stopped {name} ({pid})")
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


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
    args = parser.parse_args()
    if args.cmd == "up":
        try:
            cp = ControlPlane.up(args.dir, nodes_file=Path(args.nodes) if args.nodes else None)
        except StartError as e:
            print(f"realcluster: {e}", file=sys.stderr)
            return 1
        # The processes outlive this command; `down --dir` ends them.
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"# logs: {cp.logs}; stop with: python3 {__file__} down --dir {cp.dir}")
        return 0
    folder = Path(args.dir)
    if args.cmd == "down":
        return down_dir(folder, args.keep)
    if args.cmd == "env":
        print(f"export KUBECONFIG={folder / 'admin.kubeconfig'}")
        return 0
    for line in (folder / "pids").read_text().splitlines():
        pid, name = line.split(" ", 1)
        try:
            os.kill(int(pid), 0)
            state = "running"
        except ProcessLookupError:
            state = "gone"
        print(f"{name}: {state} ({pid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
