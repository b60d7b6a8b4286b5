"""The tuning page's logic, as pure functions: its form read (picture settings, the variables a slide is previewed
with, a continuation and its strengths) and a chosen picture kept in its slide's story document.

Refusals are `EditError`s naming the field and the value at fault, as in `game.editing`, whose document edits these
share.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from game import expressions as ex
from game import state as st
from game.editing import EditError
from game.editing import field_number
from game.editing import parse_value
from game.editing import set_image
from game.editing import slide_node
from game.editing import value_text
from game.story import MAX_CONTINUATIONS
from game.story import Story

# What the tuning page may change in a slide's picture settings.
TUNABLE = ("negative_prompt", "width", "height", "steps", "cfg_scale", "sampler_name", "scheduler", "seed", "tiling")
MAX_COMPARED = 4  # a strengths comparison on the tuning page paints at most this many pictures
COMPARED_STRENGTHS = "0.3, 0.5, 0.7"  # what it compares unless the author says otherwise


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
            values[key] = field_number(key, raw, float if key == "cfg_scale" else int)
    return values


def preview_values(declared: Mapping[str, ex.Value], form: Mapping[str, str]) -> dict[str, ex.Value]:
    """The variables the tuning page previews a slide with: each ``state.NAME`` field of the form, of its
    variable's kind (true/false, a number, text cut to its bound); a variable the form leaves out starts as
    declared."""
    values = dict(declared)
    for name, start in declared.items():
        raw = form.get(f"state.{name}")
        if raw is None:
            continue
        if isinstance(start, bool):
            if raw not in ("true", "false"):
                raise EditError(f"state.{name}", f"must be true or false, got {raw[:20]!r}")
            values[name] = raw == "true"
        elif isinstance(start, (int, float)):
            value = parse_value(raw)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or st.value_error(value):
                raise EditError(f"state.{name}", f"must be a number within +-{st.MAX_NUMBER}, got {raw[:20]!r}")
            values[name] = value
        else:
            values[name] = raw[: st.MAX_STRING]
    return values


def strength_value(field: str, raw: str) -> float:
    """A continuation's strength typed into a form: a number from 0 to 1."""
    value = field_number(field, raw.strip(), float)
    if not 0 <= value <= 1:
        raise EditError(field, f"must be a number from 0 (the source picture as it is) to 1 (a new picture in its "
                               f"place), got {raw.strip()[:20]!r}")
    return value


def tuning_continuation(story: Story, slide_id: str, form: Mapping[str, str]) -> tuple[str | None, float | None]:
    """The tuning form's continuation: the slide whose picture the tuned slide's continues (None: a plain picture)
    and the strength (None: the default).  A form without ``image_from`` leaves the slide's own; a source that
    is no slide, or would make a cycle or a chain too long (see `Story.possible_sources`), is refused with why."""
    slide = story.slides[slide_id]
    if "image_from" not in form:
        return slide.source, slide.style.strength
    source = form.get("image_from", "").strip() or None
    if source is not None and source not in story.possible_sources(slide_id):
        if source not in story.slides:
            reason = "there is no such slide"
        elif source == slide_id:
            reason = "a picture cannot continue itself"
        elif slide_id in story.sources(source):
            chain = [source, *story.sources(source)]
            reason = (f"its picture continues this one's ({' -> '.join(chain[:chain.index(slide_id) + 1])}), so "
                      "they would continue each other in a cycle")
        else:
            reason = f"its picture already ends a chain of {MAX_CONTINUATIONS} 'from' steps"
        raise EditError("image_from", f"cannot continue the picture of {source[:64]!r}: {reason}")
    raw = form.get("image_strength", "").strip()
    return source, strength_value("image_strength", raw) if raw and source else None


def compared_strengths(text: str) -> list[float]:
    """The strengths a comparison paints, from the form's list ("0.3, 0.5, 0.7"): each from 0 to 1, each once,
    in the order given, at most `MAX_COMPARED`."""
    strengths: list[float] = []
    for raw in re.split(r"[\s,;]+", text.strip()[:200]):
        if raw:
            value = strength_value("strengths", raw)
            if value not in strengths:
                strengths.append(value)
    if not strengths:
        raise EditError("strengths", f"name the strengths to compare, for example {COMPARED_STRENGTHS}")
    if len(strengths) > MAX_COMPARED:
        raise EditError("strengths", f"at most {MAX_COMPARED} strengths at once, got {len(strengths)}")
    return strengths


def keep_picture(document: Any, slug: str, slide_id: str, image: str | None, chosen: Any, original: Any,
                 source: str | None = None) -> None:
    """Write a tuned picture into its slide: the subject line if changed, the seed always, and the other settings
    where ``chosen`` (a GenerationRequest) differs from what the slide had (``original``).  ``source``: the slide
    whose picture the chosen one continues, written with its strength (``chosen.denoising_strength``) into the
    slide's ``image`` mapping in place (comments kept); "" makes the slide's picture a plain one; None leaves the
    continuation as it is."""
    node = slide_node(document, slug, slide_id)
    current = node.get("image")
    if source is not None and (source or isinstance(current, dict)):
        kept = (current.get("prompt") if isinstance(current, dict) else current) or ""
        set_image(node, image or str(kept), source, value_text(chosen.denoising_strength) if source else "")
    elif image and isinstance(current, dict):  # a continuation keeps its source
        current["prompt"] = image
    elif image:
        node["image"] = image
    style = node.get("style") or {}
    for key in TUNABLE:
        if key == "seed" or getattr(chosen, key) != getattr(original, key):
            style[key] = getattr(chosen, key)
    node["style"] = style
