"""The edits an author makes on the admin pages, as pure functions on story documents.

A document is the round-trip YAML tree of a story file (``game.story.yaml_parser``): editing it in place keeps the
author's comments and key order, and ``game.story.dump_document`` writes it back.  The views parse the forms into
plain values and call these; each refusal is an `EditError` naming the field and the value at fault.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.scalarstring import LiteralScalarString

from game.library import SlideNotFound
from game.story import yaml_parser

SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STYLE_TEXT = ("prompt", "negative_prompt", "sampler_name", "scheduler")
STYLE_NUMBERS = (("width", int), ("height", int), ("steps", int), ("cfg_scale", float), ("seed", int))
# What the tuning page may change in a slide's picture settings.
TUNABLE = ("negative_prompt", "width", "height", "steps", "cfg_scale", "sampler_name", "scheduler", "seed", "tiling")
NEW_CHOICE = "__new__"  # the choice form's "a new slide called..." target


class EditError(ValueError):
    """An edit that cannot be made; ``field`` names the form field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def load_document(text: str) -> Any:
    """The round-trip document of a story file's text."""
    return yaml_parser().load(io.StringIO(text))


def _number(field: str, raw: str, cast: Any) -> Any:
    try:
        return cast(raw)
    except ValueError:
        raise EditError(field, f"expected a number, got {raw[:40]!r}") from None


def apply_story_settings(document: Any, form: Mapping[str, str]) -> None:
    """Title, start slide, the style every slide inherits, and the characters (``name: description`` per line)."""
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
            style[key] = _number(f"style.{key}", raw, cast)
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


def _slide_node(document: Any, slug: str, slide_id: str) -> Any:
    slides = document.get("slides") or {}
    if slide_id not in slides:
        raise SlideNotFound(slug, slide_id)
    return slides[slide_id]


def _set_or_drop(node: Any, key: str, value: Any) -> None:
    if value:
        node[key] = value
    elif key in node:
        del node[key]


def apply_slide_edit(document: Any, slug: str, slide_id: str, text: str, image: str, characters: list[str],
                     choices: Iterable[tuple[str, str, str]]) -> None:
    """One slide's text, picture description, characters and choices.  ``choices`` are (label, target, new name)
    rows: an emptied label removes the choice; target ``__new__`` creates a slide called ``new name`` on the spot."""
    node = _slide_node(document, slug, slide_id)
    slides = document["slides"]
    node["text"] = LiteralScalarString(text.replace("\r\n", "\n").strip() + "\n")
    _set_or_drop(node, "image", image.strip())
    _set_or_drop(node, "characters", characters)
    kept = []
    for label, target, new in choices:
        if not label.strip():
            continue
        target = new.strip() if target == NEW_CHOICE else target
        if target in (NEW_CHOICE, ""):
            continue
        if target not in slides:  # created on the spot: a stub to write later
            if not SLIDE_ID_RE.match(target):
                raise EditError("choice_new", f"'{target[:64]}' cannot name a slide: use letters, digits, - and _")
            slides[target] = {"text": LiteralScalarString(f"(to be written: after “{label.strip()}”)\n")}
        kept.append({"text": label.strip(), "to": target})
    _set_or_drop(node, "choices", kept)


def add_slide(document: Any, slide_id: str) -> None:
    """A new, empty slide called ``slide_id``."""
    if not SLIDE_ID_RE.match(slide_id) or slide_id in (document.get("slides") or {}):
        raise EditError("slide_id", f"'{slide_id[:64]}' is taken or cannot name a slide (letters, digits, - and _)")
    document["slides"][slide_id] = {"text": LiteralScalarString("(to be written)\n")}


def tuning_values(form: Mapping[str, str]) -> dict[str, Any]:
    """The tuning form's picture description and settings, typed; empty fields are left out (the slide's own)."""
    values: dict[str, Any] = {"image": form.get("image", "").strip() or None}
    for key in TUNABLE:
        raw = form.get(key, "")
        if key == "tiling":
            values[key] = raw == "on"
        elif key in ("negative_prompt", "sampler_name", "scheduler"):
            values[key] = raw
        elif raw.strip():
            values[key] = _number(key, raw, float if key == "cfg_scale" else int)
    return values


def keep_picture(document: Any, slug: str, slide_id: str, image: str | None, chosen: Any, original: Any) -> None:
    """Write a tuned picture into its slide: the subject line if changed, the seed always, and the other settings
    where ``chosen`` (a GenerationRequest) differs from what the slide had (``original``)."""
    node = _slide_node(document, slug, slide_id)
    if image:
        node["image"] = image
    style = node.get("style") or {}
    for key in TUNABLE:
        if key == "seed" or getattr(chosen, key) != getattr(original, key):
            style[key] = getattr(chosen, key)
    node["style"] = style
