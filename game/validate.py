"""Story validation: a parsed story document checked once, every problem named, the Story built.

`Validator` walks the document `game.yamlsafe.parse` returns and builds the `game.story` dataclasses.  Every
problem names the file, the line, the slide and the field (unknown `to`, missing start, unreachable slides, duplicate
ids, out-of-range picture settings, state mistakes); errors stop play (`StoryError` lists them all at once),
warnings (an unreachable slide, an unknown key) stay on the Story; a slide no choice reaches whose picture a
reachable slide's continues is no mistake (a picture source only) and gets no warning.  At most MAX_PROBLEMS of
each severity are kept.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from ruamel.yaml.scalarstring import FoldedScalarString
from ruamel.yaml.scalarstring import LiteralScalarString

from game import expressions as ex
from game import state as st
from game.story import CHOICE_KEYS
from game.story import IMAGE_KEYS
from game.story import MAX_CHOICES
from game.story import MAX_CONTINUATIONS
from game.story import SLIDE_ID_RE
from game.story import SLIDE_KEYS
from game.story import STORY_KEYS
from game.story import STYLE_KEYS
from game.story import Choice
from game.story import ImageSpec
from game.story import Problem
from game.story import Slide
from game.story import Story
from game.story import StoryError
from game.yamlsafe import cut
from game.yamlsafe import shown
from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import resolve_sampler
from inference.request import resolve_schedule

MAX_PROBLEMS = 50  # of each severity; past it, "... and N more"


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
        return cut(exc.message)
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


class Validator:
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
        self.problems.append(Problem(self.source, cut(message), slide and cut(slide, 80),
                                     field and cut(field, 120), line or _line(node, key), severity))

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
        self.sandbox = ex.Sandbox()
        self.variables = self.state(doc)
        self.types = {name: ex.kind(value) or "" for name, value in self.variables.items()}
        title = self.text(doc, "title", None, required=True)
        style = self.style(doc.get("style"), doc, None)
        characters = self.characters(doc)
        slides = self.slides(doc, set(characters))
        start = doc.get("start")
        if start is None:
            self.problem("missing: name the slide the story starts on", doc, field="start")
        elif not isinstance(start, str) or start not in slides:
            self.problem(f"no slide called {shown(start)}{self.suggest(start, slides)}", doc, "start", field="start")
        self.continuations(doc, slides)
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
        needed = story.picture_sources()  # a slide only there to be painted from is no mistake (the graph says so)
        for slide_id in slides:
            if slide_id not in reached and slide_id not in needed:
                self.problem("cannot be reached from the start slide", doc["slides"], self.keys[slide_id],
                             slide=slide_id, severity="warning")
        return dataclasses.replace(story, warnings=tuple(self.finish()))

    def unknown_keys(self, node: dict, known: tuple[str, ...], slide: str | None, prefix: str) -> None:
        for key in node:
            if key not in known:
                self.problem(f"unknown key {shown(key)} is ignored{self.suggest(key, known)}", node, key, slide=slide,
                             field=f"{prefix}{cut(str(key), 40)}", severity="warning")

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
                             field=f"characters.{cut(str(name), 40)}")
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
            image, continuation = self.image(body, sid)
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
            choices = self.choices(body, sid)
            self.stuck(choices, body, sid)
            style = dataclasses.replace(self.style(body.get("style"), body, sid), **continuation)
            slides[sid] = Slide(sid, text.strip(), image.strip() if image else None,
                                tuple(c for c in characters if isinstance(c, str) and c in known_characters),
                                choices, style, self.twine(body, sid))
        return slides

    def image(self, body: dict, sid: str) -> tuple[str | None, dict[str, Any]]:
        """A slide's ``image``: what the painter should see (text), or a mapping of that (``prompt``) and the slide
        whose picture it continues (``from``, ``strength``).  Returns the text and the continuation's fields."""
        node = body.get("image")
        if not isinstance(node, dict):
            image = self.text(body, "image", sid) or None
            if image:
                self.template(image, body, "image", sid)
            return image, {}
        self.unknown_keys(node, IMAGE_KEYS, sid, "image.")
        image = self.text(node, "prompt", sid, prefix="image.") or None
        if image:
            self.template(image, node, "prompt", sid, "image.prompt")
        found: dict[str, Any] = {}
        source = node.get("from")
        if "from" in node:
            if isinstance(source, str) and source.strip():
                found["source"] = source.strip()
            else:
                self.problem(f"must name the slide whose picture this one continues, got {shown(source)}", node,
                             "from", slide=sid, field="image.from")
        strength = node.get("strength")
        if strength is not None:
            if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
                self.problem("must be a number from 0 (the source picture as it is) to 1 (a new picture in its "
                             f"place), got {shown(strength)}", node, "strength", slide=sid, field="image.strength")
            elif "from" not in node:
                self.problem("has no effect without 'from' (the slide whose picture this one continues)", node,
                             "strength", slide=sid, field="image.strength", severity="warning")
            else:
                found["strength"] = float(strength)
        return image, found

    def continuations(self, doc: dict, slides: dict[str, Slide]) -> None:
        """Each ``image.from`` names another slide, no pictures continue each other in a cycle, and no chain of
        continuations is longer than MAX_CONTINUATIONS."""
        def where(sid: str) -> tuple[Any, str]:
            return doc["slides"][self.keys[sid]]["image"], "from"

        for slide in slides.values():
            source = slide.source
            if source == slide.id:
                self.problem("continues its own picture: name another slide (the picture to start from)",
                             *where(slide.id), slide=slide.id, field="image.from")
            elif source is not None and source not in slides:
                others = [s for s in slides if s != slide.id]
                self.problem(f"continues the picture of {shown(source)}, which is not a slide"
                             f"{self.suggest(source, others)}", *where(slide.id), slide=slide.id, field="image.from")
        cycles: set[frozenset[str]] = set()
        for sid in slides:
            path = [sid]
            current = slides[sid].source
            while current in slides and current not in path:
                path.append(current)
                current = slides[current].source
            if current in path and current != path[-1]:  # a cycle (a slide continuing itself is said above)
                cycle = path[path.index(current):]
                if frozenset(cycle) not in cycles:
                    cycles.add(frozenset(cycle))
                    shown_cycle = " -> ".join(cycle + [current])
                    for member in cycle:
                        self.problem(f"the pictures of {', '.join(repr(c) for c in cycle)} continue each other in a "
                                     f"cycle ({shown_cycle}), so none of them can be painted first: make one of them "
                                     "a plain picture (no 'from')", *where(member), slide=member, field="image.from")
            elif current is None and len(path) - 1 > MAX_CONTINUATIONS:
                self.problem(f"its picture is painted from a chain of {len(path) - 1} pictures ("
                             f"{' -> '.join(path[:4])} -> ... -> {path[-1]}); at most {MAX_CONTINUATIONS} 'from' "
                             "steps lead to a plain picture", *where(sid), slide=sid, field="image.from")

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

    def state(self, doc: dict) -> dict[str, ex.Value]:
        node = doc.get("state")
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problem("must map each variable's name to its starting value (true/false, a number or short text)",
                         doc, "state", field="state")
            return {}
        if len(node) > st.MAX_VARIABLES:
            self.problem(f"declares {len(node)} variables; at most {st.MAX_VARIABLES}", doc, "state", field="state")
        result: dict[str, ex.Value] = {}
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
        except ex.StateError as exc:
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

    def template(self, source: str, node: Any, key: str, sid: str | None, field: str | None = None) -> None:
        if self.sandbox.is_template(source):
            self.checked(source, node, key, sid, field or key, False)

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
            elif ex.kind(value) is not None and st.value_error(value) is None:
                expression, got = st.literal(value), ex.kind(value)
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
