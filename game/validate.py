"""Story validation: a parsed story document checked once, every problem named, the Story built.

`Validator` walks the document `game.yamlsafe.parse` returns and builds the `game.story` dataclasses.  Every
problem names the file, the line, the slide and the field (unknown `to`, missing start, unreachable slides, duplicate
ids, out-of-range picture settings, state mistakes); errors stop play (`StoryError` lists them all at once),
warnings (an unreachable slide, an unknown key) stay on the Story; a slide no choice reaches whose picture a
reachable slide's continues is no mistake (a picture source only) and gets no warning.  At most MAX_PROBLEMS of
each severity are kept.  This module walks the story's structure (slides, choices, characters) and keeps the
problems; the checks of pictures (settings, ``image``, continuations) are in `game.validate_pictures`, those of
the state (variables, conditions, effects, templates) in `game.validate_state`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from ruamel.yaml.scalarstring import FoldedScalarString
from ruamel.yaml.scalarstring import LiteralScalarString

from game import expressions as ex
from game import state as st
from game import validate_pictures
from game import validate_state
from game.story import CHOICE_KEYS
from game.story import MAX_CHOICES
from game.story import SLIDE_ID_RE
from game.story import SLIDE_KEYS
from game.story import STORY_KEYS
from game.story import Choice
from game.story import Problem
from game.story import Slide
from game.story import Story
from game.story import StoryError
from game.yamlsafe import cut
from game.yamlsafe import shown

MAX_PROBLEMS = 50  # of each severity; past it, "... and N more"


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
        self.variables = validate_state.variables(self, doc)
        self.types = {name: ex.kind(value) or "" for name, value in self.variables.items()}
        title = self.text(doc, "title", None, required=True)
        style = validate_pictures.style(self, doc.get("style"), doc, None)
        characters = self.characters(doc)
        slides = self.slides(doc, set(characters))
        start = doc.get("start")
        if start is None:
            self.problem("missing: name the slide the story starts on", doc, field="start")
        elif not isinstance(start, str) or start not in slides:
            self.problem(f"no slide called {shown(start)}{self.suggest(start, slides)}", doc, "start", field="start")
        validate_pictures.continuations(self, doc, slides)
        for slide in slides.values():
            for i, choice in enumerate(slide.choices):
                if choice.to not in slides:
                    node = doc["slides"][self.keys[slide.id]]["choices"][i]
                    self.problem(f"goes to {shown(choice.to)}, which is not a slide{self.suggest(choice.to, slides)}",
                                 node, "to", slide=slide.id, field=f"choices[{i}].to")
        validate_pictures.schedules(self, doc, style, slides)
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
            image, continuation = validate_pictures.image(self, body, sid)
            characters = body.get("characters") or []
            if not isinstance(characters, list):
                self.problem("must be a list of character names", body, "characters", slide=sid, field="characters")
                characters = []
            for name in characters:
                if not isinstance(name, str) or name not in known_characters:
                    self.problem(f"unknown character {shown(name)}{self.suggest(name, known_characters)}; add it "
                                 "under the story's characters", body, "characters", slide=sid, field="characters")
            if text:
                validate_state.template(self, text, body, "text", sid)
            choices = self.choices(body, sid)
            validate_state.stuck(self, choices, body, sid)
            style = dataclasses.replace(validate_pictures.style(self, body.get("style"), body, sid), **continuation)
            slides[sid] = Slide(sid, text.strip(), image.strip() if image else None,
                                tuple(c for c in characters if isinstance(c, str) and c in known_characters),
                                choices, style, self.twine(body, sid))
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
                    validate_state.expression(self, condition, item, "if", sid, field_ + "if")
            otherwise = item.get("otherwise", st.HIDE)
            if otherwise not in (st.HIDE, st.DISABLE):
                self.problem(f"must be '{st.HIDE}' or '{st.DISABLE}' (shown greyed out), got {otherwise!r}", item,
                             "otherwise", slide=sid, field=field_ + "otherwise")
                otherwise = st.HIDE
            elif "otherwise" in item and condition is None:
                self.problem("has no effect without an 'if' condition", item, "otherwise", slide=sid,
                             field=field_ + "otherwise", severity="warning")
            effects = validate_state.effects(self, item, sid, field_)
            result.append(Choice(text.strip(), target, condition, otherwise, effects))
        return tuple(result)

    def base_line(self, node: Any, key: str) -> int | None:
        """The line of a field's first line of text (a block scalar starts on the line after its key)."""
        line = _line(node, key)
        value = node.get(key) if isinstance(node, dict) else None
        return line + 1 if line and isinstance(value, (LiteralScalarString, FoldedScalarString)) else line

    def twine(self, node: dict, sid: str | None) -> dict[str, Any]:
        value = node.get("twine")
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, list, dict)) for v in value.values()):
            self.problem("must be a mapping of Twine details (passage name, tags, position, IFID, format)", node,
                         "twine", slide=sid, field="twine", severity="warning")
            return {}
        return _plain(value)
