"""The expression language of stories: Jinja2's sandbox, narrowed to what a story needs, never ``eval``.

Choice conditions (``if:``), effects (``set:``) and the conditional parts of slide text and picture descriptions are
Jinja2 syntax run in an `ImmutableSandboxedEnvironment`, narrowed further here: ``{% if %}/{% elif %}/{% else %}``,
``{{ value }}``, comparisons, ``and/or/not``, arithmetic (no ``**``), ``~`` joins and a few filters.  Loops, calls,
attribute and item access, macros, includes and blocks are refused when the story is checked, so every template
runs in time linear in its size; source and output are bounded.  `Sandbox` checks, types (statically), compiles
and runs them; `game.state` holds the variables they read and the moves that use them.  Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import TemplateSyntaxError
from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

Value = bool | int | float | str
Values = Mapping[str, Value]

MAX_SOURCE = 20_000  # characters of one template (a slide's text) or expression
MAX_OUTPUT = 40_000  # characters one template may produce
MAX_DEPTH = 40  # nesting of one template's syntax tree
RESERVED = {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "elif",
            "endif", "for", "loop", "self", "range"}
KINDS = {bool: "true/false", int: "number", float: "number", str: "text"}

# What a story's templates may contain; everything else is refused by `check`.
_STATEMENTS = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If)
_EXPRESSIONS = (nodes.Name, nodes.Const, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub,
                nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Compare, nodes.Operand, nodes.CondExpr,
                nodes.Concat, nodes.Filter, nodes.Test, nodes.List, nodes.Tuple)
FILTERS = {"upper": "text", "lower": "text", "title": "text", "capitalize": "text", "trim": "text",
           "string": "text", "round": "number", "int": "number", "abs": "number", "length": "number"}
TESTS = {"even", "odd", "divisibleby", "number", "string", "boolean"}


class StateError(ValueError):
    """An expression or template that cannot be used; ``line`` is its line within the source (1-based)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def kind(value: Any) -> str | None:
    """'true/false', 'number' or 'text' for a state value (YAML's int and str subclasses included); None for others."""
    for python_type, name in KINDS.items():
        if isinstance(value, python_type):
            return name
    return None


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with ``*`` and ``+`` checked so that no text grows past MAX_OUTPUT."""

    intercepted_binops = frozenset({"*", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and (isinstance(left, str) or isinstance(right, str)):
            raise StateError("text cannot be multiplied")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list)) and len(result) > MAX_OUTPUT:
            raise StateError("the result is too long")
        return result


class Sandbox:
    """Checks, compiles (once per source) and runs a story's expressions and templates."""

    def __init__(self) -> None:
        self.env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.env.filters = {name: self.env.filters[name] for name in FILTERS}
        self.env.tests = {name: self.env.tests[name] for name in TESTS}
        self._compiled: dict[tuple[str, bool], Any] = {}

    # -- checking ---------------------------------------------------------------------------------------------

    def parse(self, source: str, expression: bool = False) -> nodes.Node:
        """The checked syntax tree of a template (or, with ``expression``, of one expression)."""
        if not isinstance(source, str):
            raise StateError(f"must be text, got {source!r}")
        if len(source) > MAX_SOURCE:
            raise StateError(f"is {len(source)} characters; at most {MAX_SOURCE}")
        try:
            if expression:
                p = Parser(self.env, source, state="variable")  # as Environment.compile_expression parses
                tree: nodes.Node = p.parse_expression()
                if not p.stream.eos:
                    raise TemplateSyntaxError(f"unexpected '{p.stream.current.value}' after the expression",
                                              p.stream.current.lineno, None, None)
            else:
                tree = self.env.parse(source)
        except TemplateSyntaxError as exc:
            raise StateError(f"does not compile: {exc.message}", exc.lineno) from None
        self._walk(tree, 0, expression)
        return tree

    def _walk(self, node: nodes.Node, depth: int, expression: bool) -> None:
        if depth > MAX_DEPTH:
            raise StateError(f"nests deeper than {MAX_DEPTH} levels", getattr(node, "lineno", None))
        allowed = _EXPRESSIONS if expression else _STATEMENTS + _EXPRESSIONS
        if not isinstance(node, allowed):
            what = type(node).__name__.lower()
            hint = {"for": "loops", "call": "calling functions", "getattr": "reading .attributes",
                    "getitem": "reading [items]", "pow": "** (powers)", "assign": "{% set %} (use a choice's set:)",
                    "macro": "macros", "include": "includes"}.get(what, f"'{what}'")
            raise StateError(f"uses {hint}, which stories cannot; only if/elif/else, {{{{ value }}}}, comparisons, "
                             "and/or/not, arithmetic and ~ are allowed", getattr(node, "lineno", None))
        if isinstance(node, nodes.Filter) and (node.name not in FILTERS or node.kwargs or node.dyn_args
                                               or node.dyn_kwargs or len(node.args) > 1):
            raise StateError(f"the filter '{node.name}' is not available; use one of {', '.join(sorted(FILTERS))}",
                             node.lineno)
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise StateError(f"the test '{node.name}' is not available; use one of {', '.join(sorted(TESTS))}",
                             node.lineno)
        if isinstance(node, nodes.Name) and node.ctx != "load":
            raise StateError("cannot assign here (use a choice's set:)", node.lineno)
        for child in node.iter_child_nodes():
            self._walk(child, depth + 1, expression)

    def names(self, source: str, expression: bool = False) -> list[tuple[str, int]]:
        """The variables a source reads, with the line of each (raises `StateError` when it does not compile)."""
        tree = self.parse(source, expression)
        found = [tree] if isinstance(tree, nodes.Name) else []
        return [(n.name, n.lineno) for n in found + list(tree.find_all(nodes.Name))]

    def is_template(self, source: str | None) -> bool:
        """Whether a text has template syntax at all (plain text needs no rendering)."""
        return bool(source) and any(mark in source for mark in ("{{", "{%", "{#"))  # type: ignore[operator]

    # -- static types -----------------------------------------------------------------------------------------

    def kind_of(
        self, source: str, types: Mapping[str, str], expression: bool = True
    ) -> tuple[str | None, list[tuple[str, int | None]]]:
        """The kind an expression yields (None when unknown) and the type mistakes visible without running it."""
        tree = self.parse(source, expression)
        problems: list[tuple[str, int | None]] = []
        if expression:
            return _infer(tree, types, problems), problems
        for node in tree.find_all((nodes.Output, nodes.If)):
            for child in (node.nodes if isinstance(node, nodes.Output) else [node.test]):  # type: ignore[attr-defined]
                _infer(child, types, problems)
        return None, problems

    # -- running ----------------------------------------------------------------------------------------------

    def _compile(self, source: str, expression: bool) -> Any:
        key = (source, expression)
        if key not in self._compiled:
            self.parse(source, expression)
            if len(self._compiled) > 4096:  # a story has far fewer sources; this only bounds a long-lived edit session
                self._compiled.clear()
            try:
                self._compiled[key] = (self.env.compile_expression(source, undefined_to_none=False) if expression
                                       else self.env.from_string(source))
            except TemplateSyntaxError as exc:
                raise StateError(f"does not compile: {exc.message}", exc.lineno) from None
        return self._compiled[key]

    def evaluate(self, source: str, values: Values) -> Any:
        """The value of an expression with the given variables; raises `StateError` when it fails."""
        try:
            return self._compile(source, True)(**values)
        except StateError:
            raise
        except (TemplateError, ArithmeticError, TypeError, ValueError, OverflowError) as exc:
            raise StateError(f"'{source}' failed: {exc}") from None

    def render(self, source: str, values: Values) -> str:
        """A template rendered with the given variables (plain text is returned as it is)."""
        if not self.is_template(source):
            return source
        try:
            out: list[str] = []
            size = 0
            for piece in self._compile(source, False).generate(**values):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise StateError(f"produces more than {MAX_OUTPUT} characters")
                out.append(piece)
            return "".join(out)
        except StateError:
            raise
        except (TemplateError, ArithmeticError, TypeError, ValueError, OverflowError) as exc:
            raise StateError(f"failed: {exc}") from None


def _infer(node: nodes.Node, types: Mapping[str, str], problems: list[tuple[str, int | None]]) -> str | None:
    """The kind of an expression node ('true/false', 'number', 'text', 'list' or None); records visible mistakes."""

    def sub(n: nodes.Node) -> str | None:
        return _infer(n, types, problems)

    if isinstance(node, nodes.Const):
        return kind(node.value)
    if isinstance(node, nodes.Name):
        return types.get(node.name)
    if isinstance(node, (nodes.List, nodes.Tuple)):
        for item in node.items:
            sub(item)
        return "list"
    if isinstance(node, (nodes.Not, nodes.Test)):
        sub(node.node)
        return "true/false"
    if isinstance(node, (nodes.And, nodes.Or)):
        left, right = sub(node.left), sub(node.right)
        return left if left == right else None
    if isinstance(node, nodes.Concat):
        for item in node.nodes:
            sub(item)
        return "text"
    if isinstance(node, nodes.Filter):
        if node.node is not None:
            sub(node.node)
        return FILTERS.get(node.name)
    if isinstance(node, nodes.CondExpr):
        sub(node.test)
        a, b = sub(node.expr1), sub(node.expr2) if node.expr2 is not None else None
        return a if a == b else None
    if isinstance(node, (nodes.Neg, nodes.Pos, nodes.BinExpr)):
        return _infer_arithmetic(node, types, problems)
    if isinstance(node, nodes.Compare):
        return _infer_compare(node, types, problems)
    return None


def _infer_arithmetic(node: nodes.Neg | nodes.Pos | nodes.BinExpr, types: Mapping[str, str],
                      problems: list[tuple[str, int | None]]) -> str | None:
    """The kind of a sign (``-x``, ``+x``) or an arithmetic node (``+ - * / // %``): a number, or text for ``+``
    between texts; records a sign or an operator before values it cannot take (``+`` between a number and text)."""
    line = getattr(node, "lineno", None)
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        if _infer(node.node, types, problems) not in (None, "number"):
            problems.append(("- and + before a value need a number", line))
        return "number"
    left, right = _infer(node.left, types, problems), _infer(node.right, types, problems)
    if isinstance(node, nodes.Add):
        if {left, right} == {"number", "text"}:
            problems.append(("adds a number and text; join text with ~ instead of +", line))
            return None
        return left if left == right else None
    for side in (left, right):  # - * / // %
        if side in ("text", "true/false", "list"):
            problems.append((f"'{node.operator}' needs numbers, not {side}", line))
            return None
    return "number"


def _infer_compare(node: nodes.Compare, types: Mapping[str, str], problems: list[tuple[str, int | None]]) -> str:
    """The kind of a comparison (always 'true/false'); records each link of a chain (``a < b < c``) that can never
    hold as written: equality between kinds never equal, ordering of different kinds, ``in`` with nothing to look
    in."""
    line = getattr(node, "lineno", None)
    left = _infer(node.expr, types, problems)
    for operand in node.ops:
        right = _infer(operand.expr, types, problems)
        if operand.op in ("eq", "ne") and left and right and left != right and "list" not in (left, right) \
                and {left, right} != {"true/false", "number"}:
            problems.append((f"compares {left} with {right}; they are never equal", line))
        elif operand.op in ("lt", "lteq", "gt", "gteq") and left and right and (
                left != right or left in ("true/false", "list")):
            problems.append((f"orders {left} against {right}; compare numbers with numbers, text with text", line))
        elif operand.op in ("in", "notin") and right not in (None, "text", "list"):
            problems.append((f"'in' needs text or a [list] on its right, not {right}", line))
        left = right
    return "true/false"
