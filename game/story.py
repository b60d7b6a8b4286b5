"""Stories: the Story / Slide / Choice / ImageSpec dataclasses, loading and dumping (the slides as a graph for the
editor: `game.graph`).

A story file is YAML (see DESIGN.md).  `load_story` parses it within the bounds of `game.yamlsafe` and checks
everything at once with `game.validate`, raising `StoryError` with every problem, each naming the file, the line,
the slide and the field.  Problems that do not stop play (an unreachable slide, an unknown key) are kept as warnings
on the Story.  The parsed ruamel document is kept too, so an editor can change it and `dump_document` writes it back
with the author's comments and key order intact.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from typing import Any

from game import expressions as ex
from game import state as st
from game import yamlsafe
from game.graph import breadth_first

STORY_KEYS = ("title", "start", "description", "author", "style", "characters", "state", "slides", "twine")
SLIDE_KEYS = ("text", "image", "characters", "choices", "style", "twine")
CHOICE_KEYS = ("text", "to", "if", "otherwise", "set")
MAX_CHOICES = 9  # number keys 1-9 pick them
SLIDE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a slide id is part of its address: /play/<story>/<slide>
# `image:` as a mapping: what the painter should see, and the slide whose picture this one continues (img2img).
IMAGE_KEYS = ("prompt", "from", "strength")
DEFAULT_STRENGTH = 0.5  # how far a continuation departs from its source picture (img2img's denoising strength)
MAX_CONTINUATIONS = 8  # a continuation of a continuation of ...: at most this many `from` steps to a plain picture


@dataclass(frozen=True)
class ImageSpec:
    """Picture settings: the story's style, or one slide's overrides (None = not set here).

    ``source`` and ``strength`` are a slide's own (its ``image: {from: ..., strength: ...}``, never the story's
    style): the slide whose picture this one is painted from (img2img: same place, new moment) and how far from it.
    """

    prompt: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    tiling: bool | None = None
    source: str | None = None
    strength: float | None = None

    def merged(self, overrides: ImageSpec) -> ImageSpec:
        """Return these settings with every field that ``overrides`` sets replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({f.name: getattr(overrides, f.name) for f in fields(self)
                       if getattr(overrides, f.name) is not None})
        return ImageSpec(**values)


CONTINUATION_FIELDS = ("source", "strength")
STYLE_KEYS = tuple(f.name for f in fields(ImageSpec) if f.name not in CONTINUATION_FIELDS)  # what `style:` may set


@dataclass(frozen=True)
class Choice:
    """A way on: its label, target, optional condition (``if``) and effects (``set``), in order.

    ``otherwise`` says what a player sees while the condition does not hold: ``hide`` (the default) or
    ``disable`` (shown, greyed out).
    """

    text: str
    to: str
    condition: str | None = None
    otherwise: str = st.HIDE
    effects: tuple[st.Effect, ...] = ()


@dataclass(frozen=True)
class Slide:
    id: str
    text: str
    image: str | None = None
    characters: tuple[str, ...] = ()
    choices: tuple[Choice, ...] = ()
    style: ImageSpec = ImageSpec()
    twine: dict[str, Any] = field(default_factory=dict, hash=False)  # passage name, tags, position (round trip)

    @property
    def is_ending(self) -> bool:
        return not self.choices

    @property
    def source(self) -> str | None:
        """The slide whose picture this one continues (``image: {from: ...}``), if any."""
        return self.style.source


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a story file; ``str()`` names the file, line, slide and field."""

    source: str
    message: str
    slide: str | None = None
    field: str | None = None
    line: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = [self.source]
        if self.line:
            where.append(f"line {self.line}")
        if self.slide is not None:
            where.append(f"slide '{self.slide}'")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}"


class StoryError(ValueError):
    """A story file cannot be played; ``problems`` lists every error found (and the warnings)."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or f"{source}: invalid story")


@dataclass(frozen=True)
class Story:
    slug: str
    title: str
    start: str
    slides: dict[str, Slide]
    style: ImageSpec = ImageSpec()
    characters: dict[str, str] = field(default_factory=dict)
    description: str = ""
    author: str = ""
    warnings: tuple[Problem, ...] = ()
    document: Any = field(default=None, compare=False, repr=False)
    variables: dict[str, ex.Value] = field(default_factory=dict)  # `state:`: each variable's starting value
    twine: dict[str, Any] = field(default_factory=dict)  # IFID, story format, ... of a story imported from Twine
    sandbox: ex.Sandbox = field(default_factory=ex.Sandbox, compare=False, repr=False)

    def parents(self) -> dict[str, str | None]:
        """Map each reachable slide to the slide it is first reached from (breadth-first; start -> None)."""
        return {sid: parent for sid, (parent, _) in self.walk().items()}

    def walk(self) -> dict[str, tuple[str | None, int]]:
        """Each reachable slide, breadth-first from the start, with the slide it is first reached from and its
        distance from the start."""
        return breadth_first(self.start, lambda sid: [c.to for c in self.slides[sid].choices])

    @property
    def endings(self) -> list[str]:
        return [s.id for s in self.slides.values() if s.is_ending]

    def sources(self, slide_id: str) -> list[str]:
        """The slides whose pictures this slide's picture is painted from, nearest first (empty for a plain
        picture): ``a`` continuing ``b`` continuing ``c`` gives ``["b", "c"]``."""
        chain: list[str] = []
        current = self.slides[slide_id].source
        while current is not None and current not in chain and len(chain) <= MAX_CONTINUATIONS:
            chain.append(current)
            current = self.slides[current].source
        return chain

    def possible_sources(self, slide_id: str) -> list[str]:
        """The slides whose picture this slide's picture could continue, in the file's order: every other slide but
        those whose own picture continues this one's (directly or through others: a cycle) and those whose chain is
        already `MAX_CONTINUATIONS` long (one more step would be too many)."""
        return [other for other in self.slides if other != slide_id and slide_id not in self.sources(other)
                and len(self.sources(other)) < MAX_CONTINUATIONS]

    def picture_sources(self) -> set[str]:
        """The slides whose pictures are painted as the source of a picture that players see (a continuation on a
        slide reachable from the start), whether or not a choice leads to them."""
        return {source for slide_id in self.parents() for source in self.sources(slide_id)}

    def painting_order(self) -> list[str]:
        """Every slide, each after the slides its picture continues (otherwise in the file's order): the order
        in which a bake paints them."""
        order: dict[str, None] = {}
        for slide_id in self.slides:
            for needed in reversed(self.sources(slide_id)):
                order.setdefault(needed)
            order.setdefault(slide_id)
        return list(order)


def dump_document(document: Any) -> str:
    """Serialise a story document back to YAML text, comments included."""
    buffer = io.StringIO()
    yamlsafe.yaml_parser().dump(document, buffer)
    return buffer.getvalue()


def load_story(text: str, source: str, slug: str) -> Story:
    """Parse and validate a story; raise `StoryError` listing every problem."""
    from game.validate import Validator  # the validator builds this module's dataclasses, so it imports them

    try:
        document = yamlsafe.parse(text)
    except yamlsafe.YamlProblem as exc:
        raise StoryError(source, [Problem(source, exc.message, line=exc.line)]) from None
    return Validator(source, slug, document).story()
