"""PlayState moves: start, choose, visit (reload/back/forward/shared link), back, resume."""

import pytest

from game import engine
from game.engine import InvalidChoice
from game.engine import PlayState
from game.engine import SlideGone
from game.story import load_story
from tests.support import GOOD

STORY = load_story(GOOD.replace("  b:\n    text: The end.", "  b:\n    text: Middle.\n    choices:\n      - {text: Loop, to: a}\n      - {text: End, to: c}\n  c:\n    text: The end."), "s", "t")


def test_start_choose_and_back():
    state = engine.start(STORY)
    assert (state.at, state.path) == ("a", ("a",))
    state = engine.choose(STORY, state, "a", 0)
    assert (state.at, state.path) == ("b", ("a", "b"))
    assert engine.visit(STORY, state, "a").path == ("a",)  # back: the path is cut where the slide was


def test_a_choice_leading_back_to_an_earlier_slide_moves_forward():
    state = engine.choose(STORY, engine.choose(STORY, engine.start(STORY), "a", 0), "b", 0)
    assert state.path == ("a", "b", "a")


@pytest.mark.parametrize("index", [-1, 1, 5])
def test_an_invalid_choice_says_so(index):
    with pytest.raises(InvalidChoice, match="not on this slide any more"):
        engine.choose(STORY, engine.start(STORY), "a", index)


def test_choosing_on_an_ending_says_it_is_an_ending():
    with pytest.raises(InvalidChoice, match="is an ending"):
        engine.choose(STORY, None, "c", 0)


def test_a_choice_from_an_older_page_is_judged_by_that_page():
    state = engine.choose(STORY, engine.start(STORY), "a", 0)  # at b
    again = engine.choose(STORY, state, "a", 0)  # clicked on the restored page of a
    assert again.path == ("a", "b")


def test_visit_steps_back_along_the_path_or_extends_it():
    state = PlayState("t", "c", ("a", "b", "c"))
    assert engine.visit(STORY, state, "b").path == ("a", "b")
    assert engine.visit(STORY, PlayState("t", "a", ("a",)), "c").path == ("a", "c")
    assert engine.visit(STORY, None, "b").path == ("b",)


def test_gone_slides_raise_with_a_readable_message():
    with pytest.raises(SlideGone, match="'zzz' is no longer part of “Test”"):
        engine.visit(STORY, None, "zzz")
    with pytest.raises(SlideGone):
        engine.current(STORY, PlayState("t", "zzz", ("a", "zzz")))


def test_resume_point_falls_back_to_the_last_surviving_slide():
    assert engine.resume_point(STORY, PlayState("t", "zzz", ("a", "b", "zzz"))) == "b"
    assert engine.resume_point(STORY, None) == "a"


@pytest.mark.parametrize("data", [None, "x", {"at": 3}, {"at": "a", "path": "a"}, {"at": "a", "path": [1]}])
def test_malformed_session_data_is_ignored(data):
    assert PlayState.from_dict("t", data) is None


def test_state_round_trips_and_the_path_is_capped():
    state = PlayState.from_dict("t", {"at": "a", "path": ["a", "b"] * 50})
    assert len(state.path) == engine.MAX_PATH
    assert PlayState.from_dict("t", state.to_dict()) == state
