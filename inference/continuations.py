"""How a continuation waits for the picture it is painted from, and how every change to a job is announced.

A continuation is a request whose ``init_from`` names another picture's key (a story slide painted from another
slide's picture).  Queued, it waits, neither painted nor batched, until its source is done; it then gets the
source's picture as its ``init_image``.  A source that fails or is cancelled does not leave it stranded: it is
painted as a plain picture of the same prompt and seed, which its followers get, but which is not cached under its
key (a later good source gives the real continuation); the admin gets a note (``stats()["notes"]``) and the log a
warning.  Asking for a continuation with its sources is `GenerationService.submit_chain` (inference/service.py).
"""

from __future__ import annotations

import logging
import time

from inference.jobs import CANCELLED
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PREFETCH
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import Job
from inference.jobtable import JobTable

log = logging.getLogger(__name__)


class Continuations(JobTable):
    """The job table, with continuations that wait for their sources and every change announced (`_changed`)."""

    def _changed(self, job: Job) -> None:
        job.version = next(self._versions)  # one counter for all jobs: a key asked for again never goes back
        if job.state in (DONE, FAILED, CANCELLED):
            self._release(job)
        self._cond.notify_all()

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
