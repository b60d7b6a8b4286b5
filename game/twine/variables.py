"""A Twine story's variables as our state: the names its passages set, each one's kind and starting value, and
effects in order merged into one ``set:`` mapping."""

from __future__ import annotations

import re

from game import expressions as ex
from game import state as st
from game.twine.nodes import CHAPBOOK
from game.twine.nodes import HARLOWE
from game.twine.nodes import SUGARCUBE
from game.twine.nodes import Context
from game.twine.nodes import SetVar
from game.twine.twee import Passage


def variables_in(passages: list[Passage], fmt: str) -> tuple[set[str], set[str]]:
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


def _substitute(expression: str, var: str, value: str) -> str:
    """``expression`` with the variable ``var`` replaced by ``(value)``, outside string literals."""
    pieces = re.split(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", expression)
    return "".join(p if i % 2 else re.sub(rf"(?<![\w.]){re.escape(var)}(?!\w)", f"({value})", p)
                   for i, p in enumerate(pieces))


def effects_mapping(effects: list[tuple[str, str]]) -> dict[str, str]:
    """Effects in order as one ``set:`` mapping: a variable set twice gets one expression doing both."""
    result: dict[str, str] = {}
    for var, expression in effects:
        result[var] = _substitute(expression, var, result[var]) if var in result else expression
    return result


def declarations(ctx: Context, sets: list[SetVar], reads: set[str], start_sets: list[SetVar]) -> dict[str, ex.Value]:
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
    defaults: dict[str, ex.Value] = {"true/false": False, "number": 0, "text": ""}
    declared = {name: defaults[kind] for name, kind in types.items()}
    values = st.apply(ctx.sandbox, [st.Effect(s.var, s.expr) for s in start_sets], declared, declared)
    return {name: values[name] for name in types}


def _safe(ctx: Context, expression: str) -> bool:
    try:
        ctx.sandbox.parse(expression, True)
        return True
    except ex.StateError:
        return False


def reads(ctx: Context, expressions: list[str], templates: list[str]) -> set[str]:
    """Every variable name the expressions and templates read."""
    names: set[str] = set()
    for source, is_expression in [(e, True) for e in expressions] + [(t, False) for t in templates]:
        try:
            names |= {n for n, _ in ctx.sandbox.names(source, is_expression)}
        except ex.StateError:
            pass
    return names
