"""Story validation: every problem names the file, line, slide and field."""

import pytest

from game.story import load_story
from tests.support import GOOD
from tests.support import story_errors


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
    found = story_errors(GOOD.replace(before, after))
    assert any(expected in p for p in found), found


def test_every_error_is_reported_at_once():
    found = story_errors(GOOD.replace("to: b", "to: x").replace("steps: 20", "steps: 0"))
    assert len(found) == 2


def test_unreachable_slides_and_unknown_keys_are_warnings():
    text = GOOD + "  lost:\n    text: Nobody comes here.\n    imgae: typo\n"
    story = load_story(text, "stories/t.yaml", "t")
    warnings = [str(w) for w in story.warnings]
    assert "stories/t.yaml, line 17, slide 'lost': cannot be reached from the start slide" in warnings
    assert any("field 'imgae': unknown key 'imgae' is ignored (did you mean 'image'?)" in w for w in warnings)


def test_a_non_mapping_document_is_refused():
    assert story_errors("- just\n- a list\n") == [
        "stories/t.yaml: a story must be a YAML mapping with title, start and slides"
    ]


def test_problems_stop_at_fifty_of_each_severity():
    many = "title: T\nstart: s\nslides:\n" + "".join(f"  s{i}:\n    text: hi\n    choices: [{{text: go, to: z{i}}}]\n"
                                                      for i in range(100))
    found = story_errors(many)
    assert len(found) == 51 and found[-1] == "stories/t.yaml: ... and 51 more errors like these"
    assert found[1] == "stories/t.yaml, line 6, slide 's0', field 'choices[0].to': goes to 'z0', which is not a slide"


def test_a_value_in_a_message_is_cut_short():
    message = story_errors(GOOD.replace("text: The end.", "text: [" + ", ".join(["'" + "w" * 500 + "'"] * 50) + "]"))[0]
    assert message.startswith("stories/t.yaml, line 16, slide 'b', field 'text': must be non-empty text, got ['www")
    assert len(message) < 200


@pytest.mark.parametrize("slide_id", ["../up", "a/b", "a b", "é", "x" * 65, "1.5"])
def test_slide_ids_are_limited_to_a_safe_set(slide_id):
    text = GOOD.replace("  b:\n", f"  '{slide_id}':\n").replace("to: b", "to: a")
    assert any("cannot be part of the slide's address" in p for p in story_errors(text))


def test_numeric_slide_ids_still_work_and_name_their_lines():
    text = GOOD.replace("to: b", "to: '2'").replace("  b:\n    text: The end.\n",
                                                   "  2:\n    text: The end.\n    choices: [{text: x, to: nowhere}]\n")
    assert story_errors(text) == ["stories/t.yaml, line 17, slide '2', field 'choices[0].to': goes to 'nowhere', "
                                  "which is not a slide"]
    assert load_story(GOOD.replace("to: b", "to: '2'").replace("  b:", "  2:"), "stories/t.yaml", "t").slides["2"]
