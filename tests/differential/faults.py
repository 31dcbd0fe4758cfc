#!/usr/bin/env python3
"""Our controller killed and restarted on a real control plane.

JobSets whose first attempt fails (one pod of each Job exits 1, and the
Jobs allow no pod failure) run on kube-apiserver, etcd, the Job
controller, the scheduler and kwok nodes (tests/realcluster), under our
controller deployed as `deploy/` deploys it. Meanwhile the controller is
killed with SIGKILL at random moments and started again. At the end every
JobSet must have reached what its failure policy dictates, exactly once:
Completed, one restart counted, and each Job name created once per
attempt (a restart lost, counted twice, or a Job created twice would all
show).

    python3 tests/differential/faults.py [--jobsets 20] [--kills 5] [--seed 1]
    python3 tests/differential/faults.py --failover
    python3 tests/differential/faults.py --apiserver-restart

With `--apiserver-restart`, kube-apiserver is killed instead, twice, and
started again on the same port a few seconds later (etcd keeps the data):
the controller's watches recover and the JobSets end as above.

With `--failover`, two replicas run with leader election on a real Lease
instead; the leader is SIGKILLed once, and the standby must take the Lease
within the lease duration (15 s) plus its retry period and finish every
JobSet as above.

Prints the kill times and a line per JobSet that ended wrong, then
`faults: N JobSets, K kills, M wrong, S s`; exits 1 when any ended wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

from diff import REPO, Ours, binaries, log  # noqa: E402
from observe import Observer  # noqa: E402
from pods import PodScript  # noqa: E402
from scenarios import MINIMUM, SCALE  # noqa: E402

NAMESPACE = "faults"
# One minute here is two seconds: the first attempt's pod 0 of every Job
# fails after 4 s; every other pod runs 10 s and succeeds.
PODS = {
    "defaultDuration": "5m",
    "rules": [{"match": {"replicatedJob": "w", "podIndex": 0, "attempt": 0}, "duration": "2m", "exitCode": 1}],
}


def jobset(i: int) -> dict:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": f"f{i}", "namespace": NAMESPACE},
        "spec": {
            "failurePolicy": {"maxRestarts": 3},
            "replicatedJobs": [{
                "name": "w",
                "replicas": 2,
                "template": {"spec": {
                    "parallelism": 2, "completions": 2, "backoffLimit": 0,
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "main", "image": "busybox"}]}},
                }},
            }],
        },
    }


def kill_controller(backend: Ours) -> None:
    """SIGKILL, as a node loss or an OOM kill ends the process: no shutdown."""
    for p in backend.procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    for p in backend.procs:
        p.wait()
    backend.procs.clear()


def lease_holder(k) -> str:
    out = k(["get", "lease", "jobset-controller-leader", "-n", "jobset-system", "-o",
             "jsonpath={.spec.holderIdentity}"], check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def failover(backend: Ours, observer: Observer, rng: random.Random) -> list[str]:
    """Two replicas; the leader is killed a few seconds in. What went wrong."""
    kill_controller(backend)
    replicas = {}
    for i, name in enumerate(("replica-a", "replica-b")):
        replicas[name] = backend.start_controller(
            name, ("--leader-elect", "--lease-namespace", "jobset-system"), {"POD_NAME": name}, webhooks=i == 0)
    k = backend.kubectl
    deadline = time.monotonic() + 60
    while not lease_holder(k) and time.monotonic() < deadline:
        observer.poll()
        time.sleep(0.2)
    first = lease_holder(k)
    if not first:
        return ["no replica took the Lease within 60 s"]
    at = rng.uniform(2.0, 8.0)
    until = time.monotonic() + at
    while time.monotonic() < until:
        # Every Job the leader makes is seen before it can go.
        observer.poll()
        time.sleep(0.2)
    leader = first.split("_")[0]
    proc = replicas[leader]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    log(f"{first} leads; killed it {at:.1f} s in")
    took = None
    while time.monotonic() - killed < 60:
        observer.poll()
        holder = lease_holder(k)
        if holder and holder != first:
            took = time.monotonic() - killed
            log(f"{holder} took the Lease {took:.1f} s after the kill")
            break
        time.sleep(0.2)
    if took is None:
        return ["the standby did not take the Lease within 60 s of the kill"]
    if took > 15 + 5:
        return [f"the standby took the Lease {took:.1f} s after the kill, past the 15 s lease and its retry"]
    return []


class JobWatch(threading.Thread):
    """The UID of every Job created in the namespace, from a watch, so that
    a Job created and deleted between two of the observer's polls (a
    restart while the poller waits on a restarting controller) is counted
    too. The watch is started again when it ends (kube-apiserver
    restarts); a relist after that reports what exists."""

    def __init__(self, kubeconfig: str, namespace: str):
        super().__init__(daemon=True, name="job-watch")
        self.command = ["kubectl", "--kubeconfig", kubeconfig, "get", "jobs", "-n", namespace,
                        "--watch", "-o", "json"]
        self.seen: dict[str, set[str]] = {}
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def run(self) -> None:
        decoder = json.JSONDecoder()
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            buf = ""
            while True:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    break
                buf += data.decode(errors="replace")
                while True:
                    buf = buf.lstrip()
                    try:
                        obj, end = decoder.raw_decode(buf)
                    except json.JSONDecodeError:
                        break
                    buf = buf[end:]
                    meta = obj.get("metadata") or {}
                    if meta.get("name") and meta.get("uid"):
                        with self.lock:
                            self.seen.setdefault(meta["name"], set()).add(meta["uid"])
            self.proc.wait()
            self.stopping.wait(0.5)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def merge_into(self, observer: Observer) -> None:
        with self.lock:
            for name, uids in self.seen.items():
                observer.jobs_seen.setdefault(name, set()).update(uids)


def wrong_endings(observer: Observer, n: int) -> list[str]:
    observer.poll()
    jobsets = {js["metadata"]["name"]: js for js in observer.get("jobsets.jobset.x-k8s.io")}
    wrong = []
    for i in range(n):
        name = f"f{i}"
        js = jobsets.get(name)
        if js is None:
            wrong.append(f"{name}: gone")
            continue
        status = js.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Completed" not in conditions:
            wrong.append(f"{name}: not Completed ({sorted(conditions)}, terminalState {status.get('terminalState')!r})")
        if status.get("restarts", 0) != 1 or status.get("restartsCountTowardsMax", 0) != 1:
            wrong.append(f"{name}: restarts {status.get('restarts', 0)}, counted {status.get('restartsCountTowardsMax', 0)}; want 1 and 1")
        for job in (f"{name}-w-0", f"{name}-w-1"):
            created = len(observer.jobs_seen.get(job, ()))
            if created != 2:
                wrong.append(f"{name}: Job {job} created {created} times; want 2 (one per attempt)")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobsets", type=int, default=20)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--failover", action="store_true", help="two replicas, the leader killed once")
    parser.add_argument("--apiserver-restart", action="store_true", help="kube-apiserver killed and restarted twice")
    parser.add_argument("--jobset", default=str(REPO / "target" / "debug" / "jobset"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()

    started = time.monotonic()
    rng = random.Random(args.seed)
    jobset_bin, bin_dir = binaries(args.jobset)
    work = Path(tempfile.mkdtemp(prefix="jobset-faults-"))
    backend = Ours(work, bin_dir, jobset_bin)
    try:
        backend.setup()
        k = backend.kubectl
        k(["create", "namespace", NAMESPACE])
        backend.driver.register(NAMESPACE, PodScript.from_scenario(PODS, SCALE, MINIMUM))
        observer = Observer(k, NAMESPACE)
        watch = JobWatch(backend.plane.kubeconfig, NAMESPACE)
        watch.start()
        body = "\n---\n".join(yaml.safe_dump(jobset(i)) for i in range(args.jobsets))
        k(["create", "-f", "-"], input=body)
        t0 = time.monotonic()
        early: list[str] = []
        if args.failover:
            early = failover(backend, observer, rng)
        elif args.apiserver_restart:
            for at in sorted(rng.uniform(1.0, 14.0) for _ in range(2)):
                while time.monotonic() - t0 < at:
                    observer.poll()
                    time.sleep(0.2)
                killed = time.time()
                down = backend.plane.restart_apiserver(down_for=rng.uniform(1.0, 4.0))
                backend.apiserver_restarts.append((killed, time.time()))
                log(f"kube-apiserver restarted at {at:.1f} s, down {down:.1f} s")
        else:
            # The first attempt fails after about 4 s, the second ends about
            # 10 s later: kill within the first 20 s, where every step happens.
            kills = sorted(rng.uniform(0.5, 20.0) for _ in range(args.kills))
            log(f"killing the controller at {', '.join(f'{t:.1f}' for t in kills)} s")
            for at in kills:
                while time.monotonic() - t0 < at:
                    observer.poll()
                    time.sleep(0.2)
                kill_controller(backend)
                observer.poll()
                backend.start_controller()
        # 240 s for the 20 JobSets of CI; a larger run gets 3 s more per
        # JobSet (the plane creates and runs two attempts of 2 Jobs each).
        wait_s = 240 + 3 * max(0, args.jobsets - 20)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            observer.poll()
            done = observer.get("jobsets.jobset.x-k8s.io")
            if len(done) == args.jobsets and all((js.get("status") or {}).get("terminalState") for js in done):
                break
            time.sleep(0.5)
        else:
            ended = sum(1 for js in observer.get("jobsets.jobset.x-k8s.io")
                        if (js.get("status") or {}).get("terminalState"))
            log(f"{ended} of {args.jobsets} JobSets had ended when the {wait_s} s wait ran out")
        time.sleep(2)
        watch.stop()
        watch.merge_into(observer)
        wrong = early + wrong_endings(observer, args.jobsets)
        wrong += [f"backend: {p}" for p in backend.problems()]
    finally:
        backend.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for w in wrong:
        print(w)
    what = "failover" if args.failover else "apiserver restarts" if args.apiserver_restart else f"{args.kills} kills"
    print(f"faults: {args.jobsets} JobSets, {what}, {len(wrong)} wrong, {time.monotonic() - started:.0f} s")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
