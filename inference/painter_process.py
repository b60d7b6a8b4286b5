"""What runs inside a painter process: one backend, painting batches and telling their progress as plain events.

No Ray here: inference/painters.py wraps `PainterProcess` as a Ray actor and hands it Ray's cancellation flag.  The
events a batch yields are small tuples, cheap to send between processes:

    ("step", step, total, previews)        previews: one small JPEG (or None) per picture on preview steps, else None
    ("done", [(png, seed, request, info, seconds), ...])
    ("unavailable", state, message, hint)  the backend cannot paint (still loading, or it failed to load)
    ("error", message)                     painting the batch failed
    ("cancelled",)                         the backend stopped the batch by itself

A cancelled batch (preempted or interrupted) ends without a final event.  Previews are drawn and pictures are
encoded here, in the painter, so the web process only passes bytes along.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from inference.backend import BackendSettings
from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import create_backend
from inference.previews import preview_frames
from inference.previews import wants_preview
from inference.request import GenerationRequest
from inference.request import GenerationResult

log = logging.getLogger(__name__)


@dataclass
class EncodedResult(GenerationResult):
    """A picture a painter process painted and encoded as PNG; ``image`` opens that PNG lazily (size only)."""

    png: bytes = b""

    def encode(self, fmt: str = "webp") -> bytes:
        return self.png if fmt.lower() == "png" else super().encode(fmt)

    @classmethod
    def from_event(cls, png: bytes, seed: int, request: GenerationRequest, info: dict[str, Any],
                   seconds: float) -> EncodedResult:
        from PIL import Image

        return cls(Image.open(io.BytesIO(png)), seed, request, info, seconds, png)


class PainterProcess:
    """One backend in its own process, painting one batch at a time.

    Args:
        settings (`BackendSettings`): the backend to build and start (loading begins at once, in the background).
        torch_threads (`int`, *optional*): CPU threads for torch (0 = leave the environment's choice).
        log_level (`str`, *optional*, defaults to ``"INFO"``): logging detail of this process.
    """

    def __init__(self, settings: BackendSettings, torch_threads: int = 0, log_level: str = "INFO"):
        if torch_threads:  # read by torch when it is first imported (in the backend's loader thread)
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(torch_threads)
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.torch_threads = torch_threads
        self.painted = 0
        self.backend = create_backend(settings)
        self.backend.start()

    def describe(self) -> dict[str, Any]:
        """Where this painter stands: its backend's state and message, pictures painted, its process id."""
        status = self.backend.status()
        return {"state": status.state, "message": status.message, "hint": status.hint, "painted": self.painted,
                "pid": os.getpid()}

    def count_tokens(self, text: str) -> int | None:
        return self.backend.count_tokens(text)

    def paint(self, requests: list[GenerationRequest], preview_every: int,
              cancelled: Callable[[], bool]) -> Iterator[tuple]:
        """Paint one batch, yielding its events; stop at the next step once ``cancelled()`` says so."""
        events: queue.Queue[tuple] = queue.Queue()
        stop = threading.Event()

        def on_step(step: int, total: int, previews: Callable[[], Any]) -> None:
            frames = preview_frames(previews()) if wants_preview(step, total, preview_every) else None
            events.put(("step", step, total, frames))
            if stop.is_set():
                raise GenerationCancelled("cancelled")

        worker = threading.Thread(target=self._run, args=(requests, on_step, events), name="paint", daemon=True)
        worker.start()
        while True:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                event = None
            if cancelled():
                stop.set()
            if event is None:
                continue
            if event[0] != "step":
                worker.join()
                if not stop.is_set():
                    yield event
                return
            if not stop.is_set():
                yield event

    def _run(self, requests: list[GenerationRequest], on_step: Callable[[int, int, Any], None],
             events: queue.Queue[tuple]) -> None:
        """Paint in a thread of its own (the batch's events go out meanwhile); the last event says how it ended."""
        try:
            results = self.backend.generate(requests, on_step)
            encoded = [(r.encode("png"), r.seed, r.request, r.info, r.seconds) for r in results]
            self.painted += len(encoded)
            events.put(("done", encoded))
        except GenerationCancelled:
            events.put(("cancelled",))
        except BackendUnavailable as exc:
            events.put(("unavailable", exc.status.state, exc.status.message, exc.status.hint))
        except Exception as exc:  # noqa: BLE001 - told to the service, which fails the batch with these words
            log.exception("painting a batch of %d failed", len(requests))
            events.put(("error", f"{type(exc).__name__}: {exc}"))
