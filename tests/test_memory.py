"""Memory that comes back: every in-memory table of the server stays at its bound however long it is attacked."""

from __future__ import annotations

import io
import random
import time
import types

import pytest
import requests
from PIL import Image

from game.engine import Roster
from inference.cache import ImageCache
from inference.encodings import BrowserEncodings
from inference.jobs import ENDED_KEEP
from inference.jobs import ENDED_KEEP_BYTES
from inference.remote import RemoteBackend
from inference.request import GenerationRequest
from inference.service import GenerationService
from tests.support import ProxiedServer as Server
from tests.support import free_port


def nowhere() -> str:
    """The address of an image server that is not there: every picture fails at once (a real failure)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.slow
def test_failing_api_calls_leave_the_job_table_at_its_bound(tmp_path):
    server = Server(tmp_path, types.SimpleNamespace(url=nowhere()))
    try:
        url = f"http://127.0.0.1:{server.port}/sdapi/v1/txt2img"
        with requests.Session() as session:
            for i in range(300):  # over four times the table's bound
                body = {"prompt": f"a lighthouse number {i}", "steps": 1, "width": 64, "height": 64, "seed": i}
                assert session.post(url, json=body, timeout=60).status_code >= 500
        status = server.status()
        assert status["counters"]["failed"] >= 300
        assert status["jobs"] <= ENDED_KEEP, status["jobs"]  # not 300 failed jobs kept forever
    finally:
        server.stop()


def noise_png(rng: random.Random, size: int = 512) -> bytes:
    """A picture that does not compress (the worst case for the memory it takes)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_served_cached_pictures_do_not_pile_up_in_memory(tmp_path):
    service = GenerationService(RemoteBackend(nowhere()), ImageCache(tmp_path / "cache", 0), "model")
    encodings = BrowserEncodings()
    rng = random.Random(7)
    png = noise_png(rng)
    # 100 different pictures, all in the disk cache, each served to a browser as WebP: more than the table keeps
    # (ENDED_KEEP jobs, ENDED_KEEP_BYTES) and more bytes than the encodings memo keeps
    for i in range(100):
        request = GenerationRequest(prompt=f"room {i}", seed=i, width=512, height=512)
        service.cache.put(service.key(request), png, {"seed": i})
        job = service.submit(request)
        assert job.state == "done" and job.png == png
        assert encodings.get(job.key, png, "webp")[:4] == b"RIFF"
    stats = service.stats()
    assert stats["jobs"] <= ENDED_KEEP
    assert stats["jobs"] * len(png) <= ENDED_KEEP_BYTES  # the finished pictures the table holds, in bytes
    assert encodings.stats()["entries"] <= encodings.keep
    assert 0 < encodings.stats()["bytes"] <= encodings.keep_bytes
    # The pictures themselves are still there for the asking: from the disk cache.
    assert service.submit(GenerationRequest(prompt="room 0", seed=0, width=512, height=512)).png == png


def test_ended_jobs_are_dropped_after_a_while(tmp_path, monkeypatch):
    monkeypatch.setattr("inference.jobs.ENDED_KEEP_SECONDS", 0.0)
    service = GenerationService(RemoteBackend(nowhere()), ImageCache(tmp_path / "cache", 0), "model")
    service.backend.start()
    service.start()
    try:
        jobs = [service.submit(GenerationRequest(prompt=f"room {i}", seed=i, width=64, height=64)) for i in range(5)]
        for job in jobs:
            snap = service.wait(job.key, 60)
            assert snap.state == "failed" and "cannot be reached" in snap.error  # the follower still sees why
        deadline = time.monotonic() + 30
        while service.stats()["jobs"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.stats()["jobs"] == 0
    finally:
        service.close()


def test_the_roster_of_players_is_bounded():
    roster = Roster(limit=100)
    for i in range(5000):  # a stranger without cookies is a new player on every request
        roster.record(f"player-{i}", "lighthouse", "shore")
    assert len(roster) == 100
    assert [s.player for s in roster.active()][:2] == ["player-4999", "player-4998"]
