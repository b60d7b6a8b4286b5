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

The service is built in layers, one module each: inference/jobtable.py (the jobs, following them, the figures),
inference/continuations.py (a continuation waits for its source; every change is announced), inference/painting.py
(the painting threads) and this module (asking for pictures, and `build_service`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.backend import Backend
from inference.backend import BackendSettings
from inference.backend import create_backend
from inference.cache import ImageCache
from inference.encodings import EncodeAhead
from inference.jobs import API
from inference.jobs import CANCELLED
from inference.jobs import DONE
from inference.jobs import PLAYER
from inference.jobs import PREFETCH
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import Job
from inference.jobs import QueueFull
from inference.jobs import Snapshot
from inference.painting import PaintingThreads
from inference.request import GenerationRequest


class GenerationService(PaintingThreads):
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
        encode_ahead (`EncodeAhead`, *optional*): gets each picture painted, to encode it for the pages before
            they ask; closed with the service.
    """

    # -- asking for pictures ---------------------------------------------------------------------------------

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


def build_service(settings: Mapping[str, Any], instance: Path, backend: Backend | None = None,
                  warmup: list[tuple[int, int, bool]] | None = None,
                  encode_ahead: EncodeAhead | None = None) -> GenerationService:
    """The image side, the same for the game and the API alone: backend (started here unless handed in), disk cache
    and service, from the settings table's values (``BACKEND``, ``MODEL``, ``QUEUE_LIMIT``...); ``encode_ahead``
    (the game's) encodes each picture painted for the pages."""
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
                                max_streams_per_client=settings["STREAMS_PER_CLIENT"], encode_ahead=encode_ahead)
    service.start()
    return service
