"""The upstream JobSet controller and ours side by side on the real control
plane: the same workloads, one controller at a time on a fresh plane,
alternating which goes first, over several rounds.

    python3 tests/differential/bench.py [--rounds 3] [--sizes 25,100,300]
        [--restart-jobs 100] [--exclusive 12x6] [--only scale,restart,exclusive]

Phases (each on a plane of its own, per controller and round):

- scale: JobSets of 8 Jobs x 4 pods that kwok keeps Running, created in
  growing steps (--sizes, cumulative totals). Per step: seconds from the
  first create until every Job exists and until every pod is Running (Jobs
  per second), the controller's peak and settled RSS (VmHWM, VmRSS 20 s
  after the step), its CPU seconds per 1,000 Jobs created, and the API
  server's request counts for JobSets, Jobs, Services, Events and Pods.
- restart: one JobSet of --restart-jobs Jobs of one pod; once every pod
  runs, one pod fails (its Job has backoffLimit 0): seconds from that
  failure until every Job of the next attempt exists.
- exclusive: N JobSets with exclusive-topology over M node pools (N > M,
  so some wait), two Jobs of four pods each, every pod ending after 4 s:
  seconds until every JobSet completes, pods created, Job FailedCreate
  events (upstream's webhook refuses followers until their leader is
  placed), and whether two JobSets ever had running pods in one pool.

Prints a line per measurement as it goes and a table of medians, ranges
and ours/upstream ratios at the end. The controllers run with their
deployed defaults: upstream's client at 500 QPS, burst 500 (its
configuration's defaults); ours with no client-side rate limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402
from diff import REPO, Ours, Upstream, binaries, log  # noqa: E402
from pods import PodDriver, PodScript, terminated_status  # noqa: E402

NS = "bench"
POOL_LABEL = "cloud.google.com/gke-nodepool"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
TICK = 1.0


# ------------------------------------------------------------------ plane


def nodes_file(folder: Path, pools: int, per_pool: int, pods_per_node: int) -> Path:
    """`pools` node pools of `per_pool` kwok nodes, each taking
    `pods_per_node` pods."""
    template = next(d for d in yaml.safe_load_all((REPO / "tests" / "realcluster" / "nodes.yaml").read_text()) if d)
    docs = []
    for p in range(pools):
        for n in range(per_pool):
            node = json.loads(json.dumps(template))
            name = f"bench-{p}-n{n}"
            labels = node["metadata"]["labels"]
            for key in list(labels):
                if "tpu" in key:
                    del labels[key]
            labels.update({POOL_LABEL: f"bench-{p}", "cloud.google.com/gce-topology-subblock": f"bench-{p}",
                           "kubernetes.io/hostname": name})
            node["metadata"]["name"] = name
            node["spec"] = {"providerID": f"sim://bench/{name}"}
            for part in ("allocatable", "capacity"):
                node["status"][part] = {"cpu": "64", "memory": "256Gi", "ephemeral-storage": "100Gi",
                                        "pods": str(pods_per_node)}
            node["status"]["addresses"] = [{"address": name, "type": "Hostname"}]
            docs.append(node)
    path = folder / "bench-nodes.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


class Api:
    """Reads of the plane's API server with its admin certificate, without
    kubectl's cost: counts and metadata-only lists."""

    META = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

    def __init__(self, plane):
        self.server = plane.server
        self.ctx = ssl.create_default_context(cafile=str(plane.pki.ca_crt))
        crt, key = plane._admin_cert
        self.ctx.load_cert_chain(str(crt), str(key))

    def get(self, path: str, accept: str = "application/json", timeout: float = 60) -> bytes:
        req = urllib.request.Request(self.server + path, headers={"Accept": accept})
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
            return r.read()

    def count(self, path: str) -> int:
        """How many objects a list holds (no selector: the API server
        counts the rest for us)."""
        body = json.loads(self.get(path + ("&" if "?" in path else "?") + "limit=1", self.META))
        return len(body.get("items") or []) + int(body["metadata"].get("remainingItemCount") or 0)

    def metadata(self, path: str) -> list[dict]:
        return json.loads(self.get(path, self.META)).get("items") or []

    def requests(self) -> dict[str, float]:
        """apiserver_request_total summed by resource and verb."""
        out: dict[str, float] = {}
        for line in self.get("/metrics", "text/plain").decode().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("resource") not in ("jobsets", "jobs", "services", "events", "pods"):
                continue
            key = f"{labels['resource']} {labels.get('verb', '').lower()}"
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return out


class Process:
    """A controller process's memory and CPU, from /proc."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kib = 0

    def status(self, field: str) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) if m else 0

    def sample(self) -> int:
        rss = self.status("VmRSS")
        self.peak_kib = max(self.peak_kib, rss, self.status("VmHWM"))
        return rss

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def controller_process(backend) -> Process:
    for p in backend.procs:
        args = [str(a) for a in p.args]
        if args[0].endswith("jobset-upstream") or (len(args) > 1 and args[1] == "controller"):
            return Process(p.pid)
    raise RuntimeError(f"{backend.name}: no controller process")


def fresh(kind, work: Path, bin_dir, jobset_bin, nodes: Path):
    backend = kind(work, bin_dir, jobset_bin)
    backend.nodes_file = nodes
    backend.setup()
    # The pod driver lists every pod twice a second; only the exclusive
    # phase needs it (started there), and at scale it would be the load.
    backend.driver.stop()
    backend.kubectl(["create", "namespace", NS])
    return backend


# ------------------------------------------------------------ workloads


def jobset(name: str, replicas: int, parallelism: int, extra_meta: dict | None = None) -> dict:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name, **(extra_meta or {})},
        "spec": {
            "failurePolicy": {"maxRestarts": 3},
            "replicatedJobs": [{
                "name": "w",
                "replicas": replicas,
                "template": {"spec": {
                    "parallelism": parallelism, "completions": parallelism, "backoffLimit": 0,
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "main", "image": "busybox:1.37"}]}},
                }},
            }],
        },
    }


def create(backend, docs: list[dict], batch: int = 50) -> None:
    for i in range(0, len(docs), batch):
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs[i:i + batch]})
        backend.kubectl(["create", "-n", NS, "-f", "-"], input=body, timeout=300)


def running_pods(api: Api) -> int:
    return len(api.metadata(f"/api/v1/namespaces/{NS}/pods?fieldSelector=status.phase%3DRunning"))


def scale(backend, sizes: list[int], deadline_s: float) -> list[dict]:
    api = Api(backend.plane)
    proc = controller_process(backend)
    rows = []
    made = 0
    for total in sizes:
        jobs_want, pods_want = total * 8, total * 32
        before_requests = api.requests()
        cpu0 = proc.cpu_seconds()
        t0 = time.monotonic()
        create(backend, [jobset(f"js-{i:05d}", 8, 4) for i in range(made, total)])
        made = total
        t_jobs = t_pods = None
        cpu_jobs = None
        while time.monotonic() - t0 < deadline_s:
            proc.sample()
            if t_jobs is None and api.count(f"/apis/batch/v1/namespaces/{NS}/jobs") >= jobs_want:
                t_jobs, cpu_jobs = time.monotonic() - t0, proc.cpu_seconds()
            if t_jobs is not None and running_pods(api) >= pods_want:
                t_pods = time.monotonic() - t0
                break
            time.sleep(TICK)
        cpu_jobs = cpu_jobs if cpu_jobs is not None else proc.cpu_seconds()
        requests_after = api.requests()
        # Settled: what the controller keeps once nothing changes.
        for _ in range(20):
            proc.sample()
            time.sleep(1)
        new_jobs = (total - (rows[-1]["jobsets"] if rows else 0)) * 8
        row = {
            "jobsets": total, "pods": pods_want,
            "jobsSeconds": t_jobs, "podsSeconds": t_pods,
            "jobsPerSecond": new_jobs / t_jobs if t_jobs else None,
            "peakMiB": proc.peak_kib / 1024, "settledMiB": proc.sample() / 1024,
            "cpuPer1000Jobs": (cpu_jobs - cpu0) / new_jobs * 1000,
            "requests": {k: requests_after.get(k, 0) - before_requests.get(k, 0) for k in requests_after
                         if requests_after.get(k, 0) - before_requests.get(k, 0) > 0},
        }
        log(f"{backend.name}: {total} JobSets ({pods_want} pods): Jobs in {fmt(t_jobs)} s "
            f"({fmt(row['jobsPerSecond'])}/s), pods Running in {fmt(t_pods)} s, peak {row['peakMiB']:.0f} MiB, "
            f"settled {row['settledMiB']:.0f} MiB, {row['cpuPer1000Jobs']:.1f} CPU s per 1,000 Jobs")
        rows.append(row)
        if t_pods is None:
            log(f"{backend.name}: step {total} did not finish in {deadline_s:.0f} s; no larger size")
            break
    return rows


def restart(backend, jobs: int, deadline_s: float) -> dict:
    api = Api(backend.plane)
    create(backend, [jobset("big", jobs, 1)])
    t0 = time.monotonic()
    while running_pods(api) < jobs:
        if time.monotonic() - t0 > deadline_s:
            raise RuntimeError(f"{backend.name}: {jobs} pods not Running in {deadline_s:.0f} s")
        time.sleep(TICK)
    pod = json.loads(backend.kubectl(["get", "pods", "-n", NS, "-l", "batch.kubernetes.io/job-name=big-w-0",
                                      "-o", "json"]).stdout)["items"][0]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = json.dumps({"status": terminated_status(pod, 1, None, stamp)})
    t_fail = time.monotonic()
    backend.kubectl(["patch", "pod", pod["metadata"]["name"], "-n", NS, "--subresource=status", "--type=merge",
                     "-p", body])
    seconds = None
    while time.monotonic() - t_fail < deadline_s:
        items = api.metadata(f"/apis/batch/v1/namespaces/{NS}/jobs?labelSelector={ATTEMPT_LABEL}%3D1")
        if len(items) >= jobs:
            seconds = time.monotonic() - t_fail
            break
        time.sleep(0.25)
    log(f"{backend.name}: restart of {jobs} Jobs: every Job of the next attempt in {fmt(seconds)} s")
    return {"jobs": jobs, "seconds": seconds}


def exclusive(backend, n: int, deadline_s: float) -> dict:
    driver = PodDriver(backend.kubectl)
    driver.register(NS, PodScript(default_duration=4.0))
    driver.start()
    api = Api(backend.plane)
    node_pool = {
        n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(POOL_LABEL)
        for n in json.loads(backend.kubectl(["get", "nodes", "-o", "json"]).stdout)["items"]
    }
    meta = {"annotations": {"alpha.jobset.sigs.k8s.io/exclusive-topology": POOL_LABEL}}
    t0 = time.monotonic()
    create(backend, [jobset(f"ex-{i:03d}", 2, 4, meta) for i in range(n)])
    pods_seen: set[str] = set()
    shared = 0
    seconds = None
    try:
        while time.monotonic() - t0 < deadline_s:
            pods = json.loads(backend.kubectl(["get", "pods", "-n", NS, "-o", "json"]).stdout)["items"]
            holders: dict[str, set[str]] = {}
            for p in pods:
                pods_seen.add(p["metadata"]["uid"])
                node = p["spec"].get("nodeName")
                if node and p.get("status", {}).get("phase") in ("Pending", "Running"):
                    holders.setdefault(node_pool.get(node), set()).add(p["metadata"]["labels"].get(JOBSET_LABEL))
            shared += sum(1 for owners in holders.values() if len(owners) > 1)
            done = json.loads(backend.kubectl(["get", "jobsets", "-n", NS, "-o", "json"]).stdout)["items"]
            if done and all((js.get("status") or {}).get("terminalState") for js in done):
                seconds = time.monotonic() - t0
                break
            time.sleep(0.5)
    finally:
        driver.stop()
    events = api.metadata(f"/api/v1/namespaces/{NS}/events?fieldSelector=reason%3DFailedCreate")
    completed = sum(1 for js in done if (js.get("status") or {}).get("terminalState") == "Completed")
    row = {"jobsets": n, "seconds": seconds, "podsCreated": len(pods_seen), "failedCreateEvents": len(events),
           "sharedPolls": shared, "completed": completed}
    log(f"{backend.name}: {n} exclusive JobSets: all finished in {fmt(seconds)} s ({completed} Completed), "
        f"{len(pods_seen)} pods created, {len(events)} FailedCreate events, {shared} polls with a shared pool")
    return row


# -------------------------------------------------------------- reporting


def fmt(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.1f} ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else f"{med:.1f}"


def ratio(ours: list, upstream: list) -> str:
    pairs = [o / u for o, u in zip(ours, upstream) if o is not None and u]
    return f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"


def report(results: dict) -> None:
    rows = []

    def add(label, pick):
        up = [pick(r) for r in results["upstream"]]
        ours = [pick(r) for r in results["ours"]]
        rows.append((label, spread(up), spread(ours), ratio(ours, up)))

    sizes = sorted({s["jobsets"] for r in results["upstream"] + results["ours"] for s in r.get("scale", [])})

    def step(r, size):
        return next((s for s in r.get("scale", []) if s["jobsets"] == size), {})

    for size in sizes:
        add(f"{size} JobSets: Jobs per second", lambda r, s=size: step(r, s).get("jobsPerSecond"))
        add(f"{size} JobSets: s until every pod Running", lambda r, s=size: step(r, s).get("podsSeconds"))
        add(f"{size} JobSets: peak RSS MiB", lambda r, s=size: step(r, s).get("peakMiB"))
        add(f"{size} JobSets: settled RSS MiB", lambda r, s=size: step(r, s).get("settledMiB"))
        add(f"{size} JobSets: CPU s per 1,000 Jobs", lambda r, s=size: step(r, s).get("cpuPer1000Jobs"))
    if len(sizes) > 1:
        def slope(r):
            a, b = step(r, sizes[0]), step(r, sizes[-1])
            if not a.get("settledMiB") or not b.get("settledMiB"):
                return None
            return (b["settledMiB"] - a["settledMiB"]) / ((b["pods"] - a["pods"]) / 1000)
        add(f"settled MiB per 1,000 pods ({sizes[0]} to {sizes[-1]} JobSets)", slope)
    if any("restart" in r for r in results["ours"]):
        jobs = results["ours"][0]["restart"]["jobs"]
        add(f"restart of {jobs} Jobs: s until the next attempt's Jobs exist", lambda r: r.get("restart", {}).get("seconds"))
    if any("exclusive" in r for r in results["ours"]):
        n = results["ours"][0]["exclusive"]["jobsets"]
        add(f"{n} exclusive JobSets: s until all finished", lambda r: r.get("exclusive", {}).get("seconds"))
        add(f"{n} exclusive JobSets: pods created", lambda r: r.get("exclusive", {}).get("podsCreated"))
        add(f"{n} exclusive JobSets: FailedCreate events", lambda r: r.get("exclusive", {}).get("failedCreateEvents"))
        add(f"{n} exclusive JobSets: polls with a shared pool", lambda r: r.get("exclusive", {}).get("sharedPolls"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':{width}}  {'upstream':>22}  {'ours':>22}  {'ours/upstream':>18}")
    for label, up, ours, rt in rows:
        print(f"{label:{width}}  {up:>22}  {ours:>22}  {rt:>18}")
    if sizes:
        print("\nAPI server requests at the largest size, one round (resource verb: upstream / ours):")
        first = {n: (results[n] or [{}])[0] for n in ("upstream", "ours")}
        big_up, big_ours = step(first["upstream"], sizes[-1]), step(first["ours"], sizes[-1])
        for key in sorted(set(big_up.get("requests", {})) | set(big_ours.get("requests", {}))):
            print(f"  {key:24} {big_up.get('requests', {}).get(key, 0):>8.0f} / {big_ours.get('requests', {}).get(key, 0):>8.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="25,100,300", help="cumulative JobSet totals of the scale phase")
    parser.add_argument("--restart-jobs", type=int, default=100)
    parser.add_argument("--exclusive", type=int, default=12, help="exclusive JobSets of two Jobs each, over 12 node pools (six run at a time)")
    parser.add_argument("--only", default="scale,restart,exclusive")
    parser.add_argument("--deadline", type=float, default=900, help="seconds a step may take")
    parser.add_argument("--jobset", default=str(REPO / "target" / "debug" / "jobset"))
    parser.add_argument("--results", help="write every measurement here as JSON")
    parser.add_argument("--backends", default="upstream,ours", help="which controllers to run")
    parser.add_argument("--ours-arg", action="append", default=[],
                        help="a flag for our controller (repeat for more), e.g. --ours-arg=--concurrency=1")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    jobset_bin, bin_dir = binaries(args.jobset)
    work = Path(tempfile.mkdtemp(prefix="jobset-bench-"))
    # Enough pods per node for the largest step; 12 pools of 4 nodes (the
    # exclusive phase uses them as 12 domains: each of its JobSets needs 2).
    pods_per_node = max(110, -(-max(sizes) * 32 * 12 // 10 // 48))
    nodes = nodes_file(work, pools=12, per_pool=4, pods_per_node=pods_per_node)
    Ours.extra_args = tuple(args.ours_arg)
    kinds = {"upstream": Upstream, "ours": Ours}
    results: dict[str, list[dict]] = {"upstream": [], "ours": []}
    started = time.monotonic()
    log(f"work folder {work}; {args.rounds} rounds; phases {phases}; sizes {sizes}; {pods_per_node} pods per node")
    try:
        for rnd in range(args.rounds):
            order = ["upstream", "ours"] if rnd % 2 == 0 else ["ours", "upstream"]
            for name in (n for n in order if n in args.backends.split(",")):
                out: dict = {}
                for phase in phases:
                    log(f"round {rnd + 1}: {name}: {phase}")
                    backend = fresh(kinds[name], work / f"r{rnd}-{name}-{phase}", bin_dir, jobset_bin, nodes)
                    try:
                        if phase == "scale":
                            out["scale"] = scale(backend, sizes, args.deadline)
                        elif phase == "restart":
                            out["restart"] = restart(backend, args.restart_jobs, args.deadline)
                        elif phase == "exclusive":
                            out["exclusive"] = exclusive(backend, args.exclusive, args.deadline)
                        else:
                            raise SystemExit(f"no phase {phase!r} (scale, restart, exclusive)")
                    finally:
                        backend.close()
                results[name].append(out)
                if args.results:
                    Path(args.results).write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    print(f"\nbench: {args.rounds} rounds in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
