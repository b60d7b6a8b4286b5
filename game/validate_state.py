"""The checks of a story's state: its variables, and the conditions, effects and templates that use them.

`game.validate.Validator` runs them as it walks a story: each takes the validator (where problems are noted, each
naming the file, the line, the slide and the field, and where the story's variables, their kinds and its
`game.expressions.Sandbox` are kept).  Expressions and templates are checked without running them: syntax, unknown
variables, and the type mistakes visible statically; a slide whose every choice can be closed at once is a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from game import expressions as ex
from game import state as st
from game.story import Choice

if TYPE_CHECKING:
    from game.validate import Validator


def variables(checker: Validator, doc: dict) -> dict[str, ex.Value]:
    """The story's ``state:``: each variable's name and starting value, checked."""
    node = doc.get("state")
    if node is None:
        return {}
    if not isinstance(node, dict):
        checker.problem("must map each variable's name to its starting value (true/false, a number or short text)",
                        doc, "state", field="state")
        return {}
    if len(node) > st.MAX_VARIABLES:
        checker.problem(f"declares {len(node)} variables; at most {st.MAX_VARIABLES}", doc, "state", field="state")
    result: dict[str, ex.Value] = {}
    for name, value in node.items():
        message = st.name_error(name) or st.value_error(value)
        if message:
            checker.problem(message, node, name, field=f"state.{name}")
        else:
            result[str(name)] = st.plain(value.strip() if isinstance(value, str) else value)
    size = st.worst_case_chars(result)
    if size > st.MAX_STATE_CHARS:
        checker.problem(f"these variables can take {size} characters of a player's session; at most "
                        f"{st.MAX_STATE_CHARS} fit: use fewer or shorter-named variables, or fewer text ones", doc,
                        "state", field="state")
    return result


def checked(checker: Validator, source: str, node: Any, key: str, sid: str | None, field: str,
            expression: bool) -> str | None:
    """Report what is wrong with an expression or template; return its kind (expressions only)."""
    base = checker.base_line(node, key)

    def report(message: str, offset: int | None, severity: str = "error") -> None:
        line = base + (offset or 1) - 1 if base else None
        checker.problem(message, slide=sid, field=field, severity=severity, line=line)

    try:
        names = checker.sandbox.names(source, expression)
        result, mistakes = checker.sandbox.kind_of(source, checker.types, expression)
    except ex.StateError as exc:
        report(exc.message, exc.line)
        return None
    for name, offset in names:
        if name not in checker.variables:
            hint = checker.suggest(name, checker.variables) or (" (declare it under the story's state:)" if not
                                                                checker.variables else "")
            report(f"unknown variable '{name}'{hint}", offset)
    for message, where in mistakes:
        report(message, where)
    return result


def expression(checker: Validator, source: str, node: Any, key: str, sid: str | None, field: str) -> str | None:
    """Check an expression (a choice's ``if``, an effect); return its kind."""
    return checked(checker, source, node, key, sid, field, True)


def template(checker: Validator, source: str, node: Any, key: str, sid: str | None, field: str | None = None) -> None:
    """Check a text that may hold conditional parts (plain text needs no check)."""
    if checker.sandbox.is_template(source):
        checked(checker, source, node, key, sid, field or key, False)


def effects(checker: Validator, item: dict, sid: str, field_: str) -> tuple[st.Effect, ...]:
    """A choice's ``set:``: each declared variable and the value or expression giving its new value, of its kind."""
    node = item.get("set")
    if node is None:
        return ()
    if not isinstance(node, dict):
        checker.problem("must map variables to new values, like {lantern: true, coins: coins - 1}", item, "set",
                        slide=sid, field=field_ + "set")
        return ()
    result = []
    for name, value in node.items():
        where = f"{field_}set.{name}"
        if name not in checker.variables:
            checker.problem(f"sets '{name}', which is not declared under the story's state:"
                            f"{checker.suggest(name, checker.variables)}",
                            node, name, slide=sid, field=where)
            continue
        if isinstance(value, str):
            source, got = value, expression(checker, value, node, name, sid, where)
        elif ex.kind(value) is not None and st.value_error(value) is None:
            source, got = st.literal(value), ex.kind(value)
        else:
            checker.problem(f"must be a value or an expression, got {value!r}", node, name, slide=sid, field=where)
            continue
        want = checker.types[str(name)]
        if got and got != want:
            checker.problem(f"'{name}' holds {want}, but this sets it to {got}"
                            + (" (write text in quotes inside the YAML string: '\"Ann\"')" if want == "text" else ""),
                            node, name, slide=sid, field=where)
        result.append(st.Effect(str(name), source))
    return tuple(result)


def stuck(checker: Validator, choices: tuple[Choice, ...], body: dict, sid: str) -> None:
    """A warning when every choice of a slide has a condition and they can all be false at once."""
    if not choices or any(c.condition is None for c in choices):
        return
    example = st.may_all_fail(checker.sandbox, [c.condition or "" for c in choices], checker.variables)
    if example == "may":
        checker.problem("every choice has a condition: if none holds the player is stuck here; add a choice without "
                        "'if' or make sure one always holds", body, "choices", slide=sid, field="choices",
                        severity="warning")
    elif example:
        checker.problem(f"every choice is closed when {example}: the player would be stuck here; add a choice "
                        "without 'if'", body, "choices", slide=sid, field="choices", severity="warning")
