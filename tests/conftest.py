"""Shared fixtures: a tiny real SD pipeline, a backend loaded from it, apps, clients and a live server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.tiny_pipeline import build_tiny_pipeline

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "stories"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 2.x pipeline in diffusers folder layout (built once per run)."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd2"))


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


HTMX = {"HX-Request": "true"}
ADMIN_PASSWORD = "test-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server of ours started as a real process for a test session."""

    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class LiveServer(ServerProcess):
    """`python app.py` running for real (waitress) on a free port, loading the tiny model by path."""

    def __init__(self, tiny_model: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LANTERNSLIDE_ADMIN_PASSWORD": ADMIN_PASSWORD}
        stories = workdir / "stories"
        shutil.copytree(STORIES, stories)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--model", str(tiny_model),
             "--device", "cpu", "--max-size", "64", "--stories", str(stories), "--instance", str(workdir / "instance")],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        self.first_page_seconds = self._wait_for("/", lambda r: r.status_code == 200)

    def status(self) -> dict:
        return requests.get(self.url + "/admin/status.json", auth=("admin", ADMIN_PASSWORD), timeout=10).json()

    def _wait_for(self, path: str, ok, timeout: float = 120) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if ok(requests.get(self.url + path, timeout=5, headers=HTMX, auth=("admin", ADMIN_PASSWORD))):
                    return time.perf_counter() - self.started
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} not ready after {timeout} s:\n{self.log_path.read_text()}")

    def wait_for_model(self) -> None:
        self._wait_for("/admin/status.json", lambda r: r.json()["backend"]["state"] == "ready")

    def wait_idle(self) -> dict:
        """Wait until nothing is queued or being painted; return the status."""
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            status = self.status()
            if status["queued"] == 0 and not status["running"]:
                return status
            time.sleep(0.1)
        raise TimeoutError(f"the painter is still busy: {status}")



@pytest.fixture(scope="session")
def live_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    server = LiveServer(tiny_model, tmp_path_factory.mktemp("live"))
    server.wait_for_model()
    yield server
    server.stop()


class ApiServer(ServerProcess):
    """`python -m inference serve` (the API alone) on a free port, with Basic auth, painting with the tiny model."""

    user, password = "painter", "s3cret:with-colon"

    def __init__(self, tiny_model: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "api.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference", "serve", "--port", str(self.port), "--model", str(tiny_model),
             "--device", "cpu", "--api-auth", f"{self.user}:{self.password}", "--instance", str(workdir / "instance")],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API server exited early:\n{self.log_path.read_text()}")
            try:
                requests.get(self.url + "/sdapi/v1/sd-models", timeout=5, auth=(self.user, self.password))
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.perf_counter() + 120
        body = {"prompt": "warm up", "steps": 1, "width": 64, "height": 64}
        while time.perf_counter() < deadline:
            response = requests.post(self.url + "/sdapi/v1/txt2img", json=body, auth=(self.user, self.password), timeout=60)
            if response.status_code == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text())



@pytest.fixture(scope="session")
def api_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    server = ApiServer(tiny_model, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()
