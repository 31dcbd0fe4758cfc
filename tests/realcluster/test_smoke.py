#!/usr/bin/env python3
"""The real control plane works: it reports its version, its fake nodes are
Ready, Jobs run to completion and fail with the exit code a pod gave, pods
run as their annotations say, the JobSet CRD of deploy/ is accepted, a
ServiceAccount's token reaches the API server without the admin
certificate, the upstream controller binary runs, and neither `down`, nor
SIGTERM to a `with` block, nor the command line's `down` leaves a process
behind.

    python3 tests/realcluster/test_smoke.py      # ends with `N passed, M failed`
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from cluster import ControlPlane, bin_dir, run  # noqa: E402
from procs import alive, listed  # noqa: E402

RC = "realcluster.jobset.dev/"


def job(name: str, annotations: dict, completions: int = 2, pod_failure_policy: dict | None = None) -> str:
    spec = {
        "completions": completions,
        "parallelism": completions,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.37"}]},
        },
    }
    if pod_failure_policy:
        spec["podFailurePolicy"] = pod_failure_policy
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
                       "spec": spec})


def pods_of(cp: ControlPlane, job_name: str) -> list[dict]:
    out = cp.kubectl("get", "pods", "-l", f"batch.kubernetes.io/job-name={job_name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def wait_condition(cp: ControlPlane, name: str, kind: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    got: dict = {}
    while time.monotonic() < deadline:
        got = json.loads(cp.kubectl("get", "job", name, "-o", "json").stdout)
        for c in got.get("status", {}).get("conditions") or []:
            if c["type"] == kind and c["status"] == "True":
                return got
        time.sleep(0.5)
    raise AssertionError(f"Job {name} has no {kind} condition after {timeout:.0f} s: {json.dumps(got.get('status'))}")


def wait_running(cp: ControlPlane, job_name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = pods_of(cp, job_name)
        if pods and all(p["status"].get("phase") == "Running" for p in pods):
            return
        time.sleep(0.5)
    raise AssertionError(f"the pods of {job_name} never ran")


def wait_gone(cp: ControlPlane, job_name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    left: list[dict] = []
    while time.monotonic() < deadline:
        left = pods_of(cp, job_name)
        if not left:
            return
        time.sleep(0.5)
    raise AssertionError(f"the deleted Job's pods are still there: {[p['status'] for p in left]}")


# ------------------------------------------------------------ on one plane
def test_version_and_nodes(cp: ControlPlane) -> None:
    version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]
    versions = dict(line.split("=", 1) for line in (HERE / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert version["gitVersion"] == versions["K8S_VERSION"], version
    nodes = json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 27, len(nodes)
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
               for n in nodes), [n["metadata"]["name"] for n in nodes]
    tpu = [n for n in nodes if n["metadata"]["labels"].get("cloud.google.com/gke-tpu-topology") == "2x4"]
    assert len(tpu) == 8 and all(n["status"]["allocatable"].get("google.com/tpu") == "4" for n in tpu), tpu[:1]


def test_a_job_completes(cp: ControlPlane) -> None:
    cp.kubectl("create", "-f", "-", input=job("ok", {RC + "duration": "1s"}))
    got = wait_condition(cp, "ok", "Complete")
    assert got["status"]["succeeded"] == 2, got["status"]


def test_a_job_fails_with_its_pods_exit_code(cp: ControlPlane) -> None:
    for code in (1, 3):
        policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [code]}}]}
        cp.kubectl("create", "-f", "-", input=job(f"exit{code}", {RC + "exit-code": str(code), RC + "duration": "1s"},
                                                  completions=1, pod_failure_policy=policy))
    for code in (1, 3):
        got = wait_condition(cp, f"exit{code}", "Failed")
        reasons = [c.get("reason") for c in got["status"]["conditions"] if c["type"] == "Failed"]
        assert reasons == ["PodFailurePolicy"], got["status"]["conditions"]
        statuses = [s for p in pods_of(cp, f"exit{code}") for s in p["status"]["containerStatuses"]]
        states = [s["state"]["terminated"] for s in statuses]
        assert [(s["exitCode"], s["reason"]) for s in states] == [(code, "Error")], states


def test_pods_run_forever_when_told_or_without_annotations(cp: ControlPlane) -> None:
    cp.kubectl("create", "-f", "-", input=job("forever", {RC + "run-forever": "true", RC + "duration": "1s"}))
    cp.kubectl("create", "-f", "-", input=job("plain", {}, completions=1))
    wait_running(cp, "forever")
    wait_running(cp, "plain")
    time.sleep(3)
    phases = [p["status"]["phase"] for name in ("forever", "plain") for p in pods_of(cp, name)]
    assert phases == ["Running"] * 3, phases
    cp.kubectl("delete", "job", "forever", "plain", "--wait=false")
    wait_gone(cp, "forever")
    wait_gone(cp, "plain")


def test_the_jobset_crd_is_accepted(cp: ControlPlane) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(REPO / "deploy" / "crd"))
    cp.wait_established("jobsets.jobset.x-k8s.io")
    served = json.loads(cp.kubectl("get", "--raw", "/apis/jobset.x-k8s.io/v1alpha2").stdout)
    assert any(r["name"] == "jobsets/status" for r in served["resources"]), served


def test_a_service_account_token_works_without_the_admin_certificate(cp: ControlPlane) -> None:
    deploy = REPO / "deploy"
    cp.kubectl("apply", "--server-side", "-f", str(deploy / "namespace.yaml"), "-f", str(deploy / "rbac"))
    path = cp.service_account_kubeconfig("jobset-system", "jobset-controller", cp.dir / "controller.kubeconfig")
    assert "client-key" not in path.read_text()

    def as_sa(*args: str):
        return run(["kubectl", "--kubeconfig", str(path), *args], check=False)

    who = as_sa("auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    user = json.loads(who.stdout)["status"]["userInfo"]["username"]
    assert user == "system:serviceaccount:jobset-system:jobset-controller", user
    assert as_sa("auth", "can-i", "watch", "jobsets.jobset.x-k8s.io").stdout.strip() == "yes"
    assert as_sa("auth", "can-i", "delete", "nodes").stdout.strip() == "no"


def test_the_upstream_controller_binary_runs(cp: ControlPlane) -> None:
    out = run([str(cp.bins / "jobset-upstream"), "--help"], check=False)
    assert "kube-api-qps" in out.stdout + out.stderr, out.stderr[-500:]


# ------------------------------------------------- each on a plane of its own
def test_sigterm_to_a_with_block_stops_its_plane(bins: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="realcluster-sigterm-"))
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from pathlib import Path\n"
        "from cluster import ControlPlane\n"
        f"with ControlPlane.up(dir={str(folder)!r}, bins=Path({str(bins)!r}), quiet=True):\n"
        "    print('up', flush=True)\n"
        "    time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "up", "the plane did not come up"
        pids = [pid for pid, _, up in listed(folder) if up]
        assert len(pids) == 5, listed(folder)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        left = [pid for pid in pids if alive(pid)]
        assert not left, f"still running after SIGTERM: {left}"
        assert not folder.exists(), "the folder was kept"
    finally:
        if child.poll() is None:
            child.kill()


def test_the_command_line_starts_and_stops_a_plane(bins: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="realcluster-cli-"))
    cli = [sys.executable, str(HERE / "cluster.py")]
    env = dict(os.environ)
    up = subprocess.run([*cli, "up", "--dir", str(folder)], capture_output=True, text=True, timeout=300, env=env)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"export KUBECONFIG={folder / 'admin.kubeconfig'}" in up.stdout, up.stdout
        status = subprocess.run([*cli, "status", "--dir", str(folder)], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "kube-apiserver /readyz: ok" in status.stdout, status.stdout + status.stderr
        pids = [pid for pid, _, up in listed(folder) if up]
        assert len(pids) == 5, status.stdout
    finally:
        down = subprocess.run([*cli, "down", "--dir", str(folder)], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [pid for pid in pids if alive(pid)], "processes left after down"
    assert not folder.exists()


def main() -> int:
    bins = bin_dir()
    # The command-line test's `up` takes the same binaries.
    os.environ["JOBSET_REALCLUSTER_BIN_DIR"] = str(bins)
    on_plane = [(n, f) for n, f in globals().items() if n.startswith("test_") and f.__code__.co_varnames[:1] == ("cp",)]
    alone = [(n, f) for n, f in globals().items() if n.startswith("test_") and f.__code__.co_varnames[:1] == ("bins",)]
    passed = failed = 0

    def check(name, fn, arg) -> None:
        nonlocal passed, failed
        start = time.monotonic()
        try:
            fn(arg)
            passed += 1
            print(f"ok     {name} ({time.monotonic() - start:.1f} s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)

    start = time.monotonic()
    try:
        cp = ControlPlane.up(bins=bins)
    except Exception:
        print(f"FAILED the plane is up\n{traceback.format_exc()}")
        print("0 passed, 1 failed")
        return 1
    print(f"ok     the plane is up ({time.monotonic() - start:.1f} s)", flush=True)
    pids = [p.pid for p in cp.procs.values()]
    try:
        for name, fn in on_plane:
            check(name, fn, cp)
    finally:
        cp.down()
    left = [pid for pid in pids if alive(pid)]
    if left:
        failed += 1
        print(f"FAILED nothing_is_left_running: {left}")
    else:
        passed += 1
        print("ok     nothing_is_left_running")
    for name, fn in alone:
        check(name, fn, bins)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
