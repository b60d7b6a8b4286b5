"""Stories: the Story / Slide / Choice / ImageSpec dataclasses, YAML loading and validation.

A story file is YAML (see DESIGN.md).  Loading checks everything at once and raises `StoryError` with every
problem, each naming the file, the line, the slide and the field.  Problems that do not stop play (an
unreachable slide, an unknown key) are kept as warnings on the Story.  The parsed ruamel document is kept too,
so an editor can change it and dump it back with the author's comments and key order intact.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import re
import itertools
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.composer import ComposerError
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode
from ruamel.yaml.nodes import ScalarNode

from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import resolve_sampler
from inference.request import resolve_schedule

STORY_KEYS = ("title", "start", "description", "author", "style", "characters", "slides")
SLIDE_KEYS = ("text", "image", "characters", "choices", "style")
CHOICE_KEYS = ("text", "to")
MAX_CHOICES = 9  # number keys 1-9 pick them
# Bounds on a story file, whether uploaded or placed in the stories folder (a hostile file must cost little and
# stay one broken story in the list): its size (the upload cap), how deep it nests (a story needs about 6 levels),
# how far its aliases (*name) may expand it, and how much of it any message repeats.
MAX_STORY_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EXPANSION = 2 * MAX_STORY_BYTES  # characters of the file once every alias is written out
MAX_VALUES = 20_000  # keys, values and items (about 1,500 slides); each costs ruamel ~0.1 ms to parse
MAX_PROBLEMS = 50  # of each severity; past it, "... and N more"
MAX_MESSAGE = 300  # characters of one problem's message
SLIDE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a slide id is part of its address: /play/<story>/<slide>


def shown(value: Any, depth: int = 0) -> str:
    """A value as an error message quotes it, at most about 80 characters: never the whole of a large or nested
    value (a hostile file's value may expand to megabytes; only its first few items are looked at)."""
    if isinstance(value, str):
        text = repr(value[:60]) + ("…" if len(value) > 60 else "")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        text = repr(value) if -10**30 < value < 10**30 else "a number of more than 30 digits"
    elif isinstance(value, (dict, list, tuple)):
        if depth >= 2:
            return "{…}" if isinstance(value, dict) else "[…]"
        items = list(itertools.islice(value.items() if isinstance(value, dict) else value, 4))
        parts = [f"{shown(k, depth + 1)}: {shown(v, depth + 1)}" if isinstance(value, dict) else shown(k, depth + 1)
                 for k, v in (items if isinstance(value, dict) else [(i, None) for i in items])]
        inner = ", ".join(parts[:3]) + (", …" if len(value) > 3 else "")
        text = "{" + inner + "}" if isinstance(value, dict) else "[" + inner + "]"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:79] + "…"


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ImageSpec:
    """Picture settings: the story's style, or one slide's overrides (None = not set here)."""

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

    def merged(self, overrides: ImageSpec) -> ImageSpec:
        """Return these settings with every field that ``overrides`` sets replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({f.name: getattr(overrides, f.name) for f in fields(self) if getattr(overrides, f.name) is not None})
        return ImageSpec(**values)


STYLE_KEYS = tuple(f.name for f in fields(ImageSpec))


@dataclass(frozen=True)
class Choice:
    text: str
    to: str


@dataclass(frozen=True)
class Slide:
    id: str
    text: str
    image: str | None = None
    characters: tuple[str, ...] = ()
    choices: tuple[Choice, ...] = ()
    style: ImageSpec = ImageSpec()

    @property
    def is_ending(self) -> bool:
        return not self.choices


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

    def reachable(self) -> list[str]:
        """Slide ids in breadth-first order from the start."""
        return list(self.parents())

    def parents(self) -> dict[str, str | None]:
        """Map each reachable slide to the slide it is first reached from (breadth-first; start -> None)."""
        parents: dict[str, str | None] = {self.start: None}
        queue = deque([self.start])
        while queue:
            current = queue.popleft()
            for choice in self.slides[current].choices:
                if choice.to not in parents:
                    parents[choice.to] = current
                    queue.append(choice.to)
        return parents

    @property
    def endings(self) -> list[str]:
        return [s.id for s in self.slides.values() if s.is_ending]


class _Refused(ComposerError):
    """The file is valid YAML, but too costly to load (see `BoundedComposer`)."""


class BoundedComposer(Composer):
    """ruamel's composer, refusing what would make a small file expensive to load, check or show.

    Nodes are composed once even when aliases repeat them (``*name`` is a reference), but whatever walks or prints
    the loaded document pays for every repetition: a 400-byte file of nested aliases expands to gigabytes.  Each
    node's expanded size (characters of its scalars, aliases counted in full) is known when it is complete, so the
    load stops at the first node past MAX_EXPANSION.  An alias inside the value it names (a loop) is refused; depth
    is capped by ruamel's own ``max_depth``, before Python's recursion limit is anywhere near.
    """

    def __init__(self, loader: Any = None):
        super().__init__(loader)
        self.sizes: dict[int, int] = {}  # id(node) -> expanded size, for every completed node

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self.sizes:
                raise _Refused(None, None, f"the alias *{_cut(str(event.anchor), 40)} is used inside the "
                                    "value it names (a loop)", event.start_mark)
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        if isinstance(node, ScalarNode):
            size = len(node.value) + 1
        elif isinstance(node, MappingNode):
            size = 1 + sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
        else:
            size = 1 + sum(self.sizes[id(item)] for item in node.value)
        if size > MAX_EXPANSION:
            raise _Refused(None, None, f"its aliases (*name) expand it to more than {MAX_EXPANSION:,} "
                                "characters; write the values out or share fewer", node.start_mark)
        self.sizes[id(node)] = size
        if len(self.sizes) > MAX_VALUES:
            raise _Refused(None, None, f"it holds more than {MAX_VALUES:,} values (keys, texts and list items); "
                           "split it into several stories", node.start_mark)
        return node


def yaml_parser() -> YAML:
    """A round-trip YAML parser/dumper that keeps comments and key order, bounded as `BoundedComposer` says."""
    yaml = YAML(typ="rt")
    yaml.Composer = BoundedComposer
    yaml.max_depth = MAX_DEPTH
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the author's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def dump_document(document: Any) -> str:
    """Serialise a story document back to YAML text, comments included."""
    buffer = io.StringIO()
    yaml_parser().dump(document, buffer)
    return buffer.getvalue()


def load_story(text: str, source: str, slug: str) -> Story:
    """Parse and validate a story; raise `StoryError` listing every problem."""
    size = len(text.encode("utf-8"))
    if size > MAX_STORY_BYTES:
        raise StoryError(source, [Problem(source, f"is {size:,} bytes; a story file may be at most "
                                                  f"{MAX_STORY_BYTES:,} bytes")])
    try:
        document = yaml_parser().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = str(getattr(exc, "problem", None) or exc).strip()
        prefix = "not valid YAML: "
        if isinstance(exc, MaxDepthExceededError):
            prefix, message = "", f"nested more than {MAX_DEPTH} levels deep (a story needs about 6)"
        elif isinstance(exc, _Refused):
            prefix = ""
        elif "duplicate key" in str(exc):
            key = str(exc).split("found duplicate key")[-1].split("with value")[0].strip()
            message = f"duplicate key {_cut(key, 80)}: each slide id, and each field of a slide, may appear only once"
        raise StoryError(source, [Problem(source, f"{prefix}{_cut(message)}", line=line)]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value ruamel cannot build, e.g. a 5,000-digit number
        message = "a number has too many digits" if "integer string conversion" in str(exc) else str(exc)
        raise StoryError(source, [Problem(source, f"not valid YAML: {_cut(message)}")]) from None
    return _Validator(source, slug, document).story()


def style_value_error(key: str, value: Any) -> str | None:
    """Return why one picture setting is invalid (None when it is fine), by the painter's own rules."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"must be a single value, not a {'mapping' if isinstance(value, dict) else 'list'}"
    try:
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_SEED:
                return f"must be a whole number from 0 to {MAX_SEED} (or -1 for a random picture), got {shown(value)}"
        elif key == "scheduler":
            resolve_schedule(str(value))
        elif key == "sampler_name":
            resolve_sampler(str(value))
        else:
            GenerationRequest(**{"prompt": "", key: value})
    except RequestError as exc:
        return _cut(exc.message)
    return None


def _line(node: Any, key: Any = None) -> int | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        return (lc.key(key)[0] if key is not None else lc.line) + 1
    except (KeyError, TypeError, AttributeError, IndexError):
        return lc.line + 1


def _suggest(word: Any, options: Any) -> str:
    if not isinstance(word, str) or len(word) > 64 or len(options) > 2000:  # bounded work, even for a hostile file
        return ""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Validator:
    """Walk a parsed story document once, collecting problems and building the dataclasses."""

    def __init__(self, source: str, slug: str, document: Any):
        self.source = source
        self.slug = slug
        self.document = document
        self.problems: list[Problem] = []
        self.dropped = {"error": 0, "warning": 0}  # problems past MAX_PROBLEMS of their severity, counted only
        self.keys: dict[str, Any] = {}  # slide id -> its key in the document (a YAML key may be a number)

    def problem(self, message: str, node: Any = None, key: Any = None, *, slide: str | None = None,
                field: str | None = None, severity: str = "error") -> None:
        if sum(p.severity == severity for p in self.problems) >= MAX_PROBLEMS:
            self.dropped[severity] += 1
            return
        self.problems.append(Problem(self.source, _cut(message), slide and _cut(slide, 80),
                                     field and _cut(field, 120), _line(node, key), severity))

    def full(self) -> bool:
        """True once no more errors are kept (later ones are only counted)."""
        return self.dropped["error"] > 0

    def suggest(self, word: Any, options: Any) -> str:
        return "" if self.full() else _suggest(word, options)

    def finish(self) -> list[Problem]:
        """The problems kept, and a line for those only counted."""
        for severity, count in self.dropped.items():
            if count:
                self.problems.append(Problem(self.source, f"... and {count:,} more {severity}s like these",
                                             severity=severity))
        return self.problems

    def story(self) -> Story:
        doc = self.document
        if not isinstance(doc, dict):
            raise StoryError(self.source, [Problem(self.source, "a story must be a YAML mapping with title, start and slides")])
        self.unknown_keys(doc, STORY_KEYS, None, "")
        title = self.text(doc, "title", None, required=True)
        style = self.style(doc.get("style"), doc, None)
        characters = self.characters(doc)
        slides = self.slides(doc, set(characters))
        start = doc.get("start")
        if start is None:
            self.problem("missing: name the slide the story starts on", doc, field="start")
        elif not isinstance(start, str) or start not in slides:
            self.problem(f"no slide called {shown(start)}{self.suggest(start, slides)}", doc, "start", field="start")
        for slide in slides.values():
            for i, choice in enumerate(slide.choices):
                if choice.to not in slides:
                    node = doc["slides"][self.keys[slide.id]]["choices"][i]
                    self.problem(f"goes to {shown(choice.to)}, which is not a slide{self.suggest(choice.to, slides)}",
                                 node, "to", slide=slide.id, field=f"choices[{i}].to")
        # A sampler and a schedule type are only valid together: check the story's pair, then each slide's.
        for slide_id, spec in [(None, style)] + [(s.id, style.merged(s.style)) for s in slides.values()
                                                 if s.style.sampler_name or s.style.scheduler]:
            try:
                resolve_sampler(spec.sampler_name or "DPM++ 2M", spec.scheduler or "automatic")
            except RequestError as exc:
                node, key = (doc["slides"], self.keys[slide_id]) if slide_id else (doc, "style")
                self.problem(exc.message, node, key, slide=slide_id, field="style.scheduler")
        if any(p.severity == "error" for p in self.problems) or self.dropped["error"]:
            raise StoryError(self.source, self.finish())
        story = Story(self.slug, title, str(start), slides, style, characters, self.optional_text(doc, "description"),
                      self.optional_text(doc, "author"), (), doc)
        reached = story.parents()
        for slide_id in slides:
            if slide_id not in reached:
                self.problem("cannot be reached from the start slide", doc["slides"], self.keys[slide_id],
                             slide=slide_id, severity="warning")
        return dataclasses.replace(story, warnings=tuple(self.finish()))

    def unknown_keys(self, node: dict, known: tuple[str, ...], slide: str | None, prefix: str) -> None:
        for key in node:
            if key not in known:
                self.problem(f"unknown key {shown(key)} is ignored{self.suggest(key, known)}", node, key, slide=slide,
                             field=f"{prefix}{_cut(str(key), 40)}", severity="warning")

    def text(self, node: dict, key: str, slide: str | None, required: bool = False, prefix: str = "") -> str:
        value = node.get(key)
        if value is None:
            if required:
                self.problem("missing", node, slide=slide, field=f"{prefix}{key}")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(f"must be non-empty text, got {shown(value)}", node, key, slide=slide,
                         field=f"{prefix}{key}")
            return ""
        return str(value)

    def optional_text(self, node: dict, key: str) -> str:
        return self.text(node, key, None)

    def characters(self, doc: dict) -> dict[str, str]:
        node = doc.get("characters") or {}
        if not isinstance(node, dict):
            self.problem("must map each character's name to a description", doc, "characters", field="characters")
            return {}
        result = {}
        for name, description in node.items():
            if not isinstance(description, str) or not description.strip():
                self.problem("needs a description (what the painter should draw)", node, name,
                             field=f"characters.{_cut(str(name), 40)}")
            else:
                result[str(name)] = str(description).strip()
        return result

    def style(self, node: Any, parent: Any, slide: str | None) -> ImageSpec:
        if node is None:
            return ImageSpec()
        if not isinstance(node, dict):
            self.problem("must be a mapping of picture settings", parent, "style", slide=slide, field="style")
            return ImageSpec()
        self.unknown_keys(node, STYLE_KEYS, slide, "style.")
        values = {k: node[k] for k in STYLE_KEYS if k in node and node[k] is not None}
        if isinstance(values.get("cfg_scale"), int) and not isinstance(values["cfg_scale"], bool):
            values["cfg_scale"] = float(values["cfg_scale"])
        for key, value in list(values.items()):
            message = style_value_error(key, value)
            if message:
                self.problem(message, node, key, slide=slide, field=f"style.{key}")
                del values[key]
        return ImageSpec(**values)

    def slides(self, doc: dict, known_characters: set[str]) -> dict[str, Slide]:
        node = doc.get("slides")
        if not isinstance(node, dict) or not node:
            self.problem("missing or empty: a story needs at least one slide", doc, "slides" if "slides" in doc else None,
                         field="slides")
            return {}
        slides = {}
        for slide_id, body in node.items():
            sid = str(slide_id) if isinstance(slide_id, (str, int)) and not isinstance(slide_id, bool) else None
            if sid is None or not SLIDE_ID_RE.fullmatch(sid):
                self.problem(f"the id {shown(slide_id)} cannot be part of the slide's address (/play/story/slide): "
                             "use up to 64 letters, digits, - and _", node, slide_id, slide=sid)
                continue
            if sid in self.keys:
                self.problem(f"slide id '{sid}' appears twice", node, slide_id, slide=sid)
                continue
            self.keys[sid] = slide_id
            if not isinstance(body, dict):
                self.problem("must be a mapping with text and choices", node, slide_id, slide=sid)
                continue
            self.unknown_keys(body, SLIDE_KEYS, sid, "")
            text = self.text(body, "text", sid, required=True)
            image = self.text(body, "image", sid) or None
            characters = body.get("characters") or []
            if not isinstance(characters, list):
                self.problem("must be a list of character names", body, "characters", slide=sid, field="characters")
                characters = []
            for name in characters:
                if not isinstance(name, str) or name not in known_characters:
                    self.problem(f"unknown character {shown(name)}{self.suggest(name, known_characters)}; add it "
                                 "under the story's characters", body, "characters", slide=sid, field="characters")
            slides[sid] = Slide(sid, text.strip(), image.strip() if image else None,
                                tuple(c for c in characters if isinstance(c, str) and c in known_characters),
                                self.choices(body, sid), self.style(body.get("style"), body, sid))
        return slides

    def choices(self, body: dict, sid: str) -> tuple[Choice, ...]:
        node = body.get("choices") or []
        if not isinstance(node, list):
            self.problem("must be a list of {text, to}", body, "choices", slide=sid, field="choices")
            return ()
        if len(node) > MAX_CHOICES:
            self.problem(f"has {len(node)} choices; at most {MAX_CHOICES} fit the number keys", body, "choices",
                         slide=sid, field="choices")
        result = []
        for i, item in enumerate(node):
            if not isinstance(item, dict):
                self.problem("must be a mapping with text and to", body, "choices", slide=sid, field=f"choices[{i}]")
                continue
            self.unknown_keys(item, CHOICE_KEYS, sid, f"choices[{i}].")
            text = self.text(item, "text", sid, required=True, prefix=f"choices[{i}].")
            target = item.get("to")
            if not isinstance(target, str) or not target:
                self.problem("missing: name the slide this choice leads to", item, slide=sid, field=f"choices[{i}].to")
                continue
            result.append(Choice(text.strip(), target))
        return tuple(result)


@dataclass(frozen=True)
class GraphNode:
    id: str
    x: float
    y: float
    start: bool = False
    ending: bool = False
    unreachable: bool = False
    missing: bool = False  # a choice points here, but there is no such slide


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    broken: bool = False


def story_graph(document: Any) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Slides as nodes laid out in columns by distance from the start, choices as edges; works on broken stories."""
    slides = document.get("slides") if isinstance(document, dict) else None
    if not isinstance(slides, dict):
        return [], []
    targets: dict[str, list[str]] = {}
    for sid, body in slides.items():
        choices = body.get("choices") if isinstance(body, dict) else None
        targets[str(sid)] = [str(c.get("to")) for c in choices or [] if isinstance(c, dict) and c.get("to")]
    start = str(document.get("start", ""))
    depth: dict[str, int] = {}
    if start in targets:
        depth[start] = 0
        queue = deque([start])
        while queue:
            current = queue.popleft()
            for target in targets.get(current, []):
                if target not in depth:
                    depth[target] = depth[current] + 1
                    if target in targets:
                        queue.append(target)
    last = max(depth.values(), default=0) + 1
    rows: dict[int, int] = {}
    nodes = []
    for sid in list(targets) + sorted({t for ts in targets.values() for t in ts if t not in targets}):
        column = depth.get(sid, last)
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(GraphNode(sid, 90 + 170 * column, 40 + 60 * row, sid == start,
                               sid in targets and not targets[sid], sid not in depth, sid not in targets))
    edges = [GraphEdge(s, t, t not in targets) for s, ts in targets.items() for t in ts]
    return nodes, edges
