"""Jobs of the generation service: priorities, states, the `Job` record, the `Snapshot` views get, and the bounded
memory of how jobs that left the service's table ended.

No locks here: the service's lock guards every `Job` and the `Ended` memo; views only ever see `Snapshot`s.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from inference.request import GenerationRequest

PLAYER, ADMIN, PREFETCH, API = 0, 1, 2, 3
PRIORITY_NAMES = {PLAYER: "player", ADMIN: "admin", PREFETCH: "prefetch", API: "api"}
PREEMPTIBLE = (PREFETCH, API)  # a running batch of only these gives way to a player or admin who waits
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ENDED_KEEP = 64  # finished or failed jobs kept in the table after they end (their pictures are in the disk cache)...
ENDED_KEEP_BYTES = 32 * 1024 * 1024  # ...holding at most this many bytes of pictures...
ENDED_KEEP_SECONDS = 60.0  # ...and for at most this long


class QueueFull(RuntimeError):
    """Too many pictures are waiting (in all, or for this client); try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, mine: bool = False):
        super().__init__(
            f"{'you have' if mine else 'the painter has'} too many pictures waiting: retry in {retry_after} s"
        )
        self.retry_after = retry_after
        self.mine = mine


@dataclass
class Job:
    """One picture on its way; fields change only under the service's lock."""

    key: str
    request: GenerationRequest
    priority: int
    seq: int
    state: str = QUEUED
    step: int = 0
    total: int = 0
    preview: bytes | None = None
    png: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    hint: str = ""
    version: int = 0
    interest: set[str] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    started: float = 0.0
    ended: float = 0.0
    from_cache: bool = False
    stop: str = ""  # why it is being stopped: "interrupted" or "skipped" (an /sdapi client's own job)
    preempted: bool = False
    lost: int = 0
    label: str = ""  # what the picture is, for the admin's notes and the log ("story 'x', slide 'y'"); else its key
    source: str = ""  # a continuation: the key of the picture it is painted from (its request's init_from)
    fallback: str = ""  # why a continuation is painted as a plain picture instead (its source failed)

    @property
    def waits(self) -> bool:
        """A continuation whose source picture is not painted yet: it cannot be painted (or batched) until then."""
        return bool(self.request.init_from) and self.request.init_image is None


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a job's state, for a stream to render."""

    key: str
    state: str
    version: int
    position: int
    step: int
    total: int
    preview: bytes | None
    png: bytes | None
    meta: dict[str, Any]
    error: str
    hint: str
    waiting_for: str = ""
    task: str = "txt2img"  # what the job paints, in A1111's words: "txt2img", or "img2img" (from a picture)


def expired(jobs: Iterable[Job], now: float | None = None) -> list[Job]:
    """The finished and failed jobs to drop from the table: older than ``ENDED_KEEP_SECONDS``, or past the newest
    ``ENDED_KEEP`` of them or ``ENDED_KEEP_BYTES`` of their pictures.  Whoever still follows one keeps its own
    reference; a finished picture is in the disk cache, a failed one is painted afresh when asked again."""
    now = time.monotonic() if now is None else now
    held = 0
    dropped = []
    newest_first = sorted((j for j in jobs if j.state in (DONE, FAILED)), key=lambda j: -j.ended)
    for kept, job in enumerate(newest_first, 1):
        held += len(job.png or b"")
        if kept > ENDED_KEEP or held > ENDED_KEEP_BYTES or now - job.ended > ENDED_KEEP_SECONDS:
            dropped.append(job)
    return dropped


class Ended:
    """How the newest ``ENDED_KEEP`` jobs that left the table ended (failed, cancelled, interrupted, skipped), as
    snapshots without their pictures, so a follower that looks later still learns why (a few KB, bounded)."""

    def __init__(self, keep: int = ENDED_KEEP):
        self.keep = keep
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()

    def remember(self, snapshot: Snapshot) -> None:
        self._snapshots[snapshot.key] = dataclasses.replace(snapshot, png=None, preview=None)
        self._snapshots.move_to_end(snapshot.key)
        while len(self._snapshots) > self.keep:
            self._snapshots.popitem(last=False)

    def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def __len__(self) -> int:
        return len(self._snapshots)
