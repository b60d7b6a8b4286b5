"""Twine in and out: import Twee 3 and Twine 2 HTML (published stories and library archives), export Twee 3.

Import maps passages to slides and ``[[...]]`` links (every form: ``[[T]]``, ``[[L->T]]``, ``[[T<-L]]``,
``[[L|T]]``, SugarCube's ``][setter]`` tail) to choices, with Twine's own rules for picking the separator.
Special passages (StoryTitle, StoryData, scripts, stylesheets, format-specific ones) are skipped; story-format
code (Harlowe, SugarCube, Chapbook, Snowman) is stripped from the text, with a warning per slide that lost code
or has no choices left; broken links are reported and dropped.  Export writes Twee 3 that opens in Twine, with
our picture settings in the passages' metadata so that ours -> Twee -> ours keeps every slide, choice and image
field.  (Format reference: ../shared/reference/twine-formats.md.)
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from typing import Any

from game.story import MAX_CHOICES
from game.story import STYLE_KEYS
from game.story import ImageSpec
from game.story import Story

SPECIAL_NAMES = {"StoryTitle", "StoryData", "StoryInit", "StoryCaption", "StoryMenu", "StoryBanner", "StoryAuthor",
                 "StorySubtitle", "StoryShare", "StoryInterface", "StorySettings", "PassageReady", "PassageDone",
                 "PassageHeader", "PassageFooter", "StoryIncludes"}
SPECIAL_TAGS = {"script", "stylesheet", "widget", "header", "footer", "startup", "debug-header", "debug-footer",
                "debug-startup", "Twine.image", "Twine.audio", "Twine.video", "Twine.vtt"}
EXTRA_KEY = "lanternslide"  # our own data in Twee metadata / StoryData, ignored by Twine


@dataclass
class Passage:
    name: str
    text: str
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TwineStory:
    title: str
    passages: list[Passage]
    start: str | None = None
    format: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class TwineError(ValueError):
    """The file holds no Twine story we can read; the message says why."""


# -- reading ---------------------------------------------------------------------------------------------------


def _unescape_header(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_twee(text: str, source: str = "story.twee") -> TwineStory:
    """Parse Twee 3 (and lenient older Twee): passages, StoryTitle and StoryData."""
    passages: list[Passage] = []
    warnings: list[str] = []
    current: Passage | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            current.text = "\n".join(body).strip()
            passages.append(current)

    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if line.startswith("::"):
            close()
            header, metadata = line[2:].strip(), {}
            match = re.search(r"(?<!\\)(\{.*\})\s*$", header)
            if match:
                try:
                    metadata = json.loads(match.group(1))
                except ValueError:
                    warnings.append(f"{source}, line {number}: passage metadata is not valid JSON; ignored")
                header = header[: match.start()].rstrip()
            header = re.sub(r"\s*<\s*-?[\d.]+\s*,\s*-?[\d.]+\s*>\s*$", "", header)  # Twee2 position
            tags: list[str] = []
            match = re.search(r"(?<!\\)\[([^\]]*)\]\s*$", header)
            if match:
                tags = match.group(1).split()
                header = header[: match.start()].rstrip()
            current, body = Passage(_unescape_header(header.strip()), "", tags, metadata), []
        elif current is not None:
            body.append(line)
    close()
    if not passages:
        raise TwineError(f"{source}: no passages found (a Twee passage starts with a line '::Name')")
    by_name = {p.name: p for p in passages}
    title = by_name["StoryTitle"].text.strip() if "StoryTitle" in by_name else ""
    data: dict[str, Any] = {}
    if "StoryData" in by_name:
        try:
            data = json.loads(by_name["StoryData"].text or "{}")
        except ValueError:
            warnings.append(f"{source}: StoryData is not valid JSON; ignored")
    return TwineStory(title or source.rsplit("/", 1)[-1].rsplit(".", 1)[0], passages,
                      data.get("start"), data.get("format", ""), data, warnings)


class _TwineHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stories: list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]] = []
        self._passage: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "tw-storydata":
            self.stories.append((values, []))
        elif tag == "tw-passagedata" and self.stories:
            self._passage, self._text = values, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tw-passagedata" and self._passage is not None:
            self.stories[-1][1].append((self._passage, "".join(self._text)))
            self._passage = None

    def handle_data(self, data: str) -> None:
        if self._passage is not None:
            self._text.append(data)


def parse_html(text: str, source: str = "story.html") -> list[TwineStory]:
    """Every <tw-storydata> in a published Twine 2 story or a library archive."""
    parser = _TwineHTML()
    parser.feed(text)
    parser.close()
    if not parser.stories:
        raise TwineError(f"{source}: no <tw-storydata> element found (is it a Twine 2 story or archive?)")
    stories = []
    for attrs, raw in parser.stories:
        passages, start = [], None
        for values, body in raw:
            passages.append(Passage(values.get("name", ""), body, values.get("tags", "").split()))
            if values.get("pid") and values.get("pid") == attrs.get("startnode"):
                start = values.get("name")
        stories.append(TwineStory(html.unescape(attrs.get("name", "")) or source, passages, start,
                                  attrs.get("format", ""), {"ifid": attrs.get("ifid", "")}))
    return stories


def parse_links(text: str) -> list[tuple[str, str]]:
    """The (label, target) of every [[...]] link, separated by Twine's rules (rightmost ->, leftmost <-, rightmost |)."""
    links = []
    for inner in re.findall(r"\[\[(.*?)\]\]", text, re.S):
        inner = inner.split("][", 1)[0]  # SugarCube setter
        label = target = inner
        for sep, rightmost, target_right in (("->", True, True), ("<-", False, False), ("|", True, True)):
            index = inner.rfind(sep) if rightmost else inner.find(sep)
            if index == -1:
                continue
            left, right = inner[:index], inner[index + len(sep):]
            label, target = (left, right) if target_right else (right, left)
            if label.strip() and target.strip():
                break
            label = target = inner
        if re.match(r"^\w+://", target.strip()):
            continue  # an external link, not a passage
        links.append((label.strip(), target.strip()))
    return links


# -- story-format code -----------------------------------------------------------------------------------------


def _past_closing(text: str, start: int, pair: str) -> int:
    """Index just past the bracket that closes the one at ``start`` (``pair`` like "()"), or the end of text."""
    depth, index = 0, start
    while index < len(text):
        depth += {pair[0]: 1, pair[1]: -1}.get(text[index], 0)
        index += 1
        if depth == 0:
            break
    return index


def _strip_harlowe_macros(text: str) -> str:
    """Remove `(name: ...)` calls with balanced parentheses; keep the contents of hooks attached to them."""
    out, i = [], 0
    macro = re.compile(r"\((?:[\w-]+):")
    while i < len(text):
        if not macro.match(text, i):
            out.append(text[i])
            i += 1
            continue
        i = _past_closing(text, i, "()")
        if i < len(text) and text[i] == "[":  # the hook: keep its text, drop its brackets
            end = _past_closing(text, i, "[]")
            text = text[:i] + text[i + 1: end - 1] + text[end:]
    return "".join(out)


CODE_PATTERNS = [
    ("SugarCube macros", re.compile(r"<<[^>]*>>")),
    ("Snowman code", re.compile(r"<%.*?%>", re.S)),
    ("scripts", re.compile(r"<script\b.*?</script>", re.S | re.I)),
    ("comments", re.compile(r"/\*.*?\*/|<!--.*?-->|/%.*?%/", re.S)),
    ("Chapbook modifiers", re.compile(r"(?m)^\[(?:if|unless|else|continue|cont'?d?|after|align|append|note|todo|fixme|"
                                      r"JavaScript|CSS|ifalways|ifnever)[^\]\n]*\]\s*$")),
    ("Chapbook inserts", re.compile(r"\{[a-z][\w ]*(?::[^{}\n]*)?\}")),
    ("hook and template markup", re.compile(r"\|[\w-]+[>)]|<[\w-]+\||\?[\w-]+")),
    ("variables", re.compile(r"\$[A-Za-z_][\w.]*|(?<![\w/])_[A-Za-z]\w*")),
    ("HTML", re.compile(r"</?[A-Za-z][^>]*>")),
]
NAVIGATION = re.compile(r"\((?:go-?to|link-goto|click-goto|link):|<<(?:goto|link|button|back|return)\b|"
                        r"\{(?:link to|back link|restart link|reveal link)|story\.show\(|go\(", re.I)


def clean_text(text: str) -> tuple[str, list[str]]:
    """Plain prose from a passage: links, macros and markup removed; returns the text and what kinds were removed."""
    removed = []
    text = re.sub(r"\[\[.*?\]\]", "", text, flags=re.S)
    if text.startswith(tuple("abcdefghijklmnopqrstuvwxyz")) and re.search(r"(?m)^--\s*$", text):
        head, _, rest = text.partition("\n--")
        if all(re.match(r"^\s*[\w.]+\s*(\(.*\))?\s*:", line) for line in head.splitlines() if line.strip()):
            text, removed = rest.lstrip("-\n"), ["Chapbook vars section"]
    stripped = _strip_harlowe_macros(text)
    if stripped != text:
        removed.append("Harlowe macros")
        text = stripped
    for name, pattern in CODE_PATTERNS:
        new = pattern.sub("", text)
        if new != text:
            removed.append(name)
            text = new
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)  # Markdown links keep their words
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, removed


# -- into our format -------------------------------------------------------------------------------------------


def _slide_id(name: str, taken: set[str]) -> str:
    base = name if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) else (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] or "passage")
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def to_story_data(twine: TwineStory) -> tuple[dict[str, Any], list[str]]:
    """Our story as plain data (ready to dump as YAML), and the warnings of the conversion."""
    warnings = list(twine.warnings)
    playable = [p for p in twine.passages
                if p.name not in SPECIAL_NAMES and not set(p.tags) & SPECIAL_TAGS and p.name]
    if not playable:
        raise TwineError("the story has no playable passages (only special ones such as StoryData or scripts)")
    taken: set[str] = set()
    ids = {p.name: _slide_id(p.name, taken) for p in playable}
    start = twine.start if twine.start in ids else ("Start" if "Start" in ids else playable[0].name)
    if twine.start and twine.start not in ids:
        warnings.append(f"the start passage '{twine.start}' does not exist; starting at '{start}'")
    extra = twine.data.get(EXTRA_KEY, {}) if isinstance(twine.data.get(EXTRA_KEY), dict) else {}
    data: dict[str, Any] = {"title": twine.title, "start": ids[start]}
    for key in ("description", "author"):
        if extra.get(key):
            data[key] = extra[key]
    if isinstance(extra.get("style"), dict):
        data["style"] = {k: v for k, v in extra["style"].items() if k in STYLE_KEYS}
    if isinstance(extra.get("characters"), dict):
        data["characters"] = extra["characters"]
    slides: dict[str, Any] = {}
    for passage in playable:
        sid = ids[passage.name]
        text, removed = clean_text(passage.text)
        if removed:
            warnings.append(f"slide '{sid}': story-format code removed ({', '.join(removed)}); check its text")
        choices = []
        for label, target in parse_links(passage.text):
            if target not in ids:
                warnings.append(f"slide '{sid}': link to '{target}', which is not a passage; dropped")
                continue
            choices.append({"text": label or target, "to": ids[target]})
        if len(choices) > MAX_CHOICES:
            warnings.append(f"slide '{sid}': {len(choices)} choices, kept the first {MAX_CHOICES}")
            choices = choices[:MAX_CHOICES]
        if not choices and NAVIGATION.search(passage.text):
            warnings.append(f"slide '{sid}': its navigation was story-format code, so it has no choices left")
        if not text:
            text = passage.name
            warnings.append(f"slide '{sid}': no text left; its name is used")
        slide: dict[str, Any] = {"text": text}
        ours = passage.metadata.get(EXTRA_KEY, {}) if isinstance(passage.metadata.get(EXTRA_KEY), dict) else {}
        if ours.get("image"):
            slide["image"] = ours["image"]
        if ours.get("characters"):
            slide["characters"] = list(ours["characters"])
        if isinstance(ours.get("style"), dict) and ours["style"]:
            slide["style"] = {k: v for k, v in ours["style"].items() if k in STYLE_KEYS}
        if choices:
            slide["choices"] = choices
        slides[sid] = slide
    data["slides"] = slides
    return data, warnings


def import_file(text: str, filename: str) -> list[tuple[dict[str, Any], list[str]]]:
    """Import a .twee/.tw or Twine 2 .html file: one (story data, warnings) per story in it."""
    looks_html = filename.lower().endswith((".html", ".htm")) or "<tw-storydata" in text[:200_000]
    stories = parse_html(text, filename) if looks_html else [parse_twee(text, filename)]
    return [to_story_data(story) for story in stories]


# -- out of our format ------------------------------------------------------------------------------------------


def _spec_dict(spec: ImageSpec) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in STYLE_KEYS if getattr(spec, k) is not None}


def export_twee(story: Story) -> str:
    """Twee 3 for Twine: StoryTitle, StoryData (stable IFID, our style inside), one passage per slide."""
    ifid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lanternslide:{story.slug}")).upper()
    extra = {k: v for k, v in {"description": story.description, "author": story.author,
                               "style": _spec_dict(story.style), "characters": dict(story.characters)}.items() if v}
    data = {"ifid": ifid, "format": "Harlowe", "format-version": "3.3.9", "start": story.start, EXTRA_KEY: extra}
    parts = [f":: StoryTitle\n{story.title}\n", f":: StoryData\n{json.dumps(data, indent=2)}\n"]
    depth: dict[str, int] = {story.start: 0}
    queue = deque([story.start])
    while queue:
        current = queue.popleft()
        for choice in story.slides[current].choices:
            if choice.to not in depth:
                depth[choice.to] = depth[current] + 1
                queue.append(choice.to)
    column: dict[int, int] = {}
    for slide in story.slides.values():
        level = depth.get(slide.id, max(depth.values(), default=0) + 1)
        x, y = column.get(level, 0), level
        column[level] = x + 1
        ours = {k: v for k, v in {"image": slide.image, "characters": list(slide.characters),
                                  "style": _spec_dict(slide.style)}.items() if v}
        metadata = {"position": f"{100 + 150 * x},{100 + 150 * y}", "size": "100,100"}
        if ours:
            metadata[EXTRA_KEY] = ours
        links = "\n".join(f"[[{c.text.replace(']', ')')}->{c.to}]]" for c in slide.choices)
        parts.append(f":: {slide.id} {json.dumps(metadata)}\n{slide.text}\n" + (f"\n{links}\n" if links else ""))
    return "\n".join(parts)
