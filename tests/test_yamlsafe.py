"""Bounds on hostile story files: size, depth, alias expansion, value counts, short messages (the attacks over
HTTP are in test_hostile.py)."""

import pytest

from game.story import load_story
from game.yamlsafe import MAX_STORY_BYTES
from game.yamlsafe import YamlProblem
from game.yamlsafe import parse
from game.yamlsafe import shown
from tests.support import GOOD
from tests.support import story_errors


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "  b:\n    text: The end.",
            "  b:\n    text: The end.\n  a:\n    text: again",
            'stories/t.yaml, line 17: not valid YAML: duplicate key "a": each slide id, and each field of a slide',
        ),
        ("title: Test", "title: [Test", "not valid YAML"),
    ],
)
def test_text_that_is_not_yaml_names_the_file_and_line(before, after, expected):
    assert before in GOOD
    found = story_errors(GOOD.replace(before, after))
    assert len(found) == 1 and expected in found[0], found


def test_anchors_and_merge_keys_within_bounds_still_load():
    text = GOOD.replace(
        "style:\n  steps: 20\n", "base: &base\n  steps: 20\n  cfg_scale: 6\nstyle:\n  <<: *base\n  seed: 7\n"
    )
    story = load_story(text, "stories/t.yaml", "t")
    assert story.style.steps == 20 and story.style.cfg_scale == 6 and story.style.seed == 7


def test_an_alias_expanding_past_the_bound_is_refused_even_for_one_long_text():
    long_text = "x" * 300_000
    text = f"t: &t '{long_text}'\n" + GOOD.replace("    text: The end.\n", "    text: *t\n" + "".join(
        f"  c{i}:\n    text: *t\n" for i in range(10)))
    assert story_errors(text) == ["stories/t.yaml, line 9: its aliases (*name) expand it to more than 2,097,152 "
                                  "characters; write the values out or share fewer"]


@pytest.mark.slow
def test_too_many_values_are_refused():
    huge = "title: T\nstart: s\nslides:\n" + "".join(f"  s{i}: {{text: hi}}\n" for i in range(7000))
    assert "it holds more than 20,000 values" in story_errors(huge)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nested more than 32 levels deep (a story needs about 6)"),
        ("a: &x [1, *x]\n", "the alias *x is used inside the value it names (a loop)"),
        ("a: " + "9" * 5000 + "\n", "not valid YAML: a number has too many digits"),
        ("a: " + "x" * MAX_STORY_BYTES + "\n", "is 1,048,580 bytes; a story file may be at most 1,048,576 bytes"),
    ],
)
def test_costly_yaml_is_refused_with_a_short_message(text, expected):
    with pytest.raises(YamlProblem) as info:
        parse(text)
    assert info.value.message == expected


@pytest.mark.slow
def test_a_value_is_quoted_short_however_large_or_nested():
    assert shown("w" * 500) == repr("w" * 60) + "…"
    assert shown({"a": [[["deep"]]], "b": 2, "c": 3, "d": 4}) == "{'a': [[…]], 'b': 2, 'c': 3, …}"
    assert shown(10**40) == "a number of more than 30 digits"
    assert len(shown(["x" * 60] * 10)) == 80
