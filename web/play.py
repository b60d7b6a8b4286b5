"""The player's pages: the story list, the slides, the choices, and each slide's picture (its stream in
web/streams.py).

htmx requests get the fragment for their target; every other request gets the full page at the same URL, so
plain links, reloads and history restores all work.  Errors come back as the same fragment with a 4xx/5xx
status; base.html configures htmx to swap those too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game import engine
from game import expressions as ex
from game import state as st
from game.engine import PlayError
from game.engine import PlayState
from game.engine import SlideGone
from game.library import StoryBroken
from game.library import StoryNotFound
from game.prompts import compose
from game.prompts import labelled
from game.prompts import pictures
from game.story import Slide
from game.story import Story
from inference.backend import without_paths
from inference.jobs import DONE
from inference.jobs import PLAYER
from inference.jobs import PREFETCH
from inference.jobs import QUEUED
from inference.jobs import QueueFull
from inference.jobs import Snapshot
from inference.pictures import to_data_url
from inference.request import GenerationRequest
from web import covers
from web import services
from web import streams
from web.htmx import is_htmx
from web.htmx import render
from web.progress import player_id
from web.progress import player_values
from web.progress import save_state
from web.progress import saved_state
from web.progress import slide_url
from web.progress import step_arg
from web.security import client_key

bp = Blueprint("play", __name__)
PLAIN_IMAGE_WAIT = 300  # seconds a client without JavaScript waits for its picture
POLL_EVERY = 3  # seconds between checks of a picture that is not streamed


def load_story(slug: str) -> Story:
    try:
        return services.stories().get(slug)
    except StoryNotFound:
        abort(404)
    except StoryBroken as exc:
        abort(render("error.html", "_notice.html", 409, title="This story needs repair",
                     message="It has errors, so it cannot be played until its author fixes them.",
                     problems=exc.entry.errors))


def shown_slide(slide: Slide, text: str, image: str | None) -> Slide:
    """The slide as this player reads it: text and picture description rendered with their values."""
    return dataclasses.replace(slide, text=text, image=image)


def player_slide(story: Story, slide_id: str) -> Slide:
    """The slide rendered with this player's values on it (`player_values`): what a picture's alt text says."""
    slide, values = story.slides[slide_id], player_values(story, slide_id)
    return shown_slide(slide, st.render(story.sandbox, slide.text, values),
                       st.render(story.sandbox, slide.image, values) if slide.image else None)


def show_slide(story: Story, state: PlayState, code: int = 200, notice: str | None = None,
               push: bool = False) -> Response:
    view = engine.view(story, state)
    slide = view.slide
    headers = {"HX-Push-Url": slide_url(story, state)} if push else None
    picture = start_picture(story, slide.id, view.values)
    prefetch(story, slide.id, view.values)
    services.players().record(player_id(), story.slug, slide.id)
    back = slide_url(story, state, -2) if state.can_go_back else None
    return render("play/slide.html", "play/_slide.html", code, headers, story=story,
                  slide=shown_slide(slide, view.text, view.image), view=view, back_url=back, notice=notice,
                  stuck=not view.options and not view.is_ending, **picture)


Chain = list[tuple[GenerationRequest, str]]


def picture_chain(story: Story, slide_id: str, values: Mapping[str, ex.Value]) -> Chain:
    """The picture of a slide for a player with these variables (its description rendered with them), after the
    pictures it continues (a slide with ``image: {from: ...}``), each with what it is for the admin's notes: the
    generation service's `submit_chain` takes it as it is.  The slide's own request is the last."""
    composition = compose(story, slide_id, services.backend().count_tokens, values=values)
    return labelled(story, pictures(composition, services.images().key))


def picture_key(story: Story, slide_id: str, values: Mapping[str, ex.Value]) -> str:
    """The key of a slide's picture for these variables (see `picture_chain`)."""
    return services.images().key(picture_chain(story, slide_id, values)[-1][0])


def ask_picture(story: Story, slide_id: str, values: Mapping[str, ex.Value] | None = None) -> Snapshot:
    """Ask for the slide's picture for this player, at player priority (and the pictures it continues first);
    raise `QueueFull` when the painter cannot take it now.  ``values``: the variables it is painted for (the
    player's own on that slide when None)."""
    chain = picture_chain(story, slide_id, player_values(story, slide_id) if values is None else values)
    snap = services.images().submit_chain(chain, PLAYER, player_id(), client_key())
    if snap is None:  # only paint-ahead is turned away without QueueFull: told the same way if it ever happens
        raise QueueFull(services.images().retry_after())
    return snap


def start_picture(story: Story, slide_id: str, values: Mapping[str, ex.Value] | None = None) -> dict[str, Any]:
    """Ask for the slide's picture (`ask_picture`): inline it when finished, else a frame that streams it, or
    that checks it every few seconds when this client or the server has as many streams open as allowed."""
    try:
        snap = ask_picture(story, slide_id, values)
    except QueueFull as exc:
        return {"picture": "busy", "retry_after": exc.retry_after, "mine": exc.mine}
    if snap.state == DONE:
        return {"picture": "ready", "frame": frame_context(snap)}
    if snap.state in ("queued", "running") and not services.images().followers.available(client_key()):
        return {"picture": "poll", "frame": frame_context(snap, poll=True), "poll_every": POLL_EVERY}
    return {"picture": "stream", "frame": frame_context(snap)}


def prefetch(story: Story, slide_id: str, values: Mapping[str, ex.Value]) -> None:
    """Queue the pictures of the slides this one leads to, while the player reads: each open choice's target as
    it will look with the variables that choice leaves (its effects applied), PREFETCH_DEPTH choices deep; a
    continuation with the pictures it continues, which are painted before it and never twice."""
    depth, count = current_app.config["PREFETCH_DEPTH"], current_app.config["PREFETCH_COUNT"]
    images = services.images()
    level = [(slide_id, dict(values))]
    seen = {picture_key(story, slide_id, values)}
    for _ in range(depth):
        chains, next_level = [], []
        for current, now in level:
            for step in engine.leads_to(story, current, now)[: count or None]:
                ahead = picture_chain(story, step.to, step.values)
                if images.key(ahead[-1][0]) not in seen:
                    seen.add(images.key(ahead[-1][0]))
                    chains.append(ahead)
                    next_level.append((step.to, step.values))
        for ahead in chains:
            images.submit_chain(ahead, PREFETCH, player_id())
        level = next_level


def drop_siblings(story: Story, slide_id: str, values: Mapping[str, ex.Value], chosen: int) -> None:
    """Withdraw this player's paint-ahead of the choices not taken (others may still want them); ``values`` are
    the variables the choice was made with, ``chosen`` its index."""
    if current_app.config["PREFETCH_CANCEL"]:
        images = services.images()
        chains = {step.index: [images.key(request_) for request_, _ in picture_chain(story, step.to, step.values)]
                  for step in engine.leads_to(story, slide_id, dict(values))}
        kept = set(chains.get(chosen, []))
        for keys in chains.values():  # a continuation before the pictures it continues (they wait for nothing else)
            for key in reversed(keys):
                if key not in kept:
                    images.cancel(key, player_id())


def frame_context(snap: Snapshot, poll: bool = False) -> dict[str, Any]:
    """What play/_frame.html needs to draw a picture in any state; ``poll``: it is checked every few seconds
    instead of streamed (the frame then says so and asks again by itself)."""
    fmt = current_app.config["IMAGE_FORMAT"]
    snap = streams.as_told(snap)  # a picture that would fail the moment it is taken: say so now
    return {
        "state": snap.state,
        "position": snap.position,
        "step": snap.step,
        "total": snap.total,
        "preview": to_data_url(snap.preview, "jpeg") if snap.preview else None,
        "image": to_data_url(services.encodings().get(snap.key, snap.png, fmt), fmt) if snap.png else None,
        "meta": snap.meta,
        "error": without_paths(snap.error),  # players see the model's name, never where the server keeps it
        "hint": without_paths(snap.hint),
        "waiting_for": without_paths(snap.waiting_for) if snap.state == QUEUED else "",
        "poll": poll and snap.state in ("queued", "running"),
        "poll_every": POLL_EVERY,
    }


def slide_gone(story: Story, exc: SlideGone) -> Response:
    resume = engine.resume_point(story, saved_state(story))  # a slide id: its latest visit, with its values
    return render("error.html", "_notice.html", 404, title="This slide has moved", message=str(exc),
                  links=[(url_for("play.slide", slug=story.slug, slide_id=resume), "Continue the story"),
                         (url_for("play.index"), "All stories")])


@bp.get("/")
def index() -> Response:
    """The story list, a shelf of books: each story's first picture is its cover, painted ahead meanwhile (as a
    new player sees it) and swapped in as it is painted (web/covers.py)."""
    entries = services.stories().entries()
    books, check = covers.shelf(entries)
    return render("play/index.html", "play/index.html", entries=entries, covers=books, check=check)


@bp.get("/play/<slug>")
def resume(slug: str) -> ResponseReturnValue:
    """Continue a story where this browser left it."""
    story = load_story(slug)
    state = saved_state(story)
    resume_at = engine.resume_point(story, state)
    if state is not None and resume_at == state.at:
        return redirect(slide_url(story, state))
    return redirect(url_for("play.slide", slug=slug, slide_id=resume_at))


@bp.post("/play/<slug>")
def restart(slug: str) -> ResponseReturnValue:
    """Start a story (again) from its first slide."""
    story = load_story(slug)
    save_state(engine.start(story))
    if is_htmx():
        return show_slide(story, engine.start(story), push=True)
    return redirect(url_for("play.slide", slug=slug, slide_id=story.start), 303)


@bp.get("/play/<slug>/<slide_id>")
def slide(slug: str, slide_id: str) -> Response:
    """A slide: its text, its picture (inline when painted, else a streaming frame) and its choices.  ``?step=N``
    names one visit of a slide the player has been on more than once (back links, history entries)."""
    story = load_story(slug)
    try:
        state = engine.visit(story, saved_state(story), slide_id, step=step_arg(request.args.get("step")))
    except SlideGone as exc:
        return slide_gone(story, exc)
    save_state(state)
    return show_slide(story, state)


@bp.post("/play/<slug>/<slide_id>")
def choose(slug: str, slide_id: str) -> ResponseReturnValue:
    """Take a choice: move on to the slide it leads to.  The form sends the page's step, so the choice is judged
    with the values that page was shown with: sent twice, or again from an older page, its effects apply once."""
    story = load_story(slug)
    raw = request.form.get("choice", "")
    index = int(raw) - 1 if raw.isascii() and raw.isdigit() and len(raw) <= 2 else -1
    step = step_arg(request.form.get("step"))
    try:
        state = engine.choose(story, saved_state(story), slide_id, index, step=step)
    except SlideGone as exc:
        return slide_gone(story, exc)
    except PlayError as exc:
        here = engine.visit(story, saved_state(story), slide_id, step=step)  # the page the player is on, as it was
        save_state(here)
        return show_slide(story, here, 409, notice=str(exc))
    save_state(state)
    before = engine.values(story, state, -2) if len(state.path) > 1 else engine.values(story, None)
    drop_siblings(story, slide_id, before, index)
    if is_htmx():
        return show_slide(story, state, push=True)
    return redirect(slide_url(story, state), 303)


@bp.get("/play/<slug>/<slide_id>/stream")
def stream(slug: str, slide_id: str) -> Response:
    """Follow the slide's picture over Server-Sent Events: queue position, previews, the picture, or an error."""
    story = load_story(slug)
    if slide_id not in story.slides:
        abort(404)
    try:
        key = ask_picture(story, slide_id).key
    except QueueFull as exc:
        return busy(story, slide_id, exc)
    frame_template = current_app.jinja_env.get_template("play/_frame.html")
    context = {"story": story, "slide": player_slide(story, slide_id)}  # alt text rendered: no template source

    def render_frame(snap: Snapshot, poll: bool) -> str:
        return frame_template.render(frame=frame_context(snap, poll=poll), **context)

    # Each open stream holds a server thread: only so many per client and in all, so that pages always get one.
    release = services.images().followers.take(client_key())
    return streams.event_stream(streams.picture_events(key, render_frame, following=release is not None), release)


def busy(story: Story, slide_id: str, exc: QueueFull) -> Response:
    """503 with Retry-After: the picture partial saying so for htmx, a line of text for anyone else."""
    headers = {"Retry-After": str(exc.retry_after)}
    if not is_htmx():
        return Response(f"The painter is busy; try again in {exc.retry_after} s.", 503, headers, mimetype="text/plain")
    return render("play/_picture.html", "play/_picture.html", 503, headers, story=story,
                  slide=story.slides[slide_id], picture="busy", retry_after=exc.retry_after, mine=exc.mine)


@bp.get("/play/<slug>/<slide_id>/image")
def image(slug: str, slide_id: str) -> Response:
    """The slide's picture: for htmx a fresh picture frame (retry), for anyone else the image file itself."""
    story = load_story(slug)
    if slide_id not in story.slides:
        abort(404)
    if is_htmx():
        picture = start_picture(story, slide_id)
        code = 503 if picture["picture"] == "busy" else 200
        headers = {"Retry-After": str(picture["retry_after"])} if code == 503 else None
        return render("play/_picture.html", "play/_picture.html", code, headers, story=story,
                      slide=player_slide(story, slide_id), **picture)
    fmt = request.args.get("format", current_app.config["IMAGE_FORMAT"])
    if fmt not in ("webp", "png", "jpeg"):
        abort(400)
    try:
        snap = ask_picture(story, slide_id)
    except QueueFull as exc:
        return busy(story, slide_id, exc)
    status = services.backend().status()
    if not status.ready and snap.state != DONE:
        headers = {"Retry-After": "5"} if status.state == "loading" else {}
        return Response(without_paths(f"{status.message} {status.hint}".strip()), 503, headers, mimetype="text/plain")
    if snap.state in ("queued", "running"):
        # Waiting holds a server thread like a stream does, and counts as one.
        release = services.images().followers.take(client_key())
        if release is None:
            return Response("Many pictures are being painted right now; reload in a moment to see this one.", 503,
                            {"Retry-After": str(POLL_EVERY)}, mimetype="text/plain")
        try:
            snap = services.images().wait(snap.key, PLAIN_IMAGE_WAIT)
        finally:
            release()
    if snap.state in ("queued", "running"):
        return Response("The picture is still being painted; reload in a moment.", 503, {"Retry-After": "5"},
                        mimetype="text/plain")
    if snap.state != DONE or snap.png is None:
        return Response(without_paths(f"The picture could not be painted: {snap.error} {snap.hint}".strip()), 503,
                        mimetype="text/plain")
    response = Response(services.encodings().get(snap.key, snap.png, fmt), mimetype=f"image/{fmt}")
    response.vary.add("HX-Request")
    return response
