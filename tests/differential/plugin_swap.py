#!/usr/bin/env python3
"""A custom policy plugin swapped in by ConfigMap on the real API server.

Our controller runs as `deploy/` installs it (its CRD, RBAC, the default
plugins' ConfigMaps, a ServiceAccount token) on a real control plane
(tests/realcluster). Then, as the README's policy tutorial does on the
simulator:

1. the example plugin `preemption-aware` is built for wasm32-wasip2, packed
   with `jobset policy pack` and applied to `jobset-system`; a JobSet that
   selects it by annotation (examples/policy/training.jobset.yaml, whose
   `maxRestarts: 0` would fail it at the first Job failure) has a pod
   preempted and is restarted without spending its budget, and its
   condition and events name the plugin and its sha256;
2. the same ConfigMap name is swapped to hold other code (the default
   outcome plugin): the controller puts the new version in force, and the
   next JobSet that selects the name is decided by the new code (it fails
   at the preemption, reaching max restarts), signed with the new sha256;
3. a ConfigMap whose sha256 annotation does not match its Wasm is refused,
   the version in force stays, and the refusal names the ConfigMap;
4. during a run, a plugin that JobSets select is replaced by broken code
   (the example `hostile`, configured by its ConfigMap to trap in every
   call) and then fixed: only the JobSets that select it hold their
   decision with `PolicyFailed=True` naming the plugin, none of them fails,
   a JobSet on the default plugins finishes meanwhile, and once the good
   code is back the held JobSets finish and `PolicyFailed` turns False;
5. the RBAC of deploy/ under the real authorizer (`kubectl auth can-i` as
   the controller's ServiceAccount): ConfigMaps in its own namespace only,
   and in every namespace (list, watch) with the namespace-plugins
   component;
6. pod facts on the real API server: the example `exit-codes` (contract
   0.2.0, asks for `pod-facts`) decides examples/exit-codes.yaml from the
   exit codes kube-apiserver returns for the failed pods (listed by the
   controller-uid label and the status.phase field, under deploy/'s RBAC):
   the OOM kill (137) restarts without spending the budget, the crash
   (exit code 1) is left to the manifest's rules, and the JobSet
   completes.

    python3 tests/differential/plugin_swap.py [--keep]

Ends with `N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

from diff import REPO, Ours, binaries, log, run  # noqa: E402
from migrate import Checks, terminal, wait  # noqa: E402
from pods import PodScript  # noqa: E402

SHA = "policy.jobset.dev/sha256"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PLUGIN = "preemption-aware"


def logged(log_path: Path, *parts: str) -> bool:
    """Whether a line of the controller's log (colours taken out) holds
    every one of `parts`."""
    text = ANSI.sub("", log_path.read_text(errors="replace"))
    return any(all(p in line for p in parts) for line in text.splitlines())


def in_force(log_path: Path, plugin_id: str) -> bool:
    """Whether the controller put that version in force (compiled)."""
    return logged(log_path, "policy plugin", "in force", plugin_id)


def accepted(log_path: Path, plugin_id: str) -> bool:
    """Whether the controller took that version: in force, or verified and
    waiting for a JobSet to select it (the controller compiles plugins on
    demand)."""
    return in_force(log_path, plugin_id) or logged(log_path, "policy plugin verified", plugin_id)


def training(name: str, config: bool) -> str:
    doc = yaml.safe_load((REPO / "examples" / "policy" / "training.jobset.yaml").read_text())
    doc["metadata"]["name"] = name
    if not config:
        # The default outcome plugin takes no configuration.
        del doc["metadata"]["annotations"]["policy.jobset.dev/config"]
    return yaml.safe_dump(doc)


def events(k, ns: str, name: str) -> list[dict]:
    out = k(["get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"])
    return sorted(json.loads(out.stdout)["items"], key=lambda e: e.get("firstTimestamp") or e["metadata"]["creationTimestamp"])


def play_training(ours, ns: str, config: bool, scenario: dict) -> tuple[dict, dict]:
    """The training JobSet in namespace `ns`, its pods as the scenario says,
    to its end: the JobSet and its conditions by type."""
    k = ours.kubectl
    k(["create", "namespace", ns])
    ours.driver.register(ns, PodScript.from_scenario(scenario, 1.0, 0.5))
    k(["create", "-n", ns, "-f", "-"], input=training("training", config=config))
    js = wait(f"{ns}/training finished", lambda: (lambda j: terminal(j) and j)(
        json.loads(k(["get", "jobset", "training", "-n", ns, "-o", "json"]).stdout)), timeout=120)
    return js, conditions(js)


def conditions(js: dict) -> dict:
    """A JobSet's conditions by type."""
    return {c["type"]: c for c in (js.get("status") or {}).get("conditions") or []}


def broken_then_fixed(ours, checks: Checks, jobset_bin: Path, good: Path, broken: Path) -> None:
    """Step 4: the plugin `rollout` is good, broken, then good again while
    JobSets that select it run."""
    k = ours.kubectl
    name = "rollout"

    def pack(wasm: Path, config: str | None) -> str:
        doc = yaml.safe_load(run([str(jobset_bin), "policy", "pack", str(wasm), "--name", name]).stdout)
        if config is not None:
            doc.setdefault("data", {})["config.json"] = config
        k(["apply", "--server-side", "--force-conflicts", "-f", "-"], input=yaml.safe_dump(doc))
        sha = doc["metadata"]["annotations"][SHA][:12]
        wait(f"{name}@{sha} accepted", lambda: accepted(ours.controller_log, f"{name}@{sha}"), timeout=120)
        return sha

    def get(js: str) -> dict:
        return json.loads(k(["get", "jobset", js, "-n", ns, "-o", "json"]).stdout)

    good_sha = pack(good, None)
    ns = "plugin-swap-4"
    k(["create", "namespace", ns])
    selecting = ["selecting-0", "selecting-1"]
    for js in selecting + ["bystander"]:
        doc = yaml.safe_load(training(js, config=False))
        if js == "bystander":
            del doc["metadata"]["annotations"]
        else:
            doc["metadata"]["annotations"]["policy.jobset.dev/outcome"] = name
        k(["create", "-n", ns, "-f", "-"], input=yaml.safe_dump(doc))
    # The pods run until the namespace is given a script: every Job is in
    # flight when the code is swapped.
    wait("every Job of step 4 created", lambda: len(json.loads(
        k(["get", "jobs", "-n", ns, "-o", "json"]).stdout)["items"]) == 6, timeout=120)

    broken_sha = pack(broken, "trap")
    ours.driver.register(ns, PodScript.from_scenario({"defaultDuration": "1s"}, 1.0, 0.5))

    def held() -> bool:
        for js in selecting:
            c = conditions(get(js)).get("PolicyFailed")
            if not (c and c["status"] == "True"):
                return False
        return terminal(get("bystander")) is not None

    try:
        wait("the selecting JobSets held, the bystander finished", held, timeout=120)
    except TimeoutError as e:
        checks.check(False, "broken: the JobSets that select the plugin hold with PolicyFailed", str(e))
        return
    for js in selecting:
        doc = get(js)
        c = conditions(doc)["PolicyFailed"]
        checks.check(c["reason"] == "OutcomePluginFailed" and f"{name}@{broken_sha}" in c["message"],
                     f"broken: {js} holds with PolicyFailed naming the plugin and its sha256",
                     f"{c['reason']}: {c['message']}")
        checks.check(terminal(doc) is None, f"broken: {js} neither completes nor fails", str(terminal(doc)))
    checks.check(terminal(get("bystander")) == ("Completed", "AllJobsCompleted"),
                 "broken: a JobSet on the default plugins completes meanwhile", str(terminal(get("bystander"))))
    warned = [e for e in events(k, ns, "selecting-0") if e["reason"] == "OutcomePluginFailed"]
    checks.check(bool(warned) and warned[0]["type"] == "Warning",
                 "broken: a Warning event OutcomePluginFailed on the held JobSet", str(warned[:1]))

    fixed_sha = pack(good, None)
    checks.check(fixed_sha == good_sha, "fixed: the good code is in force again")
    try:
        wait("the held JobSets finished", lambda: all(terminal(get(js)) for js in selecting), timeout=120)
    except TimeoutError as e:
        checks.check(False, "fixed: the held JobSets finish", str(e))
        return
    for js in selecting:
        doc = get(js)
        conds = conditions(doc)
        checks.check(terminal(doc) == ("Completed", "AllJobsCompleted"), f"fixed: {js} completes",
                     str(terminal(doc)))
        c = conds.get("PolicyFailed", {})
        checks.check((c.get("status"), c.get("reason")) == ("False", "PolicySucceeded"),
                     f"fixed: {js} no longer says its policy failed", f"{c.get('status')} {c.get('reason')}")
        want = f"jobset completed successfully (policy {name}@{good_sha})"
        checks.check(conds.get("Completed", {}).get("message") == want,
                     f"fixed: {js} was decided by the fixed code", repr(conds.get("Completed", {}).get("message")))
        checks.check(doc["status"].get("restarts", 0) == 0, f"fixed: {js} was not restarted",
                     str(doc["status"].get("restarts")))


def rbac_on_the_real_authorizer(ours, checks: Checks) -> None:
    """Step 5: what deploy/ lets the controller's ServiceAccount do with
    ConfigMaps, asked of the real API server's RBAC authorizer: its own
    namespace only from the base, every namespace (list and watch, no more)
    once the namespace-plugins component's ClusterRole is bound."""
    k = ours.kubectl
    sa = "system:serviceaccount:jobset-system:jobset-controller"

    def can(verb: str, *where: str) -> bool:
        out = k(["auth", "can-i", verb, "configmaps", f"--as={sa}", *where], check=False).stdout.strip()
        return out == "yes"

    base = {(verb, w): can(verb, *where) for verb in ("list", "watch", "create")
            for w, where in (("own", ("-n", "jobset-system")), ("tenant", ("-n", "plugin-swap-4")),
                             ("all", ("--all-namespaces",)))}
    checks.check(base[("list", "own")] and base[("watch", "own")],
                 "rbac, base: the controller lists and watches ConfigMaps in its namespace", str(base))
    checks.check(not any(base[(v, w)] for v in ("list", "watch", "create") for w in ("tenant", "all")),
                 "rbac, base: no ConfigMap access outside its namespace", str(base))
    rendered = run(["kubectl", "kustomize", str(REPO / "examples" / "namespace-plugins")]).stdout
    rbac = [d for d in yaml.safe_load_all(rendered)
            if d and d["kind"] in ("ClusterRole", "ClusterRoleBinding")
            and d["metadata"]["name"] == "jobset-controller-namespace-plugins"]
    checks.check(len(rbac) == 2, "rbac, component: the overlay renders its ClusterRole and binding",
                 str([d["kind"] for d in rbac]))
    k(["apply", "--server-side", "-f", "-"], input="---\n".join(yaml.safe_dump(d) for d in rbac))

    def granted() -> bool:
        return can("list", "--all-namespaces") and can("watch", "-n", "plugin-swap-4")

    try:
        wait("the namespace-plugins ClusterRole in force", granted, timeout=30)
        checks.check(True, "rbac, component: list and watch ConfigMaps in every namespace")
    except TimeoutError as e:
        checks.check(False, "rbac, component: list and watch ConfigMaps in every namespace", str(e))
    checks.check(not can("create", "-n", "plugin-swap-4") and not can("get", "--all-namespaces"),
                 "rbac, component: nothing more than list and watch")


def pod_facts_on_the_real_api_server(ours, checks: Checks, jobset_bin: Path, wasm: Path) -> None:
    """Step 6: an outcome plugin that asks for pod facts, on the real API
    server."""
    k = ours.kubectl
    name = "exit-codes"
    packed = run([str(jobset_bin), "policy", "pack", str(wasm), "--name", name]).stdout
    sha = yaml.safe_load(packed)["metadata"]["annotations"][SHA][:12]
    k(["apply", "--server-side", "-f", "-"], input=packed)
    wait(f"{name}@{sha} accepted", lambda: accepted(ours.controller_log, f"{name}@{sha}"), timeout=120)
    ns = "plugin-swap-6"
    k(["create", "namespace", ns])
    scenario = yaml.safe_load((REPO / "examples" / "exit-codes.scenario.yaml").read_text())
    # Minutes of the scenario become seconds.
    ours.driver.register(ns, PodScript.from_scenario(scenario, 1 / 60, 0.5))
    doc = yaml.safe_load((REPO / "examples" / "exit-codes.yaml").read_text())
    doc["metadata"]["annotations"]["policy.jobset.dev/outcome"] = name
    k(["create", "-n", ns, "-f", "-"], input=yaml.safe_dump(doc))
    js = wait(f"{ns}/exit-codes finished", lambda: (lambda j: terminal(j) and j)(
        json.loads(k(["get", "jobset", "exit-codes", "-n", ns, "-o", "json"]).stdout)), timeout=180)
    status = js.get("status") or {}
    checks.check(terminal(js) == ("Completed", "AllJobsCompleted"), "pod facts: the JobSet completes",
                 str(terminal(js)))
    checks.check((status.get("restarts"), status.get("restartsCountTowardsMax", 0)) == (2, 1),
                 "pod facts: two restarts, only the crash counted (the OOM kill was not)",
                 str((status.get("restarts"), status.get("restartsCountTowardsMax"))))
    reasons = [(e["reason"], e["message"]) for e in events(k, ns, "exit-codes")]
    checks.check(any(r == "RetriableExitCodeRestart" and "exited with 137, which is listed as retriable" in m
                     and m.endswith(f"(policy {name}@{sha})") for r, m in reasons),
                 "pod facts: the exit code kube-apiserver returned decided the restart", str(reasons))
    checks.check(not any(r == "PodFactsUnavailable" for r, _ in reasons),
                 "pod facts: every list of failed pods succeeded", str(reasons))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobset", default=str(REPO / "target" / "debug" / "jobset"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    started = time.monotonic()
    log("building the example plugin for wasm32-wasip2")
    run(["cargo", "build", "--release", "--target", "wasm32-wasip2", "-p", "example-preemption-aware",
         "-p", "example-hostile", "-p", "example-exit-codes"], timeout=1800)
    wasm = REPO / "target" / "wasm32-wasip2" / "release" / "example_preemption_aware.wasm"
    hostile = REPO / "target" / "wasm32-wasip2" / "release" / "example_hostile.wasm"
    exit_codes = REPO / "target" / "wasm32-wasip2" / "release" / "example_exit_codes.wasm"
    jobset_bin, bin_dir = binaries(args.jobset)
    work = Path(tempfile.mkdtemp(prefix="jobset-plugin-swap-"))
    checks = Checks()
    ours = Ours(work / "ours", bin_dir, jobset_bin)
    ours.work.mkdir(parents=True)
    try:
        ours.setup()
        k = ours.kubectl
        scenario = yaml.safe_load((REPO / "examples" / "policy" / "preempted-once.scenario.yaml").read_text())

        # 1. The custom plugin, packed and applied.
        packed = run([str(jobset_bin), "policy", "pack", str(wasm), "--name", PLUGIN]).stdout
        sha = yaml.safe_load(packed)["metadata"]["annotations"][SHA]
        k(["apply", "--server-side", "-f", "-"], input=packed)
        wait("the custom plugin accepted", lambda: accepted(ours.controller_log, f"{PLUGIN}@{sha[:12]}"),
             timeout=120)
        ns = "plugin-swap-1"
        js, conds = play_training(ours, ns, True, scenario)
        checks.check(terminal(js) == ("Completed", "AllJobsCompleted"), "custom plugin: the JobSet completes",
                     str(terminal(js)))
        checks.check(js["status"].get("restarts") == 1, "custom plugin: one restart after the preemption",
                     str(js["status"].get("restarts")))
        checks.check(js["status"].get("restartsCountTowardsMax", 0) == 0,
                     "custom plugin: the restart is not counted toward maxRestarts",
                     str(js["status"].get("restartsCountTowardsMax")))
        want = f"jobset completed successfully (policy {PLUGIN}@{sha[:12]})"
        checks.check(conds.get("Completed", {}).get("message") == want,
                     "custom plugin: the Completed condition names the plugin and its sha256",
                     repr(conds.get("Completed", {}).get("message")))
        reasons = [(e["reason"], e["message"]) for e in events(k, ns, "training")]
        checks.check(any(r == "PreemptedRestart" and m.endswith(f"(policy {PLUGIN}@{sha[:12]})") for r, m in reasons),
                     "custom plugin: a PreemptedRestart event signed by the plugin", str(reasons))

        checks.check(in_force(ours.controller_log, f"{PLUGIN}@{sha[:12]}"),
                     "custom plugin: compiled once a JobSet selected it")

        # 2. The same name, other code: the default outcome plugin's Wasm.
        # JobSets use the plugin now, so the update is compiled at once.
        default = yaml.safe_load((REPO / "deploy" / "plugins" / "default-outcome.yaml").read_text())
        default["metadata"]["name"] = f"jobset-policy-{PLUGIN}"
        default["metadata"]["labels"]["policy.jobset.dev/plugin"] = PLUGIN
        new_sha = default["metadata"]["annotations"][SHA]
        k(["apply", "--server-side", "-f", "-"], input=yaml.safe_dump(default))
        wait("the swapped plugin in force", lambda: in_force(ours.controller_log, f"{PLUGIN}@{new_sha[:12]}"),
             timeout=120)
        checks.check(True, "swap: the controller puts the new version in force")
        ns = "plugin-swap-2"
        js, conds = play_training(ours, ns, False, scenario)
        checks.check(terminal(js) == ("Failed", "ReachedMaxRestarts"),
                     "swap: the new code decides (the preemption fails the JobSet)", str(terminal(js)))
        # The default plugin's words (upstream's, with the first failed
        # Job), signed: the plugin is not the default one by name.
        want = (f"jobset failed due to reaching max number of restarts (first failed job: training-workers-1) "
                f"(policy {PLUGIN}@{new_sha[:12]})")
        checks.check(conds.get("Failed", {}).get("message") == want,
                     "swap: the Failed condition is signed with the new sha256",
                     repr(conds.get("Failed", {}).get("message")))

        # 3. A ConfigMap whose Wasm does not match its sha256: refused, the
        # version in force stays.
        bad = json.loads(json.dumps(default))
        bad["metadata"]["annotations"][SHA] = "0" * 64
        k(["apply", "--server-side", "-f", "-"], input=yaml.safe_dump(bad))
        try:
            wait("the bad ConfigMap refused", lambda: logged(
                ours.controller_log, "plugin rejected", f"jobset-policy-{PLUGIN}", "does not match"), timeout=60)
            checks.check(True, "bad sha256: the refusal names the ConfigMap and the sha256")
        except TimeoutError as e:
            checks.check(False, "bad sha256: the refusal names the ConfigMap and the sha256", str(e))
        ns = "plugin-swap-3"
        js, conds = play_training(ours, ns, False, scenario)
        checks.check(conds.get("Failed", {}).get("message") == want,
                     "bad sha256: the version in force still decides", repr(conds.get("Failed", {}).get("message")))
        broken_then_fixed(ours, checks, jobset_bin, wasm, hostile)
        rbac_on_the_real_authorizer(ours, checks)
        pod_facts_on_the_real_api_server(ours, checks, jobset_bin, exit_codes)
        for p in ours.problems():
            checks.check(False, "ours: no backend problem", p)
    except Exception as e:
        checks.check(False, "plugin swap runs to the end", str(e))
        if ours.controller_log and ours.controller_log.exists():
            print("--- last lines of the controller's log")
            print(ANSI.sub("", "\n".join(ours.controller_log.read_text(errors="replace").splitlines()[-20:])))
    finally:
        ours.close()
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nplugin swap: {time.monotonic() - started:.0f} s")
    print(f"{checks.passed} passed, {len(checks.failed)} failed")
    return 0 if not checks.failed else 1


if __name__ == "__main__":
    sys.exit(main())
