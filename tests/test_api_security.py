"""/sdapi/v1 attacked as a stranger with the link would, over real HTTP (issue 11 items 1, 2 and the API part of 9).

Two kinds of server: `python app.py` as a real process (with the remote backend pointed at a closed port, so no
model loads), and the app on the shared tiny backend served over a real socket in this process (werkzeug's
threaded server), where pictures are actually painted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support import ROOT
from tests.support import STORIES
from tests.support import free_port

SECRETS = {
    "LANTERNSLIDE_ADMIN_PASSWORD": "adm-SECRET-pw-1",
    "LANTERNSLIDE_SDAPI_AUTH": "alice:api-SECRET-pw-2",
    "LANTERNSLIDE_API_AUTH": "gpu:remote-SECRET-pw-3",
    "LANTERNSLIDE_NGROK_AUTHTOKEN": "ngrok-SECRET-tok-4",
    "LANTERNSLIDE_API_URL": "http://gpu:url-SECRET-pw-5@127.0.0.1:9",
}
SECRET_VALUES = ["adm-SECRET-pw-1", "api-SECRET-pw-2", "remote-SECRET-pw-3", "ngrok-SECRET-tok-4", "url-SECRET-pw-5"]
ALICE = ("alice", "api-SECRET-pw-2")


@contextmanager
def app_process(workdir: Path, *flags: str, env: dict[str, str] | None = None):
    """`python app.py` for real, painting on a remote server that is down (nothing heavy loads); yields (url, log)."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    stories = workdir / f"stories-{port}"
    shutil.copytree(STORIES, stories)
    base = {k: v for k, v in os.environ.items() if not k.startswith("LANTERNSLIDE_") and k != "NGROK_AUTHTOKEN"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--backend", "remote", "--stories", str(stories),
         "--instance", str(workdir / f"instance-{port}"), *flags],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
        env={**base, "PYTHONUNBUFFERED": "1", "LANTERNSLIDE_API_URL": "http://127.0.0.1:9", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            try:
                requests.get(url + "/", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def served(app):
    """``app`` behind a real HTTP server on a free port, in this process; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(10)


# -- item 1: no secret in any answer or log ---------------------------------------------------------------------


@pytest.mark.slow
def test_no_route_page_error_or_log_line_shows_a_secret(tmp_path):
    with app_process(tmp_path, env=SECRETS) as (url, log):
        flags = requests.get(url + "/sdapi/v1/cmd-flags", auth=ALICE, timeout=10)
        assert flags.status_code == 200
        assert flags.json()["port"] and flags.json()["backend"] == "remote"
        for key in ("admin_password", "sdapi_auth", "api_auth", "ngrok_authtoken", "api_url", "instance", "stories"):
            assert key not in flags.json()
        secret_key = next(tmp_path.glob("instance-*/secret_key")).read_text().strip()
        answers = [flags.text]
        for path in ("/", "/play/lighthouse", "/no-such-page", "/sdapi/v1/options", "/sdapi/v1/sd-models",
                     "/sdapi/v1/progress", "/sdapi/v1/prompt-styles", "/sdapi/v1/no-such-route"):
            answers.append(requests.get(url + path, auth=ALICE, timeout=10).text)
        answers.append(requests.get(url + "/sdapi/v1/cmd-flags", timeout=10).text)  # no credentials: 401
        answers.append(requests.get(url + "/sdapi/v1/cmd-flags", auth=("alice", "wrong"), timeout=10).text)
        answers.append(requests.post(url + "/sdapi/v1/txt2img", json={"steps": "many"}, auth=ALICE, timeout=10).text)
        answers.append(requests.post(url + "/sdapi/v1/options", json={"nope": 1}, auth=ALICE, timeout=10).text)
        # a picture the (unreachable) remote server cannot paint: the error names the server, not its password
        failed = requests.post(url + "/sdapi/v1/txt2img", json={"steps": 2, "width": 64, "height": 64},
                               auth=ALICE, timeout=120)
        assert failed.status_code == 500 and "127.0.0.1:9" in failed.json()["errors"]
        answers.append(failed.text)
        admin = ("admin", "adm-SECRET-pw-1")
        for path in ("/admin", "/admin/status.json"):
            response = requests.get(url + path, auth=admin, timeout=10)
            assert response.status_code == 200, path
            answers.append(response.text)
    everything = "\n".join(answers) + log.read_text()
    for secret in [*SECRET_VALUES, secret_key]:
        assert secret not in everything


# -- item 2: the API is off when the server can be reached from outside, unless credentials are set ---------------


@pytest.mark.slow
def test_behind_a_proxy_the_api_is_off_without_credentials_and_says_how_to_turn_it_on(tmp_path):
    with app_process(tmp_path, "--behind-proxy") as (url, log):
        for method, path in (("GET", "/sdapi/v1/sd-models"), ("POST", "/sdapi/v1/txt2img"),
                             ("POST", "/sdapi/v1/interrupt"), ("GET", "/sdapi/v1/cmd-flags")):
            response = requests.request(method, url + path, json={}, timeout=10)
            assert response.status_code == 403, path
            detail = response.json()["detail"]
            assert "off" in detail and "--behind-proxy" in detail and "--sdapi-auth user:password" in detail
        assert requests.get(url + "/", timeout=10).status_code == 200  # the game itself plays on
    assert "The A1111 API (/sdapi/v1) is off" in log.read_text()


@pytest.mark.slow
def test_behind_a_proxy_with_credentials_the_api_asks_for_them(tmp_path):
    with app_process(tmp_path, "--behind-proxy", "--sdapi-auth", "alice:api-SECRET-pw-2") as (url, log):
        assert requests.get(url + "/sdapi/v1/sd-models", timeout=10).status_code == 401
        assert requests.get(url + "/sdapi/v1/sd-models", auth=ALICE, timeout=10).status_code == 200
    assert "The A1111 API is on at /sdapi/v1 for 1 API user(s)" in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("config", "named"), [({"SHARE": True}, "--share"), ({"HOST": "0.0.0.0"}, "--host 0.0.0.0"),
                                               ({"HOST": "192.168.1.20"}, "--host 192.168.1.20")])
def test_any_way_in_from_outside_turns_the_api_off(make_app, config, named):
    app = make_app(**config)
    with served(app) as url:
        response = requests.get(url + "/sdapi/v1/progress", timeout=10)
    assert response.status_code == 403 and named in response.json()["detail"]
    with served(make_app(SDAPI_AUTH="alice:pw", **config)) as url:
        assert requests.get(url + "/sdapi/v1/progress", auth=("alice", "pw"), timeout=10).status_code == 200


def test_the_api_alone_refuses_to_listen_for_other_machines_without_credentials(tmp_path, capsys, caplog, monkeypatch):
    from inference.__main__ import main

    served_apps = []
    monkeypatch.setattr("waitress.serve", lambda app, **kw: served_apps.append(app))  # never listen for real here
    assert main(["serve", "--host", "0.0.0.0", "--backend", "remote", "--api-url", "http://127.0.0.1:9",
                 "--instance", str(tmp_path)]) == 2
    assert served_apps == []
    error = capsys.readouterr().err + caplog.text
    assert "--host 0.0.0.0 lets other machines reach the API" in error and "--sdapi-auth user:password" in error


# -- item 2: even with credentials, API work is capped and never delays a player ----------------------------------


def post_txt2img(url, auth, **body):
    return requests.post(url + "/sdapi/v1/txt2img", json={"width": 64, "height": 64, **body}, auth=auth, timeout=300)


def wait_painting(url, auth, minimum=2):
    """Poll /progress as ``auth`` until their picture is being painted at step ``minimum`` or later; return the step."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = requests.get(url + "/sdapi/v1/progress", auth=auth, timeout=10).json()["state"]
        if state["sampling_step"] >= minimum:
            return state["sampling_step"]
        time.sleep(0.02)
    pytest.fail("the API picture never started")


def in_background(function, *args, **kwargs):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(response=function(*args, **kwargs)))
    thread.start()
    return thread, outcome


@pytest.mark.slow
def test_interrupt_skip_and_progress_concern_only_the_callers_own_pictures(make_app):
    app = make_app(SDAPI_AUTH="alice:pa,bob:pb")
    alice, bob = ("alice", "pa"), ("bob", "pb")
    with served(app) as url:
        thread, outcome = in_background(post_txt2img, url, alice, prompt="alice's", steps=60, seed=1)
        step = wait_painting(url, alice)
        idle = requests.get(url + "/sdapi/v1/progress", auth=bob, timeout=10).json()
        assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0  # bob sees nothing of alice's
        assert requests.post(url + "/sdapi/v1/interrupt", auth=bob, timeout=10).json() == {}
        assert requests.post(url + "/sdapi/v1/skip", auth=bob, timeout=10).json() is None
        assert wait_painting(url, alice, step + 2) > step  # still painting after bob's interrupt and skip
        requests.post(url + "/sdapi/v1/interrupt", auth=alice, timeout=10)
        thread.join(120)
    body = outcome["response"].json()
    assert body["images"] == []
    assert json.loads(body["info"])["extra_generation_params"]["Lanternslide: interrupted"] == "0 of 1 pictures painted"


@pytest.mark.slow
def test_a_waiting_player_goes_before_an_api_call_that_is_painting(make_app):
    from inference.jobs import DONE
    from inference.jobs import PLAYER
    from inference.request import GenerationRequest

    app = make_app(SDAPI_AUTH="alice:pa")
    images = app.extensions["images"]
    with served(app) as url:
        thread, outcome = in_background(post_txt2img, url, ("alice", "pa"), prompt="a long API call", steps=40)
        wait_painting(url, ("alice", "pa"))
        player = images.submit(
            GenerationRequest(prompt="the player's slide", seed=7, steps=2, width=64, height=64),
            PLAYER,
            "player-1",
            "10.0.0.7",
        )
        snap = images.snapshot(player.key)
        while snap.state != DONE:
            snap = images.follow(player.key, snap.version, 60) or images.snapshot(player.key)
            assert outcome.get("response") is None  # the API call is not answered before the player's picture
        thread.join(300)
    assert outcome["response"].status_code == 200 and len(outcome["response"].json()["images"]) == 1
    assert images.stats()["counters"]["preempted"] >= 1


@pytest.mark.slow
def test_api_work_is_capped_per_call_and_per_client_with_clear_answers(make_app):
    from inference.sdapi_models import megapixel_steps
    from web.sdapi.common import MAX_MEGAPIXEL_STEPS

    assert megapixel_steps(150, 1024, 1024, 8) == MAX_MEGAPIXEL_STEPS  # the default: 8 pictures, 150 steps, 1024x1024
    with served(make_app()) as url:
        big = post_txt2img(url, None, batch_size=16, steps=150, width=1024, height=1024)
        assert big.status_code == 422
        assert "16 picture(s) x 150 steps x 1024x1024 = 2400 megapixel-steps" in big.json()["detail"][0]["msg"]
        assert "at most 1200 per call" in big.json()["detail"][0]["msg"]
    app = make_app(SDAPI_CLIENT_LIMIT=2, SDAPI_MAX_MEGAPIXEL_STEPS=1)
    with served(app) as url:
        over = post_txt2img(url, None, batch_size=2, steps=150)
        assert over.status_code == 422 and "this server allows at most 1 per call" in over.json()["detail"][0]["msg"]
        many = post_txt2img(url, None, batch_size=3, steps=2)
        assert many.status_code == 429
        assert "at most 2 waiting (--sdapi-client-limit)" in many.json()["detail"]
        assert post_txt2img(url, None, batch_size=2, steps=2).status_code == 200
    assert app.extensions["images"].stats()["queued"] == 0


@pytest.mark.slow
def test_api_calls_in_flight_are_bounded_so_threads_stay_for_pages(make_app):
    app = make_app(THREADS=8)  # at most 8 // 4 = 2 API calls wait at once
    images = app.extensions["images"]
    with served(app) as url:
        first, _ = in_background(post_txt2img, url, None, prompt="first", steps=60)
        wait_painting(url, None)
        second, _ = in_background(post_txt2img, url, None, prompt="second", steps=60)
        while images.stats()["queue"]["api"] < 1:
            time.sleep(0.02)
        third = post_txt2img(url, None, prompt="third", steps=2)
        assert third.status_code == 503 and third.headers["Retry-After"]
        assert "2 calls are waiting, at most 2 at once" in third.json()["errors"]
        assert requests.get(url + "/", timeout=10).status_code == 200
        requests.post(url + "/sdapi/v1/interrupt", timeout=10)
        first.join(120)
        second.join(120)


# -- item 9: no server paths in API answers ------------------------------------------------------------------------


class FailingBackend:
    """Fault injection around the real backend: every picture fails with an error that names a file on this server."""

    def __init__(self, real, path):
        self.real, self.path = real, path

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests_, on_step=None):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{self.path}'")


@pytest.mark.slow
def test_api_errors_and_models_never_show_server_paths(make_app, story_backend, tiny_model):
    weights = f"{tiny_model}/unet/diffusion_pytorch_model.safetensors"
    app = make_app(MODEL=str(tiny_model), BACKEND_INSTANCE=FailingBackend(story_backend, weights))
    with served(app) as url:
        models = requests.get(url + "/sdapi/v1/sd-models", timeout=10)
        failed = post_txt2img(url, None, steps=2)
        flags = requests.get(url + "/sdapi/v1/cmd-flags", timeout=10)
    assert models.json()[0]["filename"] == tiny_model.name
    assert failed.status_code == 500 and "diffusion_pytorch_model.safetensors" in failed.json()["errors"]
    assert flags.json()["model"] == tiny_model.name
    for response in (models, failed, flags):
        assert str(tiny_model) not in response.text and str(ROOT) not in response.text
    assert json.loads(models.text)[0]["title"].startswith(tiny_model.name)
