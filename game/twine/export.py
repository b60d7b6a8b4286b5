"""Out of our format: Twee 3 that opens in Twine, in the story's own story format (see `export_report`)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from game.story import STYLE_KEYS
from game.story import ImageSpec
from game.story import Slide
from game.story import Story
from game.twine.nodes import CHAPBOOK
from game.twine.nodes import HARLOWE
from game.twine.nodes import PLAIN
from game.twine.nodes import SNOWMAN
from game.twine.nodes import SUGARCUBE
from game.twine.nodes import detect_format
from game.twine.twee import EXTRA_KEY
from game.twine.twee import TwineStory
from game.twine.writer import Writer


def _spec_dict(spec: ImageSpec) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in STYLE_KEYS if getattr(spec, k) is not None}


def _escape_name(name: str) -> str:
    """A passage or tag name escaped for a Twee header: [ ] { } and \\ get a backslash."""
    return re.sub(r"([\[\]{}\\])", r"\\\1", name)


def _story_data(story: Story, fmt: str, names: dict[str, str]) -> dict[str, Any]:
    """StoryData: IFID, story format, start passage, what Twine had; our story fields under EXTRA_KEY."""
    details = story.twine
    ifid = str(details.get("ifid") or uuid.uuid5(uuid.NAMESPACE_URL, f"lanternslide:{story.slug}")).upper()
    extra = {k: v for k, v in {"description": story.description, "author": story.author,
                               "style": _spec_dict(story.style), "characters": dict(story.characters)}.items() if v}
    version = str(details.get("format-version") or ("3.3.9" if fmt == HARLOWE else ""))
    data: dict[str, Any] = {"ifid": ifid, "format": str(details.get("format") or "Harlowe"),
                            "format-version": version, "start": names[story.start]}
    data = {k: v for k, v in data.items() if v}
    for key in ("tag-colors", "zoom"):
        if details.get(key) not in (None, ""):
            data[key] = details[key]
    if extra:
        data[EXTRA_KEY] = extra
    return data


def _image(slide: Slide) -> str | dict[str, Any] | None:
    """A slide's ``image`` as the story file has it: its text, or for a continuation the mapping of ``prompt``,
    ``from`` and ``strength``."""
    if slide.source is None:
        return slide.image
    image = {"prompt": slide.image, "from": slide.source, "strength": slide.style.strength}
    return {k: v for k, v in image.items() if v is not None}


def _header(slide: Slide, name: str, position: str) -> str:
    """A passage's ``:: Name [tags] {metadata}`` line; our picture fields ride in the metadata."""
    ours: dict[str, Any] = {k: v for k, v in {"image": _image(slide), "characters": list(slide.characters),
                                              "style": _spec_dict(slide.style)}.items() if v}
    if name != slide.id:
        ours["id"] = slide.id
    metadata: dict[str, Any] = {"position": str(slide.twine.get("position") or position),
                                "size": str(slide.twine.get("size") or "100,100")}
    if ours:
        metadata[EXTRA_KEY] = ours
    tags = [str(t) for t in slide.twine.get("tags", []) if isinstance(t, str)] if isinstance(
        slide.twine.get("tags"), list) else []
    header = f":: {_escape_name(name)}" + (f" [{' '.join(_escape_name(t) for t in tags)}]" if tags else "")
    return f"{header} {json.dumps(metadata)}"


def export_report(story: Story) -> tuple[str, list[str]]:
    """Twee 3 for Twine, and what could not be written in the story's format.

    A story imported from Twine keeps its passage names, tags, positions, IFID and story format; others are
    written for Harlowe.  State becomes the format's own: starting values in a startup passage (Harlowe), StoryInit
    (SugarCube) or the start passage (Chapbook, Snowman); conditions and conditional text as its if macros;
    effects on the links that carry them (Harlowe, SugarCube).  Our picture settings ride in each passage's
    metadata so that ours -> Twee -> ours keeps every slide, choice and image field; a continuation
    (``image: {from: ...}``) too, but since Twine itself keeps only a passage's position and size, the report
    names each one that a story saved by Twine would lose.
    """
    warnings: list[str] = []
    details = story.twine
    fmt = detect_format(TwineStory("", [], format=str(details.get("format", "")))) if details.get("format") else HARLOWE
    fmt = HARLOWE if fmt == PLAIN else fmt
    writer = Writer(fmt, story, warnings)
    names = {sid: str(slide.twine.get("name") or sid) for sid, slide in story.slides.items()}
    data = _story_data(story, fmt, names)
    parts = [f":: StoryTitle\n{story.title}\n", f":: StoryData\n{json.dumps(data, indent=2)}\n"]
    start_values = writer.starting(story.variables) if story.variables else ""
    if start_values and fmt in (HARLOWE, SUGARCUBE):
        header = ":: Startup [startup]" if fmt == HARLOWE else ":: StoryInit"
        parts.append(f"{header}\n{start_values}\n")
    elif start_values:
        warnings.append(f"the starting values are set in the start passage ({fmt} has no startup passage); "
                        "they are set again whenever it is visited")
    depth = {sid: d for sid, (_, d) in story.walk().items()}
    column: dict[int, int] = {}
    for slide in story.slides.values():
        level = depth.get(slide.id, max(depth.values(), default=0) + 1)
        x = column.get(level, 0)
        column[level] = x + 1
        header = _header(slide, names[slide.id], f"{100 + 150 * x},{100 + 150 * level}")
        body = writer.template(slide.text)
        if slide.id == story.start and start_values and fmt == CHAPBOOK:
            body = f"{start_values}\n--\n{body}"
        elif slide.id == story.start and start_values and fmt == SNOWMAN:
            body = f"{start_values}\n{body}"
        if slide.source is not None:
            warnings.append(f"slide '{slide.id}': its picture continues the picture of '{slide.source}'; this rides in "
                            "the passage's metadata, which importing this file here keeps but Twine itself drops "
                            "(a story saved by Twine paints it as a picture of its own)")
        links = "\n".join(writer.choice(c, names.get(c.to, c.to), slide.id) for c in slide.choices)
        parts.append(f"{header}\n{body}\n" + (f"\n{links}\n" if links else ""))
    return "\n".join(parts), warnings


def export_twee(story: Story) -> str:
    """Twee 3 for Twine (see `export_report`)."""
    return export_report(story)[0]
