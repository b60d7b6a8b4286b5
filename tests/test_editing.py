"""The admin's edits as pure functions on story documents: comments and key order survive, bad values are named."""

import pytest

from game.editing import ChoiceRow
from game.editing import EditError
from game.editing import add_slide
from game.editing import apply_slide_edit
from game.editing import apply_state
from game.editing import apply_story_settings
from game.editing import choice_rows
from game.editing import load_document
from game.editing import state_text
from game.library import SlideNotFound
from game.story import dump_document
from game.story import load_story
from tests.support import GOOD
from tests.support import LANTERN_YAML


def test_story_settings_are_written_and_the_authors_comments_survive():
    document = load_document("# my notes\n" + GOOD)
    apply_story_settings(document, {"title": "Renamed", "start": "a", "prompt": "ink drawing", "steps": "12",
                                    "cfg_scale": "6.5",
                                    "characters": "keeper: an old man\ncat: a grey cat\nnot a character line"})
    text = dump_document(document)
    assert text.startswith("# my notes\n")
    story = load_story(text, "t.yaml", "t")
    assert (story.title, story.style.prompt, story.style.steps, story.style.cfg_scale) == ("Renamed", "ink drawing",
                                                                                           12, 6.5)
    assert story.characters == {"keeper": "an old man", "cat": "a grey cat"}


def test_a_number_field_that_is_not_a_number_is_named():
    with pytest.raises(EditError, match=r"style.steps: expected a number, got 'many'"):
        apply_story_settings(load_document(GOOD), {"steps": "many"})


def test_a_slide_edit_rewrites_text_and_choices_and_creates_new_targets():
    document = load_document(GOOD)
    apply_slide_edit(document, "t", "a", "New words.\r\n", "", [], [ChoiceRow("Onwards", "b"), ChoiceRow("", "b"),
                                                                   ChoiceRow("Somewhere new", "__new__", "cellar")])
    story = load_story(dump_document(document), "t.yaml", "t")
    assert story.slides["a"].text.strip() == "New words."
    assert [(c.text, c.to) for c in story.slides["a"].choices] == [("Onwards", "b"), ("Somewhere new", "cellar")]
    assert "to be written" in story.slides["cellar"].text


def test_bad_slide_names_and_missing_slides_are_refused():
    document = load_document(GOOD)
    with pytest.raises(EditError, match="choice_new: '../etc' cannot name a slide"):
        apply_slide_edit(document, "t", "a", "x", "", [], [ChoiceRow("Go", "__new__", "../etc")])
    with pytest.raises(SlideNotFound, match="no slide 'nope' in story 't'"):
        apply_slide_edit(document, "t", "nope", "x", "", [], [])
    with pytest.raises(EditError, match="slide_id: 'a' is taken"):
        add_slide(document, "a")
    add_slide(document, "attic")
    assert "attic" in load_story(dump_document(document), "t.yaml", "t").slides


def test_variables_are_written_typed_before_the_slides_and_read_back():
    document = load_document(GOOD)
    apply_state(document, 'lamp = true\ncoins: 3\nweight = 2.5\nname = "Ann Lee"\nword = 42x\nzip = "7"\n')
    story = load_story(dump_document(document), "t.yaml", "t")
    assert story.variables == {"lamp": True, "coins": 3, "weight": 2.5, "name": "Ann Lee", "word": "42x", "zip": "7"}
    assert list(document).index("state") == list(document).index("slides") - 1
    assert state_text(document) == "lamp = true\ncoins = 3\nweight = 2.5\nname = Ann Lee\nword = 42x\nzip = 7\n"
    for bad, message in (("lamp", "has no value"), ("if = 1", "a word of the expression language"),
                         ("a = 1\na = 2", "'a' is given twice"), ("t = " + "x" * 61, "at most 60 characters")):
        with pytest.raises(EditError, match=message):
            apply_state(load_document(GOOD), bad)
    apply_state(document, "")
    assert "state" not in document


def test_conditions_and_effects_round_trip_through_the_slide_form():
    document = load_document(LANTERN_YAML)
    rows = choice_rows(document["slides"]["hall"])
    assert rows[0] == ChoiceRow("Take the lantern", "hall", "", "not lantern", "hide",
                                "lantern = true\ncoins = coins - 1\n")
    assert (rows[1].condition, rows[1].otherwise, rows[1].effects) == ("lantern", "disable", "")
    apply_slide_edit(document, "lantern", "hall", "Hall.", "", [], rows)
    before = load_story(LANTERN_YAML, "s", "l").slides["hall"].choices
    assert load_story(dump_document(document), "s", "l").slides["hall"].choices == before  # nothing lost
    rows[0] = ChoiceRow("Take it", "hall", "", "coins  >\n 0", "disable", 'coins = coins - 1\nlantern = true\n')
    apply_slide_edit(document, "lantern", "hall", "Hall.", "", [], rows)
    choice = load_story(dump_document(document), "s", "l").slides["hall"].choices[0]
    assert (choice.condition, choice.otherwise) == ("coins > 0", "disable")
    assert [(e.var, e.expression) for e in choice.effects] == [("coins", "coins - 1"), ("lantern", "true")]
    with pytest.raises(EditError, match="choice 1 set: line 1 .*has no value"):
        apply_slide_edit(document, "lantern", "hall", "Hall.", "", [], [ChoiceRow("Go", "hall", "", "", "hide", "x")])
