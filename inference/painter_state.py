"""What the web process knows of its painter processes, without Ray: one slot per painter, the one status the pages
see, the list the admin sees, the settings every painter shares, and the check made before joining a Ray cluster.
inference/painters.py and inference/painter_actor.py (the only modules that import Ray) keep the slots up to
date.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from inference.backend import FAILED
from inference.backend import LOADING
from inference.backend import READY
from inference.backend import BackendSettings
from inference.backend import BackendStatus

FALLBACK = "To paint in this process instead, start with --painters inprocess and without --ray."
RESTARTING = "restarting"


class PaintersUnavailable(ValueError):
    """Ray is missing, could not start, or no cluster answers at the address; says why and how to fall back."""


@dataclasses.dataclass
class Slot:
    """What the web process knows of one painter (fields change under the pool's lock)."""

    name: str
    actor: Any
    node: str = ""
    device: str = ""
    pid: int = 0
    state: str = "starting"
    message: str = "Starting a painter process (Ray places it on a free GPU or CPU)…"
    hint: str = ""
    busy: bool = False
    batch: list[str] = dataclasses.field(default_factory=list)
    step: str = ""
    painted: int = 0
    failures: int = 0
    restarts: int = 0
    heartbeat: float | None = None
    idle_since: float = 0.0
    pending: Any = None  # the status call in flight
    reported: bool = False
    place: str = ""  # the Ray node it is bound to (a cluster without GPUs: painters are placed node by node)

    def heard(self, info: dict[str, Any]) -> bool:
        """A heartbeat came back; True when it says, for the first time since a (re)start, that this painter
        cannot paint (it is then reported once)."""
        if self.pid and info["pid"] != self.pid:
            self.restarts += 1
            self.reported = False
        self.pid, self.node, self.device = info["pid"], info["node"], info["device"]
        self.state, self.message, self.hint = info["state"], info["message"], info["hint"]
        self.heartbeat = time.monotonic()
        report = self.state == FAILED and not self.reported
        if report:
            self.reported = True
            self.failures += 1
        return report

    def lost(self, exc: Exception) -> None:
        """The painter's process stopped (Ray restarts it)."""
        self.state, self.hint = RESTARTING, ""
        self.message = f"{self.name} stopped ({type(exc).__name__}); Ray is restarting it…"


def summary(slots: list[Slot]) -> BackendStatus:
    """One status for all the painters, for the pages: ready while one is, else why none is."""
    ready = [s for s in slots if s.state == READY]
    if ready:
        return BackendStatus(READY, f"{ready[0].message} Painters ready: {len(ready)} of {len(slots)}.")
    waiting = [s for s in slots if s.state != FAILED]
    if waiting:
        return BackendStatus(LOADING, waiting[0].message, waiting[0].hint)
    if slots:
        return BackendStatus(FAILED, slots[0].message, slots[0].hint)
    return BackendStatus(LOADING, "Waiting for a painter: the Ray cluster has no free GPU (nor, without GPUs, a "
                         "machine with CPUs) yet.", f"Add a machine with `ray start --address=...`. {FALLBACK}")


def listing(slots: list[Slot]) -> list[dict[str, Any]]:
    """Each painter as the admin sees it (status JSON and dashboard)."""
    now = time.monotonic()
    return [{"name": s.name, "node": s.node, "device": s.device, "pid": s.pid,
             "state": "painting" if s.busy else s.state, "message": s.message, "batch": list(s.batch),
             "step": s.step, "painted": s.painted, "failures": s.failures, "restarts": s.restarts,
             "heartbeat_seconds": None if s.heartbeat is None else round(now - s.heartbeat, 1)}
            for s in slots]


def resolved(settings: BackendSettings, gpu: bool, address: str) -> BackendSettings:
    """Settings every painter shares, decided here once so cache keys made in this process name them: the
    device Ray gives (``cuda`` inside the painter), and ``--max-size auto`` (drafts on CPUs only)."""
    from inference.loading import CPU_DRAFT_SIZE
    from inference.loading import gpu_likely

    gpu_device = settings.device in ("auto", "cuda") or settings.device.startswith("cuda:")
    device = "cuda" if gpu and gpu_device else settings.device  # Ray shows each painter its GPU only
    max_size = settings.max_size
    if max_size is None:
        max_size = 0 if gpu or (not address and gpu_likely(device)) else CPU_DRAFT_SIZE
    compile_cache = None if address else settings.compile_cache  # a folder of this machine
    return dataclasses.replace(settings, device=device, max_size=max_size, compile_cache=compile_cache)


def node_places(nodes: Mapping[str, int], taken: list[str], count: int | None) -> list[tuple[str, int]]:
    """Where new painters go on a Ray cluster without GPUs, as (Ray node id, CPUs to take) for each one to start.

    Args:
        nodes: the cluster's live nodes and the CPUs each offers Ray (``ray start --num-cpus``); 0 = paints nothing.
        taken: the node of each painter there is already (one entry per painter).
        count: None = one painter on every node with a CPU that has none yet, taking all its CPUs (a CPU painter
            uses every core it gets); N = painters up to N in all, each going where it gets the most whole CPUs
            (the node's CPUs shared among its painters), on the node with fewer painters when that is even.
    """
    offered = {node: cpus for node, cpus in sorted(nodes.items()) if cpus >= 1}
    load = Counter(node for node in taken if node in offered)
    if count is None:
        return [(node, cpus) for node, cpus in offered.items() if not load[node]]
    chosen = []
    for _ in range(max(0, count - len(taken)) if offered else 0):
        node = max(offered, key=lambda n: (offered[n] // (load[n] + 1), -load[n], offered[n]))
        load[node] += 1
        chosen.append(node)
    return [(node, max(1, offered[node] // load[node])) for node in chosen]


def check_reachable(address: str) -> None:
    """Fail at once, saying what to do, when nothing listens at a Ray address (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PaintersUnavailable(f"--ray {address!r}: expected HOST:PORT, the address `ray start --head` printed "
                                  f"(port 6379 by default), or ray://HOST:10001. {FALLBACK}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise PaintersUnavailable(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}). Start one with `ray start --head` on the "
            f"head machine and `ray start --address={address}` on each GPU machine, or check the address. "
            f"{FALLBACK}") from None
