"""What every story format's reader shares: links, gotos and included passages as nodes, a scanner over a
passage's text, and the passage's way from text to tree with its prose in our markup."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from game.twine.expressions import sets
from game.twine.expressions import translate
from game.twine.nodes import CHAPBOOK
from game.twine.nodes import HARLOWE
from game.twine.nodes import PLAIN
from game.twine.nodes import SNOWMAN
from game.twine.nodes import SUGARCUBE
from game.twine.nodes import Cond
from game.twine.nodes import Context
from game.twine.nodes import Link
from game.twine.nodes import Print
from game.twine.twee import Passage
from game.twine.twee import parse_links

MAX_INCLUDE_DEPTH = 5
COMMENTS = {HARLOWE: r"<!--.*?-->", SUGARCUBE: r"/\*.*?\*/|/%.*?%/|<!--.*?-->", CHAPBOOK: r"<!--.*?-->",
            SNOWMAN: r"<!--.*?-->", PLAIN: r"<!--.*?-->"}


def include(name: str | None, ctx: Context) -> list[Any]:
    """Another passage's content inlined ((display:), <<include>>, {embed passage})."""
    if name is None or name not in ctx.passages:
        ctx.warn(f"includes '{name}', which is not a passage; dropped")
        return []
    if name in ctx.stack or len(ctx.stack) > MAX_INCLUDE_DEPTH:
        ctx.warn(f"includes '{name}' within itself (or too deeply); the inner copy is dropped")
        return []
    ctx.stack.append(name)
    try:
        return convert_passage(ctx.passages[name], ctx)
    finally:
        ctx.stack.pop()


def goto(target: str | None, ctx: Context, label: str = "Continue") -> list[Any]:
    """A passage's jump to ``target``: the link it sits in, or a choice of its own."""
    if target is None:
        ctx.warn("goes to a passage named by code, which cannot be followed; dropped")
        return []
    if ctx.in_link:
        return [Link(label, target)]  # the goto of a link's hook: the link itself is the choice
    ctx.warn(f"goes to '{target}' by itself; a '{label}' choice takes its place")
    return [Link(label, target, auto=True)]


def link_nodes(inner: str, ctx: Context) -> list[Any]:
    """A ``[[...]]`` link, with a SugarCube setter as effects."""
    found = parse_links(f"[[{inner}]]")
    if not found:
        return [inner.split("->")[0].split("|")[0]]  # an external link keeps its words
    label, target = found[0]
    effects: list[tuple[str, str]] = []
    if "][" in inner and ctx.fmt == SUGARCUBE:
        effects = [(s.var, s.expr) for s in sets(inner.split("][", 1)[1], ctx, "link setter")]
    if ctx.fmt in (SUGARCUBE, HARLOWE) and label.startswith("$"):
        expression = translate(label, ctx)
        label = target if expression is None else label
        if expression is None:
            ctx.warn(f"a link label written as code ({label}) is shown as its passage name")
    return [Link(label, target, effects)]


def printed(source: str, ctx: Context, written: str) -> list[Any]:
    """A print of the expression ``source``; dropped with a warning naming it as ``written`` when it cannot be kept."""
    expression = translate(source, ctx)
    if expression is None:
        ctx.warn(f"{written} cannot be kept; dropped")
        return []
    return [Print(expression)]


def around(pattern: re.Pattern[str], text: str, found: Callable[[re.Match[str]], list[Any]]) -> list[Any]:
    """``text`` as nodes: the text between the matches of ``pattern``, and the nodes ``found`` makes of each."""
    nodes: list[Any] = []
    last = 0
    for match in pattern.finditer(text):
        nodes.append(text[last:match.start()])
        last = match.end()
        nodes += found(match)
    nodes.append(text[last:])
    return nodes


class Scanner:
    """A walk through a passage's text: plain characters gather into text nodes between the nodes found."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0
        self.nodes: list[Any] = []
        self._buffer: list[str] = []

    def more(self) -> bool:
        return self.i < len(self.text)

    def emit(self, nodes: list[Any], end: int) -> None:
        """The text so far as one node, then ``nodes``; go on at ``end``."""
        if self._buffer:
            self.nodes.append("".join(self._buffer))
            self._buffer.clear()
        self.nodes += nodes
        self.i = end

    def keep(self) -> None:
        """The character here is text."""
        self._buffer.append(self.text[self.i])
        self.i += 1

    def link(self, ctx: Context) -> bool:
        """A ``[[link]]`` here becomes its node."""
        if self.text.startswith("[[", self.i) and (end := self.text.find("]]", self.i)) != -1:
            self.emit(link_nodes(self.text[self.i + 2:end], ctx), end + 2)
            return True
        return False

    def finish(self) -> list[Any]:
        self.emit([], self.i)
        return self.nodes


def convert_passage(passage: Passage, ctx: Context) -> list[Any]:
    """One passage's text as a tree of nodes, in the story's own format; comments (and links in them) removed."""
    text = re.sub(COMMENTS[ctx.fmt], "", passage.text, flags=re.DOTALL)
    if ctx.fmt in (SUGARCUBE, HARLOWE):
        text = re.sub(r"\\\n\s*|\n\s*\\(?!\\)", "" if ctx.fmt == HARLOWE else " ", text)  # line continuations
    if re.search(r"(?<!<)<script\b", text, re.IGNORECASE):
        ctx.warn("a <script> (JavaScript) cannot be mapped; dropped")
        text = re.sub(r"(?<!<)<script\b.*?</script\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    nodes = ctx.parse(text, ctx)
    if ctx.templates:
        names = ", ".join(dict.fromkeys(ctx.templates))
        ctx.warn(f"the templates {names} (JavaScript) cannot be mapped; dropped" if len(ctx.templates) > 1 else
                 f"the template {names} (JavaScript) cannot be mapped; dropped")
        ctx.templates.clear()
    nobr = ctx.fmt == SUGARCUBE and "nobr" in passage.tags
    return _prose_all(nodes, ctx, nobr)


def _prose_all(nodes: list[Any], ctx: Context, nobr: bool) -> list[Any]:
    """Every text node of a tree, in conditional branches too, in our markup."""
    result: list[Any] = []
    for node in nodes:
        if isinstance(node, str):
            result.append(_prose(node, ctx, nobr))
        elif isinstance(node, Cond):
            node.branches = [(c, _prose_all(body, ctx, nobr)) for c, body in node.branches]
            result.append(node)
        elif isinstance(node, tuple):
            result.append((*node[:3], _prose_all(node[3], ctx, nobr)))
        else:
            result.append(node)
    return result


def _prose(text: str, ctx: Context, nobr: bool = False) -> str:
    """Text in our markup (*emphasis*, **strong**, blank lines between paragraphs) from the format's markup and HTML."""
    if nobr:
        text = re.sub(r"\s*\n\s*", " ", text)
    text = re.sub(r"<(style|textarea)\b[^>]*>.*?</\1\s*>", _keep_textarea, text, flags=re.DOTALL | re.IGNORECASE)
    if re.search(r"<img\b", text, re.IGNORECASE):
        ctx.warn("a picture (<img>) is dropped; the painter draws the slide")
        text = re.sub(r"<img\b[^>]*>", "", text, flags=re.IGNORECASE)
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.IGNORECASE)
    text = re.sub(r"</?(?:p|div|h\d|center|li|ul|ol)\b[^>]*>", "\n\n", text, flags=re.IGNORECASE)
    text = re.sub(r"<(i|em)\b[^>]*>(.*?)</\1\s*>", r"*\2*", text, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"<(b|strong)\b[^>]*>(.*?)</\1\s*>", r"**\2**", text, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>", "", text)
    if ctx.fmt in (HARLOWE, SUGARCUBE):
        text = re.sub(r"''(.+?)''", r"**\1**", text)
        text = re.sub(r"(?<![:/])//(?!/)(.+?)(?<![:/])//", r"*\1*", text)
        text = re.sub(r"~~(.+?)~~|\^\^(.+?)\^\^", lambda m: m.group(1) or m.group(2), text)
        if ctx.fmt == SUGARCUBE:
            text = re.sub(r"__(.+?)__|==(.+?)==", lambda m: m.group(1) or m.group(2), text)
            text = re.sub(r"@@[^;@]*;(.*?)@@", r"\1", text, flags=re.DOTALL)
    else:
        text = re.sub(r"(?<![\w_])__(\S(?:[^_\n]*?\S)?)__(?![\w_])", r"**\1**", text)
        text = re.sub(r"(?<![\w_])_(\S(?:[^_\n]*?\S)?)_(?![\w_])", r"*\1*", text)
        text = re.sub(r"\[([^\[\]\n]+)\]\([^()\n]+\)", r"\1", text)  # Markdown links to pages keep their words
    text = html.unescape(text)
    return re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)  # literal template syntax stays literal


def _keep_textarea(match: re.Match[str]) -> str:
    return "" if match.group(1).lower() == "style" else re.sub(r"<[^>]+>", "", match.group(0))
