"""Open followers of the generation service's jobs (picture streams, a plain client waiting for its picture)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable


class Followers:
    """Open followers of jobs (picture streams, a plain client waiting for its picture), each holding one server
    thread: at most ``total`` at once and ``per_client`` per client (0 = no cap).  The client "" (the person at
    this computer) is only counted in the total.  Keys are bounded by ``total``: a client with none open is gone."""

    def __init__(self, total: int = 0, per_client: int = 0):
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _room(self, client: str) -> bool:
        if self.total and sum(self._open.values()) >= self.total:
            return False
        return not (client and self.per_client and self._open[client] >= self.per_client)

    def available(self, client: str) -> bool:
        """Whether ``client`` could open one more follower now."""
        with self._lock:
            return self._room(client)

    def take(self, client: str) -> Callable[[], None] | None:
        """Open a follower for ``client``: a function that closes it (safe to call more than once), or None when
        the client or the server is at its cap."""
        with self._lock:
            if not self._room(client):
                return None
            self._open[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open[client] -= 1
                if self._open[client] <= 0:
                    del self._open[client]

        return release

    def count(self, client: str | None = None) -> int:
        with self._lock:
            return sum(self._open.values()) if client is None else self._open.get(client, 0)
