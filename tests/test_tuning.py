"""The tuning page's logic as pure functions: its form typed, preview variables of their kinds, a kept picture
written into its slide."""

import pytest

from game.editing import EditError
from game.editing import load_document
from game.prompts import compose
from game.story import dump_document
from game.story import load_story
from game.tuning import keep_picture
from game.tuning import preview_values
from game.tuning import tuning_values
from tests.support import GOOD


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


def test_preview_values_take_each_variable_in_its_kind():
    declared = {"lantern": False, "coins": 3, "name": "Wren"}
    assert preview_values(declared, {"state.lantern": "true", "state.coins": "2.5", "state.name": "x" * 99}) == \
        {"lantern": True, "coins": 2.5, "name": "x" * 60}
    assert preview_values(declared, {}) == declared
    with pytest.raises(EditError, match="state.coins: must be a number"):
        preview_values(declared, {"state.coins": "lots"})
    with pytest.raises(EditError, match="state.lantern: must be true or false"):
        preview_values(declared, {"state.lantern": "yes"})
