"""Tuning a slide's picture (the composed prompt, its settings, seeds side by side, keep one into the slide) and
baking a whole story into the picture cache."""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game.editing import TUNABLE
from game.editing import EditError
from game.editing import keep_picture
from game.editing import load_document
from game.editing import preview_values
from game.editing import tuning_values
from game.library import InvalidStory
from game.library import SlideNotFound
from game.library import StaleRevision
from game.prompts import Composition
from game.prompts import compose
from game.prompts import depends_on_state
from game.prompts import story_pictures
from game.story import ImageSpec
from game.story import Story
from game.story import dump_document
from inference.jobs import ADMIN
from inference.jobs import QueueFull
from inference.request import SAMPLERS
from inference.request import SCHEDULES
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import to_data_url
from web import services
from web.admin import admin_required
from web.admin import back_to_stories
from web.admin import bp
from web.admin import flash_page


def tuning_request(slug: str, slide_id: str, form: Any) -> tuple[Story, Composition, dict[str, Any]]:
    """The story, the slide's composition with the form's changes applied (its picture settings, and the
    variables to preview it with: ``values["state"]``), and the form values (for the page)."""
    story = services.stories().get(slug)
    if slide_id not in story.slides:
        raise SlideNotFound(slug, slide_id)
    values: dict[str, Any] = {"state": dict(story.variables)}
    if form:
        values = {**tuning_values(form), "state": preview_values(story.variables, form)}
        slide = story.slides[slide_id]
        overrides = ImageSpec(**{k: v for k, v in values.items() if k in TUNABLE})
        slide = dataclasses.replace(slide, image=values["image"], style=slide.style.merged(overrides))
        story = dataclasses.replace(story, slides={**story.slides, slide_id: slide})
    return story, compose(story, slide_id, services.backend().count_tokens, values=values["state"]), values


@bp.route("/stories/<slug>/slides/<slide_id>", methods=["GET", "POST"])
@admin_required
def tune(slug: str, slide_id: str) -> ResponseReturnValue:
    """The slide's prompt as composed (with the 75-token budget and what was dropped), its settings, the values
    of the story's variables it is previewed with, and previews ("Show the prompt" composes without painting)."""
    error, cards = None, []
    try:
        story, composition, values = tuning_request(slug, slide_id, request.form if request.method == "POST" else None)
        if request.method == "POST" and request.form.get("action") != "compose":
            count = max(1, min(8, int(request.form.get("count", "4") or 4)))
            base = composition.request
            first = base.seed if base.seed != -1 else secrets.randbelow(2**32 - 8)
            for offset in range(count):
                snap = services.images().submit(base.replace(seed=first + offset), ADMIN, f"admin:{slug}")
                if snap is not None:
                    cards.append(snap.key)
    except (EditError, ValueError, RequestError, QueueFull) as exc:
        story, composition, values = tuning_request(slug, slide_id, None)
        error = str(exc)
    _, revision = services.stories().text(slug)
    return render_template("admin/tune.html", slug=slug, story=story, slide=story.slides[slide_id],
                           composition=composition, request_=composition.request, cards=cards, error=error,
                           revision=revision, samplers=list(SAMPLERS), schedules=list(SCHEDULES),
                           preview_state=values["state"], varies=depends_on_state(story, slide_id)), \
        422 if error else 200


@bp.get("/jobs/<key>")
@admin_required
def job_card(key: str) -> ResponseReturnValue:
    """One preview, polled until it is painted: progress, a rough preview, then the picture and a Keep button."""
    if not re.fullmatch(r"[0-9a-f]{64}", key):  # job keys are sha256 hex digests; anything else names no preview
        return flash_page("Not found", "There is no preview with that id.", 404, back_to_stories())
    snap = services.images().lookup(key)
    if snap is None:
        return render_template("admin/_tune_card.html", key=key, snap=None, gone=True), 404
    picture = to_data_url(snap.png, "png") if snap.png else None
    preview = to_data_url(snap.preview, "jpeg") if snap.preview else None
    return render_template("admin/_tune_card.html", key=key, snap=snap, picture=picture, preview=preview,
                           slug=request.args.get("slug", ""), slide_id=request.args.get("slide", ""),
                           revision=request.args.get("revision", ""))


@bp.post("/stories/<slug>/slides/<slide_id>/keep")
@admin_required
def keep(slug: str, slide_id: str) -> ResponseReturnValue:
    """Write the chosen picture's seed and settings (and subject line) into the slide, keeping the file's comments."""
    again = url_for("admin.tune", slug=slug, slide_id=slide_id)
    try:
        story, composition, values = tuning_request(slug, slide_id, request.form)
        chosen = composition.request.replace(seed=int(request.form.get("chosen_seed", composition.request.seed)))
    except (EditError, ValueError, RequestError) as exc:
        return flash_page("Not kept", str(exc), 422, [(again, "Back")])
    original = compose(services.stories().get(slug), slide_id, services.backend().count_tokens).request
    text, revision = services.stories().text(slug)
    document = load_document(text)
    keep_picture(document, slug, slide_id, values.get("image"), chosen, original)
    try:
        services.stories().save(slug, dump_document(document), request.form.get("revision", revision))
    except StaleRevision:
        return flash_page("Not kept", "The story changed since this page was opened; open the slide again and retry.",
                          409, [(again, "Open the slide again")])
    except InvalidStory as exc:
        return flash_page("Not kept", str(exc), 422, [(again, "Back")])
    return redirect(url_for("admin.tune", slug=slug, slide_id=slide_id, kept=chosen.seed), 303)


def bake_chains(story: Story) -> list[list[tuple[GenerationRequest, str]]]:
    """Every slide's picture with the pictures it continues before it, slides in painting order."""
    return story_pictures(story, services.images().key, services.backend().count_tokens)


def bake_keys(story: Story) -> list[str]:
    """The keys of every picture a bake paints, each once, sources before the continuations painted from them."""
    images = services.images()
    return list(dict.fromkeys(images.key(request_) for chain in bake_chains(story) for request_, _ in chain))


def bake_progress(slug: str) -> dict[str, Any]:
    story = services.stories().get(slug)
    images = services.images()
    states = [images.state_of(key) for key in bake_keys(story)]
    return {"slug": slug, "done": states.count("done"), "failed": states.count("failed"), "total": len(states)}


@bp.post("/stories/<slug>/bake")
@admin_required
def bake(slug: str) -> ResponseReturnValue:
    """Paint every slide of the story into the cache, at admin priority (players still come first); a slide whose
    picture continues another's after that one, which is painted once."""
    story = services.stories().get(slug)
    queued = 0
    for chain in bake_chains(story):
        try:
            services.images().submit_chain(chain, ADMIN, f"bake:{slug}")
            queued += 1
        except QueueFull:
            break
    return render_template("admin/_bake.html", queued=queued, **bake_progress(slug))


@bp.get("/stories/<slug>/bake")
@admin_required
def bake_status(slug: str) -> ResponseReturnValue:
    """How far the bake has come (polled by the bake button's fragment)."""
    return render_template("admin/_bake.html", queued=None, **bake_progress(slug))
