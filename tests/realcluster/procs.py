"""Processes and ports of a control plane: free loopback ports, health
checks, the DIR/pids list, and stopping process groups."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, check=True, input=None, timeout=120, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, cmd))}` failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def healthy(port: int, path: str = "/healthz") -> bool:
    """A component's own health endpoint on loopback. Its serving
    certificate is one it made for itself at start, so there is nothing to
    verify it against; the address is ours."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=2) as r:
        return r.status == 200


def port_taken(log: Path) -> bool:
    """Whether a component stopped because a port chosen free was taken
    meanwhile by something else."""
    return "address already in use" in tail(log, 60)


def alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our child, now reaped
    except ChildProcessError:
        pass  # not our child (an `up` from another command)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def stop_all(pids: list[int], grace: float = 5) -> None:
    """SIGTERM to each process's group (every component runs in a session
    of its own), then SIGKILL to what is left after `grace` seconds."""
    for pid in pids:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def listed(folder: Path) -> list[tuple[int, str, bool]]:
    """The processes in DIR/pids as (pid, component, running). A PID counts
    as ours only while it still runs that component's binary: after a
    reboot or a long wait the number may belong to something else."""
    pids = folder / "pids"
    out = []
    for line in pids.read_text().splitlines() if pids.exists() else []:
        pid_text, name = line.split(" ", 1)
        pid = int(pid_text)
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            argv0 = ""
        out.append((pid, name, Path(argv0).name == name and alive(pid)))
    return out
