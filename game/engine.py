"""A player's progress through one story, and the moves that change it.

`PlayState` is a plain value (it lives in the player's signed session cookie): the story, the slide the
player is on, the slides that led there and the story's variables at each of them (bounded: MAX_PATH steps,
MAX_PLAY_CHARS of session data).  `view` is what a play page shows, `leads_to` what paint-ahead paints.  Every
move returns a new state or raises a `PlayError` whose message a player can read.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from game import expressions as ex
from game import state as st
from game.story import Slide
from game.story import Story

MAX_PATH = 40  # slides remembered for "back"; keeps the session cookie small
MAX_PLAY_CHARS = 2500  # one story's progress in the session (JSON); older steps are forgotten to fit
MAX_STEPS = 10**9  # step numbers count on from the start of a play; a session claiming more is malformed


class PlayError(Exception):
    """A move that cannot be made; the message is meant for the player."""


class InvalidChoice(PlayError):
    """The chosen option does not exist on that slide (an old page, or an edited story)."""


class SlideGone(PlayError):
    """The slide no longer exists in the story (renamed or deleted by its author)."""

    def __init__(self, story: Story, slide_id: str):
        super().__init__(f"The slide '{slide_id}' is no longer part of “{story.title}”; "
                         "the story may have been edited.")
        self.slide_id = slide_id


Diff = tuple[tuple[str, ex.Value], ...]  # the variables that differ from the story's starting values, sorted


@dataclass(frozen=True)
class PlayState:
    """Where a player is, the slides that led there and the story's variables on arrival at each of them.

    ``marks[i]`` holds the variables (as differences from the starting values) the player had when ``path[i]``
    was shown; an empty ``marks`` (a session from before stories had state) means the starting values throughout.
    Going back to a slide restores the variables it was shown with, so a choice taken again from that page is
    judged, and its effects applied, from that state: never twice.  ``first`` counts the steps forgotten from the
    front of the path (MAX_PATH, MAX_PLAY_CHARS), so a step number a page holds names the same step for ever.
    """

    story: str
    at: str
    path: tuple[str, ...]
    marks: tuple[Diff, ...] = ()
    first: int = 0

    def __post_init__(self) -> None:
        if not any(self.marks):  # only starting values: the same state as no marks at all
            object.__setattr__(self, "marks", ())

    def diff_at(self, step: int = -1) -> Diff:
        return self.marks[step] if len(self.marks) == len(self.path) else ()

    def to_dict(self) -> dict[str, Any]:
        """Session data: the path, and (only when some variable changed) each distinct state once plus an index
        per step."""
        data: dict[str, Any] = {"at": self.at, "path": list(self.path)}
        if self.first:
            data["first"] = self.first
        marks = [self.diff_at(i) for i in range(len(self.path))]
        if any(marks):
            table: list[Diff] = list(dict.fromkeys(marks))
            data["vars"] = [dict(d) for d in table]
            data["marks"] = [table.index(m) for m in marks]
        return data

    @classmethod
    def from_dict(cls, slug: str, data: Any) -> PlayState | None:
        """Rebuild a state from session data; None when the data is missing or malformed."""
        if not isinstance(data, dict):
            return None
        at, path = data.get("at"), data.get("path")
        if not isinstance(at, str) or not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            return None
        path = path[-MAX_PATH:] or [at]
        marks: tuple[Diff, ...] = ()
        table, indexes = data.get("vars"), data.get("marks")
        if isinstance(table, list) and isinstance(indexes, list) and len(table) <= MAX_PATH:
            diffs = [_diff(entry) for entry in table]
            indexes = indexes[-len(path):]
            if len(indexes) == len(path) and all(isinstance(i, int) and not isinstance(i, bool)
                                                 and 0 <= i < len(diffs) and diffs[i] is not None for i in indexes):
                marks = tuple(diffs[i] for i in indexes)  # type: ignore[misc]
        first = data.get("first", 0)
        first = first if isinstance(first, int) and not isinstance(first, bool) and 0 <= first <= MAX_STEPS else 0
        return cls(slug, at, tuple(path), marks, first)

    @property
    def can_go_back(self) -> bool:
        return len(self.path) > 1

    @property
    def step(self) -> int:
        """The current slide's step number (counted from the first slide of this play, forgotten ones included)."""
        return self.first + len(self.path) - 1

    def index_of(self, step: int | None) -> int | None:
        """The place on the path of step number ``step``; None when it is not (or no longer) remembered."""
        if step is None or not self.first <= step < self.first + len(self.path):
            return None
        return step - self.first


def _diff(entry: Any) -> Diff | None:
    """A stored difference, checked: names, kinds and sizes as a story allows; None when it is not one."""
    if not isinstance(entry, dict) or len(entry) > st.MAX_VARIABLES:
        return None
    if any(st.name_error(k) or st.value_error(v) for k, v in entry.items()):
        return None
    return tuple(sorted(entry.items()))


def values(story: Story, state: PlayState | None, step: int = -1) -> dict[str, ex.Value]:
    """Every variable of the story as the player had it at ``step`` of the path (the starting values without a
    state)."""
    return st.normalize(story.variables, dict(state.diff_at(step)) if state is not None else None)


def _mark(story: Story, values_: dict[str, ex.Value]) -> Diff:
    return tuple(sorted(st.difference(story.variables, values_).items()))


def _fit(state: PlayState) -> PlayState:
    """Drop the oldest steps until the session data fits MAX_PLAY_CHARS (the current step is always kept)."""
    while len(state.path) > 1 and len(json.dumps(state.to_dict())) > MAX_PLAY_CHARS:
        marks = state.marks[1:] if len(state.marks) == len(state.path) else ()
        state = PlayState(state.story, state.at, state.path[1:], marks, state.first + 1)
    return state


def _extend(story: Story, state: PlayState, slide_id: str, values_: dict[str, ex.Value]) -> PlayState:
    marks = tuple(state.diff_at(i) for i in range(len(state.path))) + (_mark(story, values_),)
    path = (*state.path, slide_id)
    first = state.first + max(0, len(path) - MAX_PATH)
    return _fit(PlayState(story.slug, slide_id, path[-MAX_PATH:], marks[-MAX_PATH:], min(first, MAX_STEPS)))


def start(story: Story) -> PlayState:
    """Begin the story at its start slide with the starting values."""
    return PlayState(story.slug, story.start, (story.start,), ((),))


def current(story: Story, state: PlayState) -> Slide:
    """Return the slide the player is on; raise `SlideGone` if it was deleted."""
    if state.at not in story.slides:
        raise SlideGone(story, state.at)
    return story.slides[state.at]


@dataclass(frozen=True)
class Option:
    """A choice as the player sees it now: ``index`` in the slide's choices (what the form sends, 0-based),
    ``number`` its place among the shown ones (its key), and whether it is open."""

    index: int
    number: int
    text: str
    to: str
    open: bool


@dataclass(frozen=True)
class SlideView:
    """A slide as the player sees it with their variables: text and picture description rendered, choices filtered."""

    slide: Slide
    text: str
    image: str | None
    options: tuple[Option, ...]
    values: dict[str, ex.Value]
    step: int  # the slide's step number on the path (`PlayState.step`); the page sends it back with a choice

    @property
    def is_ending(self) -> bool:
        return not self.slide.choices


def options(story: Story, slide_id: str, values_: dict[str, ex.Value]) -> tuple[Option, ...]:
    """The choices of a slide as a player with ``values_`` sees them: hidden ones left out, disabled ones closed."""
    shown: list[Option] = []
    for index, choice in enumerate(story.slides[slide_id].choices):
        is_open = st.holds(story.sandbox, choice.condition, values_)
        if is_open or choice.otherwise == st.DISABLE:
            shown.append(Option(index, len(shown) + 1, choice.text, choice.to, is_open))
    return tuple(shown)


def view(story: Story, state: PlayState) -> SlideView:
    """What the play page shows for the player's current slide (raises `SlideGone` if it was deleted)."""
    slide = current(story, state)
    now = values(story, state)
    image = st.render(story.sandbox, slide.image, now) if slide.image else None
    return SlideView(slide, st.render(story.sandbox, slide.text, now), image, options(story, slide.id, now), now,
                     state.step)


@dataclass(frozen=True)
class Next:
    """Where an open choice leads, and the variables the player will have there (for paint-ahead)."""

    index: int
    to: str
    values: dict[str, ex.Value]


def leads_to(story: Story, slide_id: str, values_: dict[str, ex.Value]) -> list[Next]:
    """The state each open choice of a slide leads to: effects applied, nothing else changed.  Pure."""
    slide = story.slides[slide_id]
    return [Next(i, c.to, st.apply(story.sandbox, c.effects, story.variables, values_))
            for i, c in enumerate(slide.choices) if st.holds(story.sandbox, c.condition, values_)]


def choose(story: Story, state: PlayState | None, from_slide: str, index: int, step: int | None = None) -> PlayState:
    """Take choice ``index`` (0-based) of slide ``from_slide`` and move to where it leads, applying its effects.

    ``from_slide`` (and ``step``, its place on the path, when the page sent it) come from the page the player
    clicked on, which may be older than the state's current slide (browser back button, a second click): the
    move is judged against that page and the variables it was shown with, so effects are never applied twice.
    """
    if from_slide not in story.slides:
        raise SlideGone(story, from_slide)
    slide = story.slides[from_slide]
    if not 0 <= index < len(slide.choices):
        if slide.is_ending:
            raise InvalidChoice(f"“{slide.id}” is an ending; there is nothing more to choose here.")
        raise InvalidChoice(f"That choice is not on this slide any more (it has {len(slide.choices)}); "
                            "pick one of these.")
    choice = slide.choices[index]
    if choice.to not in story.slides:
        raise SlideGone(story, choice.to)
    at = state.index_of(step) if state is not None else None
    if state is not None and at is not None and state.path[at] == from_slide:
        base = PlayState(story.slug, from_slide, state.path[: at + 1], state.marks[: at + 1], state.first)
    else:
        base = visit(story, state, from_slide) if state is not None else start_at(story, from_slide)
    now = values(story, base)
    if not st.holds(story.sandbox, choice.condition, now):
        raise InvalidChoice(f"“{choice.text}” is not open to you now; pick one of these.")
    return _extend(story, base, choice.to, st.apply(story.sandbox, choice.effects, story.variables, now))


def start_at(story: Story, slide_id: str) -> PlayState:
    """A player with no progress arriving on ``slide_id`` (a shared link): the story's starting values."""
    return PlayState(story.slug, slide_id, (slide_id,), ((),))


def visit(story: Story, state: PlayState | None, slide_id: str, step: int | None = None) -> PlayState:
    """Move to ``slide_id`` by its address (reload, back/forward, a shared link).

    A slide already on the path is a step back to it, with the variables it had; any other slide continues the
    path from there with the player's current variables.  ``step`` (the step number a link names) picks one
    occurrence of a slide that was visited more than once; without it the latest is meant.  A player with no
    progress in this story (someone opening a shared link) starts on that slide with the story's starting values;
    the sender's are not carried.
    """
    if slide_id not in story.slides:
        raise SlideGone(story, slide_id)
    if state is None:
        return start_at(story, slide_id)
    if slide_id in state.path:
        cut = len(state.path) - state.path[::-1].index(slide_id)
        at = state.index_of(step)
        if at is not None and state.path[at] == slide_id:
            cut = at + 1  # the page named its own place on the path (a Back link past a repeated slide)
        marks = state.marks[:cut] if len(state.marks) == len(state.path) else ()
        return PlayState(story.slug, slide_id, state.path[:cut], marks, state.first)
    return _extend(story, state, slide_id, values(story, state))


def back(story: Story, state: PlayState) -> PlayState:
    """Return to the previous slide on the path, with the variables it had."""
    if not state.can_go_back:
        raise PlayError("This is where the story began; there is no earlier slide.")
    if state.path[-2] not in story.slides:
        raise SlideGone(story, state.path[-2])
    marks = state.marks[:-1] if len(state.marks) == len(state.path) else ()
    return PlayState(story.slug, state.path[-2], state.path[:-1], marks, state.first)  # one step, even past a repeat


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
