"""Story validation: every problem names the file, line, slide and field."""

import pytest

from game.story import StoryError
from game.story import load_story
from tests.support import GOOD
from tests.support import STATEFUL


def problems(text):
    with pytest.raises(StoryError) as info:
        load_story(text, "stories/t.yaml", "t")
    return [str(p) for p in info.value.problems if p.severity == "error"]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "        to: b",
            "        to: bb",
            "stories/t.yaml, line 14, slide 'a', field 'choices[0].to': goes to 'bb', which is not a slide "
            "(did you mean 'b'?)",
        ),
        ("start: a", "start: z", "stories/t.yaml, line 2, field 'start': no slide called 'z'"),
        ("start: a\n", "", "field 'start': missing"),
        (
            "  steps: 20",
            "  steps: 500",
            "stories/t.yaml, line 4, field 'style.steps': must be between 1 and 150, got 500",
        ),
        ("  steps: 20", "  width: 500", "field 'style.width': must be a multiple of 8, got 500"),
        ("  steps: 20", "  height: 32", "field 'style.height': must be between 64 and 2048, got 32"),
        ("  steps: 20", "  cfg_scale: 99", "field 'style.cfg_scale': must be between 0 and 30"),
        ("  steps: 20", "  seed: -5", "field 'style.seed': must be a whole number from 0"),
        ("  steps: 20", "  sampler_name: Eulr", "field 'style.sampler_name': unknown sampler 'Eulr'"),
        (
            "  steps: 20",
            "  sampler_name: DDIM\n  scheduler: karras",
            "field 'style.scheduler': 'karras' is not available",
        ),
        (
            "    image: a shore",
            "    image: a shore\n    style: {steps: 0}",
            "slide 'a', field 'style.steps': must be between 1",
        ),
        (
            "    characters: [keeper]",
            "    characters: [ghost]",
            "slide 'a', field 'characters': unknown character 'ghost'",
        ),
        ("    text: The end.", "    text: ''", "slide 'b', field 'text': must be non-empty text"),
        ("  b:\n    text: The end.", "  b: just a string", "slide 'b': must be a mapping with text and choices"),
        ("      - text: Go on\n        to: b", "      - text: Go on", "field 'choices[0].to': missing"),
    ],
)
def test_broken_stories_name_what_is_wrong(before, after, expected):
    assert before in GOOD
    found = problems(GOOD.replace(before, after))
    assert any(expected in p for p in found), found


def test_every_error_is_reported_at_once():
    found = problems(GOOD.replace("to: b", "to: x").replace("steps: 20", "steps: 0"))
    assert len(found) == 2


def test_unreachable_slides_and_unknown_keys_are_warnings():
    text = GOOD + "  lost:\n    text: Nobody comes here.\n    imgae: typo\n"
    story = load_story(text, "stories/t.yaml", "t")
    warnings = [str(w) for w in story.warnings]
    assert "stories/t.yaml, line 17, slide 'lost': cannot be reached from the start slide" in warnings
    assert any("field 'imgae': unknown key 'imgae' is ignored (did you mean 'image'?)" in w for w in warnings)


def test_a_non_mapping_document_is_refused():
    assert problems("- just\n- a list\n") == [
        "stories/t.yaml: a story must be a YAML mapping with title, start and slides"
    ]


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
    found = problems(STATEFUL.replace(before, after))
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


def test_problems_stop_at_fifty_of_each_severity():
    many = "title: T\nstart: s\nslides:\n" + "".join(f"  s{i}:\n    text: hi\n    choices: [{{text: go, to: z{i}}}]\n"
                                                      for i in range(100))
    found = problems(many)
    assert len(found) == 51 and found[-1] == "stories/t.yaml: ... and 51 more errors like these"
    assert found[1] == "stories/t.yaml, line 6, slide 's0', field 'choices[0].to': goes to 'z0', which is not a slide"


def test_a_value_in_a_message_is_cut_short():
    message = problems(GOOD.replace("text: The end.", "text: [" + ", ".join(["'" + "w" * 500 + "'"] * 50) + "]"))[0]
    assert message.startswith("stories/t.yaml, line 16, slide 'b', field 'text': must be non-empty text, got ['www")
    assert len(message) < 200


@pytest.mark.parametrize("slide_id", ["../up", "a/b", "a b", "é", "x" * 65, "1.5"])
def test_slide_ids_are_limited_to_a_safe_set(slide_id):
    text = GOOD.replace("  b:\n", f"  '{slide_id}':\n").replace("to: b", "to: a")
    assert any("cannot be part of the slide's address" in p for p in problems(text))


def test_numeric_slide_ids_still_work_and_name_their_lines():
    text = GOOD.replace("to: b", "to: '2'").replace("  b:\n    text: The end.\n",
                                                   "  2:\n    text: The end.\n    choices: [{text: x, to: nowhere}]\n")
    assert problems(text) == ["stories/t.yaml, line 17, slide '2', field 'choices[0].to': goes to 'nowhere', which is "
                              "not a slide"]
    assert load_story(GOOD.replace("to: b", "to: '2'").replace("  b:", "  2:"), "stories/t.yaml", "t").slides["2"]
