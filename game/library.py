"""The stories/ folder: list stories, load one, notice edits made on disk.

Each ``<slug>.yaml`` is parsed once and parsed again whenever its size or modification time changes, so an
edit reaches players on their next page without a restart.  A story that fails validation is listed as
broken, with its problems; it never stops the others from playing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from game.story import Problem
from game.story import Story
from game.story import StoryError
from game.story import load_story

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SUFFIX = ".yaml"


class StoryNotFound(LookupError):
    """No story file has this slug."""

    def __init__(self, slug: str):
        super().__init__(f"no story called '{slug}'")
        self.slug = slug


class StoryBroken(RuntimeError):
    """The story file exists but cannot be played; ``entry.problems`` says why."""

    def __init__(self, entry: StoryEntry):
        super().__init__(f"story '{entry.slug}' cannot be played: {entry.problems[0] if entry.problems else ''}")
        self.entry = entry


@dataclass(frozen=True)
class StoryEntry:
    """One file of the library: its story when valid, its problems either way."""

    slug: str
    path: Path
    revision: str
    story: Story | None
    problems: tuple[Problem, ...] = ()

    @property
    def title(self) -> str:
        return self.story.title if self.story else self.slug

    @property
    def broken(self) -> bool:
        return self.story is None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def check_slug(slug: str) -> str:
    """Return ``slug`` if it can name a story file (lowercase letters, digits, - and _); raise otherwise."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise StoryNotFound(str(slug)[:80])
    return slug


class StoryLibrary:
    """The stories in one folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._cache: dict[str, tuple[tuple[int, int], StoryEntry]] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[StoryEntry]:
        """Every story file, playable ones first, then by title."""
        if not self.folder.is_dir():
            log.warning("stories folder %s does not exist", self.folder)
            return []
        found = []
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if SLUG_RE.match(path.stem):
                entry = self._read(path.stem)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: (e.broken, e.title.lower()))

    def entry(self, slug: str) -> StoryEntry:
        """Return the entry for ``slug``; raise `StoryNotFound` when there is no such file."""
        entry = self._read(check_slug(slug))
        if entry is None:
            raise StoryNotFound(slug)
        return entry

    def get(self, slug: str) -> Story:
        """Return the playable story ``slug``; raise `StoryNotFound` or `StoryBroken`."""
        entry = self.entry(slug)
        if entry.story is None:
            raise StoryBroken(entry)
        return entry.story

    def path(self, slug: str) -> Path:
        return self.folder / f"{check_slug(slug)}{SUFFIX}"

    def _read(self, slug: str) -> StoryEntry | None:
        path = self.path(slug)
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._cache.pop(slug, None)
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(slug)
        if cached and cached[0] == stamp:
            return cached[1]
        data = path.read_bytes()
        revision = hashlib.sha256(data).hexdigest()[:12]
        source = f"{self.folder.name}/{path.name}"
        try:
            text = data.decode("utf-8")
            story = load_story(text, source, slug)
            entry = StoryEntry(slug, path, revision, story, story.warnings)
        except UnicodeDecodeError as exc:
            entry = StoryEntry(slug, path, revision, None, (Problem(source, f"is not UTF-8 text ({exc.reason})"),))
        except StoryError as exc:
            entry = StoryEntry(slug, path, revision, None, tuple(exc.problems))
            log.warning("story %s is broken:\n%s", source, exc)
        with self._lock:
            self._cache[slug] = (stamp, entry)
        return entry
