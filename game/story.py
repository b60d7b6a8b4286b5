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
import itertools
import re
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
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
from ruamel.yaml.scalarstring import FoldedScalarString
from ruamel.yaml.scalarstring import LiteralScalarString

from game import state as st
from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import resolve_sampler
from inference.request import resolve_schedule

STORY_KEYS = ("title", "start", "description", "author", "style", "characters", "state", "slides", "twine")
SLIDE_KEYS = ("text", "image", "characters", "choices", "style", "twine")
CHOICE_KEYS = ("text", "to", "if", "otherwise", "set")
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
        values.update({f.name: getattr(overrides, f.name) for f in fields(self)
                       if getattr(overrides, f.name) is not None})
        return ImageSpec(**values)


STYLE_KEYS = tuple(f.name for f in fields(ImageSpec))


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
    variables: dict[str, st.Value] = field(default_factory=dict)  # `state:`: each variable's starting value
    twine: dict[str, Any] = field(default_factory=dict)  # IFID, story format, ... of a story imported from Twine
    sandbox: st.Sandbox = field(default_factory=st.Sandbox, compare=False, repr=False)

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


def _plain(value: Any) -> Any:
    """A ruamel node as plain dicts, lists and scalars."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


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
                field: str | None = None, severity: str = "error", line: int | None = None) -> None:
        """Note a problem (its line from ``node[key]`` unless given); past MAX_PROBLEMS of a severity, only count."""
        if sum(p.severity == severity for p in self.problems) >= MAX_PROBLEMS:
            self.dropped[severity] += 1
            return
        self.problems.append(Problem(self.source, _cut(message), slide and _cut(slide, 80),
                                     field and _cut(field, 120), line or _line(node, key), severity))

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
            raise StoryError(self.source, [Problem(self.source,
                                                   "a story must be a YAML mapping with title, start and slides")])
        self.unknown_keys(doc, STORY_KEYS, None, "")
        self.sandbox = st.Sandbox()
        self.variables = self.state(doc)
        self.types = {name: st.kind(value) or "" for name, value in self.variables.items()}
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
                      self.optional_text(doc, "author"), (), doc, self.variables, self.twine(doc, None),
                      self.sandbox)
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
            self.problem("missing or empty: a story needs at least one slide", doc,
                         "slides" if "slides" in doc else None,
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
            if text:
                self.template(text, body, "text", sid)
            if image:
                self.template(image, body, "image", sid)
            choices = self.choices(body, sid)
            self.stuck(choices, body, sid)
            slides[sid] = Slide(sid, text.strip(), image.strip() if image else None,
                                tuple(c for c in characters if isinstance(c, str) and c in known_characters),
                                choices, self.style(body.get("style"), body, sid), self.twine(body, sid))
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
            field_ = f"choices[{i}]."
            condition = item.get("if")
            if isinstance(condition, bool):
                condition = st.literal(condition)
            if condition is not None:
                if not isinstance(condition, str) or not condition.strip():
                    self.problem(f"must be a condition such as 'lantern' or 'coins > 2', got {condition!r}", item, "if",
                                 slide=sid, field=field_ + "if")
                    condition = None
                else:
                    self.expression(condition, item, "if", sid, field_ + "if")
            otherwise = item.get("otherwise", st.HIDE)
            if otherwise not in (st.HIDE, st.DISABLE):
                self.problem(f"must be '{st.HIDE}' or '{st.DISABLE}' (shown greyed out), got {otherwise!r}", item,
                             "otherwise", slide=sid, field=field_ + "otherwise")
                otherwise = st.HIDE
            elif "otherwise" in item and condition is None:
                self.problem("has no effect without an 'if' condition", item, "otherwise", slide=sid,
                             field=field_ + "otherwise", severity="warning")
            result.append(Choice(text.strip(), target, condition, otherwise, self.effects(item, sid, field_)))
        return tuple(result)

    # -- state --------------------------------------------------------------------------------------------------

    def state(self, doc: dict) -> dict[str, st.Value]:
        node = doc.get("state")
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problem("must map each variable's name to its starting value (true/false, a number or short text)",
                         doc, "state", field="state")
            return {}
        if len(node) > st.MAX_VARIABLES:
            self.problem(f"declares {len(node)} variables; at most {st.MAX_VARIABLES}", doc, "state", field="state")
        result: dict[str, st.Value] = {}
        for name, value in node.items():
            message = st.name_error(name) or st.value_error(value)
            if message:
                self.problem(message, node, name, field=f"state.{name}")
            else:
                result[str(name)] = st.plain(value.strip() if isinstance(value, str) else value)
        size = st.worst_case_chars(result)
        if size > st.MAX_STATE_CHARS:
            self.problem(f"these variables can take {size} characters of a player's session; at most "
                         f"{st.MAX_STATE_CHARS} fit: use fewer or shorter-named variables, or fewer text ones", doc,
                         "state", field="state")
        return result

    def base_line(self, node: Any, key: str) -> int | None:
        """The line of a field's first line of text (a block scalar starts on the line after its key)."""
        line = _line(node, key)
        value = node.get(key) if isinstance(node, dict) else None
        return line + 1 if line and isinstance(value, (LiteralScalarString, FoldedScalarString)) else line

    def checked(self, source: str, node: Any, key: str, sid: str | None, field: str, expression: bool) -> str | None:
        """Report what is wrong with an expression or template; return its kind (expressions only)."""
        base = self.base_line(node, key)

        def report(message: str, offset: int | None, severity: str = "error") -> None:
            line = base + (offset or 1) - 1 if base else None
            self.problem(message, slide=sid, field=field, severity=severity, line=line)

        try:
            names = self.sandbox.names(source, expression)
            result, mistakes = self.sandbox.kind_of(source, self.types, expression)
        except st.StateError as exc:
            report(exc.message, exc.line)
            return None
        for name, offset in names:
            if name not in self.variables:
                hint = _suggest(name, self.variables) or (" (declare it under the story's state:)" if not
                                                           self.variables else "")
                report(f"unknown variable '{name}'{hint}", offset)
        for message, where in mistakes:
            report(message, where)
        return result

    def expression(self, source: str, node: Any, key: str, sid: str | None, field: str) -> str | None:
        return self.checked(source, node, key, sid, field, True)

    def template(self, source: str, node: Any, key: str, sid: str | None) -> None:
        if self.sandbox.is_template(source):
            self.checked(source, node, key, sid, key, False)

    def effects(self, item: dict, sid: str, field_: str) -> tuple[st.Effect, ...]:
        node = item.get("set")
        if node is None:
            return ()
        if not isinstance(node, dict):
            self.problem("must map variables to new values, like {lantern: true, coins: coins - 1}", item, "set",
                         slide=sid, field=field_ + "set")
            return ()
        result = []
        for name, value in node.items():
            where = f"{field_}set.{name}"
            if name not in self.variables:
                self.problem(f"sets '{name}', which is not declared under the story's state:"
                             f"{_suggest(name, self.variables)}",
                             node, name, slide=sid, field=where)
                continue
            if isinstance(value, str):
                expression, got = value, self.expression(value, node, name, sid, where)
            elif st.kind(value) is not None and st.value_error(value) is None:
                expression, got = st.literal(value), st.kind(value)
            else:
                self.problem(f"must be a value or an expression, got {value!r}", node, name, slide=sid, field=where)
                continue
            want = self.types[str(name)]
            if got and got != want:
                self.problem(f"'{name}' holds {want}, but this sets it to {got}"
                             + (" (write text in quotes inside the YAML string: '\"Ann\"')" if want == "text" else ""),
                             node, name, slide=sid, field=where)
            result.append(st.Effect(str(name), expression))
        return tuple(result)

    def stuck(self, choices: tuple[Choice, ...], body: dict, sid: str) -> None:
        if not choices or any(c.condition is None for c in choices):
            return
        example = st.may_all_fail(self.sandbox, [c.condition or "" for c in choices], self.variables)
        if example == "may":
            self.problem("every choice has a condition: if none holds the player is stuck here; add a choice without "
                         "'if' or make sure one always holds", body, "choices", slide=sid, field="choices",
                         severity="warning")
        elif example:
            self.problem(f"every choice is closed when {example}: the player would be stuck here; add a choice "
                         "without 'if'", body, "choices", slide=sid, field="choices", severity="warning")

    def twine(self, node: dict, sid: str | None) -> dict[str, Any]:
        value = node.get("twine")
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, list, dict)) for v in value.values()):
            self.problem("must be a mapping of Twine details (passage name, tags, position, IFID, format)", node,
                         "twine", slide=sid, field="twine", severity="warning")
            return {}
        return _plain(value)


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
    label: str = ""  # the choice's text
    condition: str | None = None  # its `if:`, when it has one
    otherwise: str = st.HIDE  # what a player sees while it is closed
    effects: str = ""  # its `set:`, as "name = value, ..."


def breadth_first(start: str, targets: Callable[[str], Iterable[str]]) -> dict[str, tuple[str | None, int]]:
    """Walk a graph breadth-first from ``start``: each node reached, with the node it was first reached from (None
    for the start) and its distance from the start.  ``targets(node)`` lists where a node leads."""
    reached: dict[str, tuple[str | None, int]] = {start: (None, 0)}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for target in targets(current):
            if target not in reached:
                reached[target] = (current, reached[current][1] + 1)
                queue.append(target)
    return reached


def story_graph(document: Any) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Slides as nodes laid out in columns by distance from the start, choices as edges; works on broken stories."""
    slides = document.get("slides") if isinstance(document, dict) else None
    if not isinstance(slides, dict):
        return [], []
    targets: dict[str, list[str]] = {}
    found: list[tuple[str, dict]] = []
    for sid, body in slides.items():
        choices = body.get("choices") if isinstance(body, dict) else None
        choices = [c for c in choices if isinstance(c, dict) and c.get("to")] if isinstance(choices, list) else []
        targets[str(sid)] = [str(c.get("to")) for c in choices]
        found += [(str(sid), c) for c in choices]
    start = str(document.get("start", ""))
    depth = {sid: d for sid, (_, d) in breadth_first(start, lambda sid: targets.get(sid, [])).items()
             } if start in targets else {}
    last = max(depth.values(), default=0) + 1
    rows: dict[int, int] = {}
    nodes = []
    for sid in list(targets) + sorted({t for ts in targets.values() for t in ts if t not in targets}):
        column = depth.get(sid, last)
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(GraphNode(sid, 90 + 170 * column, 40 + 60 * row, sid == start,
                               sid in targets and not targets[sid], sid not in depth, sid not in targets))
    edges = [GraphEdge(s, str(c["to"]), str(c["to"]) not in targets, _cut(str(c.get("text") or ""), 80),
                       _cut(shown_condition(c.get("if")), 120) if c.get("if") not in (None, "") else None,
                       st.DISABLE if c.get("otherwise") == st.DISABLE else st.HIDE,
                       _cut(shown_effects(c.get("set")), 120))
             for s, c in found]
    return nodes, edges


def shown_condition(condition: Any) -> str:
    """A choice's ``if:`` as the editor shows it."""
    return st.literal(condition) if isinstance(condition, bool) else str(condition)


def shown_effects(effects: Any) -> str:
    """A choice's ``set:`` as the editor shows it: ``name = value, ...``."""
    if not isinstance(effects, dict):
        return ""
    return ", ".join(f"{k} = {st.literal(v) if isinstance(v, bool) else v}" for k, v in itertools.islice(
        effects.items(), 8))
