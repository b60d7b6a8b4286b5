"""The story model: loading a good story, its round trip, style merging, the shipped stories."""

import pytest

from game.story import dump_document
from game.story import load_story
from tests.support import GOOD
from tests.support import STATEFUL
from tests.support import STORIES


def test_a_good_story_loads():
    story = load_story(GOOD, "stories/t.yaml", "t")
    assert story.title == "Test"
    assert story.slides["a"].choices[0].to == "b"
    assert story.slides["a"].characters == ("keeper",)
    assert story.endings == ["b"]
    assert story.warnings == ()


def test_round_trip_keeps_comments_and_key_order():
    story = load_story(GOOD, "stories/t.yaml", "t")
    assert dump_document(story.document) == GOOD


def test_slide_overrides_merge_over_the_story_style():
    story = load_story(
        GOOD.replace("    image: a shore", "    image: a shore\n    style: {steps: 30, seed: 9}"), "s", "t"
    )
    merged = story.style.merged(story.slides["a"].style)
    assert (merged.steps, merged.seed) == (30, 9)
    assert story.style.merged(story.slides["b"].style).steps == 20


@pytest.mark.parametrize("path", sorted(STORIES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_stories_are_valid_branching_and_illustrated(path):
    story = load_story(path.read_text(), f"stories/{path.name}", path.stem)
    assert story.warnings == ()
    assert len(story.slides) >= 15
    assert len(story.endings) >= 3
    assert set(story.parents()) == set(story.slides)
    assert sum(1 for s in story.slides.values() if len(s.choices) >= 2) >= 8
    assert sum(1 for s in story.slides.values() if s.image) / len(story.slides) >= 0.8


def test_state_declarations_conditions_and_effects_load():
    story = load_story(STATEFUL, "stories/l.yaml", "l")
    assert story.variables == {"lantern": False, "coins": 3, "name": "Ann"}
    take, down = story.slides["hall"].choices
    assert (take.condition, take.otherwise) == ("not lantern", "hide")
    assert [(e.var, e.expression) for e in take.effects] == [("lantern", "true"), ("coins", "coins - 1")]
    assert (down.condition, down.otherwise) == ("lantern", "disable")
    assert story.warnings == ()


def test_twine_details_are_kept_on_story_and_slide():
    text = STATEFUL.replace("slides:\n", "twine: {ifid: ABC, format: Harlowe}\nslides:\n").replace(
        "  cellar:\n", "  cellar:\n    twine: {name: The Cellar, tags: [dark], position: '100,200'}\n")
    story = load_story(text, "s", "l")
    assert story.twine == {"ifid": "ABC", "format": "Harlowe"}
    assert story.slides["cellar"].twine == {"name": "The Cellar", "tags": ["dark"], "position": "100,200"}
