"""Into our format: a Twine story's passages become slides, its links choices, its variables our state.

Special passages (StoryTitle, StoryData, scripts, stylesheets, format-specific ones) are skipped; story-format
code is mapped where a story of ours can say the same and dropped with a warning where it cannot; broken links
are reported and dropped; the result is checked by loading it, and what our checks refuse is dropped with a
warning (`repair`).
"""

from __future__ import annotations

import re
from typing import Any

from anyascii import anyascii

from game.story import IMAGE_KEYS
from game.story import MAX_CHOICES
from game.story import SLIDE_ID_RE
from game.story import STYLE_KEYS
from game.twine import chapbook
from game.twine import harlowe
from game.twine import snowman
from game.twine import sugarcube
from game.twine.lower import Converted
from game.twine.lower import lower
from game.twine.nodes import CHAPBOOK
from game.twine.nodes import HARLOWE
from game.twine.nodes import PLAIN
from game.twine.nodes import SNOWMAN
from game.twine.nodes import SUGARCUBE
from game.twine.nodes import Context
from game.twine.nodes import SetVar
from game.twine.nodes import detect_format
from game.twine.nodes import flatten
from game.twine.passages import convert_passage
from game.twine.repair import repair
from game.twine.twee import EXTRA_KEY
from game.twine.twee import SPECIAL_NAMES
from game.twine.twee import SPECIAL_TAGS
from game.twine.twee import Passage
from game.twine.twee import TwineError
from game.twine.twee import TwineStory
from game.twine.twee import parse_html
from game.twine.twee import parse_twee
from game.twine.variables import declarations
from game.twine.variables import effects_mapping
from game.twine.variables import reads
from game.twine.variables import variables_in

PARSERS = {HARLOWE: harlowe.parse, SUGARCUBE: sugarcube.parse, CHAPBOOK: chapbook.parse, SNOWMAN: snowman.parse,
           PLAIN: snowman.parse}
NAVIGATION = re.compile(r"\((?:go-?to|link-goto|click-goto|link):|<<(?:goto|link|button|back|return)\b|"
                        r"\{(?:link to|back link|restart link|reveal link)|story\.show\(|go\(", re.IGNORECASE)


def import_file(text: str, filename: str) -> list[tuple[dict[str, Any], list[str]]]:
    """Import a .twee/.tw or Twine 2 .html file: one (story data, warnings) per story in it."""
    looks_html = filename.lower().endswith((".html", ".htm")) or "<tw-storydata" in text[:200_000]
    stories = parse_html(text, filename) if looks_html else [parse_twee(text, filename)]
    return [to_story_data(story) for story in stories]


def _context(fmt: str, passages: list[Passage], by_name: dict[str, Passage], warnings: list[str]) -> Context:
    known, temps = variables_in(passages, fmt)
    return Context(fmt, by_name, known, temps, warnings, PARSERS[fmt])


def clean_text(text: str, fmt: str = PLAIN) -> tuple[str, list[str]]:
    """A passage's prose in our markup, for one story format; returns the text and the import's warnings."""
    ctx = _context(fmt, [Passage("p", text)], {}, [])
    ctx.stack = ["p"]
    converted = lower(convert_passage(Passage("p", text), ctx))
    return converted.text, ctx.warnings


def _slide_id(name: str, taken: set[str]) -> str:
    """A readable slide id for a passage name: as it is when it is already one, else transliterated to ASCII."""
    if SLIDE_ID_RE.fullmatch(name):
        base = name
    else:
        base = re.sub(r"[^a-z0-9]+", "_", anyascii(name).lower()).strip("_")[:60] or "passage"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _ids(playable: list[Passage]) -> dict[str, str]:
    """Each passage's slide id: the one our own export wrote first, then ids derived from names."""
    taken: set[str] = set()
    ids: dict[str, str] = {}
    for passage in playable:
        ours = passage.metadata.get(EXTRA_KEY)
        wanted = ours.get("id") if isinstance(ours, dict) else None
        if isinstance(wanted, str) and SLIDE_ID_RE.fullmatch(wanted) and wanted not in taken:
            ids[passage.name] = wanted
            taken.add(wanted)
    ids.update({p.name: _slide_id(p.name, taken) for p in playable if p.name not in ids})
    return {p.name: ids[p.name] for p in playable}


def _ours(node: dict[str, Any]) -> dict[str, Any]:
    """Our own data that our export stored in a passage's metadata or in StoryData."""
    value = node.get(EXTRA_KEY, {})
    return value if isinstance(value, dict) else {}


def _choices(sid: str, conv: Converted, ids: dict[str, str], converted: dict[str, Converted],
             warnings: list[str]) -> list[dict[str, Any]]:
    """A slide's choices: its links to passages (with the target's arrival sets as effects), at most MAX_CHOICES."""
    choices = []
    for link, condition in conv.choices:
        if link.target not in ids:
            close = [n for n in ids if n.lower() == link.target.lower()]
            hint = f" (names are case-sensitive: did you mean '{close[0]}'?)" if close else ""
            warnings.append(f"slide '{sid}': link to '{link.target}', which is not a passage{hint}; dropped")
            continue
        choice: dict[str, Any] = {"text": link.label.strip() or link.target, "to": ids[link.target]}
        if condition:
            choice["if"] = condition
        effects = effects_mapping(link.effects + [(s.var, s.expr) for s in converted[link.target].entry])
        if effects:
            choice["set"] = effects
        choices.append(choice)
    if len(choices) > MAX_CHOICES:
        warnings.append(f"slide '{sid}': {len(choices)} choices, kept the first {MAX_CHOICES}")
        choices = choices[:MAX_CHOICES]
    return choices


def _slide(passage: Passage, sid: str, text: str, choices: list[dict[str, Any]],
           warnings: list[str]) -> dict[str, Any]:
    """One slide's data: its text, our picture fields from the metadata, its choices and Twine's details."""
    if not choices and NAVIGATION.search(passage.text):
        warnings.append(f"slide '{sid}': its navigation was story-format code, so it has no choices left")
    if not re.sub(r"\{%.*?%\}", "", text).strip():
        text = passage.name + ("\n" + text if text else "")
        warnings.append(f"slide '{sid}': no text left; its name is used")
    slide: dict[str, Any] = {"text": text}
    ours = _ours(passage.metadata)
    if isinstance(ours.get("image"), dict):  # a continuation: its text, the slide it continues and the strength
        image = {k: ours["image"][k] for k in IMAGE_KEYS if ours["image"].get(k) is not None}
        if image:
            slide["image"] = image
    elif ours.get("image"):
        slide["image"] = ours["image"]
    if ours.get("characters"):
        slide["characters"] = list(ours["characters"])
    if isinstance(ours.get("style"), dict) and ours["style"]:
        slide["style"] = {k: v for k, v in ours["style"].items() if k in STYLE_KEYS}
    if choices:
        slide["choices"] = choices
    details = {k: v for k, v in {"name": passage.name if passage.name != sid else None,
                                 "tags": list(passage.tags) or None,
                                 "position": passage.metadata.get("position"),
                                 "size": passage.metadata.get("size")}.items() if v}
    if details:
        slide["twine"] = details
    return slide


def _story_head(twine: TwineStory, start: str) -> dict[str, Any]:
    """Title, start, and what our export kept in StoryData: description, author, style, characters."""
    extra = _ours(twine.data)
    data: dict[str, Any] = {"title": twine.title, "start": start}
    for key in ("description", "author"):
        if extra.get(key):
            data[key] = extra[key]
    if isinstance(extra.get("style"), dict):
        data["style"] = {k: v for k, v in extra["style"].items() if k in STYLE_KEYS}
    if isinstance(extra.get("characters"), dict):
        data["characters"] = extra["characters"]
    return data


def _story_details(twine: TwineStory) -> dict[str, Any]:
    """What Twine needs back on export: IFID, story format and version, tag colours, zoom."""
    details = {k: twine.data.get(k) for k in ("ifid", "format", "format-version", "tag-colors", "zoom")
               if twine.data.get(k) not in (None, "", {})}
    if twine.format and "format" not in details:
        details["format"] = twine.format
    return details


def _convert(twine: TwineStory, playable: list[Passage], ctx: Context) -> tuple[dict[str, Converted], list[SetVar]]:
    """Every playable passage converted, and the sets of the init passages (StoryInit, startup-tagged)."""
    converted: dict[str, Converted] = {}
    for passage in playable:
        ctx.stack = [passage.name]
        converted[passage.name] = lower(convert_passage(passage, ctx))
    init: list[SetVar] = []
    for passage in twine.passages:
        if passage.name == "StoryInit" or "startup" in passage.tags:
            ctx.stack = [passage.name]
            init += [n for n in flatten(convert_passage(passage, ctx)) if isinstance(n, SetVar)]
    return converted, init


def _state(ctx: Context, converted: dict[str, Converted], init: list[SetVar], start: str) -> dict[str, Any]:
    """The story's variables, declared with their starting values."""
    all_sets = init + [s for c in converted.values() for s in c.entry] + [
        SetVar(v, e) for c in converted.values() for link, _ in c.choices for v, e in link.effects]
    read = reads(ctx, [s.expr for s in all_sets] + [c for v in converted.values() for _, c in v.choices if c],
                 [c.text for c in converted.values()])
    return declarations(ctx, all_sets, read, init + converted[start].entry) if all_sets or read else {}


def to_story_data(twine: TwineStory) -> tuple[dict[str, Any], list[str]]:
    """Our story as plain data (ready to dump as YAML), and the warnings of the conversion."""
    warnings = list(twine.warnings)
    fmt = detect_format(twine)
    playable = [p for p in twine.passages
                if p.name not in SPECIAL_NAMES and not set(p.tags) & SPECIAL_TAGS and p.name]
    if not playable:
        raise TwineError("the story has no playable passages (only special ones such as StoryData or scripts)")
    code = [p for p in twine.passages if not set(p.tags) & {"script", "stylesheet"}]
    ctx = _context(fmt, code, {p.name: p for p in twine.passages}, warnings)
    ids = _ids(playable)
    start = twine.start if twine.start in ids else ("Start" if "Start" in ids else playable[0].name)
    if twine.start and twine.start not in ids:
        warnings.append(f"the start passage '{twine.start}' does not exist; starting at '{start}'")
    converted, init = _convert(twine, playable, ctx)
    variables = _state(ctx, converted, init, start)

    data = _story_head(twine, ids[start])
    if variables:
        data["state"] = variables
    slides: dict[str, Any] = {}
    for passage in playable:
        sid = ids[passage.name]
        choices = _choices(sid, converted[passage.name], ids, converted, warnings)
        slides[sid] = _slide(passage, sid, converted[passage.name].text, choices, warnings)
    data["slides"] = slides
    details = _story_details(twine)
    if details:
        data["twine"] = details
    repair(data, warnings)
    return data, warnings
