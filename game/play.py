"""The player's pages: the story list, the slides, the choices, and each slide's picture.

htmx requests get the fragment for their target; every other request gets the full page at the same URL, so
plain links, reloads and history restores all work.  Errors come back as the same fragment with a 4xx/5xx
status; base.html configures htmx to swap those too.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from game import engine
from game.engine import PlayError
from game.engine import PlayState
from game.engine import SlideGone
from game.library import StoryBroken
from game.library import StoryNotFound
from game.prompts import compose
from game.story import Story
from inference.backend import BackendUnavailable

bp = Blueprint("play", __name__)


def is_htmx() -> bool:
    """True for htmx swaps, False for full page loads and htmx history restores."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def render(page: str, partial: str, code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    """Render the fragment for htmx or the whole page otherwise, marking the response as varying by HX-Request."""
    response = current_app.make_response((render_template(partial if is_htmx() else page, **context), code))
    response.headers.update(headers or {})
    response.vary.add("HX-Request")
    return response


def load_story(slug: str) -> Story:
    try:
        return current_app.extensions["stories"].get(slug)
    except StoryNotFound:
        abort(404)
    except StoryBroken as exc:
        abort(render("error.html", "partials/notice.html", 409, title="This story needs repair",
                     message="It has errors, so it cannot be played until its author fixes them.",
                     problems=exc.entry.errors))


def saved_state(story: Story) -> PlayState | None:
    return PlayState.from_dict(story.slug, session.get("plays", {}).get(story.slug))


def save_state(state: PlayState) -> None:
    plays = dict(session.get("plays", {}))
    plays[state.story] = state.to_dict()
    session["plays"] = plays
    session.permanent = True


def show_slide(story: Story, state: PlayState, code: int = 200, notice: str | None = None,
               push: bool = False) -> Response:
    slide = engine.current(story, state)
    url = url_for("play.slide", slug=story.slug, slide_id=slide.id)
    headers = {"HX-Push-Url": url} if push else None
    return render("play/slide.html", "partials/slide.html", code, headers, story=story, slide=slide,
                  state=state, notice=notice, image="pending")


def slide_gone(story: Story, exc: SlideGone) -> Response:
    resume = engine.resume_point(story, saved_state(story))
    return render("error.html", "partials/notice.html", 404, title="This slide has moved", message=str(exc),
                  links=[(url_for("play.slide", slug=story.slug, slide_id=resume), "Continue the story"),
                         (url_for("play.index"), "All stories")])


@bp.get("/")
def index() -> Response:
    return render("play/index.html", "play/index.html", entries=current_app.extensions["stories"].entries())


@bp.get("/play/<slug>")
def resume(slug: str) -> Response:
    story = load_story(slug)
    return redirect(url_for("play.slide", slug=slug, slide_id=engine.resume_point(story, saved_state(story))))


@bp.post("/play/<slug>")
def restart(slug: str) -> Response:
    story = load_story(slug)
    save_state(engine.start(story))
    if is_htmx():
        return show_slide(story, engine.start(story), push=True)
    return redirect(url_for("play.slide", slug=slug, slide_id=story.start), 303)


@bp.get("/play/<slug>/<slide_id>")
def slide(slug: str, slide_id: str) -> Response:
    story = load_story(slug)
    try:
        state = engine.visit(story, saved_state(story), slide_id)
    except SlideGone as exc:
        return slide_gone(story, exc)
    save_state(state)
    return show_slide(story, state)


@bp.post("/play/<slug>/<slide_id>")
def choose(slug: str, slide_id: str) -> Response:
    story = load_story(slug)
    try:
        index = int(request.form.get("choice", "")) - 1
    except ValueError:
        index = -1
    try:
        state = engine.choose(story, saved_state(story), slide_id, index)
    except SlideGone as exc:
        return slide_gone(story, exc)
    except PlayError as exc:
        return show_slide(story, engine.visit(story, saved_state(story), slide_id), 409, notice=str(exc))
    save_state(state)
    if is_htmx():
        return show_slide(story, state, push=True)
    return redirect(url_for("play.slide", slug=slug, slide_id=state.at), 303)


@bp.get("/play/<slug>/<slide_id>/image")
def image(slug: str, slide_id: str) -> Response:
    """Paint the slide's picture: an image fragment for htmx, the image file itself for anyone else."""
    story = load_story(slug)
    if slide_id not in story.slides:
        abort(404)
    backend = current_app.extensions["backend"]
    fmt = request.args.get("format", current_app.config["IMAGE_FORMAT"])
    if fmt not in ("webp", "png", "jpeg"):
        abort(400)
    composition = compose(story, slide_id, backend.count_tokens)
    context = dict(story=story, slide=story.slides[slide_id], composition=composition)
    try:
        result = backend.generate([composition.request])[0]
    except BackendUnavailable as exc:
        status = exc.status
        headers = {"Retry-After": "3"} if status.state == "loading" else {}
        if not is_htmx():
            return Response(f"{status.message} {status.hint}".strip(), 503, headers, mimetype="text/plain")
        return render("partials/image.html", "partials/image.html", 503, headers, image=status.state,
                      status=status, **context)
    except Exception as exc:  # noqa: BLE001 - a failed picture must never break the story
        current_app.logger.exception("painting %s/%s failed", slug, slide_id)
        if not is_htmx():
            return Response(f"The picture could not be painted: {exc}", 500, mimetype="text/plain")
        return render("partials/image.html", "partials/image.html", 500, image="error", error=str(exc), **context)
    if not is_htmx():
        response = Response(result.encode(fmt), mimetype=f"image/{fmt}")
        response.vary.add("HX-Request")
        return response
    return render("partials/image.html", "partials/image.html", image="ready", result=result,
                  data_url=result.data_url(fmt), **context)
