"""SugarCube passages as trees: its ``<<macros>>`` (containers such as <<if>>, <<link>>, <<switch>> and single
ones such as <<set>>, <<goto>>, <<include>>), naked variables and ``[[link][setter]]``s."""

from __future__ import annotations

import re
from typing import Any

from game.twine.expressions import sets
from game.twine.expressions import split_top
from game.twine.expressions import string_value
from game.twine.expressions import translate
from game.twine.nodes import Cond
from game.twine.nodes import Context
from game.twine.nodes import Link
from game.twine.nodes import Print
from game.twine.nodes import SetVar
from game.twine.nodes import collapse
from game.twine.nodes import effects_of
from game.twine.nodes import flatten
from game.twine.passages import Scanner
from game.twine.passages import goto
from game.twine.passages import include
from game.twine.passages import link_nodes
from game.twine.passages import printed
from game.twine.twee import parse_links

CONTAINERS = {"if", "link", "button", "nobr", "silently", "script", "switch", "for", "widget", "timed", "repeat",
              "type", "linkappend", "linkprepend", "linkreplace", "append", "prepend", "replace", "capture", "do",
              "createplaylist", "cycle", "listbox", "done", "actions", "choice"}
_ARGUMENT = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\S+"
Tokens = list[Any]  # text, links, prints and ("macro", name, args)


def parse(text: str, ctx: Context) -> list[Any]:
    """A SugarCube passage's text as a tree."""
    nodes, _ = _build(_tokens(text, ctx), 0, None, ctx)
    return nodes


def _tokens(text: str, ctx: Context) -> Tokens:
    """Text, links, prints and ('macro', name, args) tokens."""
    scan = Scanner(text)
    while scan.more():
        if not (scan.link(ctx) or _macro(scan) or _variable(scan, ctx)):
            i = scan.i
            template = re.match(r"\?[A-Za-z]\w*", text[i:])
            if template and (i == 0 or not text[i - 1].isalnum()):
                ctx.templates.append(template.group())
                scan.i += template.end()
            else:
                scan.keep()
    return scan.finish()


def _macro_end(text: str, start: int) -> int:
    """Where the ``>>`` closing the macro begun at ``start`` stands (quotes respected); -1 if nowhere."""
    end, quote = start + 2, ""
    while end < len(text) - 1:
        char = text[end]
        if quote:
            quote = "" if char == quote and text[end - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif text.startswith(">>", end):
            break
        end += 1
    return end if text.startswith(">>", end) else -1


def _macro(scan: Scanner) -> bool:
    """A ``<<name args>>`` (or ``<<= expression>>``) here, as a macro token."""
    text, i = scan.text, scan.i
    if not text.startswith("<<", i) or (end := _macro_end(text, i)) == -1:
        return False
    inner = text[i + 2:end].strip()
    if inner.startswith(("=", "-")):
        token: Any = ("macro", "print", inner[1:])
    else:
        match = re.match(r"(/?[A-Za-z][\w-]*)\s*(.*)", inner, re.DOTALL)
        token = ("macro", match.group(1).lower(), match.group(2)) if match else inner
    scan.emit([token], end + 2)
    return True


def _variable(scan: Scanner, ctx: Context) -> bool:
    """A naked variable (``$name``, ``$name.field``) here, printed."""
    text, i = scan.text, scan.i
    var = re.match(r"\$([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)", text[i:])
    if var and (i == 0 or text[i - 1] != "$"):
        expression = translate(var.group(), ctx)
        if expression is not None:
            scan.emit([Print(expression)], i + var.end())
            return True
    return False


def _is_macro(token: Any, *names: str) -> bool:
    return isinstance(token, tuple) and token[0] == "macro" and (not names or token[1] in names)


def _build(tokens: Tokens, i: int, closer: str | None, ctx: Context) -> tuple[list[Any], int]:
    """Nodes up to the macro ``<</closer>>`` (or the end); returns them and the index after the closer."""
    nodes: list[Any] = []
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not _is_macro(token):
            nodes.append(token)
            continue
        _, name, args = token
        if closer and name in (f"/{closer}", f"end{closer}"):
            return nodes, i
        if name in ("elseif", "else", "case", "default") and closer in ("if", "switch"):
            return nodes, i - 1
        if name in CONTAINERS and any(_is_macro(t, f"/{name}", f"end{name}") for t in tokens[i:]):
            if name == "if":
                found, i = _if(tokens, i, args, ctx)
            elif name == "switch":
                found, i = _switch(tokens, i, args, ctx)
            else:
                ctx.in_link += name in ("link", "button")
                try:
                    body, i = _build(tokens, i, name, ctx)
                finally:
                    ctx.in_link -= name in ("link", "button")
                found = _container(name, args, body, ctx)
            nodes += found
            continue
        nodes += _single(name, args, ctx)
    return nodes, i


def _if(tokens: Tokens, i: int, args: str, ctx: Context) -> tuple[list[Any], int]:
    """``<<if>> ... <<elseif>> ... <<else>> ... <</if>>`` from just after the <<if>>: a `Cond`, or every branch's
    text when a condition cannot be kept."""
    branches: list[tuple[str | None, list[Any]]] = []
    condition: str | None = args
    keep = True
    while True:
        body, i = _build(tokens, i, "if", ctx)
        expression = translate(condition, ctx) if condition is not None else None
        if condition is not None and expression is None:
            ctx.warn(f"the condition <<if {condition.strip()[:60]}>> cannot be kept; its text is always shown")
            keep = False
        branches.append((expression, body))
        following: Any = tokens[i] if i < len(tokens) else None  # an elseif/else is left for us to take
        if not _is_macro(following, "elseif", "else"):
            break
        else_if = following[1] == "elseif" or following[2].startswith("if ")
        condition = re.sub(r"^if\s+", "", following[2]) if else_if else None
        i += 1
    return ([Cond(branches)] if keep else [n for _, body in branches for n in body]), i


def _switch(tokens: Tokens, i: int, args: str, ctx: Context) -> tuple[list[Any], int]:
    """``<<switch x>><<case 1 2>> ... <<default>> ... <</switch>>`` from just after the <<switch>>: a `Cond`."""
    subject = translate(args, ctx)
    cases: list[tuple[str | None, list[Any]]] = []
    _, i = _build(tokens, i, "switch", ctx)  # text before the first case is ignored
    while i < len(tokens) and isinstance(tokens[i], tuple) and tokens[i][1] in ("case", "default"):
        case = tokens[i]
        body, i = _build(tokens, i + 1, "switch", ctx)
        values = [translate(v, ctx) for v in split_top(case[2], ", ")] if case[1] == "case" else []
        if subject is None or None in values:
            ctx.warn("a <<switch>> case cannot be kept; its text is always shown")
            cases.append(("true", body))
        else:
            cases.append((" or ".join(f"{subject} == {v}" for v in values) if values else None, body))
    if not cases:
        return [], i
    if cases[0][0] is None:
        cases.insert(0, ("false", []))
    return [Cond(cases)], i


def _link(name: str, args: str, body: list[Any], ctx: Context) -> list[Any]:
    """``<<link "label" "passage">>...<</link>>`` (or <<button>>, or with a ``[[link]]``): a choice whose effects are
    the sets in its body; its target, the passage named or the body's <<goto>>."""
    link = re.fullmatch(r"\s*\[\[(.*)\]\]\s*", args, re.DOTALL)
    if link:
        found = link_nodes(link.group(1), ctx)
        label, target = (found[0].label, found[0].target) if found and isinstance(found[0], Link) else (None, None)
    else:
        parts = re.findall(_ARGUMENT, args)
        label = string_value(parts[0]) if parts else None
        target = string_value(parts[1]) if len(parts) > 1 else None
        if label is None and parts:
            target = target or label
            ctx.warn(f"a link label written as code ({parts[0]}) is shown as its passage name")
            label = target
    flat = flatten(body)
    gotos = [n for n in flat if isinstance(n, Link)]
    target = target or (gotos[0].target if gotos else None)
    if target:
        return [Link(label or target, target, effects_of(flat))]
    ctx.warn(f"<<{name} {args.strip()[:40]}>> runs JavaScript, not a passage link; its words are kept")
    return [label] if label else []


def _container(name: str, args: str, body: list[Any], ctx: Context) -> list[Any]:
    if name in ("link", "button"):
        return _link(name, args, body, ctx)
    if name == "nobr":
        return collapse(body, r"\s*\n\s*")
    if name == "silently":
        return [n for n in flatten(body) if isinstance(n, SetVar)]
    if name == "script":
        ctx.warn("JavaScript (<<script>>) cannot be mapped; dropped")
        return []
    if name in ("timed", "type", "linkappend", "linkprepend", "linkreplace", "append", "prepend", "replace", "do"):
        return body
    ctx.warn(f"<<{name}>> cannot be mapped; dropped with what it contains")
    return []


def _single(name: str, args: str, ctx: Context) -> list[Any]:
    """A macro without a closing tag: <<set>>, <<print>>, <<goto>>, <<include>>, <<back>>; any other is dropped."""
    strings = [string_value(a) for a in re.findall(_ARGUMENT, args)]
    if name == "set":
        return sets(args, ctx, "<<set>>")
    if name in ("print", "=", "-"):
        return printed(args, ctx, f"<<print {args.strip()[:60]}>>")
    if name in ("goto", "include", "display"):
        link = re.fullmatch(r"\s*\[\[(.*)\]\]\s*", args, re.DOTALL)
        found = parse_links(f"[[{link.group(1)}]]") if link else []
        if link and not found:
            ctx.warn(f"<<{name} {args.strip()[:60]}>> leads to a web page, not a passage; dropped")
            return []
        target = found[0][1] if found else (strings[0] if strings else None)
        return goto(target, ctx) if name == "goto" else include(target, ctx)
    if name in ("back", "return"):
        ctx.warn(f"<<{name}>> is dropped: the play page has its own Back")
        return []
    ctx.warn(f"<<{name}>> cannot be mapped; dropped")
    return []
