"""The stories/ folder: list stories, load one, notice edits made on disk.

Each ``<slug>.yaml`` is parsed once and parsed again whenever its size or modification time changes, so an
edit reaches players on their next page without a restart.  A story that fails validation is listed as
broken, with its problems; it never stops the others from playing.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from game.revisions import SUFFIX
from game.revisions import Revision
from game.revisions import RevisionFolder
from game.revisions import revision_of
from game.revisions import write_atomic
from game.story import Problem
from game.story import Story
from game.story import StoryError
from game.story import load_story
from game.yamlsafe import MAX_STORY_BYTES

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LibraryError(Exception):
    """Base of every error the story library raises on purpose (the admin pages turn these, and only these, into
    pages that say what happened)."""


class NotFound(LibraryError):
    """The story, slide or revision asked for does not exist."""


class StoryNotFound(NotFound):
    """No story file has this slug."""

    def __init__(self, slug: str):
        super().__init__(f"no story called '{slug}'")
        self.slug = slug


class StaleRevision(LibraryError):
    """A save was based on an older revision than the one on disk; nothing was written."""

    def __init__(self, slug: str, current: str, text: str):
        super().__init__(f"story '{slug}' was changed elsewhere (now at revision {current}); your save was not written")
        self.current = current
        self.text = text


class StoryTooLarge(LibraryError):
    """The story file is larger than a story may be: it is listed as broken, and not opened for editing."""

    def __init__(self, source: str, size: int):
        super().__init__(f"{source} is {size:,} bytes; a story file may be at most {MAX_STORY_BYTES:,} bytes. "
                         "Shrink it or remove it from the stories folder.")


class StoryExists(LibraryError):
    """A story with this slug already exists."""


class InvalidStory(LibraryError):
    """The text is not a playable story; ``problems`` says why (nothing was written)."""

    def __init__(self, problems: tuple[Problem, ...]):
        super().__init__("\n".join(str(p) for p in problems if p.severity == "error"))
        self.problems = problems


class SlideNotFound(NotFound):
    """The story has no slide with this id."""

    def __init__(self, slug: str, slide_id: str):
        super().__init__(f"no slide '{slide_id[:80]}' in story '{slug}'")


class StoryBroken(LibraryError):
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

    def __init__(self, folder: str | Path, revisions: str | Path | None = None, keep: int = 50):
        self.folder = Path(folder)
        self._revisions = RevisionFolder(Path(revisions) if revisions else self.folder / ".revisions", keep)
        self._cache: dict[str, tuple[tuple[int, int], StoryEntry]] = {}
        self._parsing: dict[str, threading.Lock] = {}  # one parse per file at a time; other readers wait for it
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

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
                self._parsing.pop(slug, None)
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(slug)
            parsing = self._parsing.setdefault(slug, threading.Lock())
        if cached and cached[0] == stamp:
            return cached[1]
        with parsing:
            with self._lock:
                cached = self._cache.get(slug)
            if cached and cached[0] == stamp:  # parsed by another reader while this one waited
                return cached[1]
            entry = self._parse(slug, path, stat.st_size)
            with self._lock:
                self._cache[slug] = (stamp, entry)
        return entry

    def _parse(self, slug: str, path: Path, size: int) -> StoryEntry:
        """Check one story file; whatever is wrong with it, return an entry (broken when it cannot be played)."""
        source = f"{self.folder.name}/{path.name}"
        if size > MAX_STORY_BYTES:  # never read: a file on disk is held to the upload cap too
            log.warning("story %s is broken: %s bytes, more than %s", source, size, MAX_STORY_BYTES)
            return StoryEntry(slug, path, revision_of(f"{size}:{path.stat().st_mtime_ns}".encode()), None,
                              (Problem(source, f"is {size:,} bytes; a story file may be at most "
                                               f"{MAX_STORY_BYTES:,} bytes"),))
        data = path.read_bytes()
        revision = revision_of(data)
        try:
            text = data.decode("utf-8")
            story = load_story(text, source, slug)
            return StoryEntry(slug, path, revision, story, story.warnings)
        except UnicodeDecodeError as exc:
            return StoryEntry(slug, path, revision, None, (Problem(source, f"is not UTF-8 text ({exc.reason})"),))
        except StoryError as exc:
            log.warning("story %s is broken:\n%s", source, exc)
            return StoryEntry(slug, path, revision, None, tuple(exc.problems))
        except Exception:  # noqa: BLE001 - one bad file must never stop the others from being listed and played
            log.exception("story %s could not be checked", source)
            return StoryEntry(slug, path, revision, None,
                              (Problem(source, "could not be checked (a bug in Lanternslide; see the server log)"),))

    # -- changing stories: atomic, checked against the revision the edit started from, old versions kept ---------

    def text(self, slug: str) -> tuple[str, str]:
        """The file's text and its revision."""
        entry = self.entry(slug)
        return _read_text(entry.path, f"{self.folder.name}/{entry.path.name}"), entry.revision

    def check(self, slug: str, text: str) -> StoryEntry:
        """Validate ``text`` as story ``slug`` without writing it; raise `InvalidStory` with every problem."""
        source = f"{self.folder.name}/{slug}{SUFFIX}"
        try:
            story = load_story(text, source, slug)
        except StoryError as exc:
            raise InvalidStory(tuple(exc.problems)) from None
        return StoryEntry(slug, self.path(slug), revision_of(text.encode("utf-8")), story, story.warnings)

    def save(self, slug: str, text: str, base_revision: str | None) -> StoryEntry:
        """Replace (or create, with ``base_revision`` None) a story; refuse a stale base or an invalid story."""
        self.check(slug, text)
        path = self.path(slug)
        with self._write_lock:
            exists = path.exists()
            if exists:
                current_text = _read_text(path, f"{self.folder.name}/{path.name}")
                current = revision_of(current_text.encode("utf-8"))
                if base_revision != current:
                    raise StaleRevision(slug, current, current_text)
                self._revisions.add(slug, current_text)
            elif base_revision is not None:
                raise StoryNotFound(slug)
            write_atomic(path, text)
        return self.entry(slug)

    def create(self, slug: str, text: str) -> StoryEntry:
        if self.path(slug).exists():
            raise StoryExists(f"a story called '{slug}' exists already")
        return self.save(slug, text, None)

    def delete(self, slug: str, base_revision: str) -> Revision:
        """Remove a story, keeping it among its revisions so it can be restored."""
        path = self.path(slug)
        with self._write_lock:
            if not path.exists():
                raise StoryNotFound(slug)
            current_text = _read_text(path, f"{self.folder.name}/{path.name}")
            current = revision_of(current_text.encode("utf-8"))
            if current != base_revision:
                raise StaleRevision(slug, current, current_text)
            kept = self._revisions.add(slug, current_text)
            path.unlink()
        self._read(slug)
        return kept

    def rename(self, slug: str, new_slug: str, base_revision: str) -> StoryEntry:
        text, _ = self.text(slug)
        entry = self.create(check_slug(new_slug), text)
        self.delete(slug, base_revision)
        return entry

    def duplicate(self, slug: str, new_slug: str) -> StoryEntry:
        text, _ = self.text(slug)
        return self.create(check_slug(new_slug), text)

    def revisions(self, slug: str) -> list[Revision]:
        """Kept versions of a story, newest first (deleted stories included)."""
        return self._revisions.of(check_slug(slug))

    def revision_text(self, slug: str, revision_id: str) -> str:
        text = self._revisions.text(check_slug(slug), revision_id)
        if text is None:
            raise StoryNotFound(f"{slug}@{revision_id}")
        return text

    def restore(self, slug: str, revision_id: str) -> StoryEntry:
        """Make a kept revision the current story again (the version it replaces is kept too)."""
        text = self.revision_text(slug, revision_id)
        path = self.path(slug)
        current = revision_of(path.read_bytes()) if path.exists() else None
        return self.save(slug, text, current)

def _read_text(path: Path, source: str) -> str:
    """A story file's text; `StoryTooLarge` (without reading it) when it is larger than a story may be."""
    size = path.stat().st_size
    if size > MAX_STORY_BYTES:
        raise StoryTooLarge(source, size)
    return path.read_text(encoding="utf-8")
