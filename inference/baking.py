"""A whole story painted into the picture cache: its pictures handed to the generation service as its queue makes room.

A story can hold more pictures than the queue takes at once (``--queue-limit``, 64 by default), so a bake does not
stop at a full queue: it waits for the retry-after the service names and goes on, sources before the continuations
painted from them.  `Bakes` runs the admin page's bakes in the background, one thread per story and a few at most;
``flask bake`` calls `submit_all` in the foreground.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence

from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import QueueFull
from inference.request import GenerationRequest
from inference.service import GenerationService

log = logging.getLogger(__name__)

Chain = Sequence[tuple[GenerationRequest, str]]

# The longest wait between two tries at a full queue, in seconds
MAX_WAIT = 5.0


def submit_all(service: GenerationService, chains: Sequence[Chain], priority: int, who: str,
               stop: threading.Event | None = None) -> int:
    """Hand every chain to ``service`` in order (each picture after the pictures it continues), waiting out a full
    queue rather than giving up.  Return how many chains it took: all of them, unless ``stop`` was set or the
    service closed on the way."""
    stop = stop or threading.Event()
    handed: deque[str] = deque()  # the pictures handed over, oldest first: one ending makes room for the next
    for taken, chain in enumerate(chains):
        while True:
            if stop.is_set() or service.closed:
                return taken
            try:
                snap = service.submit_chain(chain, priority, who)
                if snap is not None:
                    handed.append(snap.key)
                break
            except QueueFull as exc:
                while handed and service.state_of(handed[0]) not in (QUEUED, RUNNING):
                    handed.popleft()
                if handed:
                    service.wait(handed.popleft(), MAX_WAIT)
                else:  # the queue is full of others' pictures (players come first): try again after a while
                    stop.wait(min(max(float(exc.retry_after), 0.2), MAX_WAIT))
    return len(chains)


class Bakes:
    """The stories being handed to the service in the background, one thread per story, at most ``limit`` at once.

    Args:
        service (`GenerationService`): where the pictures go.
        limit (`int`, *optional*, defaults to 4): stories baking at once; one more is refused until one ends.
    """

    def __init__(self, service: GenerationService, limit: int = 4):
        self.service = service
        self.limit = limit
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, name: str, chains: Sequence[Chain], priority: int, who: str) -> bool:
        """Start handing ``name``'s chains to the service (nothing new if it is already being baked); False when
        ``limit`` other stories are."""
        with self._lock:
            self._threads = {n: t for n, t in self._threads.items() if t.is_alive()}
            if name in self._threads:
                return True
            if len(self._threads) >= self.limit:
                return False
            thread = threading.Thread(target=self._run, args=(name, list(chains), priority, who),
                                      name=f"bake {name}", daemon=True)
            self._threads[name] = thread
            thread.start()
            return True

    def feeding(self, name: str) -> bool:
        """Whether ``name`` still has pictures waiting for room in the queue."""
        with self._lock:
            thread = self._threads.get(name)
            return thread is not None and thread.is_alive()

    def _run(self, name: str, chains: list[Chain], priority: int, who: str) -> None:
        taken = submit_all(self.service, chains, priority, who)
        log.info("bake of %s: %d of %d pictures handed to the painter", name, taken, len(chains))
