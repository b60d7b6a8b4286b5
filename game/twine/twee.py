"""Reading Twine files: Twee 3 (and lenient older Twee), Twine 2 HTML (published stories and library archives),
and ``[[...]]`` links by Twine's own rules."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from typing import Any

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


def _unescape_header(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _header(line: str, where: str, warnings: list[str]) -> Passage:
    """A passage started by a ``:: Name [tags] {metadata}`` line (Twee2's ``<x,y>`` position is dropped)."""
    header, metadata = line[2:].strip(), {}
    match = re.search(r"(?<!\\)(\{.*\})\s*$", header)
    if match:
        try:
            metadata = json.loads(match.group(1))
        except ValueError:
            warnings.append(f"{where}: passage metadata is not valid JSON; ignored")
        header = header[: match.start()].rstrip()
    header = re.sub(r"\s*<\s*-?[\d.]+\s*,\s*-?[\d.]+\s*>\s*$", "", header)  # Twee2 position
    tags: list[str] = []
    match = re.search(r"(?<!\\)\[([^\]]*)\]\s*$", header)
    if match:
        tags = match.group(1).split()
        header = header[: match.start()].rstrip()
    return Passage(_unescape_header(header.strip()), "", tags, metadata)


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
            current, body = _header(line, f"{source}, line {number}", warnings), []
        elif current is not None:
            body.append(line[1:] if line.startswith(" ::") else line)  # our export's escape of a '::' line
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
            metadata = {k: values[k] for k in ("position", "size") if values.get(k)}
            passages.append(Passage(values.get("name", ""), body, values.get("tags", "").split(), metadata))
            if values.get("pid") and values.get("pid") == attrs.get("startnode"):
                start = values.get("name")
        data = {"ifid": attrs.get("ifid", ""), "format": attrs.get("format", ""),
                "format-version": attrs.get("format-version", ""), "zoom": attrs.get("zoom", "")}
        stories.append(TwineStory(html.unescape(attrs.get("name", "")) or source, passages, start,
                                  attrs.get("format", ""), data))
    return stories


def parse_links(text: str) -> list[tuple[str, str]]:
    """The (label, target) of every [[...]] link, split by Twine's rules (rightmost ->, leftmost <-, rightmost |)."""
    links = []
    for inner in re.findall(r"\[\[(.*?)\]\]", text, re.DOTALL):
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

