"""PlayState moves: start, choose, visit (reload/back/forward/shared link), back, resume."""

import json

import pytest

from game import engine
from game.engine import InvalidChoice
from game.engine import PlayState
from game.engine import SlideGone
from game.story import load_story
from tests.support import GOOD
from tests.support import LANTERN

STORY = load_story(GOOD.replace("  b:\n    text: The end.", "  b:\n    text: Middle.\n    choices:\n"
                               "      - {text: Loop, to: a}\n      - {text: End, to: c}\n  c:\n    text: The end."),
                   "s", "t")


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




def test_the_view_renders_text_and_filters_choices_by_state():
    view = engine.view(LANTERN, engine.start(LANTERN))
    assert view.text == "Hall.  Coins: 3" and view.image == "a hall"
    assert [(o.index, o.number, o.text, o.open) for o in view.options] == [(0, 1, "Take the lantern", True),
                                                                              (1, 2, "Go down", False)]
    state = engine.choose(LANTERN, engine.start(LANTERN), "hall", 0)
    view = engine.view(LANTERN, state)
    assert view.text == "Hall. Your lantern glows. Coins: 2" and view.image == "a hall lit by a lantern"
    assert [(o.index, o.number, o.open) for o in view.options] == [(1, 1, True)]
    assert view.step == 1


def test_a_closed_choice_cannot_be_taken():
    with pytest.raises(InvalidChoice, match="“Go down” is not open to you now"):
        engine.choose(LANTERN, engine.start(LANTERN), "hall", 1)
    with pytest.raises(InvalidChoice, match="“Pay” is not open"):
        engine.choose(LANTERN, engine.start(LANTERN), "hall", 2)


def test_going_back_restores_the_state_and_choosing_again_never_applies_an_effect_twice():
    first = engine.start(LANTERN)
    lit = engine.choose(LANTERN, first, "hall", 0)
    assert engine.values(LANTERN, lit) == {"lantern": True, "coins": 2}
    down = engine.choose(LANTERN, lit, "hall", 1)
    assert (down.at, engine.values(LANTERN, down)) == ("cellar", {"lantern": True, "coins": 2})
    # back to the first hall page: it shows the slide as it was, with the state it had
    back = engine.back(LANTERN, engine.back(LANTERN, down))
    assert engine.view(LANTERN, back).text == "Hall.  Coins: 3"
    # the same click sent twice from the first page (its step is 0): the lantern is paid for once
    again = engine.choose(LANTERN, down, "hall", 0, step=0)
    twice = engine.choose(LANTERN, again, "hall", 0, step=0)
    assert engine.values(LANTERN, twice) == {"lantern": True, "coins": 2}
    assert twice.path == ("hall", "hall")


def test_a_shared_link_starts_the_receiver_with_the_starting_state():
    state = engine.visit(LANTERN, None, "cellar")
    assert (state.path, engine.values(LANTERN, state)) == (("cellar",), {"lantern": False, "coins": 3})


def test_leads_to_gives_the_state_each_open_choice_leads_to():
    nexts = engine.leads_to(LANTERN, "hall", {"lantern": False, "coins": 3})
    assert [(n.index, n.to, n.values) for n in nexts] == [(0, "hall", {"lantern": True, "coins": 2})]
    nexts = engine.leads_to(LANTERN, "hall", {"lantern": True, "coins": 9})
    assert [(n.index, n.to, n.values) for n in nexts] == [(1, "cellar", {"lantern": True, "coins": 9}),
                                                          (2, "cellar", {"lantern": True, "coins": 9})]


def test_state_survives_the_session_and_stays_bounded():
    state = engine.choose(LANTERN, engine.start(LANTERN), "hall", 0)
    data = state.to_dict()
    assert data == {"at": "hall", "path": ["hall", "hall"], "vars": [{}, {"coins": 2, "lantern": True}],
                    "marks": [0, 1]}
    assert PlayState.from_dict("lantern", data) == state
    # tampered or stale values are checked: unknown kinds and bad indexes fall back to the starting values
    assert PlayState.from_dict("lantern", {**data, "marks": [0, 7]}).marks == ()
    assert PlayState.from_dict("lantern", {**data, "vars": [{}, {"coins": [1] * 99}]}).marks == ()
    assert engine.values(LANTERN, PlayState("lantern", "hall", ("hall",), ((("coins", "many"),),))) == \
        {"lantern": False, "coins": 3}
    # a long walk keeps the session data within its bound, and the current step always
    for _ in range(60):
        state = engine.choose(LANTERN, engine.choose(LANTERN, state, "hall", 1), "cellar", 0)
    assert len(json.dumps(state.to_dict())) <= engine.MAX_PLAY_CHARS
    assert engine.values(LANTERN, state) == {"lantern": True, "coins": 2}


def test_old_sessions_without_state_still_load():
    state = PlayState.from_dict("lantern", {"at": "cellar", "path": ["hall", "cellar"]})
    assert engine.values(LANTERN, state) == {"lantern": False, "coins": 3}


def test_a_link_with_a_step_picks_one_visit_of_a_repeated_slide():
    state = engine.choose(LANTERN, engine.choose(LANTERN, engine.start(LANTERN), "hall", 0), "hall", 1)
    assert engine.values(LANTERN, engine.visit(LANTERN, state, "hall"))["coins"] == 2
    first = engine.visit(LANTERN, state, "hall", step=0)
    assert (first.path, engine.values(LANTERN, first)["coins"]) == (("hall",), 3)


def test_a_page_sent_twice_after_old_steps_were_forgotten_still_counts_once():
    story = load_story("title: T\nstart: a\nstate: {n: 0}\nslides:\n  a:\n    text: 'n={{ n }}'\n    choices:\n"
                       "      - {text: inc, to: a, set: {n: n + 1}}\n", "s", "t")
    state = engine.start(story)
    for _ in range(engine.MAX_PATH + 5):  # the path is full: each step forgets the oldest one
        state = engine.choose(story, state, "a", 0, step=engine.view(story, state).step)
    page = engine.view(story, state)
    assert (page.text, page.step, len(state.path)) == ("n=45", 45, engine.MAX_PATH)
    once = engine.choose(story, state, "a", 0, step=page.step)
    twice = engine.choose(story, once, "a", 0, step=page.step)  # the same form posted again
    assert engine.view(story, twice).text == "n=46"
    assert PlayState.from_dict("t", twice.to_dict()) == twice  # the count of forgotten steps survives the session
    assert engine.view(story, engine.visit(story, twice, "a", step=page.step)).text == "n=45"
