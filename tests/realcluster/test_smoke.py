#!/usr/bin/env python3
"""The real control plane works: it reports its version, its fake nodes are
Ready, Jobs run to completion and fail with the exit code a pod gave, the
JobSet CRD of deploy/ is accepted, the upstream controller binary runs, and
`down` leaves no process behind.

    python3 tests/realcluster/test_smoke.py      # ends with `N passed, M failed`
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from cluster import ControlPlane, bin_dir, run  # noqa: E402


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


def wait_condition(cp: ControlPlane, name: str, kind: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = json.loads(cp.kubectl("get", "job", name, "-o", "json").stdout)
        for c in got.get("status", {}).get("conditions") or []:
            if c["type"] == kind and c["status"] == "True":
                return got
        time.sleep(0.5)
    raise AssertionError(f"Job {name} has no {kind} condition after {timeout:.0f} s: {json.dumps(got.get('status'))}")


def test_version_and_nodes(cp: ControlPlane) -> None:
    version = json.loads(cp.kubectl("get", "--raw", "/version").stdout)
    versions = dict(line.split("=", 1) for line in (HERE / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert version["gitVersion"] == versions["K8S_VERSION"], version
    nodes = json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 27, len(nodes)
    tpu = [n for n in nodes if n["metadata"]["labels"].get("cloud.google.com/gke-tpu-topology") == "2x4"]
    assert len(tpu) == 8 and all(n["status"]["allocatable"].get("google.com/tpu") == "4" for n in tpu), tpu[:1]


def test_a_job_completes(cp: ControlPlane) -> None:
    cp.kubectl("create", "-f", "-", input=job("ok", {"realcluster.jobset.dev/exit-code": "0",
                                                     "realcluster.jobset.dev/duration": "1s"}))
    got = wait_condition(cp, "ok", "Complete")
    assert got["status"]["succeeded"] == 2, got["status"]


def test_a_job_fails_with_its_pods_exit_code(cp: ControlPlane) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}
    cp.kubectl("create", "-f", "-", input=job("exit3", {"realcluster.jobset.dev/exit-code": "3",
                                                        "realcluster.jobset.dev/duration": "1s"},
                                              completions=1, pod_failure_policy=policy))
    got = wait_condition(cp, "exit3", "Failed")
    reasons = [c.get("reason") for c in got["status"]["conditions"] if c["type"] == "Failed"]
    assert reasons == ["PodFailurePolicy"], got["status"]["conditions"]
    pods = json.loads(cp.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=exit3", "-o", "json").stdout)
    codes = [s["state"]["terminated"]["exitCode"] for p in pods["items"] for s in p["status"]["containerStatuses"]]
    assert codes == [3], codes


def test_pods_without_an_exit_code_run_until_deleted(cp: ControlPlane) -> None:
    cp.kubectl("create", "-f", "-", input=job("forever", {}, completions=1))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = json.loads(cp.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=forever", "-o", "json").stdout)
        if pods["items"] and pods["items"][0]["status"].get("phase") == "Running":
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the pod never ran")
    time.sleep(3)
    phase = json.loads(cp.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=forever", "-o", "json").stdout)[
        "items"][0]["status"]["phase"]
    assert phase == "Running", phase
    cp.kubectl("delete", "job", "forever", "--wait=false")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = json.loads(cp.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=forever", "-o", "json").stdout)
        if not left["items"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the deleted Job's pod is still there: {left['items'][0]['status']}")


def test_the_jobset_crd_is_accepted(cp: ControlPlane) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(REPO / "deploy" / "crd"))
    cp.wait_established("jobsets.jobset.x-k8s.io")
    served = json.loads(cp.kubectl("get", "--raw", "/apis/jobset.x-k8s.io/v1alpha2").stdout)
    assert any(r["name"] == "jobsets/status" for r in served["resources"]), served


def test_the_upstream_controller_binary_runs(cp: ControlPlane) -> None:
    out = run([str(cp.bins / "jobset-upstream"), "--help"], check=False)
    assert "kube-api-qps" in out.stdout + out.stderr, out.stderr[-500:]


def main() -> int:
    bins = bin_dir()
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    cp = ControlPlane.up(bins=bins)
    pids = [p.pid for p in cp.procs.values()]
    try:
        for name, fn in tests:
            try:
                fn(cp)
                passed += 1
                print(f"ok     {name}")
            except Exception:
                failed += 1
                print(f"FAILED {name}\n{traceback.format_exc()}")
    finally:
        cp.down()
    left = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            left.append(pid)
        except ProcessLookupError:
            pass
    if left:
        failed += 1
        print(f"FAILED nothing_is_left_running: {left}")
    else:
        passed += 1
        print("ok     nothing_is_left_running")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
