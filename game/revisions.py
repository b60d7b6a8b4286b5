"""Earlier versions of the story files, and the safe write that replaces one.

A story replaced or deleted through the admin is kept as ``<folder>/<slug>/<milliseconds>-<revision>.yaml``, the
newest ``keep`` of each story, so that every change has a way back.  A revision id is the first 12 hex digits of
the file's SHA-256: saves name the revision they were based on, and a stale one is refused (game/library.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".yaml"


@dataclass(frozen=True)
class Revision:
    """An earlier version of a story file, kept when it was replaced or deleted."""

    id: str
    slug: str
    saved: float
    revision: str
    path: Path


def revision_of(data: bytes) -> str:
    """The revision id of a story file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


class RevisionFolder:
    """The kept versions of every story, one folder per story (``slug`` checked by the caller)."""

    def __init__(self, folder: Path, keep: int = 50):
        self.folder = folder
        self.keep = keep

    def add(self, slug: str, text: str) -> Revision:
        """Keep ``text`` as the newest version of ``slug``; drop the oldest past ``keep``."""
        folder = self.folder / slug
        folder.mkdir(parents=True, exist_ok=True)
        revision = revision_of(text.encode("utf-8"))
        stamp = int(time.time() * 1000)
        path = folder / f"{stamp:013d}-{revision}{SUFFIX}"
        write_atomic(path, text)
        for old in sorted(folder.glob(f"*{SUFFIX}"))[: -self.keep]:
            old.unlink()
        return Revision(path.stem, slug, stamp / 1000, revision, path)

    def of(self, slug: str) -> list[Revision]:
        """Kept versions of a story, newest first (deleted stories included)."""
        folder = self.folder / slug
        found = []
        for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
            stamp, _, revision = path.stem.partition("-")
            found.append(Revision(path.stem, slug, int(stamp) / 1000, revision, path))
        return sorted(found, key=lambda r: r.id, reverse=True)

    def text(self, slug: str, revision_id: str) -> str | None:
        """A kept version's text, or None when ``slug`` has no such version."""
        for revision in self.of(slug):
            if revision.id == revision_id:
                return revision.path.read_text(encoding="utf-8")
        return None


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers see the old or the new file, never half.

    The file keeps the mode it had; a new one gets the folder's usual mode (0666 less the umask, as an editor
    would make it), not the 0600 of a temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            try:
                os.fchmod(f.fileno(), path.stat().st_mode & 0o7777)
            except FileNotFoundError:
                pass
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
