"""Tuning a slide's picture (the composed prompt, its settings, seeds side by side, keep one into the slide) and
baking a whole story into the picture cache."""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Any

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game.editing import EditError
from game.editing import load_document
from game.editing import value_text
from game.library import InvalidStory
from game.library import SlideNotFound
from game.library import StaleRevision
from game.prompts import Composition
from game.prompts import compose
from game.prompts import labelled
from game.prompts import pictures
from game.prompts import story_pictures
from game.prompts import varying_pictures
from game.story import DEFAULT_STRENGTH
from game.story import SLIDE_ID_RE
from game.story import ImageSpec
from game.story import Story
from game.story import dump_document
from game.tuning import COMPARED_STRENGTHS
from game.tuning import MAX_COMPARED
from game.tuning import TUNABLE
from game.tuning import compared_strengths
from game.tuning import keep_picture
from game.tuning import preview_values
from game.tuning import strength_value
from game.tuning import tuning_continuation
from game.tuning import tuning_values
from inference.errors import RequestError
from inference.jobs import ADMIN
from inference.jobs import QueueFull
from inference.pictures import to_data_url
from inference.request import GenerationRequest
from inference.samplers import SAMPLERS
from inference.samplers import SCHEDULES
from web import htmx
from web import services
from web.admin import admin_required
from web.admin import back_to_stories
from web.admin import bp
from web.admin import flash_page


@dataclass(frozen=True)
class Card:
    """One picture on the tuning page: a candidate (with Keep), or the picture the candidates continue.

    Args:
        key (`str`): the picture's job key.
        source (`str`): a candidate continuation: the slide whose picture it is painted from ("" for a plain one).
        strength (`float`, *optional*): a candidate continuation: how far from that picture.
        picture_of (`str`): the picture the candidates continue: the slide it belongs to (no Keep then).
    """

    key: str
    source: str = ""
    strength: float | None = None
    picture_of: str = ""

    def query(self) -> dict[str, str]:
        """What the card's poll address says about it (see `from_query`)."""
        query = {"of": self.picture_of} if self.picture_of else {"from": self.source} if self.source else {}
        return {**query, "strength": value_text(self.strength)} if self.strength is not None else query

    @classmethod
    def from_query(cls, key: str, args: Any) -> Card:
        """A card from its poll address (only what is well-formed: it labels the card and its Keep button)."""
        def slide(name: str) -> str:
            value = str(args.get(name, ""))
            return value if SLIDE_ID_RE.fullmatch(value) else ""

        try:
            strength: float | None = strength_value("strength", str(args.get("strength", ""))[:20])
        except EditError:
            strength = None
        return cls(key, slide("from"), strength if slide("from") else None, slide("of"))


def tuning_request(slug: str, slide_id: str, form: Any) -> tuple[Story, Composition, dict[str, Any]]:
    """The story, the slide's composition with the form's changes applied (its picture settings, the slide whose
    picture it continues and the strength, and the variables to preview it with: ``values["state"]``), and the
    form values (for the page)."""
    story = services.stories().get(slug)
    if slide_id not in story.slides:
        raise SlideNotFound(slug, slide_id)
    values: dict[str, Any] = {"state": dict(story.variables)}
    if form:
        values = {**tuning_values(form), "state": preview_values(story.variables, form)}
        source, strength = tuning_continuation(story, slide_id, form)
        slide = story.slides[slide_id]
        overrides = ImageSpec(**{k: v for k, v in values.items() if k in TUNABLE})
        style = dataclasses.replace(slide.style.merged(overrides), source=source, strength=strength)
        slide = dataclasses.replace(slide, image=values["image"], style=style)
        story = dataclasses.replace(story, slides={**story.slides, slide_id: slide})
    return story, compose(story, slide_id, services.backend().count_tokens, values=values["state"]), values


def paint(story: Story, composition: Composition, form: Any, cards: list[Card]) -> None:
    """Paint the previews the form asks for at admin priority, adding a card for each to ``cards`` as it goes (so
    that those already asked for are shown when the queue turns the rest away): several seeds (``count``, at most
    8), or for a continuation several strengths at one seed (``action=strengths``, at most `MAX_COMPARED`), each
    painted from the picture it continues, which is painted first (once) and shown first."""
    images = services.images()
    *before, (last, label) = labelled(story, pictures(composition, images.key))
    seed = last.seed if last.seed != -1 else secrets.randbelow(2**32 - 8)
    if form.get("action") == "strengths":
        if not before:
            raise EditError("image_from", "comparing strengths needs a picture to continue: pick the slide whose "
                                          "picture this one continues")
        variants = [last.replace(seed=seed, denoising_strength=s) for s in compared_strengths(form.get("strengths",
                                                                                                       ""))]
    else:
        count = max(1, min(8, int(form.get("count", "4") or 4)))
        variants = [last.replace(seed=seed + offset) for offset in range(count)]
    source = composition.source.slide if composition.source is not None else ""
    for variant in variants:
        snap = images.submit_chain([*before, (variant, label)], ADMIN, f"admin:{story.slug}")
        if snap is None:
            continue
        if before and not cards:  # the picture they continue, asked for with the first of them
            cards.append(Card(images.key(before[-1][0]), picture_of=source))
        cards.append(Card(snap.key, source, variant.denoising_strength if before else None))


def source_card(story: Story, composition: Composition) -> Card | None:
    """Before anything is painted: the picture a continuation continues, if it is painted or on its way."""
    if composition.source is None:
        return None
    images = services.images()
    key = images.key(pictures(composition, images.key)[-2][1])
    return Card(key, picture_of=composition.source.slide) if images.state_of(key) is not None else None


@bp.route("/stories/<slug>/slides/<slide_id>", methods=["GET", "POST"])
@admin_required
def tune(slug: str, slide_id: str) -> ResponseReturnValue:
    """The slide's prompt as composed (with the 75-token budget and what was dropped), its settings, the slide
    whose picture it continues and the strength, the values of the story's variables it is previewed with, and
    previews: seeds side by side, or strengths side by side beside the picture they continue ("Show the prompt"
    composes without painting).  An htmx ask gets the previews (and the prompt as composed) only."""
    error: str | None = None
    code, headers = 200, {}
    cards: list[Card] = []
    form = request.form if request.method == "POST" else None
    try:
        story, composition, values = tuning_request(slug, slide_id, form)
        if form is not None and form.get("action") != "compose":
            paint(story, composition, form, cards)
    except (EditError, ValueError, RequestError) as exc:
        if not cards:
            story, composition, values = tuning_request(slug, slide_id, None)
        error, code = str(exc), 422
    except QueueFull as exc:
        error, code, headers = str(exc), 503, {"Retry-After": str(exc.retry_after)}
    shown = cards or [card for card in [source_card(story, composition)] if card is not None]
    _, revision = services.stories().text(slug)
    return htmx.render("admin/tune.html", "admin/_tune_cards.html", code, headers, slug=slug, story=story,
                       slide=story.slides[slide_id], composition=composition, request_=composition.request,
                       cards=shown, error=error, revision=revision, samplers=list(SAMPLERS),
                       schedules=list(SCHEDULES), preview_state=values["state"],
                       varies=varying_pictures(story, slide_id), sources=story.possible_sources(slide_id),
                       default_strength=DEFAULT_STRENGTH,
                       strengths=form.get("strengths", COMPARED_STRENGTHS) if form else COMPARED_STRENGTHS,
                       max_compared=MAX_COMPARED, oob=htmx.is_htmx())


@bp.get("/jobs/<key>")
@admin_required
def job_card(key: str) -> ResponseReturnValue:
    """One preview, polled until it is painted: progress, a rough preview, then the picture and a Keep button (the
    picture a continuation is painted from: no Keep, a link to its own slide)."""
    if not re.fullmatch(r"[0-9a-f]{64}", key):  # job keys are sha256 hex digests; anything else names no preview
        return flash_page("Not found", "There is no preview with that id.", 404, back_to_stories())
    card = Card.from_query(key, request.args)
    snap = services.images().lookup(key)
    if snap is None:
        return render_template("admin/_tune_card.html", card=card, snap=None, gone=True), 404
    picture = to_data_url(snap.png, "png") if snap.png else None
    preview = to_data_url(snap.preview, "jpeg") if snap.preview else None
    return render_template("admin/_tune_card.html", card=card, snap=snap, picture=picture, preview=preview,
                           slug=request.args.get("slug", ""), slide_id=request.args.get("slide", ""),
                           revision=request.args.get("revision", ""))


@bp.post("/stories/<slug>/slides/<slide_id>/keep")
@admin_required
def keep(slug: str, slide_id: str) -> ResponseReturnValue:
    """Write the chosen picture's seed and settings (and subject line, and the slide whose picture it continues
    with the strength) into the slide, keeping the file's comments.  The Keep button names the seed; a
    continuation's button address names the source and strength it was painted with (``chosen_from``,
    ``chosen_strength``), which win over the form's."""
    again = url_for("admin.tune", slug=slug, slide_id=slide_id)
    form = request.form.to_dict()
    if "chosen_from" in request.args:
        form.update(image_from=request.args["chosen_from"], image_strength=request.args.get("chosen_strength", ""))
    try:
        story, composition, values = tuning_request(slug, slide_id, form)
        chosen = composition.request.replace(seed=int(form.get("chosen_seed", composition.request.seed)))
    except (EditError, ValueError, RequestError) as exc:
        return flash_page("Not kept", str(exc), 422, [(again, "Back")])
    original = compose(services.stories().get(slug), slide_id, services.backend().count_tokens).request
    text, revision = services.stories().text(slug)
    document = load_document(text)
    source = story.slides[slide_id].source
    keep_picture(document, slug, slide_id, values.get("image"), chosen, original,
                 (source or "") if "image_from" in form else None)
    try:
        services.stories().save(slug, dump_document(document), form.get("revision", revision))
    except StaleRevision:
        return flash_page("Not kept", "The story changed since this page was opened; open the slide again and retry.",
                          409, [(again, "Open the slide again")])
    except InvalidStory as exc:
        return flash_page("Not kept", str(exc), 422, [(again, "Back")])
    strength = value_text(chosen.denoising_strength) if source else None
    return redirect(url_for("admin.tune", slug=slug, slide_id=slide_id, kept=chosen.seed, source=source,
                            strength=strength), 303)


def bake_chains(story: Story) -> list[list[tuple[GenerationRequest, str]]]:
    """Every slide's picture with the pictures it continues before it, slides in painting order."""
    return story_pictures(story, services.images().key, services.backend().count_tokens)


def bake_keys(story: Story) -> list[str]:
    """The keys of every picture a bake paints, each once, sources before the continuations painted from them."""
    images = services.images()
    return list(dict.fromkeys(images.key(request_) for chain in bake_chains(story) for request_, _ in chain))


def bake_progress(slug: str) -> dict[str, Any]:
    """How many of the story's pictures are painted, failed, on their way, or none of those (not asked for yet, or
    cancelled), and whether the bake is still handing pictures to the painter."""
    story = services.stories().get(slug)
    images = services.images()
    feeding = services.bakes().feeding(slug)  # asked first: a picture handed over meanwhile is counted below
    states = [images.state_of(key) for key in bake_keys(story)]
    done, failed = states.count("done"), states.count("failed")
    painting = states.count("queued") + states.count("running")
    return {"slug": slug, "done": done, "failed": failed, "painting": painting, "total": len(states),
            "missing": len(states) - done - failed - painting, "feeding": feeding}


@bp.post("/stories/<slug>/bake")
@admin_required
def bake(slug: str) -> ResponseReturnValue:
    """Paint every slide of the story into the cache, at admin priority (players still come first); a slide whose
    picture continues another's after that one, which is painted once.  A story with more pictures than the queue
    takes is handed over as the queue makes room."""
    story = services.stories().get(slug)
    if not services.bakes().start(slug, bake_chains(story), ADMIN, f"bake:{slug}"):
        return render_template("admin/_bake.html", busy=services.bakes().limit, **bake_progress(slug)), 429
    return render_template("admin/_bake.html", **bake_progress(slug))


@bp.get("/stories/<slug>/bake")
@admin_required
def bake_status(slug: str) -> ResponseReturnValue:
    """How far the bake has come (polled by the bake button's fragment)."""
    return render_template("admin/_bake.html", **bake_progress(slug))
