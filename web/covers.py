"""The story covers of the front page: each story's first picture, small, so the list is a shelf of books.

A story's cover is its start slide's picture exactly as a new player gets it (the request `web.play` composes for
that slide with the starting values), so painting a cover paints that player's first picture, and the other way
round.  Showing the list asks for the covers not painted yet at paint-ahead priority, which never delays a player
(a waiting player preempts paint-ahead), at most `COVERS_AHEAD` at a time, first cards first.

A painted cover is served small (``--cover-width``, WebP by default) from its own address, ``/play/<slug>/cover?v=``
its picture's key: the page stays a few KB however many stories it lists, each small copy is made once (a bounded
memo) and a browser keeps it for good (another picture has another address).  A cover not painted yet is the title
on a coloured ground; one check for the whole shelf (`check`) asks every few seconds, backing off, a bounded number
of times, and swaps in each cover as it is painted: one request at a time per page however many stories, which
leaves the client's picture streams and rate limit to its play.  Without JavaScript the covers appear on reload.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import replace

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game import engine
from game.library import StoryEntry
from game.library import StoryNotFound
from game.story import Story
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PREFETCH
from inference.jobs import QUEUED
from inference.jobs import RUNNING
from web import play
from web import services
from web.htmx import is_htmx
from web.htmx import render
from web.progress import player_id

log = logging.getLogger(__name__)
bp = Blueprint("covers", __name__)
COVERS_AHEAD = 8  # unpainted covers one view of the list asks for at once; the rest as those are painted
CHECK_DELAYS = (3, 3, 4, 6, 9, 13, 20, 30)  # seconds before each check of the shelf; the last one repeats...
CHECK_TRIES = 20  # ...for this many checks in all (about 7 minutes); after that, the covers come on reload
MAX_CHECKED = 100  # stories one check asks about (the first ones of the shelf)
HUES = 8  # coloured grounds of the covers not painted yet (.hue-0 ... .hue-7 in the stylesheet)
FOREVER = 365 * 24 * 3600  # a cover's address names its picture: the browser may keep it this long


@dataclass(frozen=True)
class Cover:
    """What play/_cover.html draws for one story.

    Args:
        slug (`str`), title (`str`): the story.
        hue (`int`): its coloured ground while there is no picture (the same for the story every time).
        src (`str`): the address of its painted cover; "" while there is none.
        width (`int`), height (`int`): the cover's size in pixels (for the layout before it loads).
        pending (`bool`): it is being painted, or waits for room to be: the shelf checks again.
    """

    slug: str
    title: str
    hue: int
    src: str = ""
    width: int = 0
    height: int = 0
    pending: bool = False


def hue(slug: str) -> int:
    return zlib.crc32(slug.encode()) % HUES


def cover_chain(story: Story) -> play.Chain | None:
    """The start slide's picture as a new player gets it, after the pictures it continues (if it is a
    continuation); None when it cannot be composed (the card then keeps its title on a coloured ground: a cover is
    no reason to fail the story list)."""
    try:
        return play.picture_chain(story, story.start, engine.values(story, None))
    except ValueError as exc:  # a picture setting the painter refuses (RequestError), a value that will not render
        log.warning("story %s: its cover cannot be composed: %s", story.slug, exc)
        return None


def look(entry: StoryEntry) -> tuple[Cover, play.Chain | None]:
    """The story's cover as it stands now, and the picture to ask for when it is to be painted (else None)."""
    cover = Cover(entry.slug, entry.title, hue(entry.slug))
    chain = cover_chain(entry.story) if entry.story is not None else None
    if chain is None:
        return cover, None
    request_ = chain[-1][0]
    images = services.images()
    key = images.key(request_)
    state = images.state_of(key)
    if state == DONE:
        width = current_app.config["COVER_WIDTH"]
        return replace(cover, src=url_for("covers.cover", slug=entry.slug, v=key[:16]), width=width,
                       height=max(1, round(width * request_.height / request_.width))), None
    # not painted: it will be if paint-ahead is on, the painter works and this picture did not just fail
    if state == FAILED or not current_app.config["PREFETCH_DEPTH"] or images.backend.status().state == "failed":
        return cover, None
    return replace(cover, pending=True), chain


def ask(wanted: Iterable[play.Chain | None]) -> None:
    """Ask for the first `COVERS_AHEAD` covers to be painted, at paint-ahead priority: each only once while it
    waits (a second asker joins the first job), the first cards first (paint-ahead goes newest first, so they are
    asked last).  A full queue turns paint-ahead away: those cards keep their title and the next check asks again."""
    chains = [c for c in wanted if c is not None][:COVERS_AHEAD]
    for chain in reversed(chains):
        services.images().submit_chain(chain, PREFETCH, player_id())


def check_context(pending: list[str], tries: int) -> dict[str, str | int] | None:
    """What the shelf's next check needs (play/_cover_check.html), or None when there is nothing to wait for."""
    if not pending or tries >= CHECK_TRIES:
        return None
    return {"url": url_for("covers.check", pending=",".join(pending[:MAX_CHECKED]), tries=tries + 1),
            "delay": CHECK_DELAYS[min(tries, len(CHECK_DELAYS) - 1)]}


def shelf(entries: list[StoryEntry]) -> tuple[dict[str, Cover], dict[str, str | int] | None]:
    """The covers of the listed stories by slug, asking for those not painted yet; and the shelf's first check."""
    looks = [look(entry) for entry in entries]
    ask(request_ for _, request_ in looks)
    return {cover.slug: cover for cover, _ in looks}, check_context([c.slug for c, _ in looks if c.pending], 0)


def parse_pending(raw: str) -> list[str]:
    """The slugs a check names (comma-separated), at most `MAX_CHECKED` of them, in order, once each."""
    slugs: list[str] = []
    for slug in raw[: MAX_CHECKED * 65].split(","):
        if slug and slug not in slugs and len(slugs) < MAX_CHECKED:
            slugs.append(slug)
    return slugs


@bp.get("/covers")
def check() -> ResponseReturnValue:
    """The shelf's check (htmx): each cover painted since, swapped into its card out of band, and the next check
    while some are still on their way.  Anyone else gets the story list."""
    if not is_htmx():
        return redirect(url_for("play.index"))
    raw_tries = request.args.get("tries", "")
    tries = int(raw_tries) if raw_tries.isascii() and raw_tries.isdigit() and len(raw_tries) <= 3 else CHECK_TRIES
    looks = []
    for slug in parse_pending(request.args.get("pending", "")):
        try:
            looks.append(look(services.stories().entry(slug)))
        except StoryNotFound:  # removed (or never there): nothing to swap
            continue
    ask(request_ for _, request_ in looks)
    painted = [cover for cover, _ in looks if cover.src]
    pending = [cover.slug for cover, _ in looks if cover.pending]
    return render("play/_cover_check.html", "play/_cover_check.html", painted=painted,
                  check=check_context(pending, tries))


@bp.get("/play/<slug>/cover")
def cover(slug: str) -> ResponseReturnValue:
    """A story's cover: for htmx its card's cover (play/_cover.html; asking for it to be painted), for anyone else
    the small picture itself.  ``?v=`` names the picture: such an answer may be kept by the browser for good."""
    try:
        entry = services.stories().entry(slug)
    except StoryNotFound:
        abort(404)
    if is_htmx():
        found, wanted = look(entry)
        ask([wanted])
        return render("play/_cover.html", "play/_cover.html", cover=found)
    chain = cover_chain(entry.story) if entry.story is not None else None
    if chain is None:
        abort(404)
    images = services.images()
    key = images.key(chain[-1][0])
    fmt, width = current_app.config["IMAGE_FORMAT"], current_app.config["COVER_WIDTH"]
    data = services.covers().find(key, fmt, width)
    if data is None:
        snap = images.lookup(key)
        if snap is None or snap.state != DONE or snap.png is None:
            if snap is not None and snap.state in (QUEUED, RUNNING):
                return Response("This story's cover is being painted; reload in a moment.", 503,
                                {"Retry-After": "5"}, mimetype="text/plain")
            return Response("This story has no cover yet: it is painted while the story list is shown.", 404,
                            mimetype="text/plain")
        data = services.covers().get(key, snap.png, fmt, width)
    response = Response(data, mimetype=f"image/{fmt}")
    response.set_etag(f"{key[:32]}-{fmt}-{width}")
    response.vary.add("HX-Request")
    if request.args.get("v") == key[:16]:
        response.cache_control.public = True
        response.cache_control.max_age = FOREVER
        response.cache_control.immutable = True
    else:  # the address of whatever the story's cover is now: ask again each time (a 304 when it is the same)
        response.cache_control.no_cache = True
    return response.make_conditional(request)
