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
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
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


def yaml_parser() -> YAML:
    """A round-trip YAML parser/dumper that keeps comments and key order."""
    yaml = YAML(typ="rt")
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
    try:
        document = yaml_parser().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = str(getattr(exc, "problem", None) or exc).strip()
        if "duplicate key" in str(exc):
            key = str(exc).split("found duplicate key")[-1].split("with value")[0].strip()
            message = f"duplicate key {key}: each slide id, and each field of a slide, may appear only once"
        raise StoryError(source, [Problem(source, f"not valid YAML: {message}", line=line)]) from None
    return _Validator(source, slug, document).story()


def style_value_error(key: str, value: Any) -> str | None:
    """Return why one picture setting is invalid (None when it is fine), by the painter's own rules."""
    try:
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_SEED:
                return f"must be a whole number from 0 to {MAX_SEED} (or -1 for a random picture), got {value!r}"
        elif key == "scheduler":
            resolve_schedule(str(value))
        elif key == "sampler_name":
            resolve_sampler(str(value))
        else:
            GenerationRequest(**{"prompt": "", key: value})
    except RequestError as exc:
        return exc.message
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


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Validator:
    """Walk a parsed story document once, collecting problems and building the dataclasses."""

    def __init__(self, source: str, slug: str, document: Any):
        self.source = source
        self.slug = slug
        self.document = document
        self.problems: list[Problem] = []

    def problem(self, message: str, node: Any = None, key: Any = None, *, slide: str | None = None,
                field: str | None = None, severity: str = "error") -> None:
        self.problems.append(Problem(self.source, message, slide, field, _line(node, key), severity))

    def story(self) -> Story:
        doc = self.document
        if not isinstance(doc, dict):
            raise StoryError(self.source, [Problem(self.source, "a story must be a YAML mapping with title, start and slides")])
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
        elif start not in slides:
            self.problem(f"no slide called '{start}'{_suggest(start, slides)}", doc, "start", field="start")
        for slide in slides.values():
            for i, choice in enumerate(slide.choices):
                if choice.to not in slides:
                    node = doc["slides"][slide.id]["choices"][i]
                    self.problem(f"goes to '{choice.to}', which is not a slide{_suggest(choice.to, slides)}",
                                 node, "to", slide=slide.id, field=f"choices[{i}].to")
        # A sampler and a schedule type are only valid together: check the story's pair, then each slide's.
        for slide_id, spec in [(None, style)] + [(s.id, style.merged(s.style)) for s in slides.values()
                                                 if s.style.sampler_name or s.style.scheduler]:
            try:
                resolve_sampler(spec.sampler_name or "DPM++ 2M", spec.scheduler or "automatic")
            except RequestError as exc:
                node, key = (doc["slides"], slide_id) if slide_id else (doc, "style")
                self.problem(exc.message, node, key, slide=slide_id, field="style.scheduler")
        if any(p.severity == "error" for p in self.problems):
            raise StoryError(self.source, self.problems)
        story = Story(self.slug, title, start, slides, style, characters, self.optional_text(doc, "description"),
                      self.optional_text(doc, "author"), (), doc, self.variables, self.twine(doc, None),
                      self.sandbox)
        reached = story.parents()
        for slide_id in slides:
            if slide_id not in reached:
                self.problem("cannot be reached from the start slide", doc["slides"], slide_id, slide=slide_id,
                             severity="warning")
        return dataclasses.replace(story, warnings=tuple(self.problems))

    def unknown_keys(self, node: dict, known: tuple[str, ...], slide: str | None, prefix: str) -> None:
        for key in node:
            if key not in known:
                self.problem(f"unknown key '{key}' is ignored{_suggest(key, known)}", node, key, slide=slide,
                             field=f"{prefix}{key}", severity="warning")

    def text(self, node: dict, key: str, slide: str | None, required: bool = False, prefix: str = "") -> str:
        value = node.get(key)
        if value is None:
            if required:
                self.problem("missing", node, slide=slide, field=f"{prefix}{key}")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(f"must be non-empty text, got {value!r}", node, key, slide=slide, field=f"{prefix}{key}")
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
                             field=f"characters.{name}")
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
            sid = str(slide_id)
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
                if name not in known_characters:
                    self.problem(f"unknown character '{name}'{_suggest(name, known_characters)}; add it under "
                                 "the story's characters", body, "characters", slide=sid, field="characters")
            if text:
                self.template(text, body, "text", sid)
            if image:
                self.template(image, body, "image", sid)
            choices = self.choices(body, sid)
            self.stuck(choices, body, sid)
            slides[sid] = Slide(sid, text.strip(), image.strip() if image else None,
                                tuple(str(c) for c in characters if c in known_characters),
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
            self.problems.append(Problem(self.source, message, sid, field, line, severity))

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
                self.problem(f"sets '{name}', which is not declared under the story's state:{_suggest(name, self.variables)}",
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
    for sid, body in slides.items():
        choices = body.get("choices") if isinstance(body, dict) else None
        targets[str(sid)] = [str(c.get("to")) for c in choices or [] if isinstance(c, dict) and c.get("to")]
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
    edges = [GraphEdge(s, t, t not in targets) for s, ts in targets.items() for t in ts]
    return nodes, edges
