"""Twine expressions and assignments (Harlowe, SugarCube/JavaScript, Chapbook, Snowman) as ours: Jinja expressions
over our variable names; and the bracket- and quote-aware splitting the format readers share."""

from __future__ import annotations

import re

from game import expressions as ex
from game.twine.nodes import Context
from game.twine.nodes import SetVar
from game.twine.nodes import our_name

_TOKEN = re.compile(r"""\s+|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\d+(?:\.\d+)?|\$[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|"""
                    r"""_[A-Za-z]\w*(?:\.[A-Za-z_]\w*)*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|===|!==|==|!=|>=|<=|&&|\|\||"""
                    r"""\+\+|--|[-+*/%<>!(),\[\]{}:;=']""")
_WORDS = {"and": "and", "or": "or", "not": "not", "true": "true", "false": "false", "is": "==", "eq": "==",
          "neq": "!=", "isnot": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "===": "==", "!==": "!=",
          "&&": "and", "||": "or", "!": "not", "==": "==", "!=": "!=", ">=": ">=", "<=": "<=", "<": "<", ">": ">",
          "+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "(": "(", ")": ")"}
_METHODS = {"toUpperCase": "upper", "toLowerCase": "lower", "length": "length"}


def _tokens(source: str) -> list[str] | None:
    """The tokens of an expression, white space left out; None when a character belongs to none."""
    tokens = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match:
            return None
        pos = match.end()
        if not match.group().isspace():
            tokens.append(match.group())
    return tokens


def _name(tokens: list[str], i: int, ctx: Context) -> tuple[str | None, int]:
    """The variable token before ``i`` (``$x``, ``s.name.length``, ``$x.toUpperCase()``) as ours, and the index
    after it; None for a function call or a name that is not a variable."""
    token, following = tokens[i - 1], tokens[i] if i < len(tokens) else ""
    method = None
    head, _, last = token.rpartition(".")
    if head and last in _METHODS:
        token, method = head, _METHODS[last]
        if following == "(" and i + 1 < len(tokens) and tokens[i + 1] == ")":
            i += 2
    elif following == "(":
        return None, i  # a function call
    name = ctx.var(token)
    if name is None:
        return None, i
    return (f"({name} | {method})" if method else name), i


def translate(source: str, ctx: Context) -> str | None:
    """A Twine expression (Harlowe, SugarCube/JavaScript, Chapbook, Snowman) as a Jinja expression; None when it
    uses something a story of ours cannot (function calls, arrays, objects, random numbers)."""
    tokens = _tokens(source)
    if tokens is None:
        return None
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
            name, i = _name(tokens, i, ctx)
            if name is None:
                return None
            out.append(name)
        else:
            return None
    expression = ""
    for token in out:
        expression += token if (not expression or expression.endswith("(") or token == ")") else " " + token
    if not expression:
        return None
    try:
        ctx.sandbox.parse(expression, True)
    except ex.StateError:
        return None
    return expression


def split_top(text: str, separators: str = ",") -> list[str]:
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


def string_value(arg: str) -> str | None:
    """The value of a quoted string literal, or None."""
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'`":
        return re.sub(r"\\(.)", r"\1", arg[1:-1])
    return None


def past(text: str, start: int, pair: str, quoted: bool = False) -> int:
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


def unwrap(text: str) -> str:
    """``text`` without the parentheses around all of it, if it has them."""
    return text[1:-1] if text.startswith("(") and text.endswith(")") and past(text, 0, "()") == len(text) else text


def assignment(var_token: str, operator: str, value: str, ctx: Context) -> list[SetVar] | None:
    """``$x to 1``, ``$x += 2``, ``$x = {a: 1}`` (flattened to x_a) as sets; None when it cannot be mapped."""
    name = ctx.var(var_token)
    if name is None:
        return None
    value = value.strip().rstrip(";")
    if value.startswith("{") and value.endswith("}"):  # an object of simple values: one variable per key
        sets = []
        for pair in split_top(value[1:-1]):
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


def sets(source: str, ctx: Context, what: str) -> list[SetVar]:
    """Every assignment of a set macro or setter (comma or semicolon separated); unmappable ones are warned about."""
    result: list[SetVar] = []
    for part in split_top(source, ",;"):
        match = (re.fullmatch(r"([$_]?[A-Za-z_][\w.]*)(?:'s\s+(\w+))?\s*(to|=|\+=|-=|\*=|/=)\s*(.+)", part, re.DOTALL)
                 or re.fullmatch(r"([$_]?[A-Za-z_][\w.]*)()\s*(\+\+|--)()", part))
        put = re.fullmatch(r"(.+?)\s+into\s+([$_][A-Za-z_][\w.]*)", part, re.DOTALL)
        found = None
        if put:
            found = assignment(put.group(2), "to", put.group(1), ctx)
        elif match:
            token = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
            found = assignment(token, match.group(3), match.group(4), ctx)
        if found is None:
            ctx.warn(f"{what} '{part[:60]}' cannot be kept (not a simple value); dropped")
        else:
            result += found
    return result
