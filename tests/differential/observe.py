"""What a user or a tool sees of a scenario, read from the API server and
normalised so that two runs can be compared: names without the scenario's
namespace, no UIDs, times or resource versions.
"""

from __future__ import annotations

import json
import re

JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"

# Labels and annotations that the Job controller or the API server set, the
# same under either JobSet controller; they carry UIDs.
_VOLATILE_KEYS = {
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
    "kubectl.kubernetes.io/last-applied-configuration",
}

_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def normalise_text(text: str, namespace: str) -> str:
    text = text.replace(namespace, "<ns>")
    text = _UID.sub("<uid>", text)
    return _TIME.sub("<time>", text)


def _clean(value, namespace: str):
    if isinstance(value, dict):
        return {k: _clean(v, namespace) for k, v in sorted(value.items()) if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_clean(v, namespace) for v in value]
    if isinstance(value, str):
        return normalise_text(value, namespace)
    return value


def _pick(obj: dict, *paths: str) -> dict:
    out = {}
    for path in paths:
        cur = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is None:
                break
        if cur is not None:
            out[path] = cur
    return out


def job_view(job: dict) -> dict:
    """The parts of a Job that JobSet decides."""
    meta = job["metadata"]
    owners = [
        {k: o.get(k) for k in ("apiVersion", "kind", "name", "controller", "blockOwnerDeletion")}
        for o in meta.get("ownerReferences") or []
    ]
    view = {
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        "ownerReferences": owners,
    }
    view.update(
        _pick(
            job["spec"],
            "parallelism",
            "completions",
            "completionMode",
            "backoffLimit",
            "suspend",
            "podFailurePolicy",
            "successPolicy",
            "ttlSecondsAfterFinished",
            "activeDeadlineSeconds",
            "template.metadata.labels",
            "template.metadata.annotations",
            "template.spec.subdomain",
            "template.spec.hostname",
            "template.spec.nodeSelector",
            "template.spec.tolerations",
            "template.spec.affinity",
            "template.spec.schedulingGates",
            "template.spec.restartPolicy",
            "template.spec.volumes",
        )
    )
    # Which pool an exclusive Job ended up in is the scheduler's choice
    # under upstream and the placement plugin's under ours; that a Job is
    # pinned at all is compared through the nodeSelector keys.
    return view


def service_view(svc: dict) -> dict:
    meta = svc["metadata"]
    view = {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
    view.update(_pick(svc["spec"], "clusterIP", "selector", "publishNotReadyAddresses", "ports"))
    view["ownerReferences"] = [
        {k: o.get(k) for k in ("kind", "name", "controller")} for o in meta.get("ownerReferences") or []
    ]
    return view


def status_view(js: dict) -> dict:
    status = js.get("status") or {}
    conditions = sorted(
        (
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
        ),
        key=lambda c: c["type"],
    )
    return {
        "conditions": conditions,
        "restarts": status.get("restarts", 0),
        "restartsCountTowardsMax": status.get("restartsCountTowardsMax", 0),
        "terminalState": status.get("terminalState"),
        "replicatedJobsStatus": [
            {k: r.get(k, 0) for k in ("name", "ready", "succeeded", "failed", "active", "suspended")}
            for r in status.get("replicatedJobsStatus") or []
        ],
        "currentInPlaceRestartAttempt": status.get("currentInPlaceRestartAttempt"),
        "previousInPlaceRestartAttempt": status.get("previousInPlaceRestartAttempt"),
    }


def event_view(events: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The events about JobSets: each distinct event once, in the order it
    first happened among those of the same controller; and how many times
    each reason was recorded (a new Event object, or a repeat counted in a
    series)."""

    def order(e):
        return (e.get("eventTime") or e["metadata"].get("creationTimestamp") or "", int(e["metadata"].get("resourceVersion", "0")))

    distinct: list[dict] = []
    counts: dict[str, int] = {}
    for e in sorted(events, key=order):
        regarding = e.get("regarding") or {}
        if regarding.get("kind") != "JobSet":
            continue
        view = {
            "type": e.get("type"),
            "reason": e.get("reason"),
            "note": e.get("note"),
            "action": e.get("action"),
            "reportingController": e.get("reportingController"),
        }
        if view not in distinct:
            distinct.append(view)
        repeats = (e.get("series") or {}).get("count") or e.get("deprecatedCount") or 1
        counts[view["reason"]] = counts.get(view["reason"], 0) + max(1, int(repeats))
    # Each controller's events in its own order; how the events of two
    # controllers (the JobSet controller's and Kueue's) interleave is a
    # matter of timing.
    distinct.sort(key=lambda v: v["reportingController"] or "")
    return distinct, counts


class Observer:
    """Collects, while a scenario runs, every Job name it ever saw (so that
    creations and deletions are counted), and at the end the state."""

    def __init__(self, kubectl, namespace: str, kueue: bool = False, count_running: bool = False):
        self.kubectl = kubectl
        self.namespace = namespace
        self.kueue = kueue
        self.count_running = count_running or kueue
        # Under Kueue: the most JobSets seen with pods running at one poll
        # (one, where the quota fits one JobSet at a time).
        self.most_running = 0
        self.jobs_seen: dict[str, set[str]] = {}  # name -> uids

    def poll(self) -> None:
        out = self.kubectl(["get", "jobs", "-n", self.namespace, "-o", "json"], check=False)
        if out.returncode != 0:
            return
        for job in json.loads(out.stdout).get("items", []):
            self.jobs_seen.setdefault(job["metadata"]["name"], set()).add(job["metadata"]["uid"])
        if self.count_running:
            running = {
                (p["metadata"].get("labels") or {}).get(JOBSET_LABEL)
                for p in self.get("pods")
                if (p.get("status") or {}).get("phase") == "Running"
            }
            self.most_running = max(self.most_running, len(running - {None}))

    def get(self, *args: str) -> list[dict]:
        out = self.kubectl(["get", *args, "-n", self.namespace, "-o", "json"], check=False)
        if out.returncode != 0:
            return []
        return json.loads(out.stdout).get("items", [])

    def final(self) -> dict:
        self.poll()
        ns = self.namespace
        jobsets = self.get("jobsets.jobset.x-k8s.io")
        jobs = self.get("jobs")
        services = [s for s in self.get("services") if JOBSET_LABEL in (s["metadata"].get("labels") or {})]
        events = self.get("events.events.k8s.io")
        pvcs = self.get("persistentvolumeclaims")
        view = {
            "jobsets": {
                js["metadata"]["name"]: {"spec": js.get("spec"), "status": status_view(js)} for js in jobsets
            },
            "jobs": {j["metadata"]["name"]: job_view(j) for j in jobs},
            "jobCreations": {name: len(uids) for name, uids in sorted(self.jobs_seen.items())},
            "services": {s["metadata"]["name"]: service_view(s) for s in services},
            "pvcs": sorted(p["metadata"]["name"] for p in pvcs),
        }
        view["events"], view["eventCounts"] = event_view(events)
        if self.count_running:
            view["mostJobSetsRunningAtOnce"] = self.most_running
        if self.kueue:
            import kueue

            view["workloads"], names = kueue.workload_view(self.get("workloads.kueue.x-k8s.io"))
            view = kueue.rename(view, names)
        return _clean(view, ns)


def flatten(value, prefix: str = "") -> dict[str, object]:
    """`a.b[0].c` -> leaf value, for a field-by-field comparison."""
    out: dict[str, object] = {}
    if isinstance(value, dict):
        if not value:
            out[prefix or "."] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(value, list):
        if not value:
            out[prefix] = []
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out
