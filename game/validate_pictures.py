"""The checks of a story's pictures: picture settings, a slide's ``image`` and the continuations between them.

`game.validate.Validator` runs them as it walks a story: each takes the validator (where problems are noted, each
naming the file, the line, the slide and the field) and returns what it built.  Picture settings are checked by the
painter's own rules (`inference.request`, `inference.samplers`); a sampler and a schedule type only together; a
continuation (``image: {from: <slide>, strength: ...}``) must name another slide, must not be part of a cycle, and no
chain of them may be longer than MAX_CONTINUATIONS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from game import validate_state
from game.story import IMAGE_KEYS
from game.story import MAX_CONTINUATIONS
from game.story import STYLE_KEYS
from game.story import ImageSpec
from game.story import Slide
from game.yamlsafe import cut
from game.yamlsafe import shown
from inference.errors import RequestError
from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.samplers import resolve_sampler
from inference.samplers import resolve_schedule

if TYPE_CHECKING:
    from game.validate import Validator


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


def style(checker: Validator, node: Any, parent: Any, slide: str | None) -> ImageSpec:
    """A ``style:`` mapping of picture settings, each checked by the painter's own rules (one at fault is left out)."""
    if node is None:
        return ImageSpec()
    if not isinstance(node, dict):
        checker.problem("must be a mapping of picture settings", parent, "style", slide=slide, field="style")
        return ImageSpec()
    checker.unknown_keys(node, STYLE_KEYS, slide, "style.")
    values = {k: node[k] for k in STYLE_KEYS if k in node and node[k] is not None}
    if isinstance(values.get("cfg_scale"), int) and not isinstance(values["cfg_scale"], bool):
        values["cfg_scale"] = float(values["cfg_scale"])
    for key, value in list(values.items()):
        message = style_value_error(key, value)
        if message:
            checker.problem(message, node, key, slide=slide, field=f"style.{key}")
            del values[key]
    return ImageSpec(**values)


def image(checker: Validator, body: dict, sid: str) -> tuple[str | None, dict[str, Any]]:
    """A slide's ``image``: what the painter should see (text), or a mapping of that (``prompt``) and the slide
    whose picture it continues (``from``, ``strength``).  Returns the text and the continuation's fields."""
    node = body.get("image")
    if not isinstance(node, dict):
        image = checker.text(body, "image", sid) or None
        if image:
            validate_state.template(checker, image, body, "image", sid)
        return image, {}
    checker.unknown_keys(node, IMAGE_KEYS, sid, "image.")
    image = checker.text(node, "prompt", sid, prefix="image.") or None
    if image:
        validate_state.template(checker, image, node, "prompt", sid, "image.prompt")
    found: dict[str, Any] = {}
    source = node.get("from")
    if "from" in node:
        if isinstance(source, str) and source.strip():
            found["source"] = source.strip()
        else:
            checker.problem(f"must name the slide whose picture this one continues, got {shown(source)}", node,
                            "from", slide=sid, field="image.from")
    strength = node.get("strength")
    if strength is not None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
            checker.problem("must be a number from 0 (the source picture as it is) to 1 (a new picture in its "
                            f"place), got {shown(strength)}", node, "strength", slide=sid, field="image.strength")
        elif "from" not in node:
            checker.problem("has no effect without 'from' (the slide whose picture this one continues)", node,
                            "strength", slide=sid, field="image.strength", severity="warning")
        else:
            found["strength"] = float(strength)
    return image, found


def continuations(checker: Validator, doc: dict, slides: dict[str, Slide]) -> None:
    """Each ``image.from`` names another slide, no pictures continue each other in a cycle, and no chain of
    continuations is longer than MAX_CONTINUATIONS."""

    def where(sid: str) -> tuple[Any, str]:
        return doc["slides"][checker.keys[sid]]["image"], "from"

    for slide in slides.values():
        source = slide.source
        if source == slide.id:
            checker.problem("continues its own picture: name another slide (the picture to start from)",
                            *where(slide.id), slide=slide.id, field="image.from")
        elif source is not None and source not in slides:
            others = [s for s in slides if s != slide.id]
            checker.problem(f"continues the picture of {shown(source)}, which is not a slide"
                            f"{checker.suggest(source, others)}", *where(slide.id), slide=slide.id, field="image.from")
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
                    checker.problem(f"the pictures of {', '.join(repr(c) for c in cycle)} continue each other in a "
                                    f"cycle ({shown_cycle}), so none of them can be painted first: make one of them "
                                    "a plain picture (no 'from')", *where(member), slide=member, field="image.from")
        elif current is None and len(path) - 1 > MAX_CONTINUATIONS:
            checker.problem(f"its picture is painted from a chain of {len(path) - 1} pictures ("
                            f"{' -> '.join(path[:4])} -> ... -> {path[-1]}); at most {MAX_CONTINUATIONS} 'from' "
                            "steps lead to a plain picture", *where(sid), slide=sid, field="image.from")


def schedules(checker: Validator, doc: dict, style: ImageSpec, slides: dict[str, Slide]) -> None:
    """A sampler and a schedule type are only valid together: check the story's pair, then each slide's."""
    for slide_id, spec in [(None, style)] + [(s.id, style.merged(s.style)) for s in slides.values()
                                             if s.style.sampler_name or s.style.scheduler]:
        try:
            resolve_sampler(spec.sampler_name or "DPM++ 2M", spec.scheduler or "automatic")
        except RequestError as exc:
            node, key = (doc["slides"], checker.keys[slide_id]) if slide_id else (doc, "style")
            checker.problem(exc.message, node, key, slide=slide_id, field="style.scheduler")
