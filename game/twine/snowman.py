"""Snowman (and plain Twine) passages as trees: ``<% code %>`` and ``<%= prints %>``, Markdown and HTML links."""

from __future__ import annotations

import html
import re
from typing import Any

from game.twine.expressions import sets
from game.twine.expressions import translate
from game.twine.nodes import Cond
from game.twine.nodes import Context
from game.twine.nodes import Link
from game.twine.passages import around
from game.twine.passages import goto
from game.twine.passages import link_nodes
from game.twine.passages import printed

_STATEMENT = re.compile(r"\}?\s*else\s+if\s*\((?:[^()]|\([^()]*\))*\)\s*\{|\}?\s*else\s*\{|"
                        r"if\s*\((?:[^()]|\([^()]*\))*\)\s*\{|\}|[^;{}]+")
_LINK = re.compile(r"\[\[(.*?)\]\]|\[([^\[\]\n]+)\]\(([^()\n]+)\)|"
                   r"<a\b[^>]*data-passage=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>", re.DOTALL)
Stack = list[tuple[list[Any], Cond | None]]  # the node lists being filled, innermost last, with their Cond


def parse(text: str, ctx: Context) -> list[Any]:
    """A Snowman passage's text as a tree."""
    root: list[Any] = []
    stack: Stack = [(root, None)]
    last = 0
    for match in re.finditer(r"<%([=-]?)(.*?)%>", text, re.DOTALL):
        stack[-1][0].extend(_inline(text[last:match.start()], ctx))
        last = match.end()
        code = match.group(2).strip()
        if match.group(1):
            stack[-1][0].extend(printed(code.rstrip(";"), ctx, f"<%{match.group(1)} {code[:60]} %>"))
            continue
        for statement in _STATEMENT.findall(code):
            _statement(statement.strip(), stack, ctx)
    stack[-1][0].extend(_inline(text[last:], ctx))
    return root


def _branch(stack: Stack, condition: str | None) -> None:
    """Close the branch being filled and open the next one (``else if``, ``else``) of the same `Cond`."""
    cond = stack.pop()[1]
    assert cond is not None
    cond.branches.append((condition, []))
    stack.append((cond.branches[-1][1], cond))


def _statement(statement: str, stack: Stack, ctx: Context) -> None:
    """One JavaScript statement: an if/else opening or closing a branch, a story.show() or state assignments."""
    condition = re.fullmatch(r"(\}?)\s*(else\s+)?if\s*\((.*)\)\s*\{", statement, re.DOTALL)
    if condition:
        expression = translate(condition.group(3), ctx)
        if expression is None:
            ctx.warn(f"the condition if ({condition.group(3)[:60]}) cannot be kept; its text is always shown")
            expression = "true"
        if condition.group(2) and stack[-1][1] is not None:
            _branch(stack, expression)
        else:
            cond = Cond([(expression, [])])
            stack[-1][0].append(cond)
            stack.append((cond.branches[0][1], cond))
    elif re.fullmatch(r"\}?\s*else\s*\{", statement) and stack[-1][1] is not None:
        _branch(stack, None)
    elif statement == "}":
        if len(stack) > 1:
            stack.pop()
    elif statement:
        show = re.fullmatch(r"(?:window\.)?story\.show\(\s*(['\"])(.*?)\1\s*\)", statement)
        if show:
            stack[-1][0].extend(goto(show.group(2), ctx))
            return
        found = None
        if re.match(r"(?:window\.story\.state\.|story\.state\.|s\.)", statement):
            found = sets(statement, ctx, "code")
        if not found:
            ctx.warn(f"JavaScript '{statement[:60]}' cannot be mapped; dropped")
        stack[-1][0].extend(found or [])


def _inline(text: str, ctx: Context) -> list[Any]:
    """Text with [[links]], Markdown links to passages and <a data-passage> links."""

    def found(match: re.Match[str]) -> list[Any]:
        if match.group(1) is not None:
            return link_nodes(match.group(1), ctx)
        if match.group(2) is not None:
            target = html.unescape(match.group(3).strip())
            return [Link(match.group(2), target) if target in ctx.passages else match.group(2)]
        return [Link(re.sub(r"<[^>]+>", "", match.group(5)), html.unescape(match.group(4)))]

    return around(_LINK, text, found)
