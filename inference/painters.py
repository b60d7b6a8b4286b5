"""Painters: processes that each own one backend, placed by Ray on this machine's or a cluster's GPUs.

Ray is imported here and in inference/painter_actor.py only, and only when painters are used (``--painters N`` or
``--ray ADDRESS``).  The generation service stays the one scheduler; `RayPainters`, the pool, is the backend it sees.
For each batch the service reserves a free painter, a `Lease` (inference/painter_actor.py: previews streamed,
cooperative cancel, a painter lost mid-batch).  A monitor thread asks every painter how it is once a second (the
heartbeat); Ray restarts a painter that died (``max_restarts=-1``) and it loads its model again.  With ``--ray
ADDRESS`` and no count there is one painter per GPU of the cluster, and GPUs that join later get theirs; a cluster
without GPUs gets one painter per machine (Ray node) with CPUs, taking all the CPUs that machine offers Ray, and
machines that join later get theirs too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.backend import LOADING
from inference.backend import READY
from inference.backend import BackendSettings
from inference.backend import BackendStatus
from inference.backend import BackendUnavailable
from inference.backend import StepCallback
from inference.backend import create_backend
from inference.painter_actor import Lease
from inference.painter_actor import actor_class
from inference.painter_state import FALLBACK
from inference.painter_state import PaintersUnavailable
from inference.painter_state import Slot
from inference.painter_state import check_reachable
from inference.painter_state import listing
from inference.painter_state import node_places
from inference.painter_state import resolved
from inference.painter_state import summary
from inference.request import GenerationRequest
from inference.request import GenerationResult

log = logging.getLogger(__name__)

INFERENCE_DIR = Path(__file__).resolve().parent
TOKEN_MEMO = 4096  # prompt parts whose token counts are remembered
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local Ray's shared memory: previews and pictures in flight
SCAN_SECONDS = 5.0  # between two looks at a cluster's GPUs or machines (those that joined get a painter)


class RayPainters:
    """Painter processes on Ray, seen by the generation service as one backend with several painters.

    Args:
        settings (`BackendSettings`): the backend every painter builds (its device is the GPU Ray gives it).
        count (`int`, *optional*): painters to run; None = one per GPU of the cluster, or without GPUs one per
            machine of the cluster that offers CPUs (one painter on this machine's Ray).
        address (`str`, *optional*): a Ray cluster to join (``HOST:6379``, ``ray://HOST:10001`` or ``auto``);
            empty = start Ray on this machine.
        preview_every (`int`, *optional*, defaults to 2): steps between previews, drawn in the painter.
        torch_threads (`int`, *optional*): CPU threads of each CPU painter (0 = ``OMP_NUM_THREADS`` if set, else the
            CPUs shared out among the painters).
        heartbeat (`float`, *optional*, defaults to 1.0): seconds between two status calls to each painter.
    """

    def __init__(self, settings: BackendSettings, count: int | None = None, address: str = "", preview_every: int = 2,
                 torch_threads: int = 0, heartbeat: float = 1.0, log_level: str = "INFO"):
        self.settings = settings
        self.count = count
        self.address = address
        self.preview_every = preview_every
        self.torch_threads = torch_threads
        self.heartbeat = heartbeat
        self.log_level = log_level
        self.gpu = False
        self.per_node = False  # a cluster without GPUs: each painter is bound to a machine and takes its CPUs
        self._retired: list[str] = []  # the machines of painters retired for good (they get no new one)
        self._slots: list[Slot] = []
        self._names = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._watchers: list[Callable[[int], None]] = []
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._own_ray = False
        self._actor: Any = None
        self._monitor: threading.Thread | None = None

    # -- starting and stopping -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start or join Ray, decide GPUs or CPUs, start the painters (they load in the background)."""
        import ray

        self._connect()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpu = gpus > 0 and self.settings.kind == "diffusers" and self.settings.device != "cpu"
        target = self.count or (gpus if self.gpu else 1)
        if self.gpu and self.count and self.count > gpus and not self.address:
            log.warning("--painters %d, but this machine has %d GPU(s): one painter per GPU", self.count, gpus)
            target = gpus
        if not self.gpu and self.settings.kind == "diffusers":
            log.info("painters: no GPU in %s, so %s paint on CPUs",
                     f"the Ray cluster at {self.address}" if self.address else "Ray's view of this machine",
                     f"{target} painter(s)" if self.count or not self.address else "one painter per machine")
        self.settings = resolved(self.settings, self.gpu, self.address)
        self._actor = actor_class()
        self.per_node = bool(self.address) and not self.gpu
        if self.per_node:
            self._place_on_nodes(joined=False)
        else:
            for _ in range(target):
                self.add_painter()
        self._monitor = threading.Thread(target=self._watch_painters, name="painter-monitor", daemon=True)
        self._monitor.start()

    def _connect(self) -> None:
        try:
            import ray
        except ImportError as exc:
            raise PaintersUnavailable(f"Painter processes need Ray, which is not installed here ({exc}): "
                                      f"pip install ray==2.60.0. {FALLBACK}") from None
        if ray.is_initialized():  # a Ray this process has already started or joined (tests, an embedding app)
            return
        options: dict[str, Any] = {"namespace": "lanternslide", "logging_level": logging.WARNING}
        if self.address:
            check_reachable(self.address)
            # Ray 2.60 sends its token only in token mode, which `ray start` turns on whenever its machine holds a
            # token (~/.ray/auth_token, which any local Ray makes, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) but
            # ray.init(address=...) does not: make the same check `ray start` makes (a cluster without
            # authentication ignores the token; RAY_AUTH_MODE, when set, decides instead)
            from ray._private.authentication.authentication_token_setup import (
                maybe_enable_token_auth_if_token_available,
            )

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
            # the painters' code travels to the cluster's machines (they need the requirements installed)
            options.update(address=self.address, runtime_env={"py_modules": [str(INFERENCE_DIR)]})
        else:
            options.update(num_cpus=max(self.count or 1, os.cpu_count() or 1), include_dashboard=False,
                           object_store_memory=OBJECT_STORE_BYTES)
        try:
            ray.init(**options)
        except Exception as exc:  # noqa: BLE001 - any reason Ray gives is told, with the way out
            where = f"join the Ray cluster at {self.address}" if self.address else "start on this machine"
            token = (" If the cluster uses Ray's token authentication (the default when the head machine has "
                     "~/.ray/auth_token), this machine needs the same token: copy that file to ~/.ray/auth_token "
                     "here, or set RAY_AUTH_TOKEN." if self.address else "")
            raise PaintersUnavailable(
                f"Ray could not {where}: {type(exc).__name__}: {exc}.{token} {FALLBACK}") from None
        self._own_ray = True

    def add_painter(self, settings: BackendSettings | None = None, place: tuple[str, int] | None = None) -> str:
        """Start one more painter (with other backend settings if given; on the Ray node ``place[0]``, taking its
        ``place[1]`` CPUs, if given); return its name."""
        options: dict[str, Any]
        if place is not None:  # a machine of a cluster without GPUs: its CPUs are Ray's count there, not ours
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            threads = self.torch_threads or place[1]
            options = {"num_cpus": place[1],
                       "scheduling_strategy": NodeAffinitySchedulingStrategy(place[0], soft=False)}
        else:
            threads = self.torch_threads or int(os.environ.get("OMP_NUM_THREADS", "").strip() or 0) or max(
                1, (os.cpu_count() or 1) // max(1, self.count or 1))
            options = {"num_gpus": 1, "num_cpus": 1} if self.gpu else {"num_cpus": threads}
        actor = self._actor.options(max_restarts=-1, max_task_retries=0, **options).remote(
            settings or self.settings, 0 if self.gpu else threads, self.log_level)
        with self._lock:
            self._names += 1
            slot = Slot(f"painter-{self._names}", actor, idle_since=time.monotonic(),
                        place="" if place is None else place[0])
            self._slots.append(slot)
            count, watchers = len(self._slots), list(self._watchers)
        for on_count in watchers:
            on_count(count)
        return slot.name

    def _place_on_nodes(self, joined: bool = True) -> None:
        """A cluster without GPUs: a painter for each machine that has none (or up to ``count`` in all)."""
        import ray

        nodes = {n["NodeID"]: int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]}
        with self._lock:
            taken = [slot.place for slot in self._slots] + self._retired
        for place in node_places(nodes, taken, self.count):
            if joined:
                log.info("starting a painter on Ray node %s (a machine that joined the cluster, or one with room "
                         "for a lost painter), taking %d CPU(s)", place[0][:8], place[1])
            self.add_painter(place=place)

    def retire(self, name: str) -> None:
        """Stop the painter called ``name`` for good."""
        import ray

        with self._lock:
            slot = next(s for s in self._slots if s.name == name)
            self._slots.remove(slot)
            if slot.place:
                self._retired.append(slot.place)
        ray.kill(slot.actor, no_restart=True)

    def close(self) -> None:
        self._closing.set()
        if self._monitor is not None:
            self._monitor.join(10)
        import ray

        with self._lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._own_ray:
            ray.shutdown()

    # -- the backend the service sees ------------------------------------------------------------------------

    def status(self) -> BackendStatus:
        with self._lock:
            return summary(self._slots)

    def identity(self, memo_folder: Any = None) -> str:
        return create_backend(self.settings).identity(memo_folder)

    def count_tokens(self, text: str) -> int | None:
        """Asked of a ready painter once per text, then remembered (pages count tokens on every slide)."""
        import ray

        with self._lock:
            if text in self._tokens:
                self._tokens.move_to_end(text)
                return self._tokens[text]
            slot = next((s for s in self._slots if s.state == READY), None)
        try:
            value = None if slot is None else ray.get(slot.actor.count_tokens.remote(text), timeout=30)
        except Exception:  # noqa: BLE001 - a painter gone meanwhile: the prompt is composed without a count
            return None
        with self._lock:
            if value is not None:
                self._tokens[text] = value
            while len(self._tokens) > TOKEN_MEMO:
                self._tokens.popitem(last=False)
        return value

    def generate(self, requests: list[GenerationRequest],
                 on_step: StepCallback | None = None) -> list[GenerationResult]:
        lease = self.reserve()
        if lease is None:
            status = self.status()
            raise BackendUnavailable(status if not status.ready else BackendStatus(LOADING, "Every painter is busy."))
        return lease.generate(requests, on_step)

    # -- painters for the service ----------------------------------------------------------------------------

    def free(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots if s.state == READY and not s.busy)

    def reserve(self) -> Lease | None:
        with self._lock:
            idle = [s for s in self._slots if s.state == READY and not s.busy]
            if not idle:
                return None
            slot = min(idle, key=lambda s: s.idle_since)  # the longest idle first: batches spread over painters
            slot.busy = True
        return Lease(slot, self._lock, self.preview_every)

    def watch(self, on_count: Callable[[int], None]) -> None:
        with self._lock:
            self._watchers.append(on_count)
            count = len(self._slots)
        on_count(count)

    def painters(self) -> list[dict[str, Any]]:
        with self._lock:
            return listing(self._slots)

    # -- heartbeats ------------------------------------------------------------------------------------------

    def _watch_painters(self) -> None:
        import ray

        next_scan = time.monotonic() + SCAN_SECONDS
        while not self._closing.is_set():
            if self.address and (self.count is None or self.per_node) and time.monotonic() >= next_scan:
                next_scan = time.monotonic() + SCAN_SECONDS
                try:
                    self._scan()
                except Exception as exc:  # noqa: BLE001 - the cluster's head is unreachable: the heartbeats say so
                    log.debug("cannot see the Ray cluster's machines: %s", exc)
            self._beat(ray)
            self._closing.wait(self.heartbeat)

    def _scan(self) -> None:
        """Start painters for the GPUs (or, without GPUs, the machines) that joined the cluster."""
        import ray

        if self.per_node:
            self._place_on_nodes()
            return
        gpus = int(ray.cluster_resources().get("GPU", 0))
        for _ in range(gpus - len(self._slots)):
            log.info("a GPU joined the Ray cluster: starting a painter for it")
            self.add_painter()

    def _beat(self, ray: Any) -> None:
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            if slot.pending is None:
                slot.pending = slot.actor.status.remote()
        if not slots:
            return
        done, _ = ray.wait([s.pending for s in slots], num_returns=len(slots), timeout=self.heartbeat)
        answered = set(done)
        for slot in slots:
            if slot.pending not in answered:
                continue
            ref, slot.pending = slot.pending, None
            try:
                info = ray.get(ref)
            except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnschedulableError):
                self._replace(slot)
                continue
            except ray.exceptions.RayError as exc:
                with self._lock:
                    slot.lost(exc)
                continue
            with self._lock:
                report = slot.heard(info)
            if report:
                log.error("%s on %s cannot paint: %s %s (the other painters carry on)", slot.name, slot.node,
                      slot.message, slot.hint)

    def _replace(self, slot: Slot) -> None:
        """A painter Ray gave up on (its machine left the cluster): start another in its place (on a cluster without
        GPUs, the next look at the cluster's machines does, on a machine that is there)."""
        with self._lock:
            if slot not in self._slots:
                return
            self._slots.remove(slot)
        log.error("%s on %s is gone for good; starting a new painter", slot.name, slot.node or "its node")
        if not self.per_node:
            self.add_painter()
