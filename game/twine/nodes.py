"""What every story format's passages become: a tree of text, links, conditions, sets and prints; the story
formats' names; and the context one story's conversion carries (its passages, variables and warnings)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from game import expressions as ex
from game.twine.twee import Passage
from game.twine.twee import TwineStory

HARLOWE, SUGARCUBE, CHAPBOOK, SNOWMAN, PLAIN = "harlowe", "sugarcube", "chapbook", "snowman", "plain"
_STATE_PREFIX = re.compile(r"^(?:window\.story\.state\.|story\.state\.|State\.variables\.|s\.|variables\(\)\.)")


def detect_format(twine: TwineStory) -> str:
    """The story format whose syntax the passages use: StoryData's ``format``, else what the text looks like."""
    name = (twine.format or "").lower()
    for fmt in (HARLOWE, SUGARCUBE, CHAPBOOK, SNOWMAN):
        if fmt in name:
            return fmt
    text = "\n".join(p.text for p in twine.passages)
    harlowe = r"\((?:set|if|link|goto|print|display|else|unless|put)\s*:"
    chapbook = r"(?m)^\[(?:if|unless|else|continue|JavaScript)\b[^\]\n]*\]\s*$|\{(?:link to|back link|embed passage)\b"
    scores = {SUGARCUBE: len(re.findall(r"<<\w", text)), HARLOWE: len(re.findall(harlowe, text, re.IGNORECASE)),
              SNOWMAN: len(re.findall(r"<%", text)), CHAPBOOK: len(re.findall(chapbook, text))}
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


# Besides these, a tree holds plain text (str) and ("if?", "if" | "elif" | "else", condition, nodes) markers that
# `group_ifs` joins into `Cond` nodes.


@dataclass
class Context:
    """What converting one story needs: its format, passages, variables and the warnings so far."""

    fmt: str
    passages: dict[str, Passage]
    known: set[str]  # Twine variable names (without $) set somewhere in the story
    temps: set[str]  # temporary (_x) names set somewhere
    warnings: list[str]
    parse: Callable[[str, Context], list[Any]]  # the story format's reader: a passage's text as a tree
    sandbox: ex.Sandbox = field(default_factory=ex.Sandbox)
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
        macros = self.fmt in (HARLOWE, SUGARCUBE)
        if name.startswith("$"):
            name = name[1:]
        elif name.startswith("_") and macros:
            if name[1:].split(".")[0] not in self.temps:
                return None
            name = name[1:]
        elif macros or (name == token and self.fmt == SNOWMAN) or name.split(".")[0] not in self.known:
            return None
        return our_name(name)


def our_name(name: str) -> str:
    """A Twine variable name ($a.b's c, _x) as one of ours: letters, digits and _, starting with a letter."""
    name = re.sub(r"\W+", "_", name.replace(".", "_")).strip("_") or "v"
    if not name[0].isalpha() or not name.isascii():
        name = "v_" + name
    if name in ex.RESERVED:
        name = "v_" + name
    return name[:32]


def flatten(nodes: list[Any]) -> list[Any]:
    """Every node of a tree outside conditions: the bodies of its conditions and markers, inlined."""
    flat = []
    for node in nodes:
        if isinstance(node, Cond):
            for _, body in node.branches:
                flat += flatten(body)
        elif isinstance(node, tuple):
            flat += flatten(node[3])
        else:
            flat.append(node)
    return flat


def effects_of(nodes: list[Any]) -> list[tuple[str, str]]:
    """The (variable, expression) of every set among ``nodes`` (not looking into conditions)."""
    return [(n.var, n.expr) for n in nodes if isinstance(n, SetVar)]


def group_ifs(nodes: list[Any]) -> list[Any]:
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


def collapse(nodes: list[Any], pattern: str = r"\s+") -> list[Any]:
    """The text nodes among ``nodes`` with each run of white space matching ``pattern`` as one space."""
    return [re.sub(pattern, " ", n) if isinstance(n, str) else n for n in nodes]
