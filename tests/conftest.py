"""Shared fixtures: a tiny real SD pipeline, a backend loaded from it, apps, clients and a live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import STORIES
from tests.support import ApiServer
from tests.support import LiveServer
from tests.support import csrf_token
from tests.support import sign_in
from tests.tiny_pipeline import build_tiny_pipeline

# A test that needs one of these starts a real server process or a Ray session (seconds before its first line):
# it is `slow` without saying so itself.  The fast subset is ``-m "not slow and not browser"``.
SLOW_FIXTURES = {"live_server", "api_server", "ray_session", "painters"}


# Under pytest-xdist (`-n 2 --dist loadgroup`, pyproject.toml), the tests sharing one of these session-wide servers
# or Ray run in one worker, so that each is started once per run, not once per worker.
SHARED_FIXTURES = {"ray_session": "ray", "painters": "ray", "live_server": "live", "api_server": "api"}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Two workers on two cores: one torch thread each (and in the servers they start), not two fighting for one
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # and inductor builds its C++ in the worker, without a pool of compile processes: with both cores busy the
        # pool gained no time and cost 37 s of CPU in torch.compile's test (user 2m44 -> 2m07)
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups (else they are ignored)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.slow)
        for fixture, group in SHARED_FIXTURES.items():
            if fixture in fixtures:
                item.add_marker(pytest.mark.xdist_group(group))
                break
    # The slow tests first (in their own order), so that the two workers are not left with one long test at the end
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when pytest-xdist ignores the groups (it did, silently, with pytest 9.2: pytest-xdist#1386):
    each worker would start its own servers and Ray, and the tests that share one would not share it."""
    if not (os.environ.get("PYTEST_XDIST_WORKER") and session.config.getvalue("loadgroup")):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} tests (e.g. {lost[0]}); use the pytest "
                                "version pinned in requirements-dev.txt")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 2.x pipeline in diffusers folder layout (built once per run)."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd2"))


@pytest.fixture(scope="session")
def compact_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, smaller still, for torch.compile's tests (tests/tiny_pipeline.py says why)."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("compact-sd2"), compact=True)


def _loaded_backend(tiny_model: Path, max_size: int):
    from inference.diffusers_backend import DiffusersBackend

    engine = DiffusersBackend(str(tiny_model), device="cpu", max_size=max_size)
    engine.start()
    status = engine.wait(120)
    assert status.ready, status
    return engine


@pytest.fixture(scope="session")
def backend(tiny_model: Path):
    """The real in-process backend, loaded from the tiny model through the normal --model PATH route."""
    engine = _loaded_backend(tiny_model, 0)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def compact_backend(compact_model: Path):
    """The plain in-process backend on the compact model: the pictures torch.compile's tests must paint."""
    engine = _loaded_backend(compact_model, 0)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def story_backend(tiny_model: Path):
    """The same, painting the shipped stories' 512x512 slides at 64x64 (--max-size 64) to stay fast on a CPU."""
    engine = _loaded_backend(tiny_model, 64)
    yield engine
    engine.close()


@pytest.fixture
def stories_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped stories."""
    folder = tmp_path / "stories"
    shutil.copytree(STORIES, folder)
    return folder


@pytest.fixture
def make_app(tmp_path: Path, story_backend, stories_dir: Path):
    """Build an app on the shared tiny backend; keyword arguments override its config."""
    from app import create_app

    apps = []

    def factory(**config):
        settings = {"TESTING": True, "STORIES": str(stories_dir), "INSTANCE": str(tmp_path / "instance"),
                    "BACKEND_INSTANCE": story_backend, "MAX_SIZE": 64, "PREFETCH_DEPTH": 0}
        settings.update(config)
        apps.append(create_app(settings))
        return apps[-1]

    yield factory
    for built in apps:
        built.extensions["images"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def author(make_app):
    """A test client signed in to the admin pages (password "open sesame"), with its CSRF token at ``.token``."""
    app = make_app(ADMIN_PASSWORD="open sesame")
    client = app.test_client()
    sign_in(client)
    client.token = csrf_token(client, "/admin/stories")
    return client


@pytest.fixture(scope="session")
def live_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    server = LiveServer(tiny_model, tmp_path_factory.mktemp("live"))
    try:
        server.wait_for_model()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    server = ApiServer(tiny_model, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole run (starting one takes seconds): every painters test shares it."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", object_store_memory=100 * 1024 * 1024,
             namespace="lanternslide-tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def painters(ray_session, tiny_model: Path):
    """Two painter processes on that Ray, each owning the tiny model on the CPU with one torch thread (at most 64
    pixels a side, as the stories' slides are painted in tests)."""
    import time

    from inference.backend import BackendSettings
    from inference.painters import RayPainters

    pool = RayPainters(BackendSettings(model=str(tiny_model), device="cpu", max_size=64), count=2, torch_threads=1,
                       heartbeat=0.5)
    pool.start()
    deadline = time.monotonic() + 300  # against a hang only: both load the model in the background
    while pool.free() < 2:
        assert time.monotonic() < deadline, pool.painters()
        time.sleep(0.2)
    yield pool
    pool.close()
