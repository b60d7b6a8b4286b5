"""The generation service's queue: the jobs waiting for a painter, the order they are painted in, and which of them
may be painted together as one batch.  A continuation waiting for its source picture (`Job.waits`) holds its place
in the queue and counts in its bounds, but is not painted, nor batched, until it has that picture.

No locks and no threads here: the service's lock guards the queue, and the service decides when to take a batch.
"""

from __future__ import annotations

from collections.abc import Iterator

from inference.jobs import API
from inference.jobs import PREFETCH
from inference.jobs import PRIORITY_NAMES
from inference.jobs import Job


def order(job: Job) -> tuple[int, int]:
    """Most urgent first; within a priority first come first served, except paint-ahead, which goes newest first:
    the slides a player is reading now matter more than those they have moved past."""
    return job.priority, -job.seq if job.priority == PREFETCH else job.seq


def same_part(job: Job, priority: int) -> bool:
    """Whether ``job`` waits in the part of the queue a job of ``priority`` goes to (API jobs have their own)."""
    return (job.priority == API) == (priority == API)


class JobQueue:
    """Queued jobs in the order they were asked for; `head` and `take_batch` follow `order`."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs))

    def __contains__(self, job: Job) -> bool:
        return job in self._jobs

    def add(self, job: Job) -> None:
        self._jobs.append(job)

    def remove(self, job: Job) -> None:
        self._jobs.remove(job)

    def ready(self) -> list[Job]:
        """The jobs that can be painted now (all but the continuations waiting for their source pictures)."""
        return [j for j in self._jobs if not j.waits]

    def has_ready(self) -> bool:
        return any(not j.waits for j in self._jobs)

    def waiting_on(self, key: str) -> list[Job]:
        """The continuations waiting for the picture with this key."""
        return [j for j in self._jobs if j.waits and j.source == key]

    def head(self) -> Job:
        """The job painted next (there must be one ready: `has_ready`)."""
        return min(self.ready(), key=order)

    def position(self, job: Job) -> int:
        """1 for the job painted next, 2 for the one after..., 0 for a job not in the queue."""
        ahead = sorted(self._jobs, key=order)
        return ahead.index(job) + 1 if job in ahead else 0

    def in_part(self, priority: int) -> int:
        """Jobs waiting in the part of the queue a job of ``priority`` goes to."""
        return sum(1 for j in self._jobs if same_part(j, priority))

    def of_client(self, client: str, priority: int) -> int:
        """``client``'s jobs waiting in the part a job of ``priority`` goes to (paint-ahead not counted)."""
        return sum(1 for j in self._jobs if client in j.clients and j.priority != PREFETCH and same_part(j, priority))

    def ahead_of(self, priority: int) -> int:
        """Jobs that go before a new job of ``priority``."""
        return sum(1 for j in self._jobs if j.priority <= priority)

    def depth(self) -> dict[str, int]:
        """Jobs waiting at each priority, by its name."""
        return {name: sum(1 for j in self._jobs if j.priority == p) for p, name in PRIORITY_NAMES.items()}

    def newest_prefetch(self) -> Job | None:
        """The paint-ahead job asked for last (the first to give its place up), if any; never the source of a
        continuation that waits for it (the continuation, asked for later, goes first)."""
        needed = {j.source for j in self._jobs if j.waits}
        return max((j for j in self._jobs if j.priority == PREFETCH and j.key not in needed), key=lambda j: j.seq,
                   default=None)

    @staticmethod
    def compatible(job: Job, head: Job) -> bool:
        """Whether ``job`` can be painted in one batch with ``head``: same priority and the same model settings (one
        API client's jobs per batch)."""
        return (job.priority == head.priority and (head.priority != API or job.clients == head.clients)
                and job.request.batch_key() == head.request.batch_key())

    def mates(self, head: Job) -> int:
        """Queued jobs of ``head``'s priority and settings, ``head`` included (what a batch of it could hold)."""
        return sum(1 for j in self.ready()
                   if j.priority == head.priority and j.request.batch_key() == head.request.batch_key())

    def take_batch(self, max_batch: int) -> list[Job]:
        """Take the next batch out of the queue: the head and up to ``max_batch - 1`` compatible jobs, oldest
        first."""
        head = self.head()
        batch = [head] + [j for j in sorted(self.ready(), key=lambda j: j.seq)
                          if j is not head and self.compatible(j, head)][: max_batch - 1]
        for job in batch:
            self._jobs.remove(job)
        return batch
