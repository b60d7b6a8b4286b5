"""One painter on Ray: the actor class that wraps a `PainterProcess` (inference/painter_process.py), and `Lease`, a
painter reserved for one batch, which paints it: the batch's step previews come back through a Ray streaming generator
(an actor method that yields), a preemption or interruption cancels it cooperatively (``ray.cancel``, which the
painter checks between two steps), and a painter that dies mid-batch becomes `PainterLost`, so the service puts the
batch back in the queue.

Ray is imported only inside these functions, when painters are used; inference/painters.py keeps the pool.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from inference.backend import BackendSettings
from inference.backend import GenerationCancelled
from inference.backend import PainterLost
from inference.backend import StepCallback
from inference.painter_process import EncodedResult
from inference.painter_process import PainterProcess
from inference.painter_state import Slot
from inference.request import GenerationRequest
from inference.request import GenerationResult

log = logging.getLogger(__name__)


def actor_class() -> Any:
    """The painter as a Ray actor class; its status and token counts answer while it paints a batch."""
    import ray

    @ray.remote(concurrency_groups={"paint": 1, "control": 2})
    class Painter:
        def __init__(self, settings: BackendSettings, torch_threads: int, log_level: str):
            self.process = PainterProcess(settings, torch_threads, log_level)
            node_id = ray.get_runtime_context().get_node_id()
            self.node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()}), Ray node {node_id[:8]}"
            gpus = ray.get_gpu_ids()
            self.device = (f"remote {settings.api_url}" if settings.kind == "remote" else
                           f"GPU {','.join(str(g) for g in gpus)}" if gpus else
                           f"{settings.device if settings.device != 'auto' else 'CPU'}"
                           + (f", {torch_threads} torch thread(s)" if torch_threads else ""))

        @ray.method(concurrency_group="control")
        def status(self) -> dict[str, Any]:
            return {**self.process.describe(), "node": self.node, "device": self.device}

        @ray.method(concurrency_group="control")
        def count_tokens(self, text: str) -> int | None:
            return self.process.count_tokens(text)

        @ray.method(concurrency_group="paint", num_returns="streaming")
        def paint(self, requests: list[GenerationRequest], preview_every: int) -> Any:
            yield from self.process.paint(requests, preview_every, ray.get_runtime_context().is_canceled)

    return Painter


class Lease:
    """One painter reserved for one batch (`RayPainters.reserve` marked it busy); painting the batch hands it back.

    Args:
        slot (`Slot`): the painter.
        lock (`threading.Lock`): the pool's lock, under which a slot's fields change.
        preview_every (`int`): steps between two previews, drawn in the painter.
    """

    def __init__(self, slot: Slot, lock: threading.Lock, preview_every: int):
        self.slot, self.lock, self.preview_every = slot, lock, preview_every

    def generate(self, requests: list[GenerationRequest],
                 on_step: StepCallback | None = None) -> list[GenerationResult]:
        """Paint the batch on the reserved painter, following its events; hand the painter back at the end."""
        import ray
        from ray.exceptions import RayError

        slot = self.slot
        with self.lock:
            slot.batch = [f"{r.width}x{r.height}, {r.steps} steps: {r.prompt[:60]}" for r in requests]
        stream = slot.actor.paint.remote(requests, self.preview_every)
        try:
            for ref in stream:
                event = ray.get(ref)
                if event[0] != "step":
                    return self._finish(event)
                _, step, total, frames = event
                slot.step = f"{step}/{total}"
                if on_step is not None:
                    try:
                        on_step(step, total, _constant(frames))
                    except BaseException:
                        ray.cancel(stream)  # cooperative: the painter stops at its next step
                        raise
            raise PainterLost(f"{slot.name} ended a batch without its pictures")
        except RayError as exc:
            with self.lock:
                slot.lost(exc)
                slot.failures += 1
            log.warning("%s on %s stopped mid-batch (%s); its pictures go back to the queue", slot.name,
                        slot.node or "its node", type(exc).__name__)
            raise PainterLost(f"{slot.name} on {slot.node or 'its node'} stopped mid-batch") from None
        finally:
            with self.lock:
                slot.busy, slot.batch, slot.step, slot.idle_since = False, [], "", time.monotonic()

    def _finish(self, event: tuple) -> list[GenerationResult]:
        slot, kind = self.slot, event[0]
        if kind == "done":
            results: list[GenerationResult] = [EncodedResult.from_event(*item) for item in event[1]]
            with self.lock:
                slot.painted += len(results)
            return results
        if kind == "cancelled":
            raise GenerationCancelled("the painter stopped the batch")
        if kind == "unavailable":
            with self.lock:
                slot.state, slot.message, slot.hint = event[1:4]
            raise PainterLost(f"{slot.name} cannot paint: {event[2]}")
        with self.lock:
            slot.failures += 1
        raise RuntimeError(event[1])


def _constant(value: Any) -> Callable[[], Any]:
    """``on_step``'s previews callable: here the previews came ready-made with the step."""
    return lambda: value
