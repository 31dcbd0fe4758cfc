"""The differential scenarios: every upstream example (with the pod
behaviour its scenario file gives, when it has one) and the scenarios of
`scenarios.yaml` beside this file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pods import PodScript

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# One virtual minute of a scenario file takes two seconds here; no pod
# runs for less than a second, so that controllers see it Running.
SCALE = 1 / 30
MINIMUM = 1.0


@dataclass
class Scenario:
    name: str
    manifests: list[dict]
    pods: PodScript
    # "run": play until every JobSet is finished (or `settle` seconds pass
    # with nothing finished); "admission": only the admission answers count.
    kind: str = "run"
    steps: list[dict] = field(default_factory=list)
    settle: float | None = None
    timeout: float = 150.0
    source: str = ""
    # Feature gates this scenario turns on or off, over the suite's own;
    # the real-cluster backends restart their controller for each set.
    gates: dict[str, bool] = field(default_factory=dict)
    # Played with Kueue beside the controller (real-cluster backends only).
    kueue: bool = False
    # Compare the most JobSets that had pods running at one time (always
    # compared under Kueue).
    count_running: bool = False

    @property
    def namespace(self) -> str:
        # The same namespace under every backend: Job labels carry a hash
        # of namespace/name, so both runs must use the same one.
        short = self.name.replace("__", "-").replace("_", "-").lower()[:50].rstrip("-")
        return f"d-{short}"


def upstream_examples_dir() -> Path | None:
    for base in [REPO, *REPO.parents]:
        candidate = base / "shared" / "compat" / "upstream-examples"
        if candidate.is_dir():
            return candidate
    return None


def _load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _pod_doc(name: str) -> dict | None:
    path = REPO / "examples" / "scenarios" / f"{name}.scenario.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


# Upstream examples that only settle (nothing in them finishes on a cluster
# with no PodGroup API or storage provisioner, placeholder images that kwok
# runs anyway, etc.).
_SETTLE = {
    "volume-claim-policy__single-pvc": 25,
    "workload-aware-scheduling__jobset": 25,
    "workload-aware-scheduling__tas__jobset": 25,
    "workload-aware-scheduling__dra__jobset": 25,
    "workload-aware-scheduling__preemption__high-priority-jobset": 25,
    "workload-aware-scheduling__preemption__low-priority-jobset": 25,
    "in-place-restart__jobset-main-container-mode": 25,
    "in-place-restart__jobset-sidecar-container-mode": 25,
}


def load(only: list[str] | None = None) -> list[Scenario]:
    scenarios: list[Scenario] = []
    examples = upstream_examples_dir()
    if examples is None:
        if os.environ.get("JOBSET_UPSTREAM_EXAMPLES") == "required":
            raise SystemExit("JOBSET_UPSTREAM_EXAMPLES=required, but no shared/compat/upstream-examples was found")
        print("note: no shared/compat/upstream-examples beside the checkout; its scenarios are not run")
    else:
        for path in sorted(examples.glob("*.yaml")):
            name = path.stem
            doc = _pod_doc(name)
            scenarios.append(
                Scenario(
                    name=name,
                    manifests=_load_docs(path),
                    pods=PodScript.from_scenario(doc, SCALE, MINIMUM),
                    settle=_SETTLE.get(name),
                    source=str(path),
                )
            )
    for entry in yaml.safe_load((HERE / "scenarios.yaml").read_text()):
        doc = entry.get("pods")
        kind = entry.get("kind", "run")
        scenario = Scenario(
            name=entry["name"],
            manifests=[],
            pods=PodScript.from_scenario(doc, SCALE, MINIMUM),
            kind=kind,
            settle=entry.get("settle"),
            timeout=entry.get("timeout", 150.0),
            source="scenarios.yaml",
            gates=entry.get("gates") or {},
            kueue=bool(entry.get("kueue")),
            count_running=bool(entry.get("countRunning")),
        )
        # `{ns}` in manifests and steps is the scenario's namespace, which
        # names its cluster-scoped objects (queues, flavors, priority
        # classes) apart from other scenarios'.
        text = entry["manifests"].replace("{ns}", scenario.namespace)
        steps = yaml.safe_load(yaml.safe_dump(entry.get("steps") or []).replace("{ns}", scenario.namespace))
        scenario.manifests = [d for d in yaml.safe_load_all(text) if d]
        scenario.steps = steps
        scenarios.append(scenario)
    names = [s.name for s in scenarios]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"scenario names used twice: {sorted(duplicates)}")
    if only:
        unknown = set(only) - set(names)
        if unknown:
            raise SystemExit(f"no such scenario: {sorted(unknown)}")
        scenarios = [s for s in scenarios if s.name in only]
    return scenarios
