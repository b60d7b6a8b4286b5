"""The generation service's jobs: the state every part of `GenerationService` shares, and what it tells of them.

`JobTable` holds the jobs by key, the queue, the counters and the lock every change is made under, and answers what
the pages ask without changing anything: a job's state (`lookup`, `snapshot`, `state_of`), its changes as they come
(`follow`, `wait`), Retry-After (`retry_after`) and the admin's figures (`stats`).  The service is built on it in
layers, each in its own module: inference/continuations.py (a picture painted from another waits for it, and every
change is announced), inference/painting.py (the painting threads) and inference/service.py (asking for pictures).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any

from inference.backend import Backend
from inference.backend import Painters
from inference.cache import ImageCache
from inference.encodings import EncodeAhead
from inference.followers import Followers
from inference.jobqueue import JobQueue
from inference.jobs import CANCELLED
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PLAYER
from inference.jobs import PREEMPTIBLE
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import Ended
from inference.jobs import Job
from inference.jobs import Snapshot
from inference.jobs import expired
from inference.request import GenerationRequest

MAX_NOTES = 20  # notes for the admin kept (the newest): continuations painted as plain pictures


class JobTable:
    """The jobs of a `GenerationService` and what it knows of them; its arguments are the service's (see there).

    Every field changes only under ``_cond``'s lock, and every change to a job wakes whoever waits on it.
    """

    def __init__(self, backend: Backend, cache: ImageCache, model: str, max_queue: int = 64, max_batch: int = 4,
                 workers: int = 1, preview_every: int = 2, seconds_per_job: float = 5.0, max_per_client: int = 0,
                 timeout: float = 0, gather: float = 0.02, max_per_api_client: int = 0, max_streams: int = 0,
                 max_streams_per_client: int = 0, encode_ahead: EncodeAhead | None = None):
        self.backend = backend
        self.cache = cache
        self.model = model
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.preview_every = preview_every
        self.max_per_client = max_per_client
        self.max_per_api_client = max_per_api_client
        self.timeout = timeout
        self.gather = gather
        self.encode_ahead = encode_ahead
        self._jobs: dict[str, Job] = {}
        self._ended = Ended()  # how jobs that left the table ended, for followers that look later (bounded)
        self._queue = JobQueue()
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._versions = itertools.count(1)
        self._closed = False
        self._durations: deque[float] = deque(maxlen=200)
        self._seconds_per_job = seconds_per_job
        self._running_batches: list[list[str]] = []
        self._notes: deque[dict[str, Any]] = deque(maxlen=MAX_NOTES)
        self.followers = Followers(max_streams, max_streams_per_client)
        self.counters = {"submitted": 0, "coalesced": 0, "cache_hits": 0, "generated": 0, "failed": 0,
                         "cancelled": 0, "rejected": 0, "batches": 0, "prefetched": 0, "prefetch_used": 0,
                         "preempted": 0, "requeued": 0, "fallbacks": 0}
        # Several painter processes (inference/painters.py): a painting thread per painter, each batch to a free one;
        # else ``workers`` painting threads.  inference/painting.py starts them.
        self._pool = backend if isinstance(backend, Painters) else None
        self._workers = 0 if self._pool else workers
        self._threads: list[threading.Thread] = []

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop: nothing more is painted (a batch being painted stops at its next step), nobody waits any longer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.encode_ahead is not None:
            self.encode_ahead.close()

    def key(self, request: GenerationRequest) -> str:
        """The cache key of ``request``'s picture (model + normalized request), by which its job is followed."""
        return request.cache_key(self.model)

    # -- following a job -------------------------------------------------------------------------------------

    def state_of(self, key: str) -> str | None:
        """The state of the job with this key ("done" when only its picture is cached), without reading the picture."""
        with self._cond:
            job = self._jobs.get(key)
            if job is not None:
                return job.state
        return DONE if key in self.cache else None

    def lookup(self, key: str) -> Snapshot | None:
        """The state of the job with this key, or of its cached picture; None when neither exists."""
        with self._cond:
            job = self._jobs.get(key)
            if job is not None:
                return self._snapshot(job)
            failed = self._ended.get(key)
        cached = self.cache.get(key)
        if cached is None:
            return failed
        return Snapshot(key, DONE, 0, 0, 0, 0, None, cached.png, cached.meta, "", "")

    def snapshot(self, key: str) -> Snapshot:
        """The job's state now; a key with neither a job nor a cached picture reads as cancelled."""
        return self.lookup(key) or Snapshot(key, CANCELLED, 0, 0, 0, 0, None, None, {}, "", "")

    def follow(self, key: str, seen_version: int, timeout: float) -> Snapshot | None:
        """Block until the job changes past ``seen_version`` (or ends, or goes away); None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(key)
                if job is None:
                    break  # ended and forgotten, or cancelled: the cache (or its absence) says how it ended
                if job.version > seen_version:
                    return self._snapshot(job)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._cond.wait(remaining)
        return self.snapshot(key)

    def wait(self, key: str, timeout: float | None = None) -> Snapshot:
        """Block until the job is done, failed or cancelled (or ``timeout`` seconds pass); its last snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        snap = self.snapshot(key)
        while snap.state in (QUEUED, RUNNING):
            remaining = 30.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                break
            snap = self.follow(key, snap.version, min(30.0, remaining)) or self.snapshot(key)
        return snap

    def _snapshot(self, job: Job) -> Snapshot:
        position = self._queue.position(job) if job.state == QUEUED else 0
        status = self.backend.status()
        waiting_for = status.message if status.state == "loading" else ""
        return Snapshot(job.key, job.state, job.version, position, job.step, job.total, job.preview, job.png,
                        dict(job.meta), job.error, job.hint, waiting_for,
                        "img2img" if job.request.is_img2img else "txt2img")

    def _remember(self, job: Job) -> None:
        """Keep how a job that leaves the table ended, so a follower that looks later still learns why."""
        self._ended.remember(self._snapshot(job))

    def _forget_ended(self) -> None:
        """Drop the finished and failed jobs `expired` names from the table (remembering how the failed ones ended)."""
        for job in expired(self._jobs.values()):
            if job.state == FAILED:
                self._remember(job)
            del self._jobs[job.key]

    # -- telling how it goes ---------------------------------------------------------------------------------

    def _idle(self) -> int:
        """Painters free for the next batch: a pool's ready and idle painters; else this thread's backend once
        loaded (each painting thread of a single backend is one painter)."""
        if self._pool is not None:
            return self._pool.free()
        if self.backend.status().state == "loading":
            return 0
        return len(self._threads) - len(self._running_batches)

    def _preempt_for(self, job: Job) -> None:
        """Someone now waits for ``job`` and no painter is free: stop one batch that is only paint-ahead or API work
        of a lower priority (a player or admin preempts both; nothing preempts for an API job), the one least far
        along; it goes back to the queue."""
        if self._idle():
            return
        candidates = []
        for keys in self._running_batches:
            running = [self._jobs[k] for k in keys if k in self._jobs]
            if running and job not in running and all(j.priority in PREEMPTIBLE and j.priority > job.priority
                                                      and job.priority not in PREEMPTIBLE and not j.preempted
                                                      for j in running):
                candidates.append(running)
        if candidates:
            for other in min(candidates, key=lambda jobs: jobs[0].step):
                other.preempted = True

    def retry_after(self, priority: int = PLAYER) -> int:
        """Seconds until a place in the queue is likely to free up for a job of ``priority`` (the jobs that go
        first)."""
        per_batch = sum(self._durations) / len(self._durations) if self._durations else self._seconds_per_job
        ahead = self._queue.ahead_of(priority)
        return max(1, round(per_batch * max(1, ahead) / max(1, self.max_batch)))

    def stats(self) -> dict[str, Any]:
        """Queue depth per priority, running batches, cache and timing figures."""
        with self._cond:
            depth = self._queue.depth()
            durations = sorted(self._durations)
            counters = dict(self.counters)
            running = [list(batch) for batch in self._running_batches]
            jobs = len(self._jobs)
            notes = list(reversed(self._notes))  # newest first
        lookups = counters["cache_hits"] + counters["generated"] + counters["failed"]
        return {
            "jobs": jobs,
            "streams": {
                "open": self.followers.count(),
                "max": self.followers.total,
                "per_client": self.followers.per_client,
            },
            "queue": depth,
            "queued": sum(depth.values()),
            "max_queue": self.max_queue,
            "running": running,
            "cache": {
                "entries": len(self.cache),
                "bytes": self.cache.total_bytes,
                "max_bytes": self.cache.max_bytes,
                "hits": counters["cache_hits"],
                "misses": counters["generated"] + counters["failed"],
                "hit_rate": round(counters["cache_hits"] / lookups, 3) if lookups else None,
            },
            "generation_seconds": {
                "mean": round(sum(durations) / len(durations), 3) if durations else None,
                # nearest rank: the smallest time at least 95 % of batches took no longer than
                "p95": round(durations[-(-95 * len(durations) // 100) - 1], 3) if durations else None,
                "batches": counters["batches"],
            },
            "prefetch": {
                "queued": counters["prefetched"],
                "used": counters["prefetch_used"],
                "hit_rate": round(counters["prefetch_used"] / counters["prefetched"], 3)
                if counters["prefetched"]
                else None,
            },
            "counters": counters,
            "notes": notes,
            "backend": {"state": self.backend.status().state, "message": self.backend.status().message},
            **({"painters": self._pool.painters()} if self._pool is not None else {}),
            **({"encode_ahead": self.encode_ahead.stats()} if self.encode_ahead is not None else {}),
        }
