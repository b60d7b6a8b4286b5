"""The expression language: conditions, effects and conditional text run in Jinja2's sandbox, bounded."""

import re

import pytest

from game.expressions import MAX_SOURCE
from game.expressions import Sandbox
from game.expressions import StateError


@pytest.fixture()
def box():
    return Sandbox()


def test_conditional_text_and_printed_values(box):
    source = "Hello {{ name }}. {% if coins > 2 %}Rich{% elif coins %}Poor{% else %}Broke{% endif %} ({{ coins }})"
    assert box.render(source, {"name": "Ann", "coins": 3}) == "Hello Ann. Rich (3)"
    assert box.render(source, {"name": "Bo", "coins": 0}) == "Hello Bo. Broke (0)"
    assert box.render("plain {text} without template", {}) == "plain {text} without template"


@pytest.mark.parametrize(
    ("source", "expression", "message"),
    [
        ("x.__class__.__mro__", True, "reading .attributes"),
        ("x['a']", True, "reading [items]"),
        ("lipsum()", True, "calling functions"),
        ("x ** 99999999", True, "** (powers)"),
        ("{% for i in range(999999) %}{% endfor %}", False, "loops"),
        ("{% set x = 1 %}", False, "{% set %}"),
        ("{% macro m() %}{% endmacro %}", False, "macros"),
        ("{% include 'x' %}", False, "includes"),
        ("{{ x | attr('y') }}", False, "the filter 'attr' is not available"),
        ("{{ x }", False, "does not compile"),
        ("x" * (MAX_SOURCE + 1), False, "at most"),
        ("not " * 60 + "x", True, "nests deeper"),
    ],
)
def test_anything_but_conditions_printing_and_arithmetic_is_refused(box, source, expression, message):
    with pytest.raises(StateError, match=re.escape(message)):
        box.parse(source, expression)


def test_text_cannot_grow_without_bound(box):
    with pytest.raises(StateError, match="cannot be multiplied"):
        box.evaluate("name * 100000000", {"name": "abc"})


def test_static_types(box):
    types = {"coins": "number", "name": "text", "lamp": "true/false"}
    assert box.kind_of("coins - 1", types) == ("number", [])
    assert box.kind_of("name ~ coins", types) == ("text", [])
    assert box.kind_of("name - 1", types)[1] == [("'-' needs numbers, not text", 1)]
    assert box.kind_of("'x' in name", types) == ("true/false", [])
