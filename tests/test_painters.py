"""Painter processes on Ray (inference/painters.py, inference/painter_actor.py) behind the generation service, on
the real tiny model.

Every test here shares the session's one Ray and its two painters (tests/conftest.py); they run in file order, and
the last ones take painters away (a painter killed, one that cannot load, none left).
"""

import io
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from inference.backend import BackendSettings
from inference.cache import ImageCache
from inference.jobs import DONE
from inference.jobs import PLAYER
from inference.jobs import PREFETCH
from inference.painter_state import PaintersUnavailable
from inference.painter_state import check_reachable
from inference.painter_state import node_places
from inference.request import GenerationRequest
from inference.service import GenerationService
from tests.support import ROOT
from tests.support import data_url_image
from tests.support import events
from tests.support import free_port
from tests.support import wait_until
from web.settings import build_parser

BASE = GenerationRequest(prompt="a lighthouse", seed=1, steps=2, width=64, height=64)
PASSWORD = "open sesame"



def busy(pool, count):
    """The painters painting now, once there are ``count`` of them."""
    found = [p for p in pool.painters() if p["state"] == "painting"]
    return found if len(found) == count else None


class HeldPainters:
    """Timing control around the real painters: the web process holds each batch's steps at a gate (the painter
    process paints on meanwhile), so a test can act while a job is surely running.  Everything else is the pool's."""

    def __init__(self, pool):
        self.pool = pool
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self.pool, name)

    def reserve(self):
        lease = self.pool.reserve()
        return None if lease is None else HeldLease(lease, self.gate)


class HeldLease:
    def __init__(self, lease, gate):
        self.lease, self.gate = lease, gate

    def generate(self, requests, on_step=None):
        def held(step, total, previews):
            assert self.gate.wait(300)
            on_step(step, total, previews)

        return self.lease.generate(requests, held)


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture
def service_for(painters, tmp_path):
    services = []

    def build(pool=painters, **options):
        settings = {"max_batch": 1, "preview_every": 2, "gather": 0, **options}
        service = GenerationService(pool, ImageCache(tmp_path / f"cache{len(services)}"), "tiny", **settings)
        service.start()
        services.append(service)
        return service

    yield build
    for service in services:
        service.close()


def test_two_painters_paint_distinct_pictures_at_the_same_time_as_this_process_would(painters, service_for, backend):
    service = service_for()
    before = {p["name"]: p["painted"] for p in painters.painters()}
    asked = [BASE.replace(prompt="a red door", steps=10), BASE.replace(prompt="a blue door", seed=2, steps=10)]
    keys = [service.submit(request, PLAYER).key for request in asked]
    both = wait_until(lambda: busy(painters, 2), "both painters painting at once")
    assert {p["pid"] for p in both} and len({p["pid"] for p in both}) == 2
    done = [service.wait(key, 300) for key in keys]
    assert [snap.state for snap in done] == [DONE, DONE]
    after = {p["name"]: p["painted"] for p in painters.painters()}
    assert all(after[name] == before[name] + 1 for name in before), (before, after)
    for request, snap in zip(asked, done, strict=True):  # another process, the same picture as painting it here
        here = np.asarray(backend.generate([request])[0].image.convert("RGB"))
        assert np.abs(pixels(snap.png).astype(int) - here).max() <= 1


def test_two_players_asking_for_the_same_picture_on_different_painters_turns_share_one_job(painters, service_for):
    held = HeldPainters(painters)
    service = service_for(held)
    before = sum(p["painted"] for p in painters.painters())
    request = BASE.replace(prompt="a shared tower")
    first = service.submit(request, PLAYER, who="ann", client="ann")
    wait_until(lambda: busy(painters, 1), "a painter painting the picture")
    assert painters.free() == 1  # the other painter is free, and still the second player joins the running job
    second = service.submit(request, PLAYER, who="bob", client="bob")
    held.gate.set()
    assert second.key == first.key and second.state == "running"
    assert service.wait(first.key, 300).state == DONE
    counters = service.stats()["counters"]
    assert counters["coalesced"] == 1 and counters["generated"] == 1 and counters["batches"] == 1
    assert sum(p["painted"] for p in painters.painters()) == before + 1


@pytest.mark.slow
def test_a_continuation_is_painted_in_a_painter_process_from_its_source_picture(painters, service_for, backend):
    service = service_for()
    source = BASE.replace(prompt="a harbour at dawn")
    continuation = BASE.replace(prompt="the same harbour at dusk", seed=5, denoising_strength=0.6, resize_mode=1,
                                init_from=service.key(source))
    snap = service.wait(service.submit_chain([(source, "the source"), (continuation, "its continuation")],
                                             PLAYER).key, 300)
    assert snap.state == DONE and "fallback" not in snap.meta
    painted_source = service.lookup(service.key(source)).png
    here = backend.generate([continuation.replace(init_image=painted_source)])[0]  # the source's bytes travelled
    assert np.abs(pixels(snap.png).astype(int) - np.asarray(here.image.convert("RGB")).astype(int)).max() <= 1


def test_a_waiting_player_preempts_paint_ahead_on_a_painter_process(painters, service_for):
    service = service_for()
    before = sum(p["painted"] for p in painters.painters())
    ahead = [service.submit(BASE.replace(prompt=f"a path ahead {i}", seed=i, steps=30), PREFETCH, who="ann")
             for i in range(2)]
    wait_until(lambda: busy(painters, 2), "both painters painting ahead")
    player = service.submit(BASE.replace(prompt="the slide a player waits for"), PLAYER, who="bob")
    assert service.wait(player.key, 300).state == DONE
    counters = service.stats()["counters"]
    assert counters["preempted"] == 1  # one painter gave way; the other went on painting ahead
    assert [service.wait(job.key, 600).state for job in ahead] == [DONE, DONE]
    # the stopped batch was put back and painted once, from the start: three pictures painted, no more
    assert service.stats()["counters"]["generated"] == 3
    assert sum(p["painted"] for p in painters.painters()) == before + 3


def test_previews_stream_from_a_painter_process_to_the_browser_and_the_admin_sees_each_painter(painters, make_app):
    client = make_app(BACKEND_INSTANCE=painters, ADMIN_PASSWORD=PASSWORD).test_client()
    assert "sse-connect" in client.get("/play/lighthouse/shore").get_data(as_text=True)
    found = events(client, "/play/lighthouse/shore/stream")
    assert [name for name, _ in found][-2:] == ["frame", "done"]
    previews = [data for name, data in found if name == "frame" and "Painting… step" in data]
    assert previews and any('class="preview" src="data:image/jpeg;base64,' in data for data in previews)
    assert data_url_image(found[-2][1]).size == (64, 64)

    status = client.get("/admin/status.json", auth=("admin", PASSWORD)).get_json()
    listed = status["painters"]
    assert len(listed) == 2 and {p["state"] for p in listed} == {"ready"}
    assert all(p["node"] and p["device"].startswith("cpu") and p["heartbeat_seconds"] is not None for p in listed)
    assert sum(p["painted"] for p in listed) >= 1 and all(p["failures"] == 0 for p in listed)
    html = client.get("/admin/dashboard", auth=("admin", PASSWORD)).get_data(as_text=True)
    assert all(p["name"] in html and p["node"] in html for p in listed) and "s ago" in html


def test_a_painter_killed_mid_batch_loses_nothing_the_picture_arrives_painted_once(painters, service_for, backend):
    service = service_for()
    request = BASE.replace(prompt="a storm over the sea", steps=12)
    key = service.submit(request, PLAYER).key
    victim = wait_until(lambda: busy(painters, 1), "a painter painting the picture")[0]
    wait_until(lambda: service.snapshot(key).step >= 2, "a few steps painted")
    os.kill(victim["pid"], signal.SIGKILL)
    snap = service.wait(key, 600)
    assert snap.state == DONE, snap.error
    counters = service.stats()["counters"]
    assert counters["requeued"] == 1 and counters["generated"] == 1 and counters["failed"] == 0
    here = np.asarray(backend.generate([request])[0].image.convert("RGB"))
    assert np.abs(pixels(snap.png).astype(int) - here).max() <= 1
    killed = next(p for p in painters.painters() if p["name"] == victim["name"])
    assert killed["failures"] >= 1 and killed["state"] in ("restarting", "starting", "loading", "ready")


def test_a_painter_that_cannot_load_is_reported_and_the_others_carry_on(painters, service_for, tmp_path):
    name = painters.add_painter(BackendSettings(model=str(tmp_path / "missing-weights"), device="cpu", max_size=64))
    broken = wait_until(lambda: next((p for p in painters.painters() if p["name"] == name and p["state"] == "failed"),
                                   None), "the broken painter reported")
    assert "missing-weights" in broken["message"] and broken["failures"] == 1
    assert painters.status().ready  # the others carry on
    service = service_for()
    assert service.wait(service.submit(BASE.replace(prompt="still painting"), PLAYER).key, 600).state == DONE


def test_with_no_painter_left_the_story_still_plays_with_the_usual_message(painters, make_app):
    deadline = time.monotonic() + 120  # against a hang only
    while painters.status().state != "failed":  # a painter restarted after an earlier test's kill may appear late
        assert time.monotonic() < deadline, painters.painters()
        for painter in painters.painters():
            if painter["state"] != "failed":
                painters.retire(painter["name"])
        time.sleep(0.2)
    html = make_app(BACKEND_INSTANCE=painters).test_client().get("/play/lighthouse/shore").get_data(as_text=True)
    assert "missing-weights" in html and "Try again" in html
    assert 'action="/play/lighthouse/shore"' in html and 'name="choice" value="1"' in html  # it plays on


@pytest.mark.slow
def test_ray_failing_to_start_says_why_and_how_to_paint_in_process_instead():
    with pytest.raises(PaintersUnavailable, match="--painters inprocess"):
        check_reachable(f"127.0.0.1:{free_port()}")
    with pytest.raises(PaintersUnavailable, match="expected HOST:PORT"):
        check_reachable("no-port-here")
    result = subprocess.run([sys.executable, "app.py", "--ray", f"127.0.0.1:{free_port()}", "--port",
                             str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "No Ray cluster answers at 127.0.0.1" in result.stderr and "--painters inprocess" in result.stderr


def test_the_game_and_the_api_alone_take_the_painter_settings():
    for api_alone in (False, True):
        args = vars(build_parser(api_alone).parse_args(["--painters", "2", "--ray", "head:6379"]))
        assert (args["PAINTERS"], args["RAY"]) == ("2", "head:6379")
        assert vars(build_parser(api_alone).parse_args([]))["PAINTERS"] == "inprocess"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--painters", "0"])


def test_on_a_cluster_without_gpus_each_machine_gets_a_painter_that_takes_its_cpus():
    machines = {"big": 4, "small": 1, "head": 0}  # CPUs each offers Ray (`ray start --num-cpus`); the head none
    assert node_places(machines, [], None) == [("big", 4), ("small", 1)]
    assert node_places({**machines, "late": 2}, ["big", "small"], None) == [("late", 2)]  # one that joined later
    assert node_places(machines, ["gone", "big"], None) == [("small", 1)]  # a machine that left takes none
    assert node_places({"head": 0}, [], None) == []  # nothing to paint on yet: painters come when machines do
    # --painters N: N in all, each where it gets the most CPUs, the machine's CPUs shared out
    assert node_places(machines, [], 1) == [("big", 4)]
    assert node_places(machines, [], 3) == [("big", 2), ("big", 2), ("small", 1)]
    assert node_places(machines, ["big", "big"], 3) == [("small", 1)]  # the one lost is made again
    assert node_places(machines, ["big", "big", "small"], 3) == []
