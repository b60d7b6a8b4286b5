"""State checks: variables, conditions, effects and templates checked without running them, each problem naming
the file, line, slide and field; a slide whose every choice can be closed is a warning."""

import pytest

from game.story import load_story
from tests.support import STATEFUL
from tests.support import story_errors


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("if: lantern\n", "if: lamp\n", "line 20, slide 'hall', field 'choices[1].if': unknown variable 'lamp'"),
        (
            "{{ name }}",
            "{{ nme }}",
            "line 10, slide 'hall', field 'text': unknown variable 'nme' (did you mean 'name'?)",
        ),
        (
            "{% else %}It is dark.",
            "{% else %}It is dark.{% endif %}{% endif %}",
            "line 11, slide 'hall', field 'text': does not compile: Encountered unknown tag 'endif'",
        ),
        ("if: not lantern", "if: not lantern)", "field 'choices[0].if': does not compile"),
        (
            "coins: coins - 1",
            "coins: name",
            "field 'choices[0].set.coins': 'coins' holds number, but this sets it to text",
        ),
        ("coins: coins - 1", "coins: coins + name", "field 'choices[0].set.coins': adds a number and text"),
        ("coins: coins - 1", "gold: 1", "field 'choices[0].set.gold': sets 'gold', which is not declared"),
        ("if: lantern\n", "if: coins > name\n", "orders number against text"),
        ("if: lantern\n", "if: name == 3\n", "compares text with number; they are never equal"),
        ("if: lantern\n", "if: name.__class__\n", "uses reading .attributes, which stories cannot"),
        ("if: lantern\n", "if: range(9)\n", "uses calling functions"),
        ("{{ name }}", "{% for x in [1] %}{% endfor %}", "field 'text': uses loops"),
        ("otherwise: disable", "otherwise: grey", "must be 'hide' or 'disable'"),
        ("  coins: 3", "  coins: [3]", "field 'state.coins': must be true/false, a number or short text"),
        ("  coins: 3", "  2coins: 3", "field 'state.2coins': a variable name is a letter"),
        ("  name: Ann", "  name: " + "A" * 61, "field 'state.name': text values are at most 60 characters"),
    ],
)
def test_state_mistakes_name_slide_field_and_line(before, after, expected):
    assert before in STATEFUL
    found = story_errors(STATEFUL.replace(before, after))
    assert any(expected in p for p in found), found


def test_a_slide_whose_every_choice_can_be_closed_is_a_warning():
    text = STATEFUL.replace("        if: not lantern\n", "        if: not lantern and coins > 5\n")
    warnings = [str(w) for w in load_story(text, "s", "l").warnings]
    assert any("slide 'hall', field 'choices': every choice has a condition" in w for w in warnings), warnings
    # two true/false variables: every combination is tried and the one that closes everything is named
    text = STATEFUL.replace("  name: Ann", "  name: Ann\n  key: false").replace("if: not lantern", "if: key")
    warnings = [str(w) for w in load_story(text, "s", "l").warnings]
    assert any("every choice is closed when key is false, lantern is false" in w for w in warnings), warnings
    assert load_story(STATEFUL, "s", "l").warnings == ()  # 'not lantern' and 'lantern' cover each other
