"""A player's progress in the session: where they are in each story, with the values they had at each step.

The session is a signed cookie, so it is bounded: each story's progress by the engine (MAX_PATH, MAX_PLAY_CHARS),
and all of them together by MAX_COOKIE (the story played longest ago is forgotten first).  Step numbers in
addresses and forms (``?step=N``, a choice form's ``step``) name one visit of a slide, with its values.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import current_app
from flask import request
from flask import session
from flask import url_for

from game import engine
from game import expressions as ex
from game.engine import PlayState
from game.story import Story

MAX_COOKIE = 3600  # characters of the session cookie's value; browsers drop cookies past about 4,000


def saved_state(story: Story) -> PlayState | None:
    """This browser's progress in the story; None when it has none (or the session's data is not one)."""
    plays = session.get("plays")
    return PlayState.from_dict(story.slug, plays.get(story.slug)) if isinstance(plays, dict) else None


def save_state(state: PlayState) -> None:
    """Keep the player's progress in this story; the stories played longest ago are forgotten when the cookie
    would grow past what browsers keep (MAX_COOKIE)."""
    plays = session.get("plays")
    plays = dict(plays) if isinstance(plays, dict) else {}
    known = session.get("recent")
    order = [s for s in known if isinstance(s, str) and s in plays] if isinstance(known, list) else []
    order = [s for s in plays if s not in order] + order  # stories without a place count as the oldest
    recent = [s for s in order if s != state.story] + [state.story]
    plays[state.story] = state.to_dict()
    session["plays"], session["recent"] = plays, recent
    session.permanent = True
    serializer = current_app.session_interface.get_signing_serializer(current_app)  # type: ignore[attr-defined]
    while len(recent) > 1 and serializer is not None and len(serializer.dumps(dict(session))) > MAX_COOKIE:
        del plays[recent.pop(0)]
        session["plays"], session["recent"] = plays, recent


def step_arg(raw: str | None) -> int | None:
    """A step number sent by a page or link (?step=N, a form's step field); None when absent or not one."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 10 else None


def slide_url(story: Story, state: PlayState, index: int = -1) -> str:
    """The address of a slide on the player's path.  In a story with variables it names its step, so that a
    reload or a history entry shows that visit, with the values it had, and not a later visit of the same slide."""
    index = index % len(state.path)
    step: dict[str, Any] = {"step": state.first + index} if story.variables else {}
    return url_for("play.slide", slug=story.slug, slide_id=state.path[index], **step)


def player_id() -> str:
    """An anonymous id for this browser, kept in its session."""
    if "player" not in session:
        session["player"] = secrets.token_hex(6)
    return session["player"]


def player_values(story: Story, slide_id: str) -> dict[str, ex.Value]:
    """This player's variables on ``slide_id``: at the step the request names (?step=N), else at their latest
    visit of it, else (a slide they have not been on, someone who never played) the story's starting values."""
    state = saved_state(story)
    if state is None or slide_id not in state.path:
        return engine.values(story, None)
    index = state.index_of(step_arg(request.args.get("step")))
    if index is None or state.path[index] != slide_id:
        index = len(state.path) - 1 - state.path[::-1].index(slide_id)
    return engine.values(story, state, index)
