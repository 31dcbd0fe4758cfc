#!/usr/bin/env python3
"""Migration between the upstream JobSet controller and ours, both ways, on
one real control plane (tests/realcluster).

For each direction, JobSets are started under the first controller and
brought to the states a running cluster has when it is migrated: running,
restarted once, in the middle of a restart (an old Job held by a finalizer
so the restart cannot finish before the switch), suspended, placed
exclusively, and one that will fail. Then the first controller is taken out
as an operator would (its webhook configurations, then its process) and the
second installed (its CRD over the first's, its webhooks, its controller).

What must hold after the switch, before anything else happens: no Job is
deleted or created, `status.restarts` and every condition are as they were.
Then the JobSets go on under the second controller: the held restart
finishes exactly once, the suspended JobSet resumes, a new failure restarts
the restarted JobSet again (its counter goes on from where it was), and
every JobSet reaches the outcome it would have reached without the switch.

    python3 tests/differential/migrate.py [--only upstream-to-ours|ours-to-upstream] [--keep]

Ends with `N passed, M failed`, one line per check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

from diff import REPO, Ours, Upstream, binaries, log  # noqa: E402
from pods import terminated_status  # noqa: E402

JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
HOLD = "migration.jobset.dev/hold"


def jobset(name: str, *, replicas: int = 2, parallelism: int = 1, max_restarts: int = 3,
           suspend: bool = False, exclusive: bool = False) -> dict:
    doc = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": {"maxRestarts": max_restarts},
            "replicatedJobs": [{
                "name": "workers",
                "replicas": replicas,
                "template": {"spec": {
                    "parallelism": parallelism,
                    "completions": parallelism,
                    "backoffLimit": 0,
                    "template": {"spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox:1.37", "command": ["sleep", "1000"]}],
                    }},
                }},
            }],
        },
    }
    if suspend:
        doc["spec"]["suspend"] = True
    if exclusive:
        doc["metadata"]["annotations"] = {"alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}
    return doc


# name -> (manifest, the outcome it must reach: condition type, reason, restarts)
JOBSETS = {
    "running": (jobset("running"), ("Completed", "AllJobsCompleted", 0)),
    "restarted": (jobset("restarted"), ("Completed", "AllJobsCompleted", 2)),
    "midrestart": (jobset("midrestart"), ("Completed", "AllJobsCompleted", 1)),
    "suspended": (jobset("suspended", suspend=True), ("Completed", "AllJobsCompleted", 0)),
    "exclusive": (jobset("exclusive", parallelism=2, exclusive=True), ("Completed", "AllJobsCompleted", 0)),
    "tofail": (jobset("tofail", max_restarts=0), ("Failed", "ReachedMaxRestarts", 0)),
}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(what + (f": {detail}" if detail else ""))
        return ok


class Cluster:
    """kubectl on the shared plane, for one namespace."""

    def __init__(self, kubectl, ns: str):
        self.k = kubectl
        self.ns = ns

    def get(self, kind: str, name: str | None = None, selector: str | None = None) -> dict:
        args = ["get", kind, "-n", self.ns, "-o", "json"]
        if name:
            args.insert(2, name)
        if selector:
            args += ["-l", selector]
        return json.loads(self.k(args).stdout)

    def jobset(self, name: str) -> dict:
        return self.get("jobset", name)

    def jobs(self, name: str) -> list[dict]:
        return self.get("jobs", selector=f"{JOBSET_LABEL}={name}")["items"]

    def pods(self, name: str) -> list[dict]:
        return self.get("pods", selector=f"{JOBSET_LABEL}={name}")["items"]

    def end_pods(self, name: str, code: int, job: str | None = None, only_one: bool = False) -> int:
        """Ends the running pods of a JobSet (of one Job, or one pod only) as
        a kubelet would when their container exits with `code`."""
        ended = 0
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for pod in self.pods(name):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
                continue
            if job and meta.get("labels", {}).get("batch.kubernetes.io/job-name") != job:
                continue
            status = terminated_status(pod, code, None, stamp)
            self.k(["patch", "pod", meta["name"], "-n", self.ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status})])
            ended += 1
            if only_one:
                break
        return ended


def wait(what: str, predicate, timeout: float = 90, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception:  # an object not there yet
            last = None
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def conditions(js: dict) -> list[tuple]:
    return sorted((c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
                  for c in (js.get("status") or {}).get("conditions") or [])


def terminal(js: dict) -> tuple | None:
    for c in (js.get("status") or {}).get("conditions") or []:
        if c["type"] in ("Completed", "Failed") and c["status"] == "True":
            return (c["type"], c.get("reason", ""))
    return None


def live_jobs(c: Cluster, name: str) -> dict[str, str]:
    return {j["metadata"]["name"]: j["metadata"]["uid"] for j in c.jobs(name) if not j["metadata"].get("deletionTimestamp")}


def all_running(c: Cluster, name: str, pods: int) -> bool:
    running = [p for p in c.pods(name) if p.get("status", {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    return len(running) == pods


def prepare(c: Cluster) -> None:
    """Under the first controller: every JobSet in the state it is migrated in."""
    for name, (doc, _) in JOBSETS.items():
        c.k(["create", "-n", c.ns, "-f", "-"], input=yaml.safe_dump(doc))
    for name in ("running", "restarted", "midrestart", "tofail"):
        wait(f"{name}: its two pods running", lambda n=name: all_running(c, n, 2))
    wait("exclusive: its four pods running", lambda: all_running(c, "exclusive", 4), timeout=120)

    # restarted: one failure, one whole restart, the new Jobs running.
    c.end_pods("restarted", 1, job="restarted-workers-0")
    wait("restarted: restarts 1", lambda: (c.jobset("restarted").get("status") or {}).get("restarts") == 1)
    wait("restarted: attempt 1 running", lambda: all_running(c, "restarted", 2) and all(
        j["metadata"]["labels"].get(ATTEMPT_LABEL) == "1" for j in c.jobs("restarted")))

    # midrestart: a finalizer holds one old Job, so the restart is under way
    # when the controller is switched.
    c.k(["patch", "job", "midrestart-workers-1", "-n", c.ns, "--type=merge",
         "-p", json.dumps({"metadata": {"finalizers": [HOLD]}})])
    c.end_pods("midrestart", 1, job="midrestart-workers-0")
    wait("midrestart: restarts 1 and the held Job deleting", lambda: (
        (c.jobset("midrestart").get("status") or {}).get("restarts") == 1
        and any(j["metadata"].get("deletionTimestamp") for j in c.jobs("midrestart"))))


def snapshot(c: Cluster) -> dict:
    out = {}
    for name in JOBSETS:
        js = c.jobset(name)
        out[name] = {
            "jobs": live_jobs(c, name),
            "restarts": (js.get("status") or {}).get("restarts", 0),
            "conditions": conditions(js),
        }
    return out


def compare_after_switch(c: Cluster, before: dict, checks: Checks, label: str) -> None:
    """The second controller has run for a while: nothing it did may show."""
    now = snapshot(c)
    for name in JOBSETS:
        b, a = before[name], now[name]
        if name == "midrestart":
            # The restart may have finished its deletions meanwhile; the
            # held Job cannot have, and no Job of a new attempt may exist yet.
            kept = {n: u for n, u in a["jobs"].items() if n in b["jobs"]}
            checks.check(kept == {n: u for n, u in b["jobs"].items() if n in a["jobs"]},
                         f"{label} {name}: the Jobs still there are the same objects", f"{b['jobs']} -> {a['jobs']}")
        else:
            checks.check(a["jobs"] == b["jobs"], f"{label} {name}: no Job deleted or created",
                         f"{b['jobs']} -> {a['jobs']}")
        checks.check(a["restarts"] == b["restarts"], f"{label} {name}: restarts stay {b['restarts']}",
                     f"now {a['restarts']}")
        checks.check(a["conditions"] == b["conditions"], f"{label} {name}: conditions unchanged",
                     f"{b['conditions']} -> {a['conditions']}")


def go_on(c: Cluster, checks: Checks, label: str) -> None:
    """Under the second controller, to the end."""
    # The held restart finishes, once.
    c.k(["patch", "job", "midrestart-workers-1", "-n", c.ns, "--type=json",
         "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])])
    wait("midrestart: attempt 1 running", lambda: all_running(c, "midrestart", 2) and all(
        j["metadata"]["labels"].get(ATTEMPT_LABEL) == "1" for j in c.jobs("midrestart")) and len(c.jobs("midrestart")) == 2)
    checks.check((c.jobset("midrestart").get("status") or {}).get("restarts") == 1,
                 f"{label} midrestart: the held restart finishes once (restarts 1)",
                 str((c.jobset("midrestart").get("status") or {}).get("restarts")))

    # The suspended JobSet resumes.
    c.k(["patch", "jobset", "suspended", "-n", c.ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'])
    wait("suspended: resumed, its pods running", lambda: all_running(c, "suspended", 2))

    # The restarted JobSet fails again: its counter goes on from 1.
    c.end_pods("restarted", 1, job="restarted-workers-1")
    wait("restarted: restarts 2", lambda: (c.jobset("restarted").get("status") or {}).get("restarts") == 2)
    wait("restarted: attempt 2 running", lambda: all_running(c, "restarted", 2) and all(
        j["metadata"]["labels"].get(ATTEMPT_LABEL) == "2" for j in c.jobs("restarted")))

    # Every JobSet to its end.
    c.end_pods("tofail", 1, only_one=True)
    for name in ("running", "restarted", "midrestart", "suspended", "exclusive"):
        c.end_pods(name, 0)
    for name, (_, (kind, reason, restarts)) in JOBSETS.items():
        try:
            js = wait(f"{name}: finished", lambda n=name: terminal(c.jobset(n)) and c.jobset(n), timeout=60)
        except TimeoutError as e:
            checks.check(False, f"{label} {name}: reaches {kind}", str(e))
            continue
        got = terminal(js)
        checks.check(got == (kind, reason), f"{label} {name}: reaches {kind} ({reason})", str(got))
        checks.check((js.get("status") or {}).get("restarts", 0) == restarts,
                     f"{label} {name}: restarts {restarts} at the end", str((js.get("status") or {}).get("restarts")))


def direction(first, second, ns: str, checks: Checks, label: str) -> None:
    k = first.kubectl
    k(["create", "namespace", ns])
    c = Cluster(k, ns)
    log(f"{label}: preparing under {first.name}")
    prepare(c)
    before = snapshot(c)
    log(f"{label}: switching {first.name} -> {second.name}")
    first.stop_controller()
    second.adopt(first)
    second.install()
    # Long enough for the new controller to list every JobSet, compile its
    # plugins and reconcile each more than once.
    time.sleep(20)
    compare_after_switch(c, before, checks, label)
    log(f"{label}: going on under {second.name}")
    go_on(c, checks, label)
    for b in (first, second):
        for p in b.problems():
            checks.check(False, f"{label} {b.name}: no backend problem", p)
    k(["delete", "namespace", ns, "--wait=false"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["upstream-to-ours", "ours-to-upstream"])
    parser.add_argument("--jobset", default=str(REPO / "target" / "debug" / "jobset"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    started = time.monotonic()
    jobset_bin, bin_dir = binaries(args.jobset)
    work = Path(tempfile.mkdtemp(prefix="jobset-migrate-"))
    log(f"work folder {work}")
    checks = Checks()
    plans = [("upstream-to-ours", Upstream, Ours), ("ours-to-upstream", Ours, Upstream)]
    for label, first_kind, second_kind in plans:
        if args.only and args.only != label:
            continue
        first = first_kind(work / label / first_kind.name, bin_dir, jobset_bin)
        second = second_kind(work / label / second_kind.name, bin_dir, jobset_bin)
        first.work.mkdir(parents=True)
        second.work.mkdir(parents=True)
        try:
            first.setup()
            print(f"\n== {label}", flush=True)
            direction(first, second, f"migrate-{label}", checks, label)
        except Exception as e:
            traceback.print_exc()
            checks.check(False, f"{label}: runs to the end", str(e))
            for b in (first, second):
                if b.controller_log:
                    print(f"--- last lines of {b.controller_log}")
                    print("\n".join(b.controller_log.read_text(errors="replace").splitlines()[-15:]))
        finally:
            if second.plane:
                second.stop_controller()
            first.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"logs kept in {work}")
    print(f"\nmigration: {time.monotonic() - started:.0f} s")
    print(f"{checks.passed} passed, {len(checks.failed)} failed")
    return 0 if not checks.failed else 1


if __name__ == "__main__":
    sys.exit(main())
