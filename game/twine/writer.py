"""Our expressions, templates, choices and starting values in a story format's own syntax (Harlowe, SugarCube,
Chapbook, Snowman), for the Twee export."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from jinja2 import nodes as n

from game import expressions as ex
from game import state as st
from game.story import Story
from game.twine.expressions import unwrap
from game.twine.nodes import CHAPBOOK
from game.twine.nodes import HARLOWE
from game.twine.nodes import SNOWMAN
from game.twine.nodes import SUGARCUBE

_COMPARISONS = {"eq": ("===", "is"), "ne": ("!==", "is not"), "lt": ("<", "<"), "lteq": ("<=", "<="),
                "gt": (">", ">"), "gteq": (">=", ">=")}


class Writer:
    """Our expressions and templates in a story format's own syntax (Harlowe, SugarCube, Chapbook, Snowman)."""

    def __init__(self, fmt: str, story: Story, warnings: list[str]):
        self.fmt, self.story, self.warnings = fmt, story, warnings
        self.js = fmt in (SUGARCUBE, SNOWMAN, CHAPBOOK)

    def var(self, name: str) -> str:
        return {HARLOWE: "$", SUGARCUBE: "$", SNOWMAN: "s."}.get(self.fmt, "") + name

    def expression(self, source: str) -> str:
        return self.expr(self.story.sandbox.parse(source, True))

    def expr(self, node: Any) -> str:
        js = self.js
        if isinstance(node, n.Name):
            return self.var(node.name)
        if isinstance(node, n.Const):
            return json.dumps(node.value)
        if isinstance(node, (n.List, n.Tuple)):
            return ("[" if js else "(a: ") + ", ".join(self.expr(i) for i in node.items) + ("]" if js else ")")
        if isinstance(node, (n.Not, n.Neg, n.Pos)):
            return self._unary(node)
        if isinstance(node, (n.Concat, n.BinExpr)):
            return self._binary(node)
        if isinstance(node, n.CondExpr):
            a, b = self.expr(node.expr1), self.expr(node.expr2) if node.expr2 is not None else '""'
            return f"({self.expr(node.test)} ? {a} : {b})" if js else f"(cond: {self.expr(node.test)}, {a}, {b})"
        if isinstance(node, n.Filter) and node.name in ("upper", "lower"):
            inner = self.expr(node.node)
            return f"{inner}.to{node.name.title()}Case()" if js else f"({node.name}case: {inner})"
        if isinstance(node, n.Compare):
            return self._compare(node)
        self.warnings.append(f"an expression part ({type(node).__name__}) has no {self.fmt} form; written as text")
        return "0"

    def _unary(self, node: n.Not | n.Neg | n.Pos) -> str:
        if isinstance(node, n.Not):
            inner = self.expr(node.node)
            simple = isinstance(node.node, (n.Name, n.Const)) or inner.startswith("(")
            return f"{'!' if self.js else 'not '}{inner if simple else f'({inner})'}"
        return f"-{self.expr(node.node)}" if isinstance(node, n.Neg) else self.expr(node.node)

    def _binary(self, node: n.Concat | n.BinExpr) -> str:
        if isinstance(node, (n.And, n.Or)):
            op = {n.And: ("&&", "and"), n.Or: ("||", "or")}[type(node)][0 if self.js else 1]
            return f"({self.expr(node.left)} {op} {self.expr(node.right)})"
        if isinstance(node, n.Concat):
            return "(" + " + ".join(self.expr(i) for i in node.nodes) + ")"
        op = {"//": "/"}.get(node.operator, node.operator)
        return f"({self.expr(node.left)} {op} {self.expr(node.right)})"

    def _compare(self, node: n.Compare) -> str:
        js = self.js
        left, out = self.expr(node.expr), []
        for operand in node.ops:
            right = self.expr(operand.expr)
            if operand.op in ("in", "notin"):
                test = f"{right}.includes({left})" if js else f"{right} contains {left}"
                test = (f"!{test}" if js else f"not ({test})") if operand.op == "notin" else test
            else:
                test = f"{left} {_COMPARISONS[operand.op][0 if js else 1]} {right}"
            out.append(test)
            left = right
        return "(" + (" && " if js else " and ").join(out) + ")" if len(out) > 1 else out[0]

    def condition(self, source: str) -> str:
        return unwrap(self.expression(source))

    def template(self, source: str) -> str:
        """Our slide text (plain, or a template) in the format's syntax."""
        if not self.story.sandbox.is_template(source):
            return self.text(source)
        tree: Any = self.story.sandbox.parse(source)
        return "".join(self.node(node) for node in tree.body)

    def text(self, text: str) -> str:
        return re.sub(r"(?m)^::", " ::", text)  # a line starting with :: would start a new passage

    def node(self, node: Any) -> str:
        if isinstance(node, n.Output):
            return "".join(self.output(item) for item in node.nodes)
        if isinstance(node, n.If):
            branches = [(node.test, node.body)] + [(e.test, e.body) for e in node.elif_]
            parts = []
            for i, (test, body) in enumerate(branches):
                inner = "".join(self.node(b) for b in body)
                parts.append(self.branch("if" if i == 0 else "elif", unwrap(self.expr(test)), inner))
            if node.else_:
                parts.append(self.branch("else", None, "".join(self.node(b) for b in node.else_)))
            return "".join(parts) + self.branch("end", None, "")
        return ""

    def output(self, node: Any) -> str:
        if isinstance(node, n.TemplateData):
            return self.text(node.data)
        if isinstance(node, n.Name) and self.fmt != SNOWMAN:
            return "{" + node.name + "}" if self.fmt == CHAPBOOK else self.var(node.name)
        value = self.expr(node)
        return {HARLOWE: f"(print: {value})", SUGARCUBE: f"<<print {value}>>", SNOWMAN: f"<%= {value} %>"}.get(
            self.fmt, "{" + value + "}")

    def branch(self, kind: str, condition: str | None, body: str) -> str:
        if self.fmt == HARLOWE:
            return {"if": f"(if: {condition})[{body}]", "elif": f"(else-if: {condition})[{body}]",
                    "else": f"(else:)[{body}]", "end": ""}[kind]
        if self.fmt == SUGARCUBE:
            return {"if": f"<<if {condition}>>{body}", "elif": f"<<elseif {condition}>>{body}",
                    "else": f"<<else>>{body}", "end": "<</if>>"}[kind]
        if self.fmt == SNOWMAN:
            return {"if": f"<% if ({condition}) {{ %>{body}", "elif": f"<% }} else if ({condition}) {{ %>{body}",
                    "else": f"<% }} else {{ %>{body}", "end": "<% } %>"}[kind]
        return {"if": f"\n[if {condition}]\n{body}", "elif": f"\n[else]\n[if {condition}]\n{body}",  # Chapbook
                "else": f"\n[else]\n{body}", "end": "\n[continue]\n"}[kind]

    def link(self, label: str, target: str) -> str:
        if not re.search(r"\]|->|<-|\|", label + target) and not label.startswith("$") and label.strip() == label:
            return f"[[{label}->{target}]]" if label != target else f"[[{target}]]"
        quoted = json.dumps
        return {HARLOWE: f"(link-goto: {quoted(label)}, {quoted(target)})",
                SUGARCUBE: f"<<link {quoted(label)} {quoted(target)}>><</link>>",
                CHAPBOOK: "{link to: " + quoted(target) + ", label: " + quoted(label) + "}",
                SNOWMAN: f'<a href="javascript:void(0)" data-passage="{html.escape(target)}">{html.escape(label)}</a>'
                }[self.fmt]

    def choice(self, choice: Any, target: str, slide_id: str) -> str:
        effects = [(e.var, self.condition(e.expression)) for e in choice.effects]
        if not effects:
            line = self.link(choice.text, target)
        elif self.fmt == HARLOWE:
            sets = "".join(f"(set: $${v} to {e})".replace("$$", "$") for v, e in effects)
            line = f"(link: {json.dumps(choice.text)})[{sets}(goto: {json.dumps(target)})]"
        elif self.fmt == SUGARCUBE:
            sets = ", ".join(f"${v} to {e}" for v, e in effects)
            line = f"<<link {json.dumps(choice.text)} {json.dumps(target)}>><<set {sets}>><</link>>"
        else:
            self.warnings.append(f"slide '{slide_id}': {self.fmt} links cannot set variables; the effects of "
                                 f"'{choice.text}' are not exported")
            line = self.link(choice.text, target)
        if choice.condition:
            if choice.otherwise == st.DISABLE:
                self.warnings.append(f"slide '{slide_id}': '{choice.text}' is hidden, not greyed out, while closed "
                                     f"({self.fmt} has no disabled links)")
            line = self.branch("if", self.condition(choice.condition), line) + self.branch("end", None, "")
        return line

    def starting(self, values: dict[str, ex.Value]) -> str:
        lines = []
        for name, value in values.items():
            literal = json.dumps(value)
            lines.append({HARLOWE: f"(set: ${name} to {literal})", SUGARCUBE: f"<<set ${name} to {literal}>>",
                          SNOWMAN: f"<% s.{name} = {literal}; %>", CHAPBOOK: f"{name}: {literal}"}[self.fmt])
        return "\n".join(lines)
