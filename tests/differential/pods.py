"""What the pods of a scenario do on a real control plane.

kwok takes every bound pod to Running and leaves it there; this driver
plays the kubelet's part after that. It reads the same scenario files as
`jobset run` and `jobset sim serve` (examples/scenarios/*.scenario.yaml:
defaultDuration, rules matched by replicated job, Job index, pod index,
restart attempt and Job name, with duration, failAt, exitCode and a pod
condition), scales their times down to wall-clock seconds, and ends each
pod by writing its status as a kubelet would: the container terminated
with its exit code, the phase Succeeded or Failed, and the rule's condition
(DisruptionTarget for a preemption) when there is one.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

RJOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
POD_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text) -> float:
    """Seconds in a scenario duration: 90, "30s", "5m", "1h", "500ms"."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 90, 30s, 5m, 1h, 500ms)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass
class Rule:
    match: dict
    duration: float | None = None
    fail_at: float | None = None
    exit_code: int | None = None
    condition: dict | None = None

    def matches(self, facts: dict) -> bool:
        for key, want in self.match.items():
            have = facts.get(key)
            if key == "job" and isinstance(want, str) and want.endswith("*"):
                if not str(have or "").startswith(want[:-1]):
                    return False
            elif key == "namespace":
                continue  # each scenario has a namespace of its own
            elif have != want:
                return False
        return True


@dataclass
class PodScript:
    """A scenario's pod behaviour, in wall-clock seconds."""

    default_duration: float | None
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def from_scenario(cls, doc: dict | None, scale: float, minimum: float) -> "PodScript":
        doc = doc or {}
        unknown = set(doc) - {"defaultDuration", "startDelay", "shutdown", "rules", "faults"}
        if unknown:
            raise ValueError(f"scenario fields the real control plane cannot play: {sorted(unknown)}")

        def wall(value):
            return max(minimum, parse_duration(value) * scale)

        rules = []
        for i, r in enumerate(doc.get("rules") or []):
            rules.append(
                Rule(
                    match=dict(r.get("match") or {}),
                    duration=wall(r["duration"]) if "duration" in r else None,
                    fail_at=wall(r["failAt"]) if "failAt" in r else None,
                    exit_code=r.get("exitCode"),
                    condition=r.get("condition"),
                )
            )
        default = wall(doc["defaultDuration"]) if "defaultDuration" in doc else wall(60)
        return cls(default_duration=default, rules=rules)

    def plan(self, facts: dict, running_at: float, started: float) -> tuple[float, int, dict | None] | None:
        """When the pod ends (absolute time), its exit code and condition;
        None for a pod that runs until it is deleted."""
        for rule in self.rules:
            if not rule.matches(facts):
                continue
            if rule.fail_at is not None:
                at = started + rule.fail_at
                if running_at <= at:
                    code = rule.exit_code if rule.exit_code is not None else 1
                    return (at, code, rule.condition)
                continue  # started after the fault: the rule no longer applies
            duration = rule.duration if rule.duration is not None else self.default_duration
            code = rule.exit_code if rule.exit_code is not None else 0
            return (running_at + duration, code, rule.condition)
        if self.default_duration is None:
            return None
        return (running_at + self.default_duration, 0, None)


def pod_facts(pod: dict, retry: int) -> dict:
    labels = pod["metadata"].get("labels") or {}
    annotations = pod["metadata"].get("annotations") or {}

    def num(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    index = labels.get(POD_INDEX_LABEL, annotations.get("batch.kubernetes.io/job-completion-index"))
    return {
        "job": labels.get(JOB_NAME_LABEL) or "",
        "replicatedJob": labels.get(RJOB_LABEL),
        "jobIndex": num(labels.get(JOB_INDEX_LABEL)),
        "podIndex": num(index),
        "attempt": num(labels.get(ATTEMPT_LABEL)) or 0,
        "retry": retry,
    }


def terminated_status(pod: dict, code: int, condition: dict | None, now: str) -> dict:
    """The status a kubelet writes when the pod's containers exit."""
    statuses = []
    for c in pod.get("status", {}).get("containerStatuses") or []:
        started = (c.get("state") or {}).get("running", {}).get("startedAt", now)
        statuses.append(
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": c.get("imageID", ""),
                "containerID": c.get("containerID", ""),
                "ready": False,
                "started": False,
                "restartCount": c.get("restartCount", 0),
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": now,
                        "containerID": c.get("containerID", ""),
                    }
                },
            }
        )
    if not statuses:
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
    conditions = [
        dict(c, status="False") if c.get("type") in ("Ready", "ContainersReady") else c
        for c in pod.get("status", {}).get("conditions") or []
    ]
    if condition:
        conditions = [c for c in conditions if c.get("type") != condition["type"]]
        conditions.append(
            {
                "type": condition["type"],
                "status": "True",
                "reason": condition.get("reason", ""),
                "message": condition.get("message", ""),
                "lastTransitionTime": now,
            }
        )
    return {
        "phase": "Succeeded" if code == 0 and not condition else "Failed",
        "conditions": conditions,
        "containerStatuses": statuses,
    }


def unreachable(stderr: str) -> bool:
    """Whether kubectl failed for want of an API server, not for an answer."""
    return any(w in stderr for w in ("connection to the server", "connect to the server",
                                      "connection refused", "connection reset by peer", "i/o timeout",
                                      "EOF", "TLS handshake timeout", "ServiceUnavailable"))


class PodDriver(threading.Thread):
    """Ends the pods of the registered namespaces as their scripts say."""

    def __init__(self, kubectl, interval: float = 0.5):
        super().__init__(daemon=True, name="pod-driver")
        self.kubectl = kubectl
        self.interval = interval
        self.scripts: dict[str, tuple[PodScript, float | None]] = {}
        self.plans: dict[str, tuple[float, int, dict | None] | None] = {}
        self.retries: dict[tuple, int] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def register(self, namespace: str, script: PodScript) -> None:
        # The scenario's clock (for failAt) starts when its first pod runs,
        # not when its JobSet is created: controllers take different times
        # to create the first Jobs, and a fault timed from creation would
        # find pods of one and not of the other.
        with self.lock:
            self.scripts[namespace] = (script, None)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.tick()
            except Exception as e:  # keep driving; the scenario reports what went wrong
                self.errors.append(f"pod driver: {e}")

    def tick(self) -> None:
        out = self.kubectl(["get", "pods", "-A", "-o", "json"], check=False)
        if out.returncode != 0:
            return
        now = time.monotonic()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for pod in json.loads(out.stdout).get("items", []):
            meta = pod["metadata"]
            ns = meta["namespace"]
            with self.lock:
                entry = self.scripts.get(ns)
            if entry is None or meta.get("deletionTimestamp"):
                continue
            if pod.get("status", {}).get("phase") != "Running":
                continue
            script, started = entry
            if started is None:
                with self.lock:
                    started = now
                    self.scripts[ns] = (script, started)
            uid = meta["uid"]
            if uid not in self.plans:
                facts = pod_facts(pod, 0)
                key = (ns, facts["job"], facts["podIndex"])
                facts["retry"] = self.retries.get(key, 0)
                self.plans[uid] = script.plan(facts, now, started)
            plan = self.plans[uid]
            if plan is None or plan[0] > now:
                continue
            _, code, condition = plan
            status = terminated_status(pod, code, condition, stamp)
            done = self.kubectl(
                ["patch", "pod", meta["name"], "-n", ns, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status})],
                check=False,
            )
            if done.returncode == 0:
                self.plans[uid] = None
                if status["phase"] == "Failed":
                    facts = pod_facts(pod, 0)
                    key = (ns, facts["job"], facts["podIndex"])
                    self.retries[key] = self.retries.get(key, 0) + 1
            elif "not found" not in done.stderr and not unreachable(done.stderr):
                # An API server that is down (a fault run restarts it) is
                # tried again on the next pass: the plan stays.
                self.errors.append(f"{ns}/{meta['name']}: status write failed: {done.stderr.strip()}")
