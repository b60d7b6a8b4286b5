"""A picture followed over Server-Sent Events: the events of one picture's stream and the answer that carries them.

The stream view (``play.stream``) asks for the picture and renders its frames; this module decides when a frame
goes out (only when what it shows changed, the preview throttled), keeps a quiet stream alive, and hands a long
stream over to polling so its server thread goes back to the pool.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from collections.abc import Iterator

from flask import Response
from flask import stream_with_context

from inference.jobs import QUEUED
from inference.jobs import Snapshot
from web import services

STREAM_HEARTBEAT = 5  # seconds between keep-alive comments on a quiet stream (a gone client is noticed on a write)
STREAM_LIFETIME = 300  # seconds after which a stream hands over to polling (the thread goes back to the pool)
PROGRESS_EVERY = 1.0  # seconds between frames that only move the progress bar (the preview in them is unchanged)


def as_told(snap: Snapshot) -> Snapshot:
    """The picture's snapshot as a player is told it: queued while the model has failed, it would fail the moment
    it is taken, so it reads as failed now (with the model's message and hint)."""
    if snap.state == QUEUED:
        status = services.backend().status()
        if status.state == "failed":
            return dataclasses.replace(snap, state="failed", error=status.message, hint=status.hint)
    return snap


def picture_events(key: str, render_frame: Callable[[Snapshot, bool], str], following: bool) -> Iterator[str]:
    """The Server-Sent Events that follow one picture: a ``frame`` (``render_frame(snapshot, poll)``) whenever what
    it shows changes, a keep-alive comment on a quiet stream, ``done`` when the picture has ended or the stream has
    lived STREAM_LIFETIME (its last frame then polls).  Not ``following`` (at the cap on streams): one frame telling
    where the picture stands, polling, then ``done``."""
    yield "retry: 3000\n\n"
    snap = services.images().snapshot(key)
    if not following:
        yield sse("frame", render_frame(snap, True))
        yield sse("done", "")
        return
    version, shown, deadline = -1, None, time.monotonic() + STREAM_LIFETIME
    preview, sent_at = None, 0.0  # the preview in the last frame sent, and when it was sent
    while True:
        if snap.version > version or snap.state not in ("queued", "running"):
            state = as_told(snap).state  # a picture that would fail the moment it is taken reads as failed now
            ended = state not in ("queued", "running")
            overdue = not ended and time.monotonic() > deadline
            # A frame that would only move the progress bar, re-sending the same preview, waits for news (a new
            # preview, the picture) or PROGRESS_EVERY, whichever comes first: previews are most of a stream's bytes.
            wait = PROGRESS_EVERY - (time.monotonic() - sent_at)
            same_preview = state == "running" and snap.preview is not None and snap.preview == preview
            if same_preview and not overdue and wait > 0:
                snap = next_snapshot(key, snap.version, wait)
                continue
            version = snap.version
            # A frame only when it differs from the last one sent (a failed model, say, is told once).
            html = render_frame(snap, overdue)
            if html != shown:
                shown, preview, sent_at = html, snap.preview, time.monotonic()
                yield sse("frame", html)
            if ended or overdue:
                yield sse("done", "")
                return
        else:
            yield ": still here\n\n"  # a client that has gone is noticed on this write
        if services.images().closed:
            return
        snap = next_snapshot(key, version, STREAM_HEARTBEAT)


def next_snapshot(key: str, seen_version: int, timeout: float) -> Snapshot:
    """The picture's first snapshot newer than ``seen_version``, or, after ``timeout`` seconds without one, its
    current one."""
    return services.images().follow(key, seen_version, timeout=timeout) or services.images().snapshot(key)


def event_stream(events: Iterator[str], on_close: Callable[[], None] | None) -> Response:
    """A Server-Sent Events answer streaming ``events`` (in the request's context), kept out of caches and proxy
    buffers; ``on_close`` runs when the stream ends, fails, or its client goes away."""
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    if on_close is not None:
        response.call_on_close(on_close)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def sse(event: str, data: str) -> str:
    """One Server-Sent Event; every line of ``data`` gets its own ``data:`` field."""
    lines = [line for line in data.splitlines() if line.strip()] or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"
