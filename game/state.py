"""Story state: the variables a story declares, and the state a choice leads to.

A story declares variables with starting values (bool, number, short text).  Choices may have a condition
(``if:``) and effects (``set:``); slide text and picture descriptions may hold conditional parts and print
values.  Those are expressions and templates of `game.expressions` (Jinja2's sandbox, never ``eval``); this module
checks the declarations, keeps values within bounds (string values and numbers are bounded), and makes the moves:
whether a condition holds, the values after a choice's effects, a text with its conditional parts filled in.
Everything here is pure: values in, values out.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from game.expressions import RESERVED
from game.expressions import Sandbox
from game.expressions import StateError
from game.expressions import Value
from game.expressions import Values
from game.expressions import kind

log = logging.getLogger(__name__)

MAX_VARIABLES = 64
MAX_STRING = 60  # characters of a text variable (longer values are cut when set)
MAX_NUMBER = 10**9  # numbers are kept within +-MAX_NUMBER
MAX_STATE_CHARS = 1500  # the most session space one state may need (see worst_case_chars)
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
HIDE, DISABLE = "hide", "disable"


def value_error(value: Any) -> str | None:
    """Why ``value`` cannot be a variable's starting value (None when it can)."""
    if kind(value) is None:
        return f"must be true/false, a number or short text, got {value!r}"
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"text values are at most {MAX_STRING} characters, got {len(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
            math.isfinite(value) and abs(value) <= MAX_NUMBER):
        return f"numbers must be within +-{MAX_NUMBER}, got {value!r}"
    return None


def worst_case_chars(declared: Mapping[str, Value]) -> int:
    """The most JSON characters the variables can take in a player's session (text at its longest)."""
    sizes = {"true/false": 5, "number": 22, "text": MAX_STRING + 2}
    return sum(len(name) + 4 + sizes.get(kind(value) or "", 0) for name, value in declared.items())


def name_error(name: Any) -> str | None:
    """Why ``name`` cannot name a variable (None when it can)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return "a variable name is a letter then letters, digits or _ (at most 32), like lantern or coins_left"
    if name in RESERVED:
        return f"'{name}' is a word of the expression language; pick another name"
    return None


def bounded(value: Any, like: Value) -> Value:
    """``value`` made a legal value of the same kind as ``like``: numbers clamped, text cut, others converted."""
    if isinstance(like, bool):
        return bool(value)
    if isinstance(like, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                return like
        if not math.isfinite(value):
            return like
        value = max(-MAX_NUMBER, min(MAX_NUMBER, value))
        if isinstance(value, float) and value.is_integer() and isinstance(like, int):
            return int(value)
        return value
    return str(value)[:MAX_STRING]



# -- a story's state at play --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """``set: {var: expression}`` of a choice: the variable and the Jinja expression giving its new value."""

    var: str
    expression: str


def literal(value: Value) -> str:
    """An expression that yields exactly ``value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def plain(value: Value) -> Value:
    """A value as the plain Python type of its kind (YAML loaders hand out subclasses that keep formatting)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def normalize(declared: Mapping[str, Value], stored: Mapping[str, Any] | None) -> dict[str, Value]:
    """Every declared variable's value: the stored one where it is legal (same kind), else the starting one.

    Stored values come from a player's session and a story may have been edited since, so unknown names are
    dropped and wrong kinds reset.
    """
    values = dict(declared)
    for name, value in (stored or {}).items():
        if name in declared and kind(value) == kind(declared[name]) and value_error(value) is None:
            values[name] = value
    return values


def difference(declared: Mapping[str, Value], values: Mapping[str, Value]) -> dict[str, Value]:
    """Only the variables whose value differs from the starting one (what a session needs to keep)."""
    return {k: v for k, v in values.items() if k in declared and (v != declared[k] or type(v) is not type(declared[k]))}


def holds(sandbox: Sandbox, condition: str | None, values: Values) -> bool:
    """Whether a choice's condition holds; a condition that fails to run counts as not holding (and is logged)."""
    if not condition:
        return True
    try:
        return bool(sandbox.evaluate(condition, values))
    except StateError as exc:
        log.warning("condition %r failed: %s", condition, exc.message)
        return False


def apply(
    sandbox: Sandbox, effects: Iterable[Effect], declared: Mapping[str, Value], values: Values
) -> dict[str, Value]:
    """The variables after a choice's effects, applied in order (each sees the ones before it).

    A value is kept within bounds (numbers clamped, text cut to MAX_STRING); an effect that fails to run leaves
    its variable unchanged (and is logged).
    """
    result = dict(values)
    for effect in effects:
        if effect.var not in declared:
            continue
        try:
            result[effect.var] = bounded(sandbox.evaluate(effect.expression, result), declared[effect.var])
        except StateError as exc:
            log.warning("effect %s = %r failed: %s", effect.var, effect.expression, exc.message)
    return result


def render(sandbox: Sandbox, source: str, values: Values) -> str:
    """A slide's text or picture description with its conditional parts and printed values filled in.

    A template that fails while running (a division by zero, say) shows its plain words, never an error trace.
    """
    try:
        return sandbox.render(source, values)
    except StateError as exc:
        log.warning("template failed: %s", exc.message)
        return re.sub(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", "", source, flags=re.DOTALL)


def may_all_fail(sandbox: Sandbox, conditions: list[str], declared: Mapping[str, Value]) -> str | None:
    """Whether every one of ``conditions`` can be false at once; returns an example (or 'may') when so, else None.

    With only true/false variables (at most 12 of them) every combination is tried; otherwise no proof is
    attempted and the answer is 'may'.
    """
    try:
        names = sorted({n for c in conditions for n, _ in sandbox.names(c, True)})
    except StateError:
        return None
    if any(not isinstance(declared.get(n), bool) for n in names) or len(names) > 12:
        return "may"
    for combo in itertools.product((False, True), repeat=len(names)):
        values = {**declared, **dict(zip(names, combo, strict=True))}
        if not any(holds(sandbox, c, values) for c in conditions):
            return (
                ", ".join(f"{n} is {'true' if v else 'false'}" for n, v in zip(names, combo, strict=True)) or "always"
            )
    return None
