"""Commands for the terminal: ``flask --app app bake STORY`` paints a whole story into the picture cache."""

from __future__ import annotations

import threading
import time

import click
from flask.cli import with_appcontext

from game.library import LibraryError
from game.prompts import story_pictures
from inference.baking import submit_all
from inference.jobs import ADMIN
from inference.jobs import DONE
from inference.jobs import FAILED
from web import services


@click.command("bake")
@click.argument("story")
@with_appcontext
def bake_command(story: str) -> None:
    """Paint every slide of STORY into the picture cache (players then never wait), with a progress bar; a slide
    whose picture continues another's after that one, which is painted once."""
    backend, images = services.backend(), services.images()
    try:
        loaded = services.stories().get(story)
    except LibraryError as exc:
        raise click.ClickException(str(exc)) from None
    while backend.status().state == "loading":
        time.sleep(0.5)
    status = backend.status()
    if not status.ready:
        raise click.ClickException(f"{status.message} {status.hint}")
    chains = story_pictures(loaded, images.key, backend.count_tokens)
    keys = list(dict.fromkeys(images.key(request) for chain in chains for request, _ in chain))
    # A story can hold more pictures than the queue takes at once: they are handed over as it makes room.
    feeder = threading.Thread(target=submit_all, args=(images, chains, ADMIN, "bake:cli"), name="bake", daemon=True)
    feeder.start()
    failed = plain = 0
    with click.progressbar(keys, label=f"Baking {len(keys)} pictures of {loaded.title}") as bar:
        for key in bar:
            while True:
                feeding = feeder.is_alive()  # asked before the wait: a picture not handed over yet reads as cancelled
                snap = images.wait(key)
                if snap.state in (DONE, FAILED) or not feeding:
                    break
                time.sleep(0.2)
            failed += snap.state != DONE
            plain += snap.state == DONE and "fallback" in snap.meta
    notes = f" {failed} failed." if failed else ""
    if plain:
        notes += f" {plain} continue a picture that failed and were painted as plain pictures (not cached)."
    click.echo(f"{len(keys) - failed - plain} of {len(keys)} pictures are in the cache.{notes}")
