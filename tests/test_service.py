"""The generation service on the real tiny backend: coalescing, priorities, promotion, cancel, bounds, batching."""

import threading

import pytest

from inference.cache import ImageCache
from inference.request import GenerationRequest
from inference.service import ADMIN
from inference.service import DONE
from inference.service import FAILED
from inference.service import PLAYER
from inference.service import PREFETCH
from inference.service import GenerationService
from inference.service import QueueFull

BASE = GenerationRequest(prompt="a lighthouse", seed=1, steps=2, width=64, height=64)


class GatedBackend:
    """Observation and timing control around the real backend: records each batch's prompts and can hold
    the painter at the door, so a queue builds up behind it (a stand-in for a slow GPU)."""

    def __init__(self, real, fail=False):
        self.real = real
        self.calls = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests, on_step=None):
        self.calls.append([r.prompt for r in requests])
        self.entered.set()
        assert self.gate.wait(60)
        if self.fail:
            raise RuntimeError("injected failure")
        return self.real.generate(requests, on_step)


@pytest.fixture
def service_factory(backend, tmp_path):
    services = []

    def build(max_queue=16, max_batch=4, wrapped=None, folder=None, gather=0.02):
        gated = wrapped or GatedBackend(backend)
        service = GenerationService(gated, ImageCache(folder or tmp_path / "cache"), "tiny", max_queue=max_queue,
                                    max_batch=max_batch, preview_every=1, gather=gather)
        service.start()
        services.append(service)
        return service, gated

    yield build
    for service in services:
        service.close()


def wait_done(service, job, timeout=600):
    """Follow a job (a snapshot from submit) to its end through the service's own wait."""
    snap = service.wait(job.key, timeout)
    if snap.state not in (DONE, FAILED, "cancelled"):
        pytest.fail("job did not finish")
    return snap


def hold_painter(service, gated):
    """Close the gate and occupy the painter with a blocker job; return that job."""
    gated.gate.clear()
    blocker = service.submit(BASE.replace(prompt="blocker", width=72), PLAYER)
    assert gated.entered.wait(30)
    return blocker


def test_identical_concurrent_requests_cost_one_generation(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    jobs = []
    threads = [threading.Thread(target=lambda: jobs.append(service.submit(BASE, PLAYER))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gated.gate.set()
    assert len({job.key for job in jobs}) == 1
    assert wait_done(service, jobs[0]).state == DONE
    assert sum(call.count("a lighthouse") for call in gated.calls) == 1
    assert service.stats()["counters"]["coalesced"] == 7


def test_player_before_admin_before_prefetch(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    # different sizes: nothing can share a batch, so the order of calls is the order of priorities
    prefetch = service.submit(BASE.replace(prompt="prefetch", width=80), PREFETCH)
    admin = service.submit(BASE.replace(prompt="admin", width=88), ADMIN)
    player = service.submit(BASE.replace(prompt="player", width=96), PLAYER)
    gated.gate.set()
    for job in (prefetch, admin, player):
        wait_done(service, job)
    assert [call[0] for call in gated.calls] == ["blocker", "player", "admin", "prefetch"]


def test_newer_paint_ahead_goes_first(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    old = service.submit(BASE.replace(prompt="slide the player left", width=80), PREFETCH)
    new = service.submit(BASE.replace(prompt="slide the player reads", width=88), PREFETCH)
    assert (service.snapshot(new.key).position, service.snapshot(old.key).position) == (1, 2)
    gated.gate.set()
    wait_done(service, old)
    assert [call[0] for call in gated.calls] == ["blocker", "slide the player reads", "slide the player left"]


def test_a_prefetch_is_promoted_when_a_player_asks_for_it(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    chosen = service.submit(BASE.replace(prompt="chosen branch", width=88), PREFETCH)
    first = service.submit(BASE.replace(prompt="other branch", width=80), PREFETCH)
    assert service.snapshot(chosen.key).position == 2
    assert service.submit(BASE.replace(prompt="chosen branch", width=88), PLAYER) .key == chosen.key
    assert service.snapshot(chosen.key).position == 1
    gated.gate.set()
    wait_done(service, first)
    assert [call[0] for call in gated.calls] == ["blocker", "chosen branch", "other branch"]
    assert service.stats()["prefetch"] == {"queued": 2, "used": 1, "hit_rate": 0.5}


def test_a_prefetch_nobody_wants_is_dropped_before_it_starts(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    job = service.submit(BASE.replace(prompt="unwanted"), PREFETCH, who="alice")
    shared = service.submit(BASE.replace(prompt="shared"), PREFETCH, who="alice")
    service.submit(BASE.replace(prompt="shared"), PREFETCH, who="bob")
    assert service.cancel(job.key, "alice") is True
    assert service.cancel(shared.key, "alice") is False  # bob still wants it
    assert service.snapshot(job.key).state == "cancelled"
    gated.gate.set()
    wait_done(service, shared)
    assert all("unwanted" not in call for call in gated.calls)


def test_the_queue_is_bounded(service_factory):
    service, gated = service_factory(max_queue=2)
    hold_painter(service, gated)
    service.submit(BASE.replace(seed=2), PLAYER)
    service.submit(BASE.replace(seed=3), PREFETCH)
    assert service.submit(BASE.replace(seed=4), PREFETCH) is None  # optional work is simply not queued
    service.submit(BASE.replace(seed=5), PLAYER)  # a player takes the prefetch's place
    with pytest.raises(QueueFull) as info:
        service.submit(BASE.replace(seed=6), PLAYER)
    assert info.value.retry_after >= 1
    assert service.stats()["queue"] == {"player": 2, "admin": 0, "prefetch": 0}
    gated.gate.set()


def test_compatible_jobs_run_as_one_batch(service_factory):
    service, gated = service_factory(max_batch=3)
    hold_painter(service, gated)
    jobs = [service.submit(BASE.replace(seed=s), PLAYER) for s in (10, 11, 12, 13)]
    gated.gate.set()
    for job in jobs:
        assert wait_done(service, job).state == DONE
    assert [len(call) for call in gated.calls] == [1, 3, 1]
    seeds = [service.snapshot(job.key).meta["seed"] for job in jobs]
    assert seeds == [10, 11, 12, 13]


def test_events_go_queued_then_running_steps_then_done(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    job = service.submit(BASE.replace(steps=3), PLAYER)
    seen = [service.snapshot(job.key)]
    gated.gate.set()
    while seen[-1].state != DONE:
        seen.append(service.follow(job.key, seen[-1].version, 30))
    states = [s.state for s in seen]
    assert states[0] == "queued" and states[-1] == DONE
    assert [s.step for s in seen if s.state == "running" and s.step] == [1, 2, 3]
    assert any(s.preview for s in seen if s.state == "running")
    assert seen[-1].png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failure_reaches_the_job_and_the_next_request_paints_again(service_factory, backend):
    faulty = GatedBackend(backend, fail=True)
    service, _ = service_factory(wrapped=faulty)
    snap = wait_done(service, service.submit(BASE, PLAYER))
    assert snap.state == FAILED
    assert "injected failure" in snap.error
    faulty.fail = False
    assert wait_done(service, service.submit(BASE, PLAYER)).state == DONE


def test_finished_pictures_are_cache_hits_even_after_a_restart(service_factory, tmp_path):
    service, gated = service_factory(folder=tmp_path / "shared")
    first = wait_done(service, service.submit(BASE, PLAYER))
    service.close()
    restarted, gated_again = service_factory(folder=tmp_path / "shared")
    job = restarted.submit(BASE, PLAYER)
    assert job.state == DONE and job.png == first.png
    assert gated_again.calls == []
    stats = restarted.stats()
    assert stats["cache"]["hits"] == 1 and stats["cache"]["entries"] == 1


def test_stats_report_times_and_depths(service_factory):
    service, _ = service_factory()
    wait_done(service, service.submit(BASE, PLAYER))
    stats = service.stats()
    assert stats["generation_seconds"]["mean"] > 0
    assert stats["generation_seconds"]["p95"] > 0
    assert stats["queued"] == 0
    assert stats["backend"]["state"] == "ready"


@pytest.mark.parametrize(("seconds", "p95"), [([1.0], 1.0), ([1.0, 3.0], 3.0), ([float(s) for s in range(1, 21)], 19.0),
                                             ([float(s) for s in range(1, 101)], 95.0)])
def test_p95_is_never_below_the_mean_with_few_samples(service_factory, seconds, p95):
    service, _ = service_factory()
    service._durations.extend(seconds)  # as if these batches had been painted
    times = service.stats()["generation_seconds"]
    assert times["p95"] == p95 and times["p95"] >= times["mean"]


def test_a_waiting_player_preempts_a_batch_of_paint_ahead_which_is_painted_later(service_factory):
    service, gated = service_factory()
    ahead = service.submit(BASE.replace(prompt="painted ahead", steps=150), PREFETCH)
    snap = service.snapshot(ahead.key)
    while not (snap.state == "running" and snap.step >= 2):
        snap = service.follow(ahead.key, snap.version, 30)
    player = service.submit(BASE.replace(prompt="the player waits"), PLAYER)
    assert wait_done(service, player).state == DONE
    assert service.snapshot(ahead.key).state in ("queued", "running")  # not lost: back in line
    assert wait_done(service, ahead).state == DONE
    assert [call[0] for call in gated.calls] == ["painted ahead", "the player waits", "painted ahead"]
    assert service.stats()["counters"]["preempted"] == 1


def test_a_player_waiting_for_the_picture_being_painted_ahead_does_not_stop_it(service_factory):
    service, gated = service_factory()
    ahead = service.submit(BASE.replace(prompt="chosen", steps=60), PREFETCH)
    snap = service.snapshot(ahead.key)
    while not (snap.state == "running" and snap.step >= 1):
        snap = service.follow(ahead.key, snap.version, 30)
    assert service.submit(BASE.replace(prompt="chosen", steps=60), PLAYER) .key == ahead.key
    assert wait_done(service, ahead).state == DONE
    assert len(gated.calls) == 1 and service.stats()["counters"]["preempted"] == 0


def test_a_picture_that_takes_too_long_is_given_up(backend, tmp_path):
    service = GenerationService(backend, ImageCache(tmp_path / "c"), "tiny", timeout=0.05)
    service.start()
    try:
        snap = wait_done(service, service.submit(BASE.replace(steps=150), PLAYER))
        assert snap.state == FAILED
        assert "took longer than 0.05 s" in snap.error
        assert wait_done(service, service.submit(BASE.replace(steps=150, seed=2), PLAYER)).state == FAILED
    finally:
        service.close()


def test_a_picture_is_encoded_for_browsers_once_and_the_memory_is_bounded(service_factory):
    from inference.encodings import BrowserEncodings

    service, _ = service_factory()
    snap = wait_done(service, service.submit(BASE, PLAYER))
    encodings = BrowserEncodings(keep=2)
    first = encodings.get(snap.key, snap.png, "webp")
    assert first[:4] == b"RIFF" and encodings.get(snap.key, snap.png, "webp") is first  # not encoded again
    assert encodings.get(snap.key, snap.png, "png") is snap.png
    for key in ("a" * 64, "b" * 64):
        encodings.get(key, snap.png, "webp")
    assert len(encodings) == 2
    assert encodings.get(snap.key, snap.png, "webp") is not first  # the oldest was let go



def test_players_asking_at_the_same_moment_share_one_batch(service_factory):
    """Regression (issue 14): the painter woke on the first of 4 simultaneous players and painted it alone."""
    service, gated = service_factory(max_batch=4, gather=2.0)  # a wide window: this test checks batching, not speed
    start = threading.Barrier(4)
    jobs = []

    def player(seed):
        start.wait()
        jobs.append(service.submit(BASE.replace(seed=seed), PLAYER))

    threads = [threading.Thread(target=player, args=(seed,)) for seed in (20, 21, 22, 23)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for job in jobs:
        assert wait_done(service, job).state == DONE
    assert [len(call) for call in gated.calls] == [4]


def test_a_full_batch_starts_without_waiting_for_the_gather_window(service_factory):
    service, gated = service_factory(max_batch=2, gather=600)
    jobs = [service.submit(BASE.replace(seed=s), PLAYER) for s in (30, 31)]
    for job in jobs:
        assert wait_done(service, job, timeout=120).state == DONE
    assert [len(call) for call in gated.calls] == [2]
