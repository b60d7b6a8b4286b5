"""The story-state sandbox: conditions, effects and conditional text run in Jinja2's sandbox, bounded."""

import re

import pytest

from game import state as st
from game.state import Effect
from game.state import Sandbox
from game.state import StateError


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
        ("x" * (st.MAX_SOURCE + 1), False, "at most"),
        ("not " * 60 + "x", True, "nests deeper"),
    ],
)
def test_anything_but_conditions_printing_and_arithmetic_is_refused(box, source, expression, message):
    with pytest.raises(StateError, match=re.escape(message)):
        box.parse(source, expression)


def test_text_cannot_grow_without_bound(box):
    with pytest.raises(StateError, match="cannot be multiplied"):
        box.evaluate("name * 100000000", {"name": "abc"})
    assert st.apply(box, [Effect("name", "name ~ name")], {"name": "x"}, {"name": "y" * 50}) == {"name": "y" * 60}


def test_effects_apply_in_order_and_numbers_stay_bounded(box):
    declared = {"coins": 0, "lamp": False}
    after = st.apply(box, [Effect("coins", "coins + 5"), Effect("coins", "coins * 2"), Effect("lamp", "coins > 9")],
                     declared, declared)
    assert after == {"coins": 10, "lamp": True}
    assert (
        st.apply(box, [Effect("coins", "coins * 1000000000 * 1000")], declared, {"coins": 7, "lamp": False})["coins"]
        == st.MAX_NUMBER
    )
    # a failing effect leaves its variable as it was; a failing condition counts as closed
    assert st.apply(box, [Effect("coins", "1 // 0")], declared, declared) == declared
    assert st.holds(box, "1 // 0", declared) is False


def test_a_template_that_fails_at_play_shows_its_words(box):
    assert st.render(box, "You have {{ 1 // coins }} left. Go on.", {"coins": 0}) == "You have  left. Go on."


def test_stored_values_are_checked_against_the_declarations():
    declared = {"lamp": False, "coins": 3, "name": "Ann"}
    stored = {"lamp": True, "coins": "lots", "name": "x" * 500, "ghost": 1}
    assert st.normalize(declared, stored) == {"lamp": True, "coins": 3, "name": "Ann"}
    assert st.difference(declared, {"lamp": True, "coins": 3, "name": "Ann"}) == {"lamp": True}


def test_static_types(box):
    types = {"coins": "number", "name": "text", "lamp": "true/false"}
    assert box.kind_of("coins - 1", types) == ("number", [])
    assert box.kind_of("name ~ coins", types) == ("text", [])
    assert box.kind_of("name - 1", types)[1] == [("'-' needs numbers, not text", 1)]
    assert box.kind_of("'x' in name", types) == ("true/false", [])
