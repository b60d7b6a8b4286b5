"""The edits an author makes on the admin pages, as pure functions on story documents.

A document is the round-trip YAML tree of a story file (``game.yamlsafe.yaml_parser``): editing it in place keeps the
author's comments and key order, and ``game.story.dump_document`` writes it back.  The views parse the forms into
plain values and call these; each refusal is an `EditError` naming the field and the value at fault.  The tuning
page's form and its kept pictures are in `game.tuning`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString

from game import expressions as ex
from game import state as st
from game.library import SlideNotFound
from game.yamlsafe import yaml_parser

SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STYLE_TEXT = ("prompt", "negative_prompt", "sampler_name", "scheduler")
STYLE_NUMBERS = (("width", int), ("height", int), ("steps", int), ("cfg_scale", float), ("seed", int))
NEW_CHOICE = "__new__"  # the choice form's "a new slide called..." target


@dataclass(frozen=True)
class ChoiceRow:
    """One row of the slide form's choices: label, target (or NEW_CHOICE and the new slide's name), condition,
    what a player sees while it is closed (hide/disable) and effects, one ``name = value`` per line."""

    text: str
    to: str
    new: str = ""
    condition: str = ""
    otherwise: str = st.HIDE
    effects: str = ""


class EditError(ValueError):
    """An edit that cannot be made; ``field`` names the form field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def load_document(text: str) -> Any:
    """The round-trip document of a story file's text."""
    return yaml_parser().load(io.StringIO(text))


def field_number(field: str, raw: str, cast: Any) -> Any:
    """``raw`` as a number of type ``cast``; an `EditError` naming ``field`` when it is not one."""
    try:
        return cast(raw)
    except ValueError:
        raise EditError(field, f"expected a number, got {raw[:40]!r}") from None


def value_text(value: Any) -> str:
    """A variable's starting value or an effect's value as the forms show it (true/false, a number, or text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(raw: str, unquote: bool = True) -> ex.Value:
    """A value typed into a form: true/false, a number, else text (with ``unquote``, quotes around it are taken
    off; an effect keeps them, since its text is an expression in which quoted text is a value)."""
    raw = raw.strip()
    if raw in ("true", "false"):
        return raw == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if unquote and len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def _pairs(field: str, text: str) -> list[tuple[str, str]]:
    """``name = value`` (or ``name: value``) lines; blank lines skipped, each name once."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        name, value = (line[:cut].strip(), line[cut + 1:].strip()) if cut > 0 else (line.strip(), "")
        problem = st.name_error(name) or ("has no value: write name = value" if not value else None)
        if problem is None and name in dict(pairs):
            problem = f"'{name}' is given twice"
        if problem:
            raise EditError(field, f"line {number} ({line.strip()[:60]!r}): {problem}")
        pairs.append((name, value))
    return pairs


def state_text(document: Any) -> str:
    """The story's variables as the settings form shows them, one ``name = starting value`` per line."""
    return "".join(f"{name} = {value_text(value)}\n" for name, value in (document.get("state") or {}).items())


def apply_state(document: Any, text: str) -> None:
    """The story's variables and starting values from ``name = value`` lines (text in quotes keeps its spaces and
    stays text even when it looks like a number)."""
    variables: dict[str, ex.Value] = {}
    for name, raw in _pairs("state", text):
        value = parse_value(raw)
        problem = st.value_error(value)
        if problem:
            raise EditError("state", f"{name}: {problem}")
        variables[name] = value
    if not variables:
        document.pop("state", None)
    elif "state" in document:
        document["state"] = variables
    else:  # a new state: declared before the slides, where authors look for it
        keys = list(document)
        document.insert(keys.index("slides") if "slides" in keys else len(keys), "state", variables)


def apply_story_settings(document: Any, form: Mapping[str, str]) -> None:
    """Title, start slide, the style every slide inherits, the characters (``name: description`` per line) and,
    when the form has them, the variables (``name = starting value`` per line)."""
    document["title"] = form.get("title", "").strip()
    document["start"] = form.get("start", "")
    style = document.get("style") or {}
    for key in STYLE_TEXT:
        if form.get(key, "").strip():
            style[key] = form[key].strip()
        elif key in style:
            del style[key]
    for key, cast in STYLE_NUMBERS:
        raw = form.get(key, "").strip()
        if raw:
            style[key] = field_number(f"style.{key}", raw, cast)
        elif key in style:
            del style[key]
    style["tiling"] = form.get("tiling") == "on"
    document["style"] = style
    characters = {}
    for line in form.get("characters", "").splitlines():
        name, sep, description = line.partition(":")
        if sep and name.strip():
            characters[name.strip()] = description.strip()
    document["characters"] = characters
    if "state" in form:
        apply_state(document, form["state"])


def slide_node(document: Any, slug: str, slide_id: str) -> Any:
    """The document's mapping of slide ``slide_id``; `SlideNotFound` when there is none."""
    slides = document.get("slides") or {}
    if slide_id not in slides:
        raise SlideNotFound(slug, slide_id)
    return slides[slide_id]


def _set_or_drop(node: Any, key: str, value: Any) -> None:
    if value:
        node[key] = value
    elif key in node:
        del node[key]


def choice_rows(node: Any) -> list[ChoiceRow]:
    """A slide's choices as the form shows them (condition, hide/disable and effects included)."""
    rows = []
    for choice in node.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        condition = choice.get("if")
        effects = choice.get("set")
        effects = effects if isinstance(effects, dict) else {}
        rows.append(ChoiceRow(str(choice.get("text") or ""), str(choice.get("to") or ""), "",
                              "" if condition is None else value_text(condition),
                              st.DISABLE if choice.get("otherwise") == st.DISABLE else st.HIDE,
                              "".join(f"{k} = {value_text(v)}\n" for k, v in effects.items())))
    return rows


def _choice(row: ChoiceRow, target: str, field: str) -> dict[str, Any]:
    """A choice's mapping as the story file has it: text, to, and if/otherwise/set only where given."""
    choice: dict[str, Any] = {"text": row.text.strip(), "to": target}
    condition = " ".join(row.condition.split())
    if condition:
        choice["if"] = condition
        if row.otherwise == st.DISABLE:
            choice["otherwise"] = st.DISABLE
    elif row.otherwise not in (st.HIDE, st.DISABLE):
        raise EditError(field + "otherwise", f"must be {st.HIDE} or {st.DISABLE}, got {row.otherwise[:20]!r}")
    effects = {name: parse_value(raw, unquote=False) for name, raw in _pairs(field + "set", row.effects)}
    if effects:  # true/false and numbers are values; anything else is an expression, as in the YAML
        choice["set"] = effects
    return choice


def image_fields(node: Any) -> tuple[str, str, str]:
    """A slide's ``image`` as the slide form shows it: what the painter should see, the slide whose picture it
    continues ("" for none) and the strength ("" for the default)."""
    image = node.get("image") if isinstance(node, dict) else None
    if not isinstance(image, dict):
        return ("" if image is None else str(image)), "", ""
    strength = image.get("strength")
    return (str(image.get("prompt") or ""), str(image.get("from") or ""),
            "" if strength is None else value_text(strength))


def set_image(node: Any, prompt: str, source: str | None, strength: str) -> None:
    """Write a slide's ``image``: text, or, for a continuation, the mapping of ``prompt``, ``from`` and ``strength``
    (edited in place, so its comments and key order stay; back to plain text when the continuation is removed).
    ``source`` None leaves the continuation as it is; a strength without a source is not written."""
    current = node.get("image")
    if source is None:
        source = str(current.get("from") or "") if isinstance(current, dict) else ""
        strength = value_text(current["strength"]) if isinstance(current, dict) and "strength" in current else ""
    if not source.strip():
        _set_or_drop(node, "image", prompt)
        return
    image = current if isinstance(current, dict) else CommentedMap()
    amount = field_number("image_strength", strength.strip(), float) if strength.strip() else None
    for key, value in (("prompt", prompt), ("from", source.strip()), ("strength", amount)):
        _set_or_drop(image, key, value)
    node["image"] = image


def apply_slide_edit(document: Any, slug: str, slide_id: str, text: str, image: str, characters: list[str],
                     choices: Iterable[ChoiceRow], source: str | None = None, strength: str = "") -> None:
    """One slide's text, picture description, characters and choices: an emptied label removes a choice; target
    ``__new__`` creates a slide called ``new`` on the spot.  ``source`` and ``strength``: the slide whose picture
    this one continues ("" for none; None leaves it as it is) and how far from it ("" for the default).
    Conditions, effects and continuations are checked with the rest of the story when it is saved."""
    node = slide_node(document, slug, slide_id)
    slides = document["slides"]
    node["text"] = LiteralScalarString(text.replace("\r\n", "\n").strip() + "\n")
    set_image(node, image.strip(), source, strength)
    _set_or_drop(node, "characters", characters)
    kept = []
    for number, row in enumerate(choices, 1):
        if not row.text.strip():
            continue
        target = row.new.strip() if row.to == NEW_CHOICE else row.to
        if target in (NEW_CHOICE, ""):
            continue
        choice = _choice(row, target, f"choice {number} ")
        if target not in slides:  # created on the spot: a stub to write later
            if not SLIDE_ID_RE.match(target):
                raise EditError("choice_new", f"'{target[:64]}' cannot name a slide: use letters, digits, - and _")
            slides[target] = {"text": LiteralScalarString(f"(to be written: after “{row.text.strip()}”)\n")}
        kept.append(choice)
    _set_or_drop(node, "choices", kept)


def add_slide(document: Any, slide_id: str) -> None:
    """A new, empty slide called ``slide_id``."""
    if not SLIDE_ID_RE.match(slide_id) or slide_id in (document.get("slides") or {}):
        raise EditError("slide_id", f"'{slide_id[:64]}' is taken or cannot name a slide (letters, digits, - and _)")
    document["slides"][slide_id] = {"text": LiteralScalarString("(to be written)\n")}
