"""From a passage's tree to a slide: our text (Jinja conditionals and prints), its choices with the conditions
they are shown under, and the sets that run on arrival."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from game.twine.nodes import Cond
from game.twine.nodes import Link
from game.twine.nodes import Print
from game.twine.nodes import SetVar


@dataclass
class Converted:
    text: str
    choices: list[tuple[Link, str | None]]  # link and the condition it is shown under
    entry: list[SetVar]  # the passage's own sets, run on arrival (conditions folded into the expressions)


class _Lowering:
    """One walk over a tree, gathering text parts (links as \\x01n\\x02 placeholders), links and arrival sets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.links: list[tuple[Link, str | None]] = []
        self.entry: list[SetVar] = []

    def walk(self, items: list[Any], conditions: list[str]) -> None:
        for node in items:
            if isinstance(node, str):
                self.parts.append(node)
            elif isinstance(node, Print):
                self.parts.append("{{ " + node.expr + " }}")
            elif isinstance(node, SetVar):
                expression = node.expr
                if conditions:
                    expression = f"({expression}) if ({' and '.join(conditions)}) else {node.var}"
                self.entry.append(SetVar(node.var, expression))
            elif isinstance(node, Link):
                self.parts.append(f"\x01{len(self.links)}\x02")
                self.links.append((node, " and ".join(f"({c})" if " " in c and len(conditions) > 1 else c
                                                      for c in conditions) or None))
            elif isinstance(node, Cond):
                self.cond(node, conditions)
            elif isinstance(node, tuple):  # an unmatched (else:) marker
                self.walk(node[3], conditions)

    def cond(self, node: Cond, conditions: list[str]) -> None:
        before: list[str] = []
        for n, (condition, body) in enumerate(node.branches):
            tag = "if" if n == 0 else ("elif" if condition else "else")
            self.parts.append("{% " + tag + (f" {condition}" if condition else "") + " %}")
            self.walk(body, conditions + [f"not ({c})" for c in before] + ([condition] if condition else []))
            if condition:
                before.append(condition)
        self.parts.append("{% endif %}")


def _line(line: str, links: list[tuple[Link, str | None]]) -> str:
    """A line of text with its link placeholders as their labels; links standing alone or after the end of a
    sentence ("Ready? [[Go]]") are choices, not words of it, and leave the line."""
    bare = re.sub(r"\x01\d+\x02|\{%.*?%\}", "", line)
    if "\x01" in line and not bare.strip():
        line = re.sub(r"\x01\d+\x02", "", line)
    while True:
        tail = re.search(r"\s*\x01\d+\x02\s*$", line)
        before = re.sub(r"\{%.*?%\}", "", line[: tail.start()]).rstrip() if tail else ""
        if not tail or not before or before[-1] not in ".!?:…)\"”'*":
            break
        line = line[: tail.start()]
    return re.sub(r"\x01(\d+)\x02", lambda m: links[int(m.group(1))][0].label, line)


def lower(nodes: list[Any]) -> Converted:
    """Our slide text (Jinja conditionals and prints), the links with their conditions, and the arrival effects."""
    lowering = _Lowering()
    lowering.walk(nodes, [])
    text = "\n".join(_line(line, lowering.links) for line in "".join(lowering.parts).split("\n"))
    for _ in range(5):
        text = re.sub(r"\{% if [^%]*%\}\s*\{% endif %\}", "", text)
        text = re.sub(r"\{% else %\}\s*\{% endif %\}", "{% endif %}", text)
    text = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n[ \t]+", "\n", text))
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return Converted(text, lowering.links, lowering.entry)
