"""Chapbook passages as trees: the vars section, ``[modifiers]`` and ``{inserts}``."""

from __future__ import annotations

import re
from typing import Any

from game.twine.expressions import sets
from game.twine.expressions import split_top
from game.twine.expressions import string_value
from game.twine.expressions import translate
from game.twine.nodes import Context
from game.twine.nodes import Link
from game.twine.nodes import Print
from game.twine.nodes import SetVar
from game.twine.nodes import group_ifs
from game.twine.nodes import our_name
from game.twine.passages import around
from game.twine.passages import goto
from game.twine.passages import include
from game.twine.passages import link_nodes

INSERT = re.compile(r"\{([a-z][\w ]*?)(?::\s*([^{}\n]*))?\}")
MODIFIER = re.compile(r"(?im)^\[(if|unless|else|continue|continued|cont'?d?|cont|after|align|append|note|"
                      r"notes|todo|fixme|javascript|css|ifalways|ifnever|transition)\b([^\]\n]*)\]\s*$")
_LINK_OR_INSERT = re.compile(r"\[\[(.*?)\]\]|" + INSERT.pattern, re.DOTALL)
_VAR_LINE = re.compile(r"\s*([A-Za-z_$][\w.$]*)\s*(?:\((.*)\))?\s*:\s*(.+)")
_UNMAPPED = ("cycling link", "dropdown menu", "text input", "select", "embed image", "embed youtube video",
             "embed flickr image", "embed unsplash image", "ambient sound", "sound effect", "party", "restart link",
             "section break")


def parse(text: str, ctx: Context) -> list[Any]:
    """A Chapbook passage's text as a tree."""
    nodes, lines = _vars_section(text.split("\n"), ctx)
    body = "\n".join(lines)
    sections: list[tuple[str, str, str]] = []  # (modifier, argument, text)
    last = 0
    modifier, argument = "", ""
    for match in MODIFIER.finditer(body):
        sections.append((modifier, argument, body[last:match.start()]))
        modifier, argument, last = match.group(1).lower(), match.group(2).strip(), match.end()
    sections.append((modifier, argument, body[last:]))
    for modifier, argument, chunk in sections:
        nodes += _section(modifier, argument, chunk, ctx)
    return group_ifs(nodes)


def _vars_section(lines: list[str], ctx: Context) -> tuple[list[Any], list[str]]:
    """The sets of the vars section (``name (condition): value`` lines above a ``--`` line), and the lines after it;
    no sets and every line when there is none."""
    stripped = [line.strip() for line in lines]
    if "--" not in stripped:
        return [], lines
    cut = stripped.index("--")
    head = lines[:cut]
    if not (head and all(_VAR_LINE.fullmatch(line) for line in head if line.strip())):
        return [], lines
    nodes: list[Any] = []
    for line in head:
        match = _VAR_LINE.fullmatch(line)
        if not match:
            continue
        found = sets(f"{match.group(1)} = {match.group(3)}", ctx, "vars section line")
        if match.group(2):
            condition = translate(match.group(2), ctx)
            if condition is None:
                ctx.warn(f"the condition ({match.group(2)[:60]}) of '{match.group(1)}' cannot be kept; "
                         "it is always set")
            else:
                found = [SetVar(s.var, f"({s.expr}) if ({condition}) else {s.var}") for s in found]
        nodes += found
    return nodes, lines[cut + 1:]


def _section(modifier: str, argument: str, chunk: str, ctx: Context) -> list[Any]:
    """The text after a modifier (up to the next one) as nodes: an [if]/[else] marker, the text, or nothing."""
    inner = _inline(chunk, ctx)
    if modifier in ("if", "unless"):
        condition = translate(argument, ctx)
        if condition is None:
            ctx.warn(f"the condition [{modifier} {argument[:60]}] cannot be kept; its text is always shown")
            return inner
        return [("if?", "if", f"not ({condition})" if modifier == "unless" else condition, inner)]
    if modifier == "else":
        return [("if?", "else", None, inner)]
    if modifier in ("note", "notes", "todo", "fixme", "ifnever"):
        return []  # author's notes, never shown
    if modifier in ("javascript", "css"):
        if chunk.strip():
            ctx.warn(f"[{modifier}] code cannot be mapped; dropped")
        return []
    if modifier in ("after", "transition", "append"):
        ctx.warn(f"[{modifier}] timing is dropped; its text is shown at once")
    return inner


def _inline(text: str, ctx: Context) -> list[Any]:
    """Text with its ``[[links]]`` and ``{inserts}`` as nodes."""
    return around(_LINK_OR_INSERT, text,
                  lambda m: link_nodes(m.group(1), ctx) if m.group(1) is not None else _insert(m, ctx))


def _insert(match: re.Match[str], ctx: Context) -> list[Any]:
    """One ``{insert: args}`` as nodes: links, embedded passages and printed variables; others dropped or kept."""
    name, args = match.group(2).strip().lower(), match.group(3) or ""
    params = {k.strip().lower(): v for k, _, v in (p.partition(":") for p in split_top(args))}
    first = string_value(split_top(args)[0]) if split_top(args) else None
    if name == "link to":
        target = first
        label = string_value(params.get("label", "")) or target
        return [Link(label or target, target)] if target else goto(None, ctx)
    if name in ("back link", "restart link"):
        ctx.warn(f"{{{name}}} is dropped: the play page has its own Back and Play again")
        return []
    if name in ("embed passage", "embed passage named"):
        return include(first, ctx)
    if name == "reveal link":
        passage = string_value(params.get("passage", ""))
        ctx.warn(f"the text revealed by {{reveal link: {args[:40]}}} is shown at once")
        revealed = include(passage, ctx) if passage else [string_value(params.get("text", "")) or ""]
        return ([first] if first else []) + revealed
    if match.group(2).strip().split(".")[0] in ctx.known and not args:
        return [Print(our_name(match.group(2).strip()))]
    if name in _UNMAPPED:
        ctx.warn(f"{{{name}}} cannot be mapped; dropped")
        return []
    return [match.group()]  # not an insert Chapbook knows: it shows the text as written
