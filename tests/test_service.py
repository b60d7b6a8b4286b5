"""The generation service on the real tiny backend: coalescing, priorities, promotion, cancel, bounds, batching."""

import threading

import pytest

from inference.cache import ImageCache
from inference.jobs import ADMIN
from inference.jobs import API
from inference.jobs import DONE
from inference.jobs import FAILED
from inference.jobs import PLAYER
from inference.jobs import PREFETCH
from inference.jobs import QueueFull
from inference.request import GenerationRequest
from inference.service import GenerationService

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

    def build(max_queue=16, max_batch=4, wrapped=None, folder=None, **options):
        gated = wrapped or GatedBackend(backend)
        service = GenerationService(gated, ImageCache(folder or tmp_path / "cache"), "tiny", max_queue=max_queue,
                                    max_batch=max_batch, preview_every=1, **options)
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_newer_paint_ahead_goes_first(service_factory):
    service, gated = service_factory()
    hold_painter(service, gated)
    old = service.submit(BASE.replace(prompt="slide the player left", width=80), PREFETCH)
    new = service.submit(BASE.replace(prompt="slide the player reads", width=88), PREFETCH)
    assert (service.snapshot(new.key).position, service.snapshot(old.key).position) == (1, 2)
    gated.gate.set()
    wait_done(service, old)
    assert [call[0] for call in gated.calls] == ["blocker", "slide the player reads", "slide the player left"]


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert service.stats()["queue"] == {"player": 2, "admin": 0, "prefetch": 0, "api": 0}
    gated.gate.set()


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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



@pytest.mark.slow
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


def wait_running(service, job, step=2):
    snap = service.snapshot(job.key)
    while not (snap.state == "running" and snap.step >= step):
        snap = service.follow(job.key, snap.version, 30) or pytest.fail("the job never ran")
    return snap


@pytest.mark.slow
def test_a_waiting_player_preempts_a_batch_of_api_work_which_is_painted_later(service_factory):
    service, gated = service_factory()
    api = service.submit(BASE.replace(prompt="an API call", steps=40), API, "api/alice/1", "api/alice/")
    wait_running(service, api)
    player = service.submit(BASE.replace(prompt="the player waits"), PLAYER)
    assert wait_done(service, player).state == DONE
    assert service.snapshot(api.key).state in ("queued", "running")  # not lost: back in line
    assert wait_done(service, api).state == DONE
    assert [call[0] for call in gated.calls] == ["an API call", "the player waits", "an API call"]
    assert service.stats()["counters"]["preempted"] == 1


@pytest.mark.slow
def test_api_work_waits_behind_players_admins_and_paint_ahead_and_never_preempts(service_factory):
    service, gated = service_factory()
    ahead = service.submit(BASE.replace(prompt="painted ahead", steps=20), PREFETCH)
    wait_running(service, ahead, 1)
    api = service.submit(BASE.replace(prompt="an API call", width=72), API, "api/alice/1", "api/alice/")
    gated.gate.clear()  # hold the painter before its next batch, so the queue's order decides
    gated.entered.clear()
    assert wait_done(service, ahead).state == DONE and service.stats()["counters"]["preempted"] == 0
    assert gated.entered.wait(30)
    admin = service.submit(BASE.replace(prompt="admin", width=80), ADMIN)
    player = service.submit(BASE.replace(prompt="player", width=88), PLAYER)
    gated.gate.set()
    for job in (api, admin, player):
        wait_done(service, job)
    assert [call[0] for call in gated.calls] == ["painted ahead", "an API call", "player", "admin", "an API call"]


def test_api_jobs_never_take_the_players_place_in_the_queue_and_are_capped_per_client(service_factory):
    service, gated = service_factory(max_queue=3, max_per_api_client=2)
    hold_painter(service, gated)
    service.submit(BASE.replace(seed=2), API, "api/alice/1", "api/alice/")
    service.submit(BASE.replace(seed=3), API, "api/alice/1", "api/alice/")
    with pytest.raises(QueueFull) as mine:
        service.submit(BASE.replace(seed=4), API, "api/alice/2", "api/alice/")
    assert mine.value.mine
    service.submit(BASE.replace(seed=5), API, "api/bob/1", "api/bob/")
    with pytest.raises(QueueFull) as full:  # the API's part of the queue is full
        service.submit(BASE.replace(seed=6), API, "api/carol/1", "api/carol/")
    assert not full.value.mine
    for seed in (7, 8, 9):  # players still have all of theirs
        service.submit(BASE.replace(seed=seed), PLAYER)
    assert service.stats()["queue"] == {"player": 3, "admin": 0, "prefetch": 0, "api": 3}
    gated.gate.set()


@pytest.mark.slow
def test_interrupt_and_skip_stop_only_the_callers_own_jobs(service_factory):
    service, gated = service_factory(max_batch=4)
    alice = service.submit(BASE.replace(prompt="alice", steps=150), API, "api/alice/1", "api/alice/")
    wait_running(service, alice)
    alice_waiting = service.submit(BASE.replace(prompt="alice later", width=72), API, "api/alice/2", "api/alice/")
    bob_waiting = service.submit(BASE.replace(prompt="bob", width=72), API, "api/bob/1", "api/bob/")
    assert service.interrupt("api/bob/", queued=False) == 0  # bob has nothing running
    assert service.interrupt("api/ali/", queued=True) == 0  # callers are told apart by their whole name
    assert service.current("api/bob/") is None and service.current("api/alice/")[0].key == alice.key
    assert service.interrupt("api/alice/", queued=True) == 2
    assert wait_done(service, alice).state == "cancelled" and service.snapshot(alice.key).error == "interrupted"
    assert service.snapshot(alice_waiting.key).state == "cancelled"
    assert wait_done(service, bob_waiting).state == DONE
    skipped = service.submit(BASE.replace(prompt="skip me", steps=150), API, "api/bob/2", "api/bob/")
    wait_running(service, skipped)
    assert service.interrupt("api/bob/", "skipped") == 1
    assert wait_done(service, skipped).error == "skipped"
