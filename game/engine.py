"""A player's progress through one story, and the moves that change it.

`PlayState` is a plain value (it lives in the player's signed session cookie): the story, the slide the
player is on and the slides that led there.  Every move returns a new state or raises a `PlayError` whose
message a player can read.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from game.story import Slide
from game.story import Story

MAX_PATH = 40  # slides remembered for "back"; keeps the session cookie small


class PlayError(Exception):
    """A move that cannot be made; the message is meant for the player."""


class InvalidChoice(PlayError):
    """The chosen option does not exist on that slide (an old page, or an edited story)."""


class SlideGone(PlayError):
    """The slide no longer exists in the story (renamed or deleted by its author)."""

    def __init__(self, story: Story, slide_id: str):
        super().__init__(f"The slide '{slide_id}' is no longer part of “{story.title}”; the story may have been edited.")
        self.slide_id = slide_id


@dataclass(frozen=True)
class PlayState:
    story: str
    at: str
    path: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "path": list(self.path)}

    @classmethod
    def from_dict(cls, slug: str, data: Any) -> PlayState | None:
        """Rebuild a state from session data; None when the data is missing or malformed."""
        if not isinstance(data, dict):
            return None
        at, path = data.get("at"), data.get("path")
        if not isinstance(at, str) or not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            return None
        return cls(slug, at, tuple(path[-MAX_PATH:]) or (at,))

    @property
    def can_go_back(self) -> bool:
        return len(self.path) > 1


def start(story: Story) -> PlayState:
    """Begin the story at its start slide."""
    return PlayState(story.slug, story.start, (story.start,))


def current(story: Story, state: PlayState) -> Slide:
    """Return the slide the player is on; raise `SlideGone` if it was deleted."""
    if state.at not in story.slides:
        raise SlideGone(story, state.at)
    return story.slides[state.at]


def choose(story: Story, state: PlayState | None, from_slide: str, index: int) -> PlayState:
    """Take choice ``index`` (0-based) of slide ``from_slide`` and move to where it leads.

    ``from_slide`` comes from the page the player clicked on, which may be an older page than the state's
    current slide (browser back button); the move is judged against that page.
    """
    if from_slide not in story.slides:
        raise SlideGone(story, from_slide)
    slide = story.slides[from_slide]
    if not 0 <= index < len(slide.choices):
        if slide.is_ending:
            raise InvalidChoice(f"“{slide.id}” is an ending; there is nothing more to choose here.")
        raise InvalidChoice(f"That choice is not on this slide any more (it has {len(slide.choices)}); pick one of these.")
    target = slide.choices[index].to
    if target not in story.slides:
        raise SlideGone(story, target)
    base = visit(story, state, from_slide) if state is not None else PlayState(story.slug, from_slide, (from_slide,))
    return PlayState(story.slug, target, (*base.path, target)[-MAX_PATH:])


def visit(story: Story, state: PlayState | None, slide_id: str) -> PlayState:
    """Move to ``slide_id`` by its address (reload, back/forward, a shared link).

    A slide already on the path is a step back to it; any other slide continues the path from there.
    """
    if slide_id not in story.slides:
        raise SlideGone(story, slide_id)
    if state is None:
        return PlayState(story.slug, slide_id, (slide_id,))
    if slide_id in state.path:
        cut = len(state.path) - state.path[::-1].index(slide_id)
        return PlayState(story.slug, slide_id, state.path[:cut])
    return PlayState(story.slug, slide_id, (*state.path, slide_id)[-MAX_PATH:])


def back(story: Story, state: PlayState) -> PlayState:
    """Return to the previous slide on the path."""
    if not state.can_go_back:
        raise PlayError("This is where the story began; there is no earlier slide.")
    return visit(story, state, state.path[-2])


def resume_point(story: Story, state: PlayState | None) -> str:
    """The slide to continue from: the current one, else the latest surviving one on the path, else the start."""
    if state is not None:
        for slide_id in reversed(state.path):
            if slide_id in story.slides:
                return slide_id
    return story.start


@dataclass(frozen=True)
class Sighting:
    """Where an anonymous player was last seen."""

    player: str
    story: str
    slide: str
    seen: float


class Roster:
    """Who is playing: each anonymous player's latest slide, for the admin page.  At most ``limit`` players are
    remembered (a stranger without cookies is a new player on every request): the least recently seen go first."""

    def __init__(self, clock: Any = time.time, limit: int = 1000):
        self._clock = clock
        self.limit = limit
        self._seen: OrderedDict[str, Sighting] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, player: str, story: str, slide: str) -> None:
        with self._lock:
            self._seen[player] = Sighting(player, story, slide, self._clock())
            self._seen.move_to_end(player)
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    def active(self, within: float = 900) -> list[Sighting]:
        """Players seen in the last ``within`` seconds, most recent first (older ones are forgotten)."""
        now = self._clock()
        with self._lock:
            for player in [p for p, s in self._seen.items() if now - s.seen > within]:
                del self._seen[player]
            return sorted(self._seen.values(), key=lambda s: s.seen, reverse=True)
