"""The admin's edits as pure functions on story documents: comments and key order survive, bad values are named."""

import pytest

from game.editing import EditError
from game.editing import add_slide
from game.editing import apply_slide_edit
from game.editing import apply_story_settings
from game.editing import keep_picture
from game.editing import load_document
from game.editing import tuning_values
from game.library import SlideNotFound
from game.prompts import compose
from game.story import dump_document
from game.story import load_story
from tests.support import GOOD


def test_story_settings_are_written_and_the_authors_comments_survive():
    document = load_document("# my notes\n" + GOOD)
    apply_story_settings(document, {"title": "Renamed", "start": "a", "prompt": "ink drawing", "steps": "12",
                                    "cfg_scale": "6.5", "characters": "keeper: an old man\ncat: a grey cat\nnot a character line"})
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
    apply_slide_edit(document, "t", "a", "New words.\r\n", "", [], [("Onwards", "b", ""), ("", "b", ""),
                                                                   ("Somewhere new", "__new__", "cellar")])
    story = load_story(dump_document(document), "t.yaml", "t")
    assert story.slides["a"].text.strip() == "New words."
    assert [(c.text, c.to) for c in story.slides["a"].choices] == [("Onwards", "b"), ("Somewhere new", "cellar")]
    assert "to be written" in story.slides["cellar"].text


def test_bad_slide_names_and_missing_slides_are_refused():
    document = load_document(GOOD)
    with pytest.raises(EditError, match="choice_new: '../etc' cannot name a slide"):
        apply_slide_edit(document, "t", "a", "x", "", [], [("Go", "__new__", "../etc")])
    with pytest.raises(SlideNotFound, match="no slide 'nope' in story 't'"):
        apply_slide_edit(document, "t", "nope", "x", "", [], [])
    with pytest.raises(EditError, match="slide_id: 'a' is taken"):
        add_slide(document, "a")
    add_slide(document, "attic")
    assert "attic" in load_story(dump_document(document), "t.yaml", "t").slides


def test_tuning_values_are_typed_and_a_kept_picture_writes_only_what_changed():
    values = tuning_values({"image": " a red door ", "steps": "9", "cfg_scale": "5", "seed": "", "tiling": "on"})
    assert values["image"] == "a red door" and values["steps"] == 9 and values["cfg_scale"] == 5.0
    assert "seed" not in values and values["tiling"] is True
    with pytest.raises(EditError, match="steps: expected a number"):
        tuning_values({"steps": "9.5"})
    story = load_story(GOOD, "t.yaml", "t")
    original = compose(story, "a").request
    document = load_document(GOOD)
    keep_picture(document, "t", "a", "a red door", original.replace(seed=77, steps=9), original)
    kept = load_story(dump_document(document), "t.yaml", "t").slides["a"]
    assert (kept.image, kept.style.seed, kept.style.steps) == ("a red door", 77, 9)
    assert "cfg_scale" not in document["slides"]["a"]["style"]  # unchanged settings are not copied in
