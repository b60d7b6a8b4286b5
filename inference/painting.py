"""The painting threads of the generation service: each takes the next batch, has a painter paint it (with live
previews, stops and preemption on the way) and records how it ended.

One thread per backend call in flight: ``workers`` of them for one backend, or one per painter of a pool
(inference/painters.py), each batch to a free painter.  A batch that is not full waits a moment (``gather``) for
compatible jobs asked for at the same moment.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import PainterLost
from inference.backend import Paints
from inference.continuations import Continuations
from inference.jobs import CANCELLED
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PREEMPTIBLE
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from inference.jobs import Job
from inference.previews import preview_frames
from inference.previews import wants_preview

log = logging.getLogger(__name__)

MAX_LOSSES = 3  # a picture whose painter process dies this many times under it fails instead of going back again


class PaintingThreads(Continuations):
    """The job table with its continuations, painted by threads that take batches from the queue."""

    def start(self) -> None:
        """Start the painting threads; with a pool of painters, one more each time the pool grows."""
        self.ensure_workers(self._workers)
        if self._pool is not None:
            self._pool.watch(self.ensure_workers)

    def ensure_workers(self, count: int) -> None:
        """Have at least ``count`` painting threads (one per painter of a pool, which may grow)."""
        with self._cond:
            while len(self._threads) < count:
                thread = threading.Thread(target=self._work, name=f"painter-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

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
                if self.encode_ahead is not None:  # for the pages, before they ask (it starts before they can)
                    self.encode_ahead.offer(job.key, png)
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
