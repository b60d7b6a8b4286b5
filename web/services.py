"""Typed accessors for the services one app shares (built once by `init_services`, kept in ``app.extensions``).

Views call ``services.images()`` instead of reaching into ``current_app.extensions[...]``: one place names each
service and its type, and mypy checks every use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app

from game.engine import Roster
from game.library import StoryLibrary
from game.prompts import picture_shapes
from inference.backend import Backend
from inference.baking import Bakes
from inference.encodings import BrowserEncodings
from inference.encodings import EncodeAhead
from inference.service import GenerationService
from inference.service import build_service


def init_services(app: Flask, with_stories: bool = True) -> None:
    """Build the app's services: the story library and players (the game only), and the image side (both)."""
    instance = Path(app.instance_path)
    warmup = None
    if with_stories:
        library = StoryLibrary(app.config["STORIES"], instance / "revisions")
        app.extensions["stories"] = library
        app.extensions["players"] = Roster()
        # The front page's story covers, apart from the slides' pictures so that neither pushes the other out.
        app.extensions["covers"] = BrowserEncodings(keep=256, keep_bytes=8 * 1024 * 1024)
        if app.config["OPTIMIZE"] in (
            "compile",
            "graphs",
            "max",
        ):  # the compiled engine prepares the shapes the stories use
            warmup = picture_shapes([e.story for e in library.entries() if e.story]) or None
    encodings = BrowserEncodings()
    # The game's pages get each picture encoded as it is painted, before they ask (the API alone has no pages).
    ahead = EncodeAhead(encodings, app.config["IMAGE_FORMAT"]) if with_stories else None
    # A backend handed in through config (tests, embedding) is owned and started by the caller.
    app.extensions["images"] = build_service(app.config, instance, app.config.get("BACKEND_INSTANCE"), warmup, ahead)
    app.extensions["encodings"] = encodings
    app.extensions["bakes"] = Bakes(app.extensions["images"])


def _get(name: str) -> Any:
    return current_app.extensions[name]


def stories() -> StoryLibrary:
    """The story library (stories/ folder)."""
    return _get("stories")


def players() -> Roster:
    """Who is playing what, for the dashboard."""
    return _get("players")


def images() -> GenerationService:
    """The generation service every picture goes through."""
    return _get("images")


def backend() -> Backend:
    """The engine that paints (its status, its token counter)."""
    return images().backend


def encodings() -> BrowserEncodings:
    """Pictures encoded for browsers, once each."""
    return _get("encodings")


def covers() -> BrowserEncodings:
    """The story covers of the front page, made once each (small copies of the start slides' pictures)."""
    return _get("covers")


def bakes() -> Bakes:
    """The stories being handed to the painter in the background (the admin's Bake button)."""
    return _get("bakes")
