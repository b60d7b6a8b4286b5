"""Commands for the terminal: ``flask --app app bake STORY`` paints a whole story into the picture cache."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from game.library import LibraryError
from game.prompts import compose
from inference.jobs import ADMIN
from inference.jobs import DONE
from web import services


@click.command("bake")
@click.argument("story")
@with_appcontext
def bake_command(story: str) -> None:
    """Paint every slide of STORY into the picture cache (players then never wait), with a progress bar."""
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
    keys = []
    for sid in loaded.slides:
        snap = images.submit(compose(loaded, sid, backend.count_tokens).request, ADMIN, "bake:cli")
        if snap is not None:
            keys.append(snap.key)
    failed = 0
    with click.progressbar(keys, label=f"Baking {len(keys)} pictures of {loaded.title}") as bar:
        for key in bar:
            failed += images.wait(key).state != DONE
    click.echo(
        f"{len(keys) - failed} of {len(keys)} pictures are in the cache." + (f" {failed} failed." if failed else "")
    )
