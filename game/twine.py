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
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from typing import Any

from anyascii import anyascii

from game import state as st
from game.story import MAX_CHOICES
from game.story import STYLE_KEYS
from game.story import ImageSpec
from game.story import Story
from game.story import StoryError
from game.story import dump_document
from game.story import load_story

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
        stories.append(TwineStory(html.unescape(attrs.get("name", "")) or source, passages, start,
                                  attrs.get("format", ""), {"ifid": attrs.get("ifid", ""), "format": attrs.get("format", ""),
                                                            "format-version": attrs.get("format-version", ""),
                                                            "zoom": attrs.get("zoom", "")}))
    return stories


def parse_links(text: str) -> list[tuple[str, str]]:
    """The (label, target) of every [[...]] link, separated by Twine's rules (rightmost ->, leftmost <-, rightmost |)."""
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


NAVIGATION = re.compile(r"\((?:go-?to|link-goto|click-goto|link):|<<(?:goto|link|button|back|return)\b|"
                        r"\{(?:link to|back link|restart link|reveal link)|story\.show\(|go\(", re.IGNORECASE)


# -- story formats: each passage becomes a tree of text, links, conditions, sets and prints --------------------

HARLOWE, SUGARCUBE, CHAPBOOK, SNOWMAN, PLAIN = "harlowe", "sugarcube", "chapbook", "snowman", "plain"
MAX_INCLUDE_DEPTH = 5


def detect_format(twine: TwineStory) -> str:
    """The story format whose syntax the passages use: StoryData's ``format``, else what the text looks like."""
    name = (twine.format or "").lower()
    for fmt in (HARLOWE, SUGARCUBE, CHAPBOOK, SNOWMAN):
        if fmt in name:
            return fmt
    text = "\n".join(p.text for p in twine.passages)
    scores = {SUGARCUBE: len(re.findall(r"<<\w", text)), HARLOWE: len(re.findall(r"\((?:set|if|link|goto|print|display|"
                                                                            r"else|unless|put)\s*:", text, re.IGNORECASE)),
              SNOWMAN: len(re.findall(r"<%", text)),
              CHAPBOOK: len(re.findall(r"(?m)^\[(?:if|unless|else|continue|JavaScript)\b[^\]\n]*\]\s*$|"
                                       r"\{(?:link to|back link|embed passage)\b", text))}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] else PLAIN


@dataclass
class Link:
    label: str
    target: str
    effects: list[tuple[str, str]] = field(default_factory=list)  # (our variable, Jinja expression), in order
    auto: bool = False  # a (goto:) the passage runs by itself: becomes a "Continue" choice


@dataclass
class Cond:
    branches: list[tuple[str | None, list[Any]]]  # (Jinja condition, or None for else; the branch's nodes)


@dataclass
class SetVar:
    var: str
    expr: str


@dataclass
class Print:
    expr: str


# Harlowe's macro names (lower case, without - and _), so that "(Note: ...)" in prose is not taken for one.
HARLOWE_MACROS = {"a", "array", "dm", "datamap", "ds", "dataset", "set", "put", "move", "if", "unless", "elseif", "else", "for", "loop", "link", "linkgoto", "linkreveal", "linkrepeat", "linkrevealgoto", "linkrerun", "linkundo", "linkfullscreen", "linkshow", "linkstorylet", "click", "clickgoto", "clickreplace", "clickappend", "clickprepend", "clickrerun", "clickundo", "mouseover", "mouseout", "mouseovergoto", "mouseoutgoto", "goto", "undo", "redirect", "display", "print", "verbatimprint", "either", "random", "cond", "nth", "num", "number", "str", "string", "text", "textcolour", "textcolor", "colour", "color", "textstyle", "font", "align", "background", "transition", "t8n", "transitiontime", "t8ntime", "transitiondelay", "t8ndelay", "transitionskip", "hook", "replace", "append", "prepend", "show", "hide", "rerun", "live", "event", "after", "stop", "alert", "prompt", "confirm", "history", "visited", "passage", "passages", "savegame", "loadgame", "savedgames", "restart", "reload", "cyclinglink", "seqlink", "dropdown", "inputbox", "forceinputbox", "checkbox", "meter", "enchant", "enchantin", "change", "newline", "css", "hidden", "hoverstyle", "box", "floatbox", "charstyle", "linestyle", "textsize", "size", "textindent", "textrotate", "textrotatez", "opacity", "collapse", "nobr", "verbatim", "v6m", "debug", "icon", "icons", "storylet", "openstorylets", "sequencelink", "source", "datanames", "datavalues", "dataentries", "range", "count", "sorted", "rotated", "shuffled", "interlaced", "repeated", "reversed", "folded", "altered", "find", "all", "some", "none", "lowercase", "uppercase", "lowerfirst", "upperfirst", "words", "trimmed", "joined", "substring", "digitformat", "round", "floor", "ceil", "abs", "min", "max", "sqrt", "sin", "cos", "tan", "pow", "exp", "log", "log10", "log2", "sign", "bind", "2bind", "bind2", "mock", "metadata", "partialuserinput", "unpack"}
SUGARCUBE_CONTAINERS = {"if", "link", "button", "nobr", "silently", "script", "switch", "for", "widget", "timed",
                        "repeat", "type", "linkappend", "linkprepend", "linkreplace", "append", "prepend", "replace",
                        "capture", "do", "createplaylist", "cycle", "listbox", "done", "actions", "choice"}
CHAPBOOK_INSERT = re.compile(r"\{([a-z][\w ]*?)(?::\s*([^{}\n]*))?\}")
CHAPBOOK_MODIFIER = re.compile(r"(?im)^\[(if|unless|else|continue|continued|cont'?d?|cont|after|align|append|note|"
                               r"notes|todo|fixme|javascript|css|ifalways|ifnever|transition)\b([^\]\n]*)\]\s*$")
_TOKEN = re.compile(r"""\s+|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\d+(?:\.\d+)?|\$[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|"""
                    r"""_[A-Za-z]\w*(?:\.[A-Za-z_]\w*)*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|===|!==|==|!=|>=|<=|&&|\|\||"""
                    r"""\+\+|--|[-+*/%<>!(),\[\]{}:;=']""")
_WORDS = {"and": "and", "or": "or", "not": "not", "true": "true", "false": "false", "is": "==", "eq": "==",
          "neq": "!=", "isnot": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "===": "==", "!==": "!=",
          "&&": "and", "||": "or", "!": "not", "==": "==", "!=": "!=", ">=": ">=", "<=": "<=", "<": "<", ">": ">",
          "+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "(": "(", ")": ")"}
_STATE_PREFIX = re.compile(r"^(?:window\.story\.state\.|story\.state\.|State\.variables\.|s\.|variables\(\)\.)")
_METHODS = {"toUpperCase": "upper", "toLowerCase": "lower", "length": "length"}


@dataclass
class _Context:
    """What converting one story needs: its format, passages, variables and the warnings so far."""

    fmt: str
    passages: dict[str, Passage]
    known: set[str]  # Twine variable names (without $) set somewhere in the story
    temps: set[str]  # temporary (_x) names set somewhere
    warnings: list[str]
    sandbox: st.Sandbox = field(default_factory=st.Sandbox)
    stack: list[str] = field(default_factory=list)  # passages being converted (the first is the slide's own)
    templates: list[str] = field(default_factory=list)  # SugarCube ?templates met in the current passage
    in_link: int = 0  # inside a link's hook or body, where a goto is the link's target

    def warn(self, message: str) -> None:
        line = f"passage '{self.stack[0] if self.stack else '?'}': {message}"
        if line not in self.warnings:
            self.warnings.append(line)

    def var(self, token: str) -> str | None:
        """Our variable name for a Twine variable token ($x, _x, $x.y, s.x, a Chapbook name), or None."""
        name = _STATE_PREFIX.sub("", token)
        if name.startswith("$"):
            name = name[1:]
        elif name.startswith("_") and self.fmt in (HARLOWE, SUGARCUBE):
            if name[1:].split(".")[0] not in self.temps:
                return None
            name = name[1:]
        elif self.fmt in (HARLOWE, SUGARCUBE) or (name == token and self.fmt == SNOWMAN) or name.split(".")[0] not in self.known:
            return None
        return our_name(name)


def our_name(name: str) -> str:
    """A Twine variable name ($a.b's c, _x) as one of ours: letters, digits and _, starting with a letter."""
    name = re.sub(r"\W+", "_", name.replace(".", "_")).strip("_") or "v"
    if not name[0].isalpha() or not name.isascii():
        name = "v_" + name
    if name in st.RESERVED:
        name = "v_" + name
    return name[:32]


def translate(source: str, ctx: _Context) -> str | None:
    """A Twine expression (Harlowe, SugarCube/JavaScript, Chapbook, Snowman) as a Jinja expression; None when it
    uses something a story of ours cannot (function calls, arrays, objects, random numbers)."""
    tokens = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match:
            return None
        pos = match.end()
        if not match.group().isspace():
            tokens.append(match.group())
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token, following = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        i += 1
        if token in ("is", "isnot") and following == "not":
            out.append("!=")
            i += 1
        elif token[0] in "\"'" or token[0].isdigit():
            out.append(token)
        elif token in _WORDS:
            out.append(_WORDS[token])
        elif token[0] in "$_" or token[0].isalpha():
            method = None
            head, _, last = token.rpartition(".")
            if head and last in _METHODS:
                token, method = head, _METHODS[last]
                if following == "(" and i + 1 < len(tokens) and tokens[i + 1] == ")":
                    i += 2
            elif following == "(":
                return None  # a function call
            name = ctx.var(token)
            if name is None:
                return None
            out.append(f"({name} | {method})" if method else name)
        else:
            return None
    expression = ""
    for token in out:
        expression += token if (not expression or expression.endswith("(") or token == ")") else " " + token
    if not expression:
        return None
    try:
        ctx.sandbox.parse(expression, True)
    except st.StateError:
        return None
    return expression


def _split_top(text: str, separators: str = ",") -> list[str]:
    """Split on separators outside quotes and brackets."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in separators and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _string(arg: str) -> str | None:
    """The value of a quoted string literal, or None."""
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'`":
        return re.sub(r"\\(.)", r"\1", arg[1:-1])
    return None


def _past(text: str, start: int, pair: str, quoted: bool = False) -> int:
    """Index just past the bracket closing the one at ``start`` (quotes respected when ``quoted``); -1 if none."""
    depth, quote, i = 0, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif quoted and char in "\"'":
            quote = char
        elif char == pair[0]:
            depth += 1
        elif char == pair[1]:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def assignment(var_token: str, operator: str, value: str, ctx: _Context) -> list[SetVar] | None:
    """``$x to 1``, ``$x += 2``, ``$x = {a: 1}`` (flattened to x_a) as sets; None when it cannot be mapped."""
    name = ctx.var(var_token)
    if name is None:
        return None
    value = value.strip().rstrip(";")
    if value.startswith("{") and value.endswith("}"):  # an object of simple values: one variable per key
        sets = []
        for pair in _split_top(value[1:-1]):
            key, _, inner = pair.partition(":")
            expression = translate(inner, ctx)
            if expression is None or not re.fullmatch(r"\s*[\"']?\w+[\"']?\s*", key):
                return None
            key = key.strip().strip("\"'")
            sets.append(SetVar(our_name(f"{name}_{key}"), expression))
        return sets
    if operator in ("++", "--"):
        return [SetVar(name, f"{name} {operator[0]} 1")]
    expression = translate(value, ctx)
    if expression is None:
        return None
    if operator in ("+=", "-=", "*=", "/="):
        expression = f"{name} {operator[0]} ({expression})"
    return [SetVar(name, expression)]


def _sets(source: str, ctx: _Context, what: str) -> list[SetVar]:
    """Every assignment of a set macro or setter (comma or semicolon separated); unmappable ones are warned about."""
    result: list[SetVar] = []
    for part in _split_top(source, ",;"):
        match = (re.fullmatch(r"([$_]?[A-Za-z_][\w.]*)(?:'s\s+(\w+))?\s*(to|=|\+=|-=|\*=|/=)\s*(.+)", part, re.DOTALL)
                 or re.fullmatch(r"([$_]?[A-Za-z_][\w.]*)()\s*(\+\+|--)()", part))
        put = re.fullmatch(r"(.+?)\s+into\s+([$_][A-Za-z_][\w.]*)", part, re.DOTALL)
        sets = None
        if put:
            sets = assignment(put.group(2), "to", put.group(1), ctx)
        elif match:
            token = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
            sets = assignment(token, match.group(3), match.group(4), ctx)
        if sets is None:
            ctx.warn(f"{what} '{part[:60]}' cannot be kept (not a simple value); dropped")
        else:
            result += sets
    return result


def _include(name: str | None, ctx: _Context) -> list[Any]:
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


def _goto(target: str | None, ctx: _Context, label: str = "Continue") -> list[Any]:
    if target is None:
        ctx.warn("goes to a passage named by code, which cannot be followed; dropped")
        return []
    if ctx.in_link:
        return [Link(label, target)]  # the goto of a link's hook: the link itself is the choice
    ctx.warn(f"goes to '{target}' by itself; a '{label}' choice takes its place")
    return [Link(label, target, auto=True)]


def _link_nodes(inner: str, ctx: _Context) -> list[Any]:
    """A ``[[...]]`` link, with a SugarCube setter as effects."""
    found = parse_links(f"[[{inner}]]")
    if not found:
        return [inner.split("->")[0].split("|")[0]]  # an external link keeps its words
    label, target = found[0]
    effects: list[tuple[str, str]] = []
    if "][" in inner and ctx.fmt == SUGARCUBE:
        effects = [(s.var, s.expr) for s in _sets(inner.split("][", 1)[1], ctx, "link setter")]
    if ctx.fmt in (SUGARCUBE, HARLOWE) and label.startswith("$"):
        expression = translate(label, ctx)
        label = target if expression is None else label
        if expression is None:
            ctx.warn(f"a link label written as code ({label}) is shown as its passage name")
    return [Link(label, target, effects)]


def _group_ifs(nodes: list[Any]) -> list[Any]:
    """Join (if:)/(else-if:)/(else:) and [if]/[else] markers that follow each other into `Cond` nodes."""
    result: list[Any] = []
    for node in nodes:
        if isinstance(node, tuple) and node[0] == "if?":
            _, keyword, condition, body = node
            previous = next((n for n in reversed(result) if not (isinstance(n, str) and not n.strip())), None)
            if keyword in ("elif", "else") and isinstance(previous, Cond) and previous.branches[-1][0] is not None:
                while result and result[-1] is not previous:
                    result.pop()  # whitespace between the hooks
                previous.branches.append((condition if keyword == "elif" else None, body))
            elif keyword == "if":
                result.append(Cond([(condition, body)]))
            else:
                result.extend(body)  # an (else:) with no (if:) before it: Harlowe shows it
        else:
            result.append(node)
    return result


# -- Harlowe -------------------------------------------------------------------------------------------------------


def _harlowe(text: str, ctx: _Context) -> list[Any]:
    nodes: list[Any] = []
    buffer: list[str] = []
    i = 0

    def flush() -> None:
        if buffer:
            nodes.append("".join(buffer))
            buffer.clear()

    while i < len(text):
        if text.startswith("[[", i) and (end := text.find("]]", i)) != -1:
            flush()
            nodes += _link_nodes(text[i + 2:end], ctx)
            i = end + 2
            continue
        macro = re.match(r"\(([A-Za-z][\w-]*):", text[i:i + 40])
        if macro and macro.group(1).lower().replace("-", "").replace("_", "") in HARLOWE_MACROS:
            end = _past(text, i, "()", quoted=True)
            if end != -1:
                flush()
                args = text[i + macro.end():end - 1]
                hook = None
                if end < len(text) and text[end] == "[":
                    hook_end = _past(text, end, "[]")
                    if hook_end != -1:
                        hook, end = text[end + 1:hook_end - 1], hook_end
                nodes += _harlowe_macro(macro.group(1).lower().replace("-", "").replace("_", ""), args, hook, ctx)
                i = end
                continue
        var = re.match(r"\$([A-Za-z_]\w*)|_([A-Za-z]\w*)", text[i:])
        if var and (var.group(1) in ctx.known or var.group(2) in ctx.temps) and (i == 0 or not text[i - 1].isalnum()):
            flush()
            nodes.append(Print(our_name(var.group(1) or var.group(2))))
            i += var.end()
            continue
        named = re.match(r"\|[\w-]+[>)](?=\[)|\]<[\w-]+\||\?[A-Za-z][\w-]*", text[i:])
        if named and (text[i] != "?" or i == 0 or not text[i - 1].isalnum()):  # hook names go, their text stays
            flush()
            if named.group().endswith(")"):
                ctx.warn("a hidden hook is shown at once")
            i += named.end()
            continue
        if text[i] == "{" and (end := _past(text, i, "{}")) != -1:  # collapsing whitespace
            flush()
            inner = _harlowe(text[i + 1:end - 1], ctx)
            nodes += [re.sub(r"\s+", " ", n) if isinstance(n, str) else n for n in inner]
            i = end
            continue
        if text[i] in "[]":  # a bare hook's brackets
            i += 1
            continue
        buffer.append(text[i])
        i += 1
    flush()
    return _group_ifs(nodes)


def _harlowe_macro(name: str, args: str, hook: str | None, ctx: _Context) -> list[Any]:
    is_link = name.startswith(("link", "click"))
    ctx.in_link += is_link
    try:
        body = _harlowe(hook, ctx) if hook is not None else []
    finally:
        ctx.in_link -= is_link
    strings = [_string(a) for a in _split_top(args)]
    if name in ("set", "put"):
        return _sets(args, ctx, f"({name}:)") + body
    if name in ("if", "unless", "elseif", "else"):
        condition = None
        if name != "else":
            condition = translate(args, ctx)
            if condition is None:
                ctx.warn(f"the condition ({name}: {args.strip()[:60]}) cannot be kept; its text is always shown")
                return body
            condition = f"not ({condition})" if name == "unless" else condition
        return [("if?", "elif" if name == "elseif" else ("else" if name == "else" else "if"), condition, body)]
    if name in ("linkgoto", "clickgoto", "linkrevealgoto", "mouseovergoto"):
        if not strings:
            return _goto(None, ctx)
        label: str | None
        target: str | None
        if name in ("clickgoto", "mouseovergoto"):
            label, target = (strings[0] or "Continue"), strings[-1] if len(strings) > 1 else None
        else:
            label, target = strings[0], (strings[1] if len(strings) > 1 else strings[0])
        if label is None or target is None:
            return _goto(None, ctx)
        effects = [(n.var, n.expr) for n in body if isinstance(n, SetVar)]
        return [Link(label, target, effects)]
    if name in ("link", "linkreveal", "linkrepeat", "click", "linkrerun", "linkshow"):
        link_label = strings[0] if strings else None
        targets = [n for n in _flatten(body) if isinstance(n, Link)]
        if link_label and targets:
            effects = [(n.var, n.expr) for n in _flatten(body) if isinstance(n, SetVar)]
            if len(targets) > 1:
                ctx.warn(f"({name}:) '{link_label}' leads to several passages; the first, '{targets[0].target}', is kept")
            return [Link(link_label, targets[0].target, effects)]
        ctx.warn(f"the text revealed by ({name}: {args.strip()[:40]}) is shown at once")
        return ([link_label] if link_label else []) + body
    if name in ("goto", "redirect"):
        return _goto(strings[0] if strings else None, ctx)
    if name == "display":
        return _include(strings[0] if strings else None, ctx)
    if name in ("print", "verbatimprint"):
        expression = translate(args, ctx)
        if expression is None:
            ctx.warn(f"(print: {args.strip()[:60]}) cannot be kept; dropped")
            return []
        return [Print(expression)]
    if name in ("nobr", "collapse"):
        return [re.sub(r"\s+", " ", n) if isinstance(n, str) else n for n in body]
    if name in ("textstyle", "textcolour", "textcolor", "colour", "color", "font", "align", "background", "transition",
                "t8n", "css", "textsize", "size", "opacity", "hoverstyle", "charstyle", "linestyle", "box", "floatbox",
                "textindent", "textrotate", "textrotatez", "transitiontime", "t8ntime", "transitiondelay", "t8ndelay"):
        return body  # styling: the words stay
    ctx.warn(f"({name}:) cannot be mapped; dropped" + (" (its hook's text is kept)" if hook and hook.strip() else ""))
    return body


def _flatten(nodes: list[Any]) -> list[Any]:
    flat = []
    for node in nodes:
        if isinstance(node, Cond):
            for _, body in node.branches:
                flat += _flatten(body)
        elif isinstance(node, tuple):
            flat += _flatten(node[3])
        else:
            flat.append(node)
    return flat


# -- SugarCube -----------------------------------------------------------------------------------------------------


def _sugarcube_tokens(text: str, ctx: _Context) -> list[Any]:
    """Text, links, prints and ('macro', name, args) tokens."""
    tokens: list[Any] = []
    buffer: list[str] = []
    i = 0

    def flush() -> None:
        if buffer:
            tokens.append("".join(buffer))
            buffer.clear()

    while i < len(text):
        if text.startswith("[[", i) and (end := text.find("]]", i)) != -1:
            flush()
            tokens += _link_nodes(text[i + 2:end], ctx)
            i = end + 2
            continue
        if text.startswith("<<", i):
            end = i + 2
            quote = ""
            while end < len(text) - 1:
                char = text[end]
                if quote:
                    quote = "" if char == quote and text[end - 1] != "\\" else quote
                elif char in "\"'":
                    quote = char
                elif text.startswith(">>", end):
                    break
                end += 1
            if text.startswith(">>", end):
                flush()
                inner = text[i + 2:end].strip()
                if inner.startswith(("=", "-")):
                    tokens.append(("macro", "print", inner[1:]))
                else:
                    match = re.match(r"(/?[A-Za-z][\w-]*)\s*(.*)", inner, re.DOTALL)
                    tokens.append(("macro", match.group(1).lower(), match.group(2)) if match else inner)
                i = end + 2
                continue
        var = re.match(r"\$([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)", text[i:])
        if var and (i == 0 or text[i - 1] != "$"):
            expression = translate(var.group(), ctx)
            if expression is not None:
                flush()
                tokens.append(Print(expression))
                i += var.end()
                continue
        template = re.match(r"\?[A-Za-z]\w*", text[i:])
        if template and (i == 0 or not text[i - 1].isalnum()):
            ctx.templates.append(template.group())
            i += template.end()
            continue
        buffer.append(text[i])
        i += 1
    flush()
    return tokens


def _sugarcube(text: str, ctx: _Context) -> list[Any]:
    tokens = _sugarcube_tokens(text, ctx)
    nodes, _ = _sugarcube_build(tokens, 0, None, ctx)
    return nodes


def _sugarcube_build(tokens: list[Any], i: int, closer: str | None, ctx: _Context) -> tuple[list[Any], int]:
    """Nodes up to the macro ``<</closer>>`` (or the end); returns them and the index after the closer."""
    nodes: list[Any] = []
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not (isinstance(token, tuple) and token[0] == "macro"):
            nodes.append(token)
            continue
        _, name, args = token
        if closer and name in (f"/{closer}", f"end{closer}"):
            return nodes, i
        if name in ("elseif", "else", "case", "default") and closer in ("if", "switch"):
            return nodes, i - 1
        if name in SUGARCUBE_CONTAINERS and _has_closer(tokens, i, name):
            if name == "if":
                branches: list[tuple[str | None, list[Any]]] = []
                condition: str | None = args
                keep = True
                while True:
                    body, i = _sugarcube_build(tokens, i, "if", ctx)
                    expression = translate(condition, ctx) if condition is not None else None
                    if condition is not None and expression is None:
                        ctx.warn(f"the condition <<if {condition.strip()[:60]}>> cannot be kept; its text is always shown")
                        keep = False
                    branches.append((expression, body))
                    following = tokens[i] if i < len(tokens) else None  # an elseif/else is left for us to take
                    if isinstance(following, tuple) and following[0] == "macro" and following[1] in ("elseif", "else"):
                        else_if = following[1] == "elseif" or following[2].startswith("if ")
                        condition = re.sub(r"^if\s+", "", following[2]) if else_if else None
                        i += 1
                        continue
                    break
                nodes += [Cond(branches)] if keep else [n for _, body in branches for n in body]
            elif name == "switch":
                subject = translate(args, ctx)
                cases: list[tuple[str | None, list[Any]]] = []
                _, i = _sugarcube_build(tokens, i, "switch", ctx)  # text before the first case is ignored
                while i < len(tokens) and isinstance(tokens[i], tuple) and tokens[i][1] in ("case", "default"):
                    case = tokens[i]
                    body, i = _sugarcube_build(tokens, i + 1, "switch", ctx)
                    values = [translate(v, ctx) for v in _split_top(case[2], ", ")] if case[1] == "case" else []
                    if subject is None or None in values:
                        ctx.warn("a <<switch>> case cannot be kept; its text is always shown")
                        cases.append(("true", body))
                    else:
                        cases.append((" or ".join(f"{subject} == {v}" for v in values) if values else None, body))
                if cases:
                    if cases[0][0] is None:
                        cases.insert(0, ("false", []))
                    nodes.append(Cond(cases))
            else:
                ctx.in_link += name in ("link", "button")
                try:
                    body, i = _sugarcube_build(tokens, i, name, ctx)
                finally:
                    ctx.in_link -= name in ("link", "button")
                nodes += _sugarcube_container(name, args, body, ctx)
            continue
        nodes += _sugarcube_macro(name, args, ctx)
    return nodes, i


def _has_closer(tokens: list[Any], i: int, name: str) -> bool:
    return any(isinstance(t, tuple) and t[0] == "macro" and t[1] in (f"/{name}", f"end{name}") for t in tokens[i:])


def _sugarcube_container(name: str, args: str, body: list[Any], ctx: _Context) -> list[Any]:
    if name in ("link", "button"):
        link = re.fullmatch(r"\s*\[\[(.*)\]\]\s*", args, re.DOTALL)
        if link:
            found = _link_nodes(link.group(1), ctx)
            label, target = (found[0].label, found[0].target) if found and isinstance(found[0], Link) else (None, None)
        else:
            parts = re.findall(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\S+", args)
            label = _string(parts[0]) if parts else None
            target = _string(parts[1]) if len(parts) > 1 else None
            if label is None and parts:
                target = target or label
                ctx.warn(f"a link label written as code ({parts[0]}) is shown as its passage name")
                label = target
        flat = _flatten(body)
        gotos = [n for n in flat if isinstance(n, Link)]
        effects = [(n.var, n.expr) for n in flat if isinstance(n, SetVar)]
        target = target or (gotos[0].target if gotos else None)
        if target:
            return [Link(label or target, target, effects)]
        ctx.warn(f"<<{name} {args.strip()[:40]}>> runs JavaScript, not a passage link; its words are kept")
        return [label] if label else []
    if name == "nobr":
        return [re.sub(r"\s*\n\s*", " ", n) if isinstance(n, str) else n for n in body]
    if name == "silently":
        return [n for n in _flatten(body) if isinstance(n, SetVar)]
    if name == "script":
        ctx.warn("JavaScript (<<script>>) cannot be mapped; dropped")
        return []
    if name in ("timed", "type", "linkappend", "linkprepend", "linkreplace", "append", "prepend", "replace", "do"):
        return body
    ctx.warn(f"<<{name}>> cannot be mapped; dropped with what it contains")
    return []


def _sugarcube_macro(name: str, args: str, ctx: _Context) -> list[Any]:
    strings = [_string(a) for a in re.findall(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\S+", args)]
    if name == "set":
        return _sets(args, ctx, "<<set>>")
    if name in ("print", "=", "-"):
        expression = translate(args, ctx)
        if expression is None:
            ctx.warn(f"<<print {args.strip()[:60]}>> cannot be kept; dropped")
            return []
        return [Print(expression)]
    if name == "goto":
        link = re.fullmatch(r"\s*\[\[(.*)\]\]\s*", args, re.DOTALL)
        return _goto(parse_links(f"[[{link.group(1)}]]")[0][1] if link else (strings[0] if strings else None), ctx)
    if name in ("include", "display"):
        link = re.fullmatch(r"\s*\[\[(.*)\]\]\s*", args, re.DOTALL)
        return _include(parse_links(f"[[{link.group(1)}]]")[0][1] if link else (strings[0] if strings else None), ctx)
    if name in ("back", "return"):
        ctx.warn(f"<<{name}>> is dropped: the play page has its own Back")
        return []
    if name in ("run", "script", "addclass", "removeclass", "toggleclass", "audio", "cacheaudio", "playlist",
                "masteraudio", "waitforaudio", "unset", "remember", "forget", "checkbox", "radiobutton", "textbox",
                "textarea", "numberbox", "cycle", "listbox", "option", "optionsfrom", "widget", "actions", "choice",
                "removeaudio", "createaudiogroup", "stop", "break", "continue", "capture", "redo", "done"):
        ctx.warn(f"<<{name}>> cannot be mapped; dropped")
        return []
    ctx.warn(f"<<{name}>> cannot be mapped; dropped")
    return []


# -- Chapbook ------------------------------------------------------------------------------------------------------


def _chapbook(text: str, ctx: _Context) -> list[Any]:
    nodes: list[Any] = []
    lines = text.split("\n")
    if "--" in [line.strip() for line in lines]:
        cut = [line.strip() for line in lines].index("--")
        head = lines[:cut]
        pattern = re.compile(r"\s*([A-Za-z_$][\w.$]*)\s*(?:\((.*)\))?\s*:\s*(.+)")
        if head and all(pattern.fullmatch(line) for line in head if line.strip()):
            for line in head:
                match = pattern.fullmatch(line)
                if not match:
                    continue
                sets = _sets(f"{match.group(1)} = {match.group(3)}", ctx, "vars section line")
                if match.group(2):
                    condition = translate(match.group(2), ctx)
                    if condition is None:
                        ctx.warn(f"the condition ({match.group(2)[:60]}) of '{match.group(1)}' cannot be kept; "
                                 "it is always set")
                    else:
                        sets = [SetVar(s.var, f"({s.expr}) if ({condition}) else {s.var}") for s in sets]
                nodes += sets
            lines = lines[cut + 1:]
    body = "\n".join(lines)
    sections: list[tuple[str, str, str]] = []  # (modifier, argument, text)
    last = 0
    modifier, argument = "", ""
    for match in CHAPBOOK_MODIFIER.finditer(body):
        sections.append((modifier, argument, body[last:match.start()]))
        modifier, argument, last = match.group(1).lower(), match.group(2).strip(), match.end()
    sections.append((modifier, argument, body[last:]))
    for modifier, argument, chunk in sections:
        inner = _chapbook_inline(chunk, ctx)
        if modifier in ("if", "unless"):
            condition = translate(argument, ctx)
            if condition is None:
                ctx.warn(f"the condition [{modifier} {argument[:60]}] cannot be kept; its text is always shown")
                nodes += inner
            else:
                nodes.append(("if?", "if", f"not ({condition})" if modifier == "unless" else condition, inner))
        elif modifier == "else":
            nodes.append(("if?", "else", None, inner))
        elif modifier in ("note", "notes", "todo", "fixme", "ifnever"):
            continue  # author's notes, never shown
        elif modifier in ("javascript", "css"):
            if chunk.strip():
                ctx.warn(f"[{modifier}] code cannot be mapped; dropped")
        else:
            if modifier in ("after", "transition", "append"):
                ctx.warn(f"[{modifier}] timing is dropped; its text is shown at once")
            nodes += inner
    return _group_ifs(nodes)


def _chapbook_inline(text: str, ctx: _Context) -> list[Any]:
    nodes: list[Any] = []
    last = 0
    for match in re.finditer(r"\[\[(.*?)\]\]|" + CHAPBOOK_INSERT.pattern, text, re.DOTALL):
        nodes.append(text[last:match.start()])
        last = match.end()
        if match.group(1) is not None:
            nodes += _link_nodes(match.group(1), ctx)
            continue
        name, args = match.group(2).strip().lower(), match.group(3) or ""
        params = {k.strip().lower(): v for k, _, v in (p.partition(":") for p in _split_top(args))}
        first = _string(_split_top(args)[0]) if _split_top(args) else None
        if name == "link to":
            target = first
            label = _string(params.get("label", "")) or target
            nodes += [Link(label or target, target)] if target else _goto(None, ctx)
        elif name in ("back link", "restart link"):
            ctx.warn(f"{{{name}}} is dropped: the play page has its own Back and Play again")
        elif name in ("embed passage", "embed passage named"):
            nodes += _include(first, ctx)
        elif name == "reveal link":
            passage = _string(params.get("passage", ""))
            ctx.warn(f"the text revealed by {{reveal link: {args[:40]}}} is shown at once")
            nodes += ([first] if first else []) + (_include(passage, ctx) if passage else [_string(params.get("text", "")) or ""])
        elif match.group(2).strip().split(".")[0] in ctx.known and not args:
            nodes.append(Print(our_name(match.group(2).strip())))
        elif name in ("cycling link", "dropdown menu", "text input", "select", "embed image", "embed youtube video",
                      "embed flickr image", "embed unsplash image", "ambient sound", "sound effect", "party",
                      "restart link", "section break"):
            ctx.warn(f"{{{name}}} cannot be mapped; dropped")
        else:
            nodes.append(match.group())  # not an insert Chapbook knows: it shows the text as written
    nodes.append(text[last:])
    return nodes


# -- Snowman and plain Twine ---------------------------------------------------------------------------------------


def _snowman(text: str, ctx: _Context) -> list[Any]:
    root: list[Any] = []
    stack: list[tuple[list[Any], Cond | None]] = [(root, None)]
    last = 0
    for match in re.finditer(r"<%([=-]?)(.*?)%>", text, re.DOTALL):
        stack[-1][0].extend(_snowman_inline(text[last:match.start()], ctx))
        last = match.end()
        code = match.group(2).strip()
        if match.group(1):
            expression = translate(code.rstrip(";"), ctx)
            if expression is None:
                ctx.warn(f"<%{match.group(1)} {code[:60]} %> cannot be kept; dropped")
            else:
                stack[-1][0].append(Print(expression))
            continue
        for statement in re.findall(r"\}?\s*else\s+if\s*\((?:[^()]|\([^()]*\))*\)\s*\{|\}?\s*else\s*\{|"
                                    r"if\s*\((?:[^()]|\([^()]*\))*\)\s*\{|\}|[^;{}]+", code):
            statement = statement.strip()
            condition = re.fullmatch(r"(\}?)\s*(else\s+)?if\s*\((.*)\)\s*\{", statement, re.DOTALL)
            if condition:
                expression = translate(condition.group(3), ctx)
                if expression is None:
                    ctx.warn(f"the condition if ({condition.group(3)[:60]}) cannot be kept; its text is always shown")
                    expression = "true"
                if condition.group(2) and stack[-1][1] is not None:
                    cond = stack.pop()[1]
                    assert cond is not None
                    cond.branches.append((expression, []))
                    stack.append((cond.branches[-1][1], cond))
                else:
                    cond = Cond([(expression, [])])
                    stack[-1][0].append(cond)
                    stack.append((cond.branches[0][1], cond))
            elif re.fullmatch(r"\}?\s*else\s*\{", statement) and stack[-1][1] is not None:
                cond = stack.pop()[1]
                assert cond is not None
                cond.branches.append((None, []))
                stack.append((cond.branches[-1][1], cond))
            elif statement == "}":
                if len(stack) > 1:
                    stack.pop()
            elif statement:
                show = re.fullmatch(r"(?:window\.)?story\.show\(\s*(['\"])(.*?)\1\s*\)", statement)
                if show:
                    stack[-1][0].extend(_goto(show.group(2), ctx))
                    continue
                sets = None
                if re.match(r"(?:window\.story\.state\.|story\.state\.|s\.)", statement):
                    sets = _sets(statement, ctx, "code")
                if not sets:
                    ctx.warn(f"JavaScript '{statement[:60]}' cannot be mapped; dropped")
                stack[-1][0].extend(sets or [])
    stack[-1][0].extend(_snowman_inline(text[last:], ctx))
    return root


def _snowman_inline(text: str, ctx: _Context) -> list[Any]:
    """Text with [[links]], Markdown links to passages and <a data-passage> links."""
    nodes: list[Any] = []
    last = 0
    pattern = r"\[\[(.*?)\]\]|\[([^\[\]\n]+)\]\(([^()\n]+)\)|<a\b[^>]*data-passage=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>"
    for match in re.finditer(pattern, text, re.DOTALL):
        nodes.append(text[last:match.start()])
        last = match.end()
        if match.group(1) is not None:
            nodes += _link_nodes(match.group(1), ctx)
        elif match.group(2) is not None:
            target = html.unescape(match.group(3).strip())
            nodes.append(Link(match.group(2), target) if target in ctx.passages else match.group(2))
        else:
            nodes.append(Link(re.sub(r"<[^>]+>", "", match.group(5)), html.unescape(match.group(4))))
    nodes.append(text[last:])
    return nodes


# -- from the tree to a slide --------------------------------------------------------------------------------------


COMMENTS = {HARLOWE: r"<!--.*?-->", SUGARCUBE: r"/\*.*?\*/|/%.*?%/|<!--.*?-->", CHAPBOOK: r"<!--.*?-->",
            SNOWMAN: r"<!--.*?-->", PLAIN: r"<!--.*?-->"}


def convert_passage(passage: Passage, ctx: _Context) -> list[Any]:
    """One passage's text as a tree of nodes, in the story's own format; comments (and links in them) removed."""
    text = re.sub(COMMENTS[ctx.fmt], "", passage.text, flags=re.DOTALL)
    if ctx.fmt in (SUGARCUBE, HARLOWE):
        text = re.sub(r"\\\n\s*|\n\s*\\(?!\\)", "" if ctx.fmt == HARLOWE else " ", text)  # line continuations
    if re.search(r"(?<!<)<script\b", text, re.IGNORECASE):
        ctx.warn("a <script> (JavaScript) cannot be mapped; dropped")
        text = re.sub(r"(?<!<)<script\b.*?</script\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    parse = {HARLOWE: _harlowe, SUGARCUBE: _sugarcube, CHAPBOOK: _chapbook, SNOWMAN: _snowman, PLAIN: _snowman}[ctx.fmt]
    nodes = parse(text, ctx)
    if ctx.templates:
        names = ", ".join(dict.fromkeys(ctx.templates))
        ctx.warn(f"the templates {names} (JavaScript) cannot be mapped; dropped" if len(ctx.templates) > 1 else
                 f"the template {names} (JavaScript) cannot be mapped; dropped")
        ctx.templates.clear()
    nobr = ctx.fmt == SUGARCUBE and "nobr" in passage.tags
    return _prose_all(nodes, ctx, nobr)


def _prose_all(nodes: list[Any], ctx: _Context, nobr: bool) -> list[Any]:
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


def _prose(text: str, ctx: _Context, nobr: bool = False) -> str:
    """Text in our markup (*emphasis*, **strong**, blank lines between paragraphs) from the format's markup and HTML."""
    if nobr:
        text = re.sub(r"\s*\n\s*", " ", text)
    text = re.sub(r"<(style|textarea)\b[^>]*>.*?</\1\s*>", lambda m: _keep_textarea(m), text, flags=re.DOTALL | re.IGNORECASE)
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


@dataclass
class Converted:
    text: str
    choices: list[tuple[Link, str | None]]  # link and the condition it is shown under
    entry: list[SetVar]  # the passage's own sets, run on arrival (conditions folded into the expressions)


def lower(nodes: list[Any]) -> Converted:
    """Our slide text (Jinja conditionals and prints), the links with their conditions, and the arrival effects."""
    parts: list[str] = []
    links: list[tuple[Link, str | None]] = []
    entry: list[SetVar] = []

    def walk(items: list[Any], conditions: list[str]) -> None:
        for node in items:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, Print):
                parts.append("{{ " + node.expr + " }}")
            elif isinstance(node, SetVar):
                expression = node.expr
                if conditions:
                    expression = f"({expression}) if ({' and '.join(conditions)}) else {node.var}"
                entry.append(SetVar(node.var, expression))
            elif isinstance(node, Link):
                parts.append(f"\x01{len(links)}\x02")
                links.append((node, " and ".join(f"({c})" if " " in c and len(conditions) > 1 else c
                                                 for c in conditions) or None))
            elif isinstance(node, Cond):
                before: list[str] = []
                for n, (condition, body) in enumerate(node.branches):
                    tag = "if" if n == 0 else ("elif" if condition else "else")
                    parts.append("{% " + tag + (f" {condition}" if condition else "") + " %}")
                    walk(body, conditions + [f"not ({c})" for c in before] + ([condition] if condition else []))
                    if condition:
                        before.append(condition)
                parts.append("{% endif %}")
            elif isinstance(node, tuple):  # an unmatched (else:) marker
                walk(node[3], conditions)

    walk(nodes, [])
    text = "".join(parts)
    lines = []
    for line in text.split("\n"):
        bare = re.sub(r"\x01\d+\x02|\{%.*?%\}", "", line)
        if "\x01" in line and not bare.strip():
            line = re.sub(r"\x01\d+\x02", "", line)
        while True:  # links after the end of a sentence ("Ready? [[Go]]") are choices, not words of it
            tail = re.search(r"\s*\x01\d+\x02\s*$", line)
            before = re.sub(r"\{%.*?%\}", "", line[: tail.start()]).rstrip() if tail else ""
            if not tail or not before or before[-1] not in ".!?:…)\"”'*":
                break
            line = line[: tail.start()]
        lines.append(re.sub(r"\x01(\d+)\x02", lambda m: links[int(m.group(1))][0].label, line))
    text = "\n".join(lines)
    for _ in range(5):
        text = re.sub(r"\{% if [^%]*%\}\s*\{% endif %\}", "", text)
        text = re.sub(r"\{% else %\}\s*\{% endif %\}", "{% endif %}", text)
    text = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n[ \t]+", "\n", text))
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return Converted(text, links, entry)


def clean_text(text: str, fmt: str = PLAIN) -> tuple[str, list[str]]:
    """A passage's prose in our markup, for one story format; returns the text and the import's warnings."""
    ctx = _Context(fmt, {}, _variables([Passage("p", text)], fmt)[0], _variables([Passage("p", text)], fmt)[1], [],
                   stack=["p"])
    converted = lower(convert_passage(Passage("p", text), ctx))
    return converted.text, ctx.warnings


def _variables(passages: list[Passage], fmt: str) -> tuple[set[str], set[str]]:
    """The story's variables and temporaries: every name some passage sets (Harlowe and SugarCube: every $name)."""
    text = "\n".join(p.text for p in passages)
    if fmt in (HARLOWE, SUGARCUBE):
        known = {m for m in re.findall(r"\$([A-Za-z_]\w*)", text)}
        temps = set(re.findall(r"(?:\(set:|\(put:.*?into|<<set)\s*_([A-Za-z]\w*)", text))
        return known, temps
    if fmt == CHAPBOOK:
        names = set()
        for passage in passages:
            head = passage.text.split("\n--\n", 1)[0] if re.search(r"(?m)^--\s*$", passage.text) else ""
            names |= set(re.findall(r"(?m)^\s*([A-Za-z_]\w*)[\w.]*\s*(?:\(.*\))?\s*:", head))
        return names, set()
    names = set(re.findall(r"(?:window\.story\.state|story\.state|\bs)\.([A-Za-z_]\w*)", text))
    return names, set()


# -- into our format -------------------------------------------------------------------------------------------


def _slide_id(name: str, taken: set[str]) -> str:
    """A readable slide id for a passage name: as it is when it is already one, else transliterated to ASCII."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        base = name
    else:
        base = re.sub(r"[^a-z0-9]+", "_", anyascii(name).lower()).strip("_")[:60] or "passage"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _substitute(expression: str, var: str, value: str) -> str:
    """``expression`` with the variable ``var`` replaced by ``(value)``, outside string literals."""
    pieces = re.split(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", expression)
    return "".join(p if i % 2 else re.sub(rf"(?<![\w.]){re.escape(var)}(?!\w)", f"({value})", p)
                   for i, p in enumerate(pieces))


def _effects_mapping(effects: list[tuple[str, str]]) -> dict[str, str]:
    """Effects in order as one ``set:`` mapping: a variable set twice gets one expression doing both."""
    result: dict[str, str] = {}
    for var, expression in effects:
        result[var] = _substitute(expression, var, result[var]) if var in result else expression
    return result


def _declarations(ctx: _Context, sets: list[SetVar], reads: set[str], start_sets: list[SetVar]) -> dict[str, st.Value]:
    """Each variable's kind (from the values it is set to) and starting value (after the init passages)."""
    types: dict[str, str] = {}
    for _ in range(3):
        for item in sets:
            if item.var not in types:
                kind, _ = ctx.sandbox.kind_of(item.expr, types) if _safe(ctx, item.expr) else (None, [])
                if kind in ("true/false", "number", "text"):
                    types[item.var] = kind
    for item in sets:
        if item.var not in types:
            types[item.var] = "number"
    for name in sorted(reads - set(types)):
        types[name] = "true/false"
        ctx.warnings.append(f"variable '{name}' is read but never set; it starts as false")
    defaults: dict[str, st.Value] = {"true/false": False, "number": 0, "text": ""}  # type: ignore[dict-item]
    declared = {name: defaults[kind] for name, kind in types.items()}
    values = st.apply(ctx.sandbox, [st.Effect(s.var, s.expr) for s in start_sets], declared, declared)
    return {name: values[name] for name in types}


def _safe(ctx: _Context, expression: str) -> bool:
    try:
        ctx.sandbox.parse(expression, True)
        return True
    except st.StateError:
        return False


def _reads(ctx: _Context, expressions: list[str], templates: list[str]) -> set[str]:
    names: set[str] = set()
    for source, is_expression in [(e, True) for e in expressions] + [(t, False) for t in templates]:
        try:
            names |= {n for n, _ in ctx.sandbox.names(source, is_expression)}
        except st.StateError:
            pass
    return names


def to_story_data(twine: TwineStory) -> tuple[dict[str, Any], list[str]]:
    """Our story as plain data (ready to dump as YAML), and the warnings of the conversion."""
    warnings = list(twine.warnings)
    fmt = detect_format(twine)
    playable = [p for p in twine.passages
                if p.name not in SPECIAL_NAMES and not set(p.tags) & SPECIAL_TAGS and p.name]
    if not playable:
        raise TwineError("the story has no playable passages (only special ones such as StoryData or scripts)")
    by_name = {p.name: p for p in twine.passages}
    known, temps = _variables([p for p in twine.passages if not set(p.tags) & {"script", "stylesheet"}], fmt)
    ctx = _Context(fmt, by_name, known, temps, warnings)
    taken: set[str] = set()
    ids: dict[str, str] = {}
    for passage in playable:  # an id our own export wrote first, then ids derived from names
        ours = passage.metadata.get(EXTRA_KEY)
        wanted = ours.get("id") if isinstance(ours, dict) else None
        if isinstance(wanted, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wanted) and wanted not in taken:
            ids[passage.name] = wanted
            taken.add(wanted)
    ids.update({p.name: _slide_id(p.name, taken) for p in playable if p.name not in ids})
    ids = {p.name: ids[p.name] for p in playable}
    start = twine.start if twine.start in ids else ("Start" if "Start" in ids else playable[0].name)
    if twine.start and twine.start not in ids:
        warnings.append(f"the start passage '{twine.start}' does not exist; starting at '{start}'")
    converted: dict[str, Converted] = {}
    for passage in playable:
        ctx.stack = [passage.name]
        converted[passage.name] = lower(convert_passage(passage, ctx))
    init: list[SetVar] = []
    for passage in twine.passages:
        if passage.name == "StoryInit" or "startup" in passage.tags:
            ctx.stack = [passage.name]
            init += [n for n in _flatten(convert_passage(passage, ctx)) if isinstance(n, SetVar)]
    all_sets = init + [s for c in converted.values() for s in c.entry] + [
        SetVar(v, e) for c in converted.values() for link, _ in c.choices for v, e in link.effects]
    reads = _reads(ctx, [s.expr for s in all_sets] + [c for v in converted.values() for _, c in v.choices if c],
                   [c.text for c in converted.values()])
    variables = _declarations(ctx, all_sets, reads, init + converted[start].entry) if all_sets or reads else {}

    extra = twine.data.get(EXTRA_KEY, {}) if isinstance(twine.data.get(EXTRA_KEY), dict) else {}
    data: dict[str, Any] = {"title": twine.title, "start": ids[start]}
    for key in ("description", "author"):
        if extra.get(key):
            data[key] = extra[key]
    if isinstance(extra.get("style"), dict):
        data["style"] = {k: v for k, v in extra["style"].items() if k in STYLE_KEYS}
    if isinstance(extra.get("characters"), dict):
        data["characters"] = extra["characters"]
    if variables:
        data["state"] = variables
    slides: dict[str, Any] = {}
    for passage in playable:
        sid = ids[passage.name]
        conv = converted[passage.name]
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
            effects = _effects_mapping(link.effects + [(s.var, s.expr) for s in converted[link.target].entry])
            if effects:
                choice["set"] = effects
            choices.append(choice)
        if len(choices) > MAX_CHOICES:
            warnings.append(f"slide '{sid}': {len(choices)} choices, kept the first {MAX_CHOICES}")
            choices = choices[:MAX_CHOICES]
        if not choices and NAVIGATION.search(passage.text):
            warnings.append(f"slide '{sid}': its navigation was story-format code, so it has no choices left")
        text = conv.text
        if not re.sub(r"\{%.*?%\}", "", text).strip():
            text = passage.name + ("\n" + text if text else "")
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
        details = {k: v for k, v in {"name": passage.name if passage.name != sid else None,
                                     "tags": list(passage.tags) or None,
                                     "position": passage.metadata.get("position"),
                                     "size": passage.metadata.get("size")}.items() if v}
        if details:
            slide["twine"] = details
        slides[sid] = slide
    data["slides"] = slides
    details = {k: twine.data.get(k) for k in ("ifid", "format", "format-version", "tag-colors", "zoom")
               if twine.data.get(k) not in (None, "", {})}
    if twine.format and "format" not in details:
        details["format"] = twine.format
    if details:
        data["twine"] = details
    _repair(data, warnings)
    return data, warnings


def _repair(data: dict[str, Any], warnings: list[str]) -> None:
    """Load the converted story and drop, with a warning, any condition, effect or template our checks refuse."""
    for _ in range(8):
        try:
            load_story(dump_document(data), "import", "import")
            return
        except StoryError as exc:
            changed = False
            for problem in exc.problems:
                if problem.severity != "error" or not problem.field:
                    continue
                slide = data["slides"].get(problem.slide) if problem.slide else None
                field_ = problem.field
                match = re.fullmatch(r"choices\[(\d+)\]\.(if|set)(?:\.(\w+))?", field_)
                if slide is not None and match and int(match.group(1)) < len(slide.get("choices", [])):
                    choice = slide["choices"][int(match.group(1))]
                    if match.group(2) == "if" and "if" in choice:
                        warnings.append(f"slide '{problem.slide}': the condition of '{choice['text']}' ({choice['if']}) "
                                        f"cannot be kept ({problem.message}); the choice is always open")
                        del choice["if"]
                        changed = True
                    elif match.group(3) and match.group(3) in choice.get("set", {}):
                        warnings.append(f"slide '{problem.slide}': the effect {match.group(3)} = "
                                        f"{choice['set'][match.group(3)]} of '{choice['text']}' cannot be kept "
                                        f"({problem.message}); dropped")
                        del choice["set"][match.group(3)]
                        if not choice["set"]:
                            del choice["set"]
                        changed = True
                elif slide is not None and field_ in ("text", "image") and "{" in slide.get(field_, ""):
                    warnings.append(f"slide '{problem.slide}': its conditional text cannot be kept "
                                    f"({problem.message}); every part is shown")
                    slide[field_] = re.sub(r"\{%.*?%\}|\{\{.*?\}\}", "", slide[field_]).strip() or problem.slide
                    changed = True
                elif field_.startswith("state.") and field_[6:] in data.get("state", {}):
                    warnings.append(f"variable '{field_[6:]}' cannot be kept ({problem.message}); dropped")
                    del data["state"][field_[6:]]
                    changed = True
            if not changed:
                return


def import_file(text: str, filename: str) -> list[tuple[dict[str, Any], list[str]]]:
    """Import a .twee/.tw or Twine 2 .html file: one (story data, warnings) per story in it."""
    looks_html = filename.lower().endswith((".html", ".htm")) or "<tw-storydata" in text[:200_000]
    stories = parse_html(text, filename) if looks_html else [parse_twee(text, filename)]
    return [to_story_data(story) for story in stories]


# -- out of our format ------------------------------------------------------------------------------------------


def _spec_dict(spec: ImageSpec) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in STYLE_KEYS if getattr(spec, k) is not None}


def _escape_name(name: str) -> str:
    """A passage or tag name escaped for a Twee header: [ ] { } and \\ get a backslash."""
    return re.sub(r"([\[\]{}\\])", r"\\\1", name)


class _Writer:
    """Our expressions and templates in a story format's own syntax (Harlowe, SugarCube, Chapbook, Snowman)."""

    def __init__(self, fmt: str, story: Story, warnings: list[str]):
        self.fmt, self.story, self.warnings = fmt, story, warnings
        self.js = fmt in (SUGARCUBE, SNOWMAN, CHAPBOOK)

    def var(self, name: str) -> str:
        return {HARLOWE: "$", SUGARCUBE: "$", SNOWMAN: "s."}.get(self.fmt, "") + name

    def expression(self, source: str) -> str:
        return self.expr(self.story.sandbox.parse(source, True))

    def expr(self, node: Any) -> str:
        from jinja2 import nodes as n

        js = self.js
        if isinstance(node, n.Name):
            return self.var(node.name)
        if isinstance(node, n.Const):
            return json.dumps(node.value)
        if isinstance(node, (n.List, n.Tuple)):
            return ("[" if js else "(a: ") + ", ".join(self.expr(i) for i in node.items) + ("]" if js else ")")
        if isinstance(node, n.Not):
            inner = self.expr(node.node)
            simple = isinstance(node.node, (n.Name, n.Const)) or inner.startswith("(")
            return f"{'!' if js else 'not '}{inner if simple else f'({inner})'}"
        if isinstance(node, (n.And, n.Or)):
            op = {n.And: ("&&", "and"), n.Or: ("||", "or")}[type(node)][0 if js else 1]
            return f"({self.expr(node.left)} {op} {self.expr(node.right)})"
        if isinstance(node, n.Neg):
            return f"-{self.expr(node.node)}"
        if isinstance(node, n.Pos):
            return self.expr(node.node)
        if isinstance(node, n.Concat):
            return "(" + " + ".join(self.expr(i) for i in node.nodes) + ")"
        if isinstance(node, n.BinExpr):
            op = {"//": "/"}.get(node.operator, node.operator)
            return f"({self.expr(node.left)} {op} {self.expr(node.right)})"
        if isinstance(node, n.CondExpr):
            a, b = self.expr(node.expr1), self.expr(node.expr2) if node.expr2 is not None else '""'
            return f"({self.expr(node.test)} ? {a} : {b})" if js else f"(cond: {self.expr(node.test)}, {a}, {b})"
        if isinstance(node, n.Filter) and node.name in ("upper", "lower"):
            inner = self.expr(node.node)
            return f"{inner}.to{node.name.title()}Case()" if js else f"({node.name}case: {inner})"
        if isinstance(node, n.Compare):
            left, out = self.expr(node.expr), []
            for operand in node.ops:
                right = self.expr(operand.expr)
                if operand.op in ("in", "notin"):
                    test = f"{right}.includes({left})" if js else f"{right} contains {left}"
                    test = (f"!{test}" if js else f"not ({test})") if operand.op == "notin" else test
                else:
                    op = {"eq": ("===", "is"), "ne": ("!==", "is not"), "lt": ("<", "<"), "lteq": ("<=", "<="),
                          "gt": (">", ">"), "gteq": (">=", ">=")}[operand.op][0 if js else 1]
                    test = f"{left} {op} {right}"
                out.append(test)
                left = right
            return "(" + (" && " if js else " and ").join(out) + ")" if len(out) > 1 else out[0]
        self.warnings.append(f"an expression part ({type(node).__name__}) has no {self.fmt} form; written as text")
        return "0"

    def condition(self, source: str) -> str:
        text = self.expression(source)
        return text[1:-1] if text.startswith("(") and text.endswith(")") and _past(text, 0, "()") == len(text) else text

    def template(self, source: str) -> str:
        """Our slide text (plain, or a template) in the format's syntax."""
        if not self.story.sandbox.is_template(source):
            return self.text(source)
        tree: Any = self.story.sandbox.parse(source)
        return "".join(self.node(node) for node in tree.body)

    def text(self, text: str) -> str:
        return re.sub(r"(?m)^::", " ::", text)  # a line starting with :: would start a new passage

    def node(self, node: Any) -> str:
        from jinja2 import nodes as n

        if isinstance(node, n.Output):
            return "".join(self.output(item) for item in node.nodes)
        if isinstance(node, n.If):
            branches = [(node.test, node.body)] + [(e.test, e.body) for e in node.elif_]
            parts = []
            for i, (test, body) in enumerate(branches):
                inner = "".join(self.node(b) for b in body)
                parts.append(self.branch("if" if i == 0 else "elif", self.condition_node(test), inner))
            if node.else_:
                parts.append(self.branch("else", None, "".join(self.node(b) for b in node.else_)))
            return "".join(parts) + self.branch("end", None, "")
        return ""

    def condition_node(self, node: Any) -> str:
        text = self.expr(node)
        return text[1:-1] if text.startswith("(") and text.endswith(")") and _past(text, 0, "()") == len(text) else text

    def output(self, node: Any) -> str:
        from jinja2 import nodes as n

        if isinstance(node, n.TemplateData):
            return self.text(node.data)
        if isinstance(node, n.Name) and self.fmt != SNOWMAN:
            return "{" + node.name + "}" if self.fmt == CHAPBOOK else self.var(node.name)
        value = self.expr(node)
        return {HARLOWE: f"(print: {value})", SUGARCUBE: f"<<print {value}>>", SNOWMAN: f"<%= {value} %>"}.get(
            self.fmt, "{" + value + "}")

    def branch(self, kind: str, condition: str | None, body: str) -> str:
        if self.fmt == HARLOWE:
            return {"if": f"(if: {condition})[{body}]", "elif": f"(else-if: {condition})[{body}]",
                    "else": f"(else:)[{body}]", "end": ""}[kind]
        if self.fmt == SUGARCUBE:
            return {"if": f"<<if {condition}>>{body}", "elif": f"<<elseif {condition}>>{body}",
                    "else": f"<<else>>{body}", "end": "<</if>>"}[kind]
        if self.fmt == SNOWMAN:
            return {"if": f"<% if ({condition}) {{ %>{body}", "elif": f"<% }} else if ({condition}) {{ %>{body}",
                    "else": f"<% }} else {{ %>{body}", "end": "<% } %>"}[kind]
        return {"if": f"\n[if {condition}]\n{body}", "elif": f"\n[else]\n[if {condition}]\n{body}",  # Chapbook
                "else": f"\n[else]\n{body}", "end": "\n[continue]\n"}[kind]

    def link(self, label: str, target: str) -> str:
        if not re.search(r"\]|->|<-|\|", label + target) and not label.startswith("$") and label.strip() == label:
            return f"[[{label}->{target}]]" if label != target else f"[[{target}]]"
        quoted = json.dumps
        return {HARLOWE: f"(link-goto: {quoted(label)}, {quoted(target)})",
                SUGARCUBE: f"<<link {quoted(label)} {quoted(target)}>><</link>>",
                CHAPBOOK: "{link to: " + quoted(target) + ", label: " + quoted(label) + "}",
                SNOWMAN: f'<a href="javascript:void(0)" data-passage="{html.escape(target)}">{html.escape(label)}</a>'
                }[self.fmt]

    def choice(self, choice: Any, target: str, slide_id: str) -> str:
        effects = [(e.var, self.condition(e.expression)) for e in choice.effects]
        if not effects:
            line = self.link(choice.text, target)
        elif self.fmt == HARLOWE:
            sets = "".join(f"(set: $${v} to {e})".replace("$$", "$") for v, e in effects)
            line = f"(link: {json.dumps(choice.text)})[{sets}(goto: {json.dumps(target)})]"
        elif self.fmt == SUGARCUBE:
            sets = ", ".join(f"${v} to {e}" for v, e in effects)
            line = f"<<link {json.dumps(choice.text)} {json.dumps(target)}>><<set {sets}>><</link>>"
        else:
            self.warnings.append(f"slide '{slide_id}': {self.fmt} links cannot set variables; the effects of "
                                 f"'{choice.text}' are not exported")
            line = self.link(choice.text, target)
        if choice.condition:
            if choice.otherwise == st.DISABLE:
                self.warnings.append(f"slide '{slide_id}': '{choice.text}' is hidden, not greyed out, while closed "
                                     f"({self.fmt} has no disabled links)")
            line = self.branch("if", self.condition(choice.condition), line) + self.branch("end", None, "")
        return line

    def starting(self, values: dict[str, st.Value]) -> str:
        lines = []
        for name, value in values.items():
            literal = json.dumps(value)
            lines.append({HARLOWE: f"(set: ${name} to {literal})", SUGARCUBE: f"<<set ${name} to {literal}>>",
                          SNOWMAN: f"<% s.{name} = {literal}; %>", CHAPBOOK: f"{name}: {literal}"}[self.fmt])
        return "\n".join(lines)


def export_report(story: Story) -> tuple[str, list[str]]:
    """Twee 3 for Twine, and what could not be written in the story's format.

    A story imported from Twine keeps its passage names, tags, positions, IFID and story format; others are
    written for Harlowe.  State becomes the format's own: starting values in a startup passage (Harlowe), StoryInit
    (SugarCube) or the start passage (Chapbook, Snowman); conditions and conditional text as its if macros;
    effects on the links that carry them (Harlowe, SugarCube).  Our picture settings ride in each passage's
    metadata so that ours -> Twee -> ours keeps every slide, choice and image field.
    """
    warnings: list[str] = []
    details = story.twine
    fmt = detect_format(TwineStory("", [], format=str(details.get("format", "")))) if details.get("format") else HARLOWE
    fmt = HARLOWE if fmt == PLAIN else fmt
    writer = _Writer(fmt, story, warnings)
    names = {sid: str(slide.twine.get("name") or sid) for sid, slide in story.slides.items()}
    ifid = str(details.get("ifid") or uuid.uuid5(uuid.NAMESPACE_URL, f"lanternslide:{story.slug}")).upper()
    extra = {k: v for k, v in {"description": story.description, "author": story.author,
                               "style": _spec_dict(story.style), "characters": dict(story.characters)}.items() if v}
    data: dict[str, Any] = {"ifid": ifid, "format": str(details.get("format") or "Harlowe"),
                            "format-version": str(details.get("format-version") or ("3.3.9" if fmt == HARLOWE else "")),
                            "start": names[story.start]}
    data = {k: v for k, v in data.items() if v}
    for key in ("tag-colors", "zoom"):
        if details.get(key) not in (None, ""):
            data[key] = details[key]
    if extra:
        data[EXTRA_KEY] = extra
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
        ours: dict[str, Any] = {k: v for k, v in {"image": slide.image, "characters": list(slide.characters),
                                                  "style": _spec_dict(slide.style)}.items() if v}
        if names[slide.id] != slide.id:
            ours["id"] = slide.id
        metadata: dict[str, Any] = {"position": str(slide.twine.get("position") or f"{100 + 150 * x},{100 + 150 * level}"),
                    "size": str(slide.twine.get("size") or "100,100")}
        if ours:
            metadata[EXTRA_KEY] = ours
        tags = [str(t) for t in slide.twine.get("tags", []) if isinstance(t, str)] if isinstance(
            slide.twine.get("tags"), list) else []
        header = f":: {_escape_name(names[slide.id])}" + (f" [{' '.join(_escape_name(t) for t in tags)}]" if tags else "")
        body = writer.template(slide.text)
        if slide.id == story.start and start_values and fmt == CHAPBOOK:
            body = f"{start_values}\n--\n{body}"
        elif slide.id == story.start and start_values and fmt == SNOWMAN:
            body = f"{start_values}\n{body}"
        links = "\n".join(writer.choice(c, names.get(c.to, c.to), slide.id) for c in slide.choices)
        parts.append(f"{header} {json.dumps(metadata)}\n{body}\n" + (f"\n{links}\n" if links else ""))
    return "\n".join(parts), warnings


def export_twee(story: Story) -> str:
    """Twee 3 for Twine (see `export_report`)."""
    return export_report(story)[0]
