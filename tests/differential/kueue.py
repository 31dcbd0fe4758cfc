"""Kueue on a real-cluster backend: its CRDs, its webhooks (reached by URL,
with certificates of ours) and the `kueue` process, with only the JobSet
integration on. build.sh puts the binary, the CRDs and the webhook
manifests of the pinned release beside the plane's binaries.

Kueue runs with the plane's admin credentials: what is compared is what
it does to JobSets, not its own RBAC.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

NAMESPACE = "kueue-system"
# The label that puts a namespace under Kueue.
NAMESPACE_LABEL = "differential.jobset.dev/kueue"
WEBHOOK_NAMES = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
# Webhooks for the API groups Kueue serves with only its JobSet integration
# on; the rest (batch Jobs, pods, Deployments...) have no handler then, and
# a webhook that fails closed would refuse every Job the JobSet controller
# creates.
_GROUPS = {"kueue.x-k8s.io", "jobset.x-k8s.io"}


def webhook_configs(manifests: str, port: int, ca_bundle: str) -> str:
    """Kueue's webhook configurations, kept to the groups above, each
    pointing at 127.0.0.1:`port` by URL."""
    docs = []
    for doc, name in zip((d for d in yaml.safe_load_all(manifests) if d), WEBHOOK_NAMES):
        hooks = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups or not groups <= _GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            hook["timeoutSeconds"] = 10
            if "jobset.x-k8s.io" in groups:
                # Only JobSets of the Kueue scenarios: Kueue's webhook was
                # seen suspending a JobSet with a queue-name label in another
                # namespace (an upstream example carries one), whatever its
                # managedJobsNamespaceSelector says.
                hook["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: "true"}}
            hooks.append(hook)
        doc["metadata"] = {"name": name}
        doc["webhooks"] = hooks
        docs.append(doc)
    if len(docs) != 2 or not all(d["webhooks"] for d in docs):
        raise SystemExit("Kueue's webhook manifests do not hold a mutating and a validating configuration")
    return yaml.safe_dump_all(docs)


def configuration(webhook_port: int, health_port: int, cert_dir: Path) -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        # Only the Kueue scenarios' namespaces: others imitate Kueue by hand
        # with its labels, and Kueue would take their JobSets over.
        "managedJobsNamespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "true"}},
        "integrations": {"frameworks": ["jobset.x-k8s.io/jobset"]},
    }


def command(bin_dir: Path, config: Path, kubeconfig: str) -> list[str]:
    # The visibility API server would want an APIService and a port of its
    # own; nothing here reads pending workloads through it.
    return [str(bin_dir / "kueue"), "--config", str(config), "--kubeconfig", kubeconfig,
            "--feature-gates", "VisibilityOnDemand=false"]


def wait_ready(kubectl, namespace_probe: str, timeout: float = 90) -> None:
    """Waits until Kueue's webhooks answer: a dry-run ResourceFlavor is
    admitted (it is refused while the webhook server is not up)."""
    import time

    probe = yaml.safe_dump({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                            "metadata": {"name": f"probe-{namespace_probe}"}})
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = kubectl(["create", "--dry-run=server", "-f", "-"], check=False, input=probe)
        if out.returncode == 0:
            return
        last = out.stderr.strip()
        time.sleep(1)
    raise SystemExit(f"Kueue's webhooks did not answer in {timeout:.0f} s: {last}")


def wait_managed(kubectl, namespace: str, timeout: float = 60) -> None:
    """Waits until Kueue manages JobSets in `namespace`: a JobSet with a
    queue name, created there as a dry run, comes back suspended by
    Kueue's webhook (the API server's namespace selector and Kueue's own
    namespace cache both know the namespace's label by then)."""
    import time

    probe = yaml.safe_dump({
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": "kueue-probe", "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": "probe"}},
        "spec": {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.37"}]}}}}}]},
    })
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = kubectl(["create", "--dry-run=server", "-o", "json", "-f", "-"], check=False, input=probe)
        if out.returncode == 0:
            if (json.loads(out.stdout).get("spec") or {}).get("suspend") is True:
                return
            last = "the dry-run JobSet was not suspended"
        else:
            last = out.stderr.strip()
        time.sleep(0.5)
    raise RuntimeError(f"Kueue does not manage JobSets in namespace {namespace} after {timeout:.0f} s: {last}")


def workload_view(workloads: list[dict]) -> tuple[dict, dict[str, str]]:
    """What Kueue decided for each JobSet, keyed by the JobSet's name; and
    each Workload's name mapped to a stable one (a Workload's name carries
    a hash of its owner's UID, different in every run)."""
    view: dict[str, dict] = {}
    names: dict[str, str] = {}
    for wl in workloads:
        owners = [o for o in wl["metadata"].get("ownerReferences") or [] if o.get("kind") == "JobSet"]
        if not owners:
            continue
        owner = owners[0]["name"]
        names[wl["metadata"]["name"]] = f"workload-of-{owner}"
        status = wl.get("status") or {}
        admission = status.get("admission") or {}
        view[owner] = {
            "queueName": (wl.get("spec") or {}).get("queueName"),
            "priority": (wl.get("spec") or {}).get("priority"),
            "podSets": [{"name": p.get("name"), "count": p.get("count")} for p in (wl.get("spec") or {}).get("podSets") or []],
            "conditions": sorted(
                ({k: c.get(k) for k in ("type", "status", "reason")} for c in status.get("conditions") or []),
                key=lambda c: c["type"],
            ),
            "admission": {
                "clusterQueue": admission.get("clusterQueue"),
                "podSetAssignments": [
                    {"name": a.get("name"), "flavors": a.get("flavors"), "count": a.get("count"),
                     # Which domains depends on what else runs; the levels do not.
                     "topologyLevels": (a.get("topologyAssignment") or {}).get("levels")}
                    for a in admission.get("podSetAssignments") or []
                ],
            },
            "requeueState": status.get("requeueState"),
        }
    return view, names


def rename(value, names: dict[str, str]):
    """`value` with every Workload name replaced by its stable one."""
    if not names:
        return value
    text = json.dumps(value)
    pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
    return json.loads(pattern.sub(lambda m: names[m.group(0)], text))


# Kueue v0.17 reads its metrics server's certificate from this fixed path
# whenever its internal certificate management is off (and that one makes
# certificates for a Service name, not for a loopback URL).
METRICS_CERTS = Path("/etc/kueue/metrics/certs")


def ensure_metrics_certs(certs: Path) -> None:
    """Puts a certificate where Kueue looks for its metrics one, unless one
    is there already."""
    if (METRICS_CERTS / "tls.crt").exists() and (METRICS_CERTS / "tls.key").exists():
        return
    try:
        METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(certs / name, METRICS_CERTS / name)
    except OSError as e:
        raise SystemExit(
            f"Kueue needs a certificate at {METRICS_CERTS}/tls.crt and tls.key (a path fixed in its code when "
            f"its own certificate management is off) and it cannot be written here: {e}. "
            f"Create that folder with any certificate and key, or run as a user who can."
        ) from e


def start(backend, free_port, make_webhook_certs, wait_tcp) -> subprocess.Popen:
    """Kueue's CRDs, webhooks and process on `backend`'s plane."""
    k = backend.kubectl
    bins = backend.bin_dir
    k(["apply", "--server-side", "-f", str(bins / "kueue-crds.yaml")])
    for crd in ("clusterqueues", "localqueues", "resourceflavors", "workloads", "workloadpriorityclasses"):
        backend.plane.wait_established(f"{crd}.kueue.x-k8s.io")
    k(["create", "namespace", NAMESPACE], check=False)
    certs, ca = make_webhook_certs(backend.work / "kueue-webhook-certs")
    ensure_metrics_certs(certs)
    port, health = free_port(), free_port()
    config = backend.work / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(configuration(port, health, certs)))
    log_path = backend.work / "kueue.log"
    proc = backend.spawn(command(bins, config, backend.plane.kubeconfig), "kueue")
    # Kueue stays when the controller is restarted (with other gates).
    backend.procs.remove(proc)
    backend.services.append(proc)
    wait_tcp(port, proc, "Kueue's webhook server", log_path)
    k(["apply", "-f", "-"], input=webhook_configs((bins / "kueue-webhooks.yaml").read_text(), port, ca))
    wait_ready(k, backend.name)
    return proc
