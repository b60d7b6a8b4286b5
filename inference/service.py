"""The generation service: every picture goes through here.

A priority queue in front of one backend (a player waiting > an admin preview > a prefetch > an /sdapi call).  A job
is keyed by the hash of model + normalized request: asking for a key that is queued or running joins that job, so
two players on one slide cost one generation, and a finished key comes from the disk cache.  Compatible queued jobs
of the same priority run as one batch.  The queue is bounded (`QueueFull` carries a Retry-After); prefetches
yield their place to players and are dropped when nobody wants them any more.  /sdapi (API) jobs wait in their own
bounded part of the queue, never take a player's place, and a batch of them yields to a waiting player or admin the
way paint-ahead does.  Every change to a job bumps its version and wakes whoever follows it (`follow`), which is
what the picture streams are built on.

A continuation (a request whose ``init_from`` names another picture's key: a story slide painted from another
slide's picture) is asked for with its sources (`submit_chain`): each source is queued, or joined, at the same
priority, and the continuation waits in the queue, not painted nor batched, until its source is done; it then gets
the source's picture as its ``init_image``.  A source that fails or is cancelled does not leave it stranded: it is
painted as a plain picture of the same prompt and seed, which its followers get, but which is not cached under its
key (a later good source gives the real continuation); the admin gets a note (`stats()["notes"]`) and the log a
warning.

Nothing here grows without bound: the queue has its cap, finished and failed jobs stay in the table only a short
while after they end (a reconnecting stream still finds them) and at most a fixed number and size of them, the
browser encodings are a small least-recently-used memo, and open followers (picture streams, long waits) are
counted per client and in total (`Followers`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.backend import Backend
from inference.backend import BackendSettings
from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import PainterLost
from inference.backend import Painters
from inference.backend import Paints
from inference.backend import create_backend
from inference.cache import ImageCache
from inference.followers import Followers
from inference.jobqueue import JobQueue
from inference.jobs import API
from inference.jobs import CANCELLED
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PLAYER
from inference.jobs import PREEMPTIBLE
from inference.jobs import PREFETCH
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import Ended
from inference.jobs import Job
from inference.jobs import QueueFull
from inference.jobs import Snapshot
from inference.jobs import expired
from inference.previews import preview_frames
from inference.previews import wants_preview
from inference.request import GenerationRequest

log = logging.getLogger(__name__)

MAX_LOSSES = 3  # a picture whose painter process dies this many times under it fails instead of going back again
MAX_NOTES = 20  # notes for the admin kept (the newest): continuations painted as plain pictures


class GenerationService:
    """Queue, coalesce, batch, cache and stream picture jobs for one backend.

    Args:
        backend (`Backend`): the engine that paints.
        cache (`ImageCache`): finished pictures by key.
        model (`str`): the model name that goes into every cache key.
        max_queue (`int`, *optional*, defaults to 64): queued jobs allowed before `QueueFull`.
        max_batch (`int`, *optional*, defaults to 4): jobs painted together in one backend call.
        workers (`int`, *optional*, defaults to 1): backend calls in flight (1 for an in-process GPU).
        preview_every (`int`, *optional*, defaults to 2): steps between previews (0 = none).
        seconds_per_job (`float`, *optional*): first guess of a job's duration, for Retry-After.
        max_per_client (`int`, *optional*): waiting pictures one client may have (0 = no cap; paint-ahead not counted).
        max_per_api_client (`int`, *optional*): waiting pictures one /sdapi client may have at API priority
            (0 = no cap).
        timeout (`float`, *optional*): seconds after which a picture still painting is given up (0 = never).
        gather (`float`, *optional*, defaults to 0.02): seconds a batch that is not full may wait, counted from its
            oldest job's submission, for compatible jobs asked for at the same moment (0 = start at once).
        max_streams, max_streams_per_client (`int`, *optional*): open followers (picture streams) in total and
            per client (0 = no cap); see `Followers`.
    """

    def __init__(self, backend: Backend, cache: ImageCache, model: str, max_queue: int = 64, max_batch: int = 4,
                 workers: int = 1, preview_every: int = 2, seconds_per_job: float = 5.0, max_per_client: int = 0,
                 timeout: float = 0, gather: float = 0.02, max_per_api_client: int = 0, max_streams: int = 0,
                 max_streams_per_client: int = 0):
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
        # Several painter processes (inference/painters.py): a painting thread per painter, each batch to a free one.
        self._pool = backend if isinstance(backend, Painters) else None
        self._threads = [] if self._pool else [
            threading.Thread(target=self._work, name=f"painter-{i}", daemon=True) for i in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        if self._pool is not None:
            self._pool.watch(self.ensure_workers)

    def ensure_workers(self, count: int) -> None:
        """Have at least ``count`` painting threads (one per painter of a pool, which may grow)."""
        with self._cond:
            while len(self._threads) < count:
                thread = threading.Thread(target=self._work, name=f"painter-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- asking for pictures ---------------------------------------------------------------------------------

    def key(self, request: GenerationRequest) -> str:
        return request.cache_key(self.model)

    def submit(self, request: GenerationRequest, priority: int = PLAYER, who: str = "",
               client: str = "", label: str = "") -> Snapshot | None:
        """Ask for the picture of ``request``: from the cache, joined if already queued or running, or new.
        Return a snapshot of its job (follow it by ``snapshot.key``).  ``label`` says what the picture is, for the
        admin's notes and the log.

        A player or admin past the queue bound gets `QueueFull`; a prefetch past it gets None (it is optional).
        Prefetches make room for players by giving up their place.  API jobs are bounded apart (``max_queue`` of
        them, ``max_per_api_client`` per client), so they never fill the players' queue.  A continuation
        (``init_from``) should come with its sources (`submit_chain`); alone, it starts from its source's picture
        when that is painted or on its way, else it is painted as a plain picture.
        """
        job = self._submit(request, priority, who, client, label)
        if job is None:
            return None
        with self._cond:
            return self._snapshot(job)

    def submit_chain(self, pictures: Sequence[tuple[GenerationRequest, str]], priority: int = PLAYER, who: str = "",
                     client: str = "") -> Snapshot | None:
        """Ask for the last of ``pictures`` ((request, label) pairs), each of which continues the one before it
        (its ``init_from`` is that one's key; the first is a plain picture): the pictures it needs are asked for
        first, at the same priority, joining any job already queued for them (a source is never painted twice, and
        a waiting player's ask raises paint-ahead of them to player priority).  A picture already painted needs
        none of those before it.  Return the last picture's snapshot; `QueueFull` and None as `submit`.  The
        sources count in the queue's bound (two pictures are two jobs) but not in ``client``'s own cap: the client
        asked for one picture."""
        if not pictures:
            raise ValueError("submit_chain needs at least one picture")
        keys = [self.key(request) for request, _ in pictures]
        for number, ((request, _), before) in enumerate(zip(pictures[1:], keys, strict=False), 2):
            if request.init_from != before:
                raise ValueError(f"picture {number} of the chain does not continue picture {number - 1} (its "
                                 "init_from must be that picture's key)")
        first = next((i for i in range(len(keys) - 1, -1, -1) if self._finished(keys[i])), 0)
        if first < len(keys) - 1:
            cap = self.max_per_api_client if priority == API else self.max_per_client
            with self._cond:
                mine = self._jobs.get(keys[-1])
                if (client and priority != PREFETCH and cap and (mine is None or mine.state not in (QUEUED, RUNNING))
                        and self._queue.of_client(client, priority) >= cap):
                    self.counters["rejected"] += 1
                    raise QueueFull(self.retry_after(priority), mine=True)
            for request, label in pictures[first:-1]:
                if self._submit(request, priority, who, "", label) is None:
                    return None  # paint-ahead without room: the rest would only wait
        request, label = pictures[-1]
        return self.submit(request, priority, who, client, label)

    def _finished(self, key: str) -> bool:
        """Whether the picture with this key is painted (in the table or the cache): nothing before it is needed."""
        with self._cond:
            job = self._jobs.get(key)
            if job is not None and job.state in (QUEUED, RUNNING, DONE):
                return self._joinable(job) and job.state == DONE
        return key in self.cache

    def _joinable(self, job: Job) -> bool:
        """Whether an ask for ``job``'s key joins it: queued, running or done; but a continuation painted as a plain
        picture only while its source is neither painted nor on its way (else the real one is painted now)."""
        if job.state not in (QUEUED, RUNNING, DONE):
            return False
        if job.state != DONE or not job.fallback:
            return True
        source = self._jobs.get(job.source)
        if source is not None and (source.state in (QUEUED, RUNNING) or source.state == DONE and not source.fallback):
            return False
        return job.source not in self.cache

    def _submit(self, request: GenerationRequest, priority: int, who: str, client: str, label: str = "") -> Job | None:
        key = self.key(request)
        with self._cond:
            self.counters["submitted"] += 1
            job = self._jobs.get(key)
            if job is not None and self._joinable(job):
                self.counters["cache_hits" if job.state == DONE else "coalesced"] += 1
                if who:
                    job.interest.add(who)
                if client:
                    job.clients.add(client)
                job.label = job.label or label
                if priority < job.priority:  # promoted: someone now waits for what was a prefetch
                    if job.priority == PREFETCH and not job.from_cache:
                        self.counters["prefetch_used"] += 1
                    job.priority = priority
                    self._changed(job)
                    if job.state == QUEUED and not job.waits:
                        self._preempt_for(job)
                return job
            source_live = request.init_from in self._jobs and self._jobs[request.init_from].state in (QUEUED, RUNNING,
                                                                                                      DONE)
        cached = self.cache.get(key)
        waits = bool(request.init_from) and request.init_image is None
        source_cached = self.cache.get(request.init_from) if waits and not source_live else None
        with self._cond:
            if cached is not None:
                self.counters["cache_hits"] += 1
                job = Job(key, request, priority, next(self._seq), DONE, png=cached.png, meta=cached.meta,
                          from_cache=True, interest={who} if who else set(), ended=time.monotonic())
                self._jobs[key] = job
                self._forget_ended()
                return job
            if key in self._jobs and self._jobs[key].state in (QUEUED, RUNNING):  # raced with another submitter
                self.counters["coalesced"] += 1
                return self._jobs[key]
            cap = self.max_per_api_client if priority == API else self.max_per_client
            if client and priority != PREFETCH and cap and self._queue.of_client(client, priority) >= cap:
                self.counters["rejected"] += 1
                raise QueueFull(self.retry_after(priority), mine=True)
            if self._queue.in_part(priority) >= self.max_queue and (priority == API or not self._make_room(priority)):
                self.counters["rejected"] += 1
                if priority == PREFETCH:
                    return None
                raise QueueFull(self.retry_after(priority))
            job = Job(key, request, priority, next(self._seq), interest={who} if who else set(),
                      clients={client} if client else set(), label=label, source=request.init_from)
            if priority == PREFETCH:
                self.counters["prefetched"] += 1
            self._jobs[key] = job
            self._queue.add(job)
            if job.waits:
                self._link(job, source_cached.png if source_cached is not None else None)
            if priority != PREFETCH and not job.waits:
                self._preempt_for(job)
            self._cond.notify_all()
            return job

    def _link(self, job: Job, cached: bytes | None) -> None:
        """A continuation just queued: it starts from its source's picture when that is painted (``cached``: the
        source's picture from the disk cache, when it has no job), waits while the source is queued or painting,
        and is painted as a plain picture when its source failed, was cancelled or was never asked for."""
        source = self._jobs.get(job.source)
        if source is not None and source.state in (QUEUED, RUNNING):
            return
        if source is not None and source.state == DONE and source.png is not None and not source.fallback:
            job.request = job.request.replace(init_image=source.png)
        elif source is None and cached is not None:
            job.request = job.request.replace(init_image=cached)
        else:
            self._fall_back(job, source)

    def _release(self, source: Job) -> None:
        """``source`` has ended: the continuations waiting for it get its picture, or are painted as plain pictures
        when it has none (failed, cancelled, or itself painted as a plain picture)."""
        for job in self._queue.waiting_on(source.key):
            if source.state == DONE and source.png is not None and not source.fallback:
                job.request = job.request.replace(init_image=source.png)
            else:
                self._fall_back(job, source)
            self._changed(job)
            if job.priority != PREFETCH:
                self._preempt_for(job)

    def _fall_back(self, job: Job, source: Job | None) -> None:
        """Paint a continuation as a plain picture (same prompt and seed; not cached under its key) and tell the
        admin why."""
        if source is None:
            why = "was neither painted nor asked for"
        elif source.fallback:
            why = "was itself painted as a plain picture"
        elif source.state == FAILED:
            why = f"failed ({source.error[:200]})" if source.error else "failed"
        else:
            why = f"was {source.state}" + (f" ({source.error[:100]})" if source.error else "")
        what = source.label if source is not None and source.label else job.source
        job.request = job.request.replace(init_from="")
        job.fallback = f"painted as a plain picture: the picture it continues ({what}) {why}"
        self.counters["fallbacks"] += 1
        self._notes.append({"time": time.time(), "key": job.key, "picture": job.label or f"picture {job.key}",
                            "message": job.fallback})
        log.warning("%s %s", job.label or f"picture {job.key}", job.fallback)

    def cancel(self, key: str, who: str = "") -> bool:
        """Withdraw ``who``'s interest in a queued prefetch; drop it when nobody else wants it.  True if dropped."""
        with self._cond:
            job = self._jobs.get(key)
            if job is None or job.state != QUEUED:
                return False
            job.interest.discard(who)
            if job.priority != PREFETCH or job.interest or self._queue.waiting_on(key):
                return False
            self._queue.remove(job)
            job.state = CANCELLED
            self.counters["cancelled"] += 1
            self._remember(self._jobs.pop(key))
            self._changed(job)
            return True

    def interrupt(self, owned_by: str, reason: str = "interrupted", queued: bool = False) -> int:
        """Stop the running jobs that only ``owned_by*`` askers want (a batch stops when all of its jobs are
        stopped; API batches hold one client's jobs only); with ``queued``, drop their waiting jobs too.
        Return the number of jobs stopped or dropped."""
        with self._cond:
            stopped = 0
            for keys in self._running_batches:
                for job in (self._jobs[k] for k in keys if k in self._jobs):
                    if self._owned(job, owned_by) and not job.stop:
                        job.stop = reason
                        stopped += 1
            for job in [j for j in self._queue if queued and self._owned(j, owned_by)]:
                self._queue.remove(job)
                job.state, job.error = CANCELLED, reason
                self.counters["cancelled"] += 1
                self._remember(self._jobs.pop(job.key))
                self._changed(job)
                stopped += 1
            return stopped

    @staticmethod
    def _owned(job: Job, owned_by: str) -> bool:
        return bool(job.interest) and all(w.startswith(owned_by) for w in job.interest)

    def withdraw(self, key: str, who: str) -> None:
        """Drop a queued job that only ``who`` asked for (an API request that was interrupted)."""
        with self._cond:
            job = self._jobs.get(key)
            if job is not None and job.state == QUEUED and job.interest <= {who}:
                self._queue.remove(job)
                job.state, job.error = CANCELLED, "interrupted"
                self._remember(self._jobs.pop(key))
                self._changed(job)

    def current(self, wanted_by: str = "") -> tuple[Snapshot, float, int] | None:
        """The first running job that a ``wanted_by*`` asker wants (for A1111's /progress; "" = anyone's), its
        seconds running, and the number of such jobs in flight or waiting."""
        with self._cond:
            def mine(job: Job) -> bool:
                return any(w.startswith(wanted_by) for w in job.interest) if wanted_by else True

            for keys in self._running_batches:
                for key in keys:
                    job = self._jobs.get(key)
                    if job is not None and job.state == RUNNING and mine(job):
                        running = [self._jobs[k] for b in self._running_batches for k in b if k in self._jobs]
                        in_flight = sum(1 for j in running + list(self._queue) if mine(j))
                        return self._snapshot(job), time.monotonic() - job.started, in_flight
            return None

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
                        dict(job.meta), job.error, job.hint, waiting_for)

    def _changed(self, job: Job) -> None:
        job.version = next(self._versions)  # one counter for all jobs: a key asked for again never goes back
        if job.state in (DONE, FAILED, CANCELLED):
            self._release(job)
        self._cond.notify_all()

    # -- the painter -----------------------------------------------------------------------------------------

    def _next_batch(self) -> list[Job]:
        batch = self._queue.take_batch(self.max_batch)
        for job in batch:
            job.state, job.started = RUNNING, time.monotonic()
            self._changed(job)
        return batch

    def _gather(self) -> None:
        """Hold a batch that is not full until ``gather`` seconds after its oldest job was asked for, so players who
        ask at the same moment share one batch.  Without it the first of 4 players asking at once was painted alone
        (the painter wakes on the first submit) and the other 3 after it: 1.33x the images/s of one at a time
        instead of the 3.4x a batch of 4 gives (H100, issue 14).  A job that already waited behind a running batch
        does not wait again."""
        while self.gather and self._queue.has_ready() and not self._closed:
            head = self._queue.head()
            remaining = head.created + self.gather - time.monotonic()
            if self._queue.mates(head) >= self.max_batch or remaining <= 0:
                return
            self._cond.wait(remaining)

    def _idle(self) -> int:
        """Painters free for the next batch: a pool's ready and idle painters; else this thread's backend once
        loaded (each painting thread of a single backend is one painter)."""
        if self._pool is not None:
            return self._pool.free()
        if self.backend.status().state == "loading":
            return 0
        return len(self._threads) - len(self._running_batches)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._queue.has_ready() or not self._idle()):
                    self._cond.wait(0.5)
                if self._closed:
                    return
                self._gather()
                if self._closed:
                    return
                if not self._queue.has_ready():
                    continue
                painter: Paints | None = self._pool.reserve() if self._pool is not None else self.backend
                if painter is None:
                    continue
                batch = self._next_batch()
                self._running_batches.append([j.key for j in batch])
            try:
                self._paint(batch, painter)
            finally:
                with self._cond:
                    self._running_batches.remove([j.key for j in batch])
                    if self._pool is not None:
                        self._cond.notify_all()  # a painter is free: a thread waiting for one may take it

    def _paint(self, batch: list[Job], painter: Paints) -> None:
        started = time.monotonic()

        def on_step(step: int, total: int, previews: Any) -> None:
            frames = previews() if wants_preview(step, total, self.preview_every) else None
            pictures = [] if frames is None else preview_frames(frames)
            with self._cond:
                for index, job in enumerate(batch):
                    job.step, job.total = step, total
                    if index < len(pictures) and pictures[index] is not None:
                        job.preview = pictures[index]
                    self._changed(job)
                stop = self._closed or all(job.stop for job in batch)
                preempt = all(job.preempted and job.priority in PREEMPTIBLE for job in batch)
            if stop:
                raise GenerationCancelled("interrupted")
            if preempt:
                raise GenerationCancelled("preempted")
            if self.timeout and time.monotonic() - started > self.timeout:
                raise TimeoutError(f"The picture took longer than {self.timeout:g} s and was given up.")

        try:
            results = painter.generate([job.request for job in batch], on_step)
        except PainterLost as exc:
            self._requeue(batch, str(exc))
            return
        except BackendUnavailable as exc:
            self._fail(batch, exc.status.message, exc.status.hint)
            return
        except TimeoutError as exc:
            self._fail(batch, str(exc), "The painter may be overloaded; try again in a moment.")
            return
        except GenerationCancelled:
            self._stopped(batch)
            return
        except Exception as exc:
            log.exception("painting a batch of %d failed", len(batch))
            self._fail(batch, f"{type(exc).__name__}: {exc}", "Try again; if it keeps failing, see the server log.")
            return
        seconds = time.monotonic() - started
        with self._cond:  # counted before any job reads as done: whoever sees one done sees its batch in stats()
            self.counters["generated"] += len(batch)
            self.counters["batches"] += 1
            self._durations.append(seconds)
        for job, result in zip(batch, results, strict=False):
            png = result.encode("png")
            meta = {"seed": result.seed, "info": result.info, "seconds": round(seconds, 3),
                    "width": result.image.width, "height": result.image.height}
            if job.fallback:  # not the real continuation: never cached under its key
                meta["fallback"] = job.fallback
            else:
                self.cache.put(job.key, png, meta)
            with self._cond:
                job.png, job.meta, job.state, job.preview, job.ended = png, meta, DONE, None, time.monotonic()
                self._changed(job)
        with self._cond:
            self._forget_ended()

    def _stopped(self, batch: list[Job]) -> None:
        """A batch stopped before its end: preempted paint-ahead goes back to the queue, the rest is cancelled."""
        with self._cond:
            if all(job.preempted and not job.stop for job in batch) and not self._closed:
                for job in batch:  # paint-ahead or API work gave way to a waiting player: back in line as it was
                    job.state, job.step, job.preview, job.preempted = QUEUED, 0, None, False
                    self._queue.add(job)
                    self._changed(job)
                self.counters["preempted"] += len(batch)
                return
            for job in batch:
                job.state, job.error = CANCELLED, job.stop or "interrupted"
                self.counters["cancelled"] += 1
                self._changed(job)
                if self._jobs.get(job.key) is job:
                    self._remember(self._jobs.pop(job.key))

    def _requeue(self, batch: list[Job], reason: str) -> None:
        """The painter process died under the batch, which was not painted: back in the queue for another painter
        (or the restarted one), unless its painter has died under it `MAX_LOSSES` times."""
        log.warning("%s: %d picture(s) go back to the queue", reason, len(batch))
        with self._cond:
            for job in batch:
                job.lost += 1
                if job.lost >= MAX_LOSSES or self._closed:
                    job.state, job.hint = FAILED, "Try again; if it keeps failing, see the painters on the admin page."
                    job.error = f"The painter stopped {job.lost} time(s) while painting this picture ({reason})."
                    self.counters["failed"] += 1
                else:
                    job.state, job.step, job.preview, job.preempted = QUEUED, 0, None, False
                    self._queue.add(job)
                    self.counters["requeued"] += 1
                self._changed(job)

    def _fail(self, batch: list[Job], message: str, hint: str) -> None:
        with self._cond:
            for job in batch:
                job.state, job.error, job.hint, job.preview, job.ended = FAILED, message, hint, None, time.monotonic()
                self.counters["failed"] += 1
                self._changed(job)
            self._forget_ended()

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

    def _make_room(self, priority: int) -> bool:
        """Drop the newest queued prefetch to let a more urgent job in; True if room was made."""
        victim = self._queue.newest_prefetch()
        if priority == PREFETCH or victim is None:
            return False
        self._queue.remove(victim)
        victim.state = CANCELLED
        self.counters["cancelled"] += 1
        if self._jobs.pop(victim.key, None) is not None:
            self._remember(victim)
        self._changed(victim)
        return True

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
        }



def build_service(settings: Mapping[str, Any], instance: Path, backend: Backend | None = None,
                  warmup: list[tuple[int, int, bool]] | None = None) -> GenerationService:
    """The image side, the same for the game and the API alone: backend (started here unless handed in), disk cache
    and service, from the settings table's values (``BACKEND``, ``MODEL``, ``QUEUE_LIMIT``...)."""
    if backend is None:
        backend_settings = BackendSettings(
            kind=settings["BACKEND"], api_url=settings["API_URL"], api_auth=settings["API_AUTH"],
            model=settings["MODEL"], device=settings["DEVICE"], dtype=settings["DTYPE"],
            model_config=settings["MODEL_CONFIG"],
            max_size=None if settings["MAX_SIZE"] == "auto" else settings["MAX_SIZE"], offline=settings["OFFLINE"],
            cache_dir=settings["HF_CACHE"] or None, optimize=settings["OPTIMIZE"], deepcache=settings["DEEPCACHE"],
            compile_cache=str(instance / "inductor"), warmup=warmup)
        painters, address = settings.get("PAINTERS", "inprocess"), settings.get("RAY", "")
        if painters != "inprocess" or address:  # painter processes on Ray (Ray is imported only then)
            from inference.painters import RayPainters

            backend = RayPainters(backend_settings, None if painters == "inprocess" else int(painters), address,
                                  preview_every=settings["PREVIEW_EVERY"], log_level=settings["LOG_LEVEL"])
        else:
            backend = create_backend(backend_settings)
        backend.start()
    cache = ImageCache(instance / "cache", settings["CACHE_MAX_MB"] * 1024 * 1024)
    # The cache key names what changes every picture: the weights' content, config, dtype and size cap.
    remote = settings["BACKEND"] == "remote"
    model_key = settings["API_URL"] if remote else backend.identity(instance)
    service = GenerationService(backend, cache, model_key, max_queue=settings["QUEUE_LIMIT"],
                                max_batch=1 if remote else settings["BATCH_SIZE"],
                                workers=settings["REMOTE_WORKERS"] if remote else 1,
                                preview_every=settings["PREVIEW_EVERY"], max_per_client=settings["PLAYER_QUEUE_LIMIT"],
                                timeout=settings["GENERATION_TIMEOUT"],
                                max_per_api_client=settings["SDAPI_CLIENT_LIMIT"], max_streams=settings["MAX_STREAMS"],
                                max_streams_per_client=settings["STREAMS_PER_CLIENT"])
    service.start()
    return service
