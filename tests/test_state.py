"""Story state: effects applied in order and bounded, conditions, stored values checked, failing templates."""

import pytest

from game import state as st
from game.expressions import Sandbox
from game.state import Effect


@pytest.fixture()
def box():
    return Sandbox()


def test_an_effect_cannot_grow_text_past_its_bound(box):
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
