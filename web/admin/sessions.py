"""Who may use the admin pages: failed sign-ins per client, and admin sessions kept on the server.

`SignInGuard` counts wrong passwords per client, whichever way they came (the sign-in form or HTTP Basic auth on
any admin page): past the limit, the client is refused without its password being looked at until the oldest
failure leaves the window.  Attempts still being checked count too, so many requests sent at once cannot slip
past the limit.

`AdminSessions` keeps each signed-in admin's session in the instance folder (the cookie holds only a random
token; the file holds its hash and when it expires).  A session ends when it expires, at sign-out, at "sign out
everywhere", and for every session when the admin password changes: a copied cookie is then worth nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class SignInGuard:
    """At most ``limit`` failed sign-ins per client in ``window`` seconds (and at most ``max_clients`` tracked)."""

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def begin(self, client: str) -> int | None:
        """Reserve a try for ``client``: None when it may go on (call `end` after), else seconds until it may."""
        now = self.clock()
        with self._lock:
            failures = self._failures.get(client)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            used = len(failures or ()) + self._pending.get(client, 0)
            if used >= self.limit:
                oldest = failures[0] if failures else now
                return max(1, int(oldest + self.window - now + 0.999))
            self._pending[client] = self._pending.get(client, 0) + 1
            return None

    def end(self, client: str, ok: bool) -> None:
        """The try reserved by `begin` is over; a wrong password counts against the client for ``window`` s."""
        now = self.clock()
        with self._lock:
            left = self._pending.get(client, 1) - 1
            if left:
                self._pending[client] = left
            else:
                self._pending.pop(client, None)
            if not ok:
                if client not in self._failures and len(self._failures) >= self.max_clients:
                    self._forget_oldest(now)
                self._failures.setdefault(client, deque()).append(now)

    def _forget_oldest(self, now: float) -> None:
        for client in [c for c, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[client]
        while len(self._failures) >= self.max_clients:  # all recent: drop the client that failed longest ago
            del self._failures[min(self._failures, key=lambda c: self._failures[c][-1])]


class AdminSessions:
    """Signed-in admin sessions, kept in a JSON file (token hashes and expiry times) so that they can be ended.

    Args:
        path (`Path`): the file, in the instance folder.
        lifetime (`float`): seconds a session lasts from its sign-in (the current setting counts, so lowering it
            shortens sessions already open).
        max_sessions (`int`): open sessions kept at most; past it the one expiring first is ended.
    """

    def __init__(self, path: Path, lifetime: float, max_sessions: int = 64,
                 clock: Callable[[], float] = time.time):
        self.path = path
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self.clock = clock
        self._lock = threading.Lock()
        self.password = ""  # the hash of the admin password these sessions were opened with
        self._sessions: dict[str, float] = {}  # sha256(token) -> when it was opened
        try:
            data = json.loads(path.read_text())
            self.password = str(data.get("password", ""))
            self._sessions = {str(k): float(v) for k, v in dict(data.get("sessions", {})).items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError):
            log.warning("%s is not readable; every admin must sign in again", path)

    def set_password(self, password_hash: str) -> str:
        """Record the admin password's hash; a different one than before ends every session.  Returns it."""
        with self._lock:
            if password_hash != self.password:
                if self._sessions:
                    log.info("the admin password changed: every admin session is ended")
                self.password, self._sessions = password_hash, {}
                self._save()
        return password_hash

    def open(self) -> str:
        """Start a session; return its token (for the signed cookie)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sessions = {k: t for k, t in self._sessions.items() if t + self.lifetime > now}
            while len(self._sessions) >= self.max_sessions:  # the oldest goes first
                del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
            self._sessions[_digest(token)] = now
            self._save()
        return token

    def valid(self, token: object) -> bool:
        if not isinstance(token, str) or not token:
            return False
        with self._lock:
            opened = self._sessions.get(_digest(token))
        return opened is not None and opened + self.lifetime > self.clock()

    def close(self, token: object) -> None:
        if isinstance(token, str):
            with self._lock:
                if self._sessions.pop(_digest(token), None) is not None:
                    self._save()

    def close_all(self) -> int:
        """End every session; return how many were open."""
        with self._lock:
            count = sum(t + self.lifetime > self.clock() for t in self._sessions.values())
            self._sessions = {}
            self._save()
        return count

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"password": self.password, "sessions": self._sessions}, f)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
