"""A stranger's attacks on the real server (`python app.py`, waitress) over HTTP: hostile story files, password
guessing with HTTP Basic auth, copied admin cookies, odd admin addresses, and server paths in players' pages.

Most servers here paint through a remote backend pointed at a closed port (it fails at once and imports no torch):
these tests are about pages, not pictures.
"""

from __future__ import annotations

import concurrent.futures
import html
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import ROOT
from tests.support import STORIES
from tests.support import ServerProcess
from tests.support import free_port

PASSWORD = "correct horse battery"


class Server(ServerProcess):
    """`python app.py` on a free port with its own stories and instance folders under ``workdir``."""

    def __init__(self, workdir: Path, *args: str, password: str = PASSWORD, env: dict[str, str] | None = None,
                 model: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.stories = workdir / "stories"
        if not self.stories.exists():
            shutil.copytree(STORIES, self.stories)
        self.log_path = workdir / f"server-{self.port}.log"
        backend = ["--model", model, "--device", "cpu", "--max-size", "64"] if model else \
            ["--backend", "remote", "--api-url", f"http://127.0.0.1:{free_port()}"]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LANTERNSLIDE_")}
        environ.update({"PYTHONUNBUFFERED": "1", "LANTERNSLIDE_ADMIN_PASSWORD": password, **(env or {})})
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--stories", str(self.stories),
             "--instance", str(workdir / "instance"), *backend, *args],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=environ, cwd=ROOT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(self.log_path.read_text())
            time.sleep(0.1)

    def sign_in(self, session: requests.Session, password: str = PASSWORD, **kwargs) -> requests.Response:
        token = csrf(session.get(self.url + "/admin/login", timeout=30, **kwargs).text)
        return session.post(self.url + "/admin/login", data={"password": password, "csrf_token": token},
                            allow_redirects=False, timeout=30, **kwargs)


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("hostile"))
    yield running
    running.stop()


@pytest.fixture
def start():
    """Start servers for one test (``start(workdir, *args, **kwargs)``); all are stopped at its end, pass or fail."""
    started: list[Server] = []

    def starter(*args, **kwargs) -> Server:
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield starter
    for running in started:
        running.stop()


@pytest.fixture
def author(server):
    session = requests.Session()
    assert server.sign_in(session).status_code == 303
    session.token = csrf(session.get(server.url + "/admin/stories", timeout=30).text)
    return session


def alias_bomb(levels: int) -> str:
    """The billion laughs: each level lists the previous one nine times; ``levels`` 9 is about 500 bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ntitle: Bomb\nstart: s\nslides:\n  s:\n    text: *l{levels - 1}\n"


DEEP = "title: Deep\nstart: s\nslides:\n  s:\n    text: " + "[" * 100_000 + "]" * 100_000 + "\n"


# -- hostile story files ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_uploaded_alias_bomb_deep_file_or_unsafe_slide_id_is_refused_with_a_short_message(server, author):
    def upload(name: str, text: str) -> requests.Response:
        return author.post(server.url + "/admin/stories/import", files={"file": (name, text.encode())},
                           data={"csrf_token": author.token}, timeout=60)

    bomb = upload("bomb.yaml", alias_bomb(9))
    assert len(alias_bomb(9)) < 600
    assert bomb.status_code == 422 and len(bomb.content) < 20_000
    assert "aliases (*name) expand it to more than" in bomb.text and bomb.text.count("lol") < 10
    deep = upload("deep.yaml", DEEP)
    assert deep.status_code == 422 and "nested more than 32 levels deep" in deep.text
    ids = upload("ids.yaml", "title: Ids\nstart: s\nslides:\n  s:\n    text: hi\n    choices: [{text: go, to: ../up}]\n"
                             "  ../up:\n    text: up\n  a/b:\n    text: ab\n")
    page = html.unescape(ids.text)
    assert ids.status_code == 422
    assert "stories/ids.yaml, line 7, slide '../up': the id '../up' cannot be part of the slide's address" in page
    assert "slide 'a/b': the id 'a/b' cannot be part of the slide's address (/play/story/slide): use up to 64 " \
           "letters, digits, - and _" in page
    assert not any((server.stories / f"{name}.yaml").exists() for name in ("bomb", "deep", "ids"))
    assert requests.get(server.url + "/play/lighthouse/shore", timeout=30).status_code == 200


@pytest.mark.slow
def test_hostile_files_in_the_stories_folder_are_listed_as_broken_and_everyone_plays_on(server):
    files = {
        "bomb": alias_bomb(9),  # expands to gigabytes: refused while parsing
        "small-bomb": alias_bomb(5),  # expands to 240 KB: parsed, and its error quotes the value cut short
        "deep": DEEP,  # past Python's recursion limit
        "huge": "title: Huge\n" + "# padding\n" * 120_000,  # 1.2 MB: past the upload cap, never read
        "loop": "l: &l [1, *l]\ntitle: Loop\nstart: s\nslides:\n  s:\n    text: hi\n",
        "odd-start": "title: Odd\nstart: [s]\ncharacters: {a: b}\nslides:\n  s:\n    text: hi\n    characters: [[a]]\n",
        "digits": "title: Digits\nstart: s\nslides:\n  s:\n    text: hi\n    style: {seed: " + "9" * 5000 + "}\n",
        "ids": "title: Ids\nstart: s\nslides:\n  s:\n    text: hi\n  ../up:\n    text: up\n",
    }
    for name, text in files.items():
        (server.stories / f"{name}.yaml").write_text(text)
    log_before = server.log_path.stat().st_size
    try:
        page = requests.get(server.url + "/", timeout=120)
        assert page.status_code == 200
        assert len(page.content) < 60_000 and page.text.count("lol") < 40
        listing = html.unescape(page.text)
        assert "aliases (*name) expand it to more than" in listing
        assert "must be non-empty text, got [[[" in listing  # the small bomb's value, cut to a few items
        assert "nested more than 32 levels deep" in listing
        assert "huge.yaml: is 1,200,012 bytes; a story file may be at most 1,048,576 bytes" in listing
        assert "the alias *l is used inside the value it names (a loop)" in listing
        assert "no slide called ['s']" in listing and "unknown character ['a']" in listing
        assert "a number has too many digits" in listing
        assert "slide '../up': the id '../up' cannot be part of the slide's address" in listing
        assert 'href="/play/lighthouse"' in page.text  # the good stories are still there to play
        assert requests.get(server.url + "/play/lighthouse/shore", timeout=30).status_code == 200
        broken = requests.get(server.url + "/play/bomb", timeout=30)
        assert broken.status_code == 409 and "This story needs repair" in broken.text
        assert requests.get(server.url + "/", timeout=30).status_code == 200  # checked once, then remembered
        assert server.log_path.stat().st_size - log_before < 50_000
    finally:
        for name in files:
            (server.stories / f"{name}.yaml").unlink()


def test_saved_story_files_keep_the_folders_usual_mode(server, author):
    umask = os.umask(0)
    os.umask(umask)
    created = author.post(server.url + "/admin/stories", data={"title": "Modes", "slug": "modes",
                                                               "csrf_token": author.token}, timeout=30)
    assert created.status_code == 200  # redirected to the editor
    path = server.stories / "modes.yaml"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    editor = author.get(server.url + "/admin/stories/modes", timeout=30).text
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', editor).group(1)
    text = path.read_text().replace("The story begins here.", "The story begins elsewhere.")
    saved = author.post(server.url + "/admin/stories/modes", data={"text": text, "revision": revision,
                                                                  "csrf_token": author.token}, timeout=30)
    assert saved.status_code == 200 and "elsewhere" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o640


# -- admin sign-in and sessions -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_password_guesses_over_basic_auth_are_slowed_and_share_the_sign_in_limit(tmp_path, start):
    guarded = start(tmp_path, "--behind-proxy")  # behind a proxy nobody is "the person at this computer"
    client = {"X-Forwarded-For": "198.51.100.7"}

    def guess(i: int) -> requests.Response:
        return requests.get(guarded.url + "/admin/status.json", auth=("admin", f"guess-{i}"), headers=client,
                            timeout=60)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(15) as pool:  # at once: attempts being checked count too
        answers = list(pool.map(guess, range(15)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 10 + [429] * 5, codes
    assert time.monotonic() - started >= 1  # each wrong password costs a second
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) > 0 and "Too many wrong passwords" in refused.json()["detail"]
    # the same bucket as the form, and the right password is not even looked at now
    form = guarded.sign_in(requests.Session(), headers=client)
    assert form.status_code == 429 and "Too many wrong passwords" in form.text
    right = requests.get(guarded.url + "/admin/status.json", auth=("admin", PASSWORD), headers=client, timeout=30)
    assert right.status_code == 429


def test_a_copied_admin_cookie_stops_working_at_sign_out(server):
    admin = requests.Session()
    assert server.sign_in(admin).status_code == 303
    thief = requests.Session()
    thief.cookies.update(admin.cookies)
    assert thief.get(server.url + "/admin/", allow_redirects=False, timeout=30).status_code == 200
    token = csrf(admin.get(server.url + "/admin/", timeout=30).text)
    assert admin.post(server.url + "/admin/logout", data={"csrf_token": token}, allow_redirects=False,
                      timeout=30).status_code == 303
    page = thief.get(server.url + "/admin/", allow_redirects=False, timeout=30)
    assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login")
    assert thief.get(server.url + "/admin/status.json", timeout=30).status_code == 401


def test_sign_out_everywhere_ends_every_admin_session(server):
    laptop, phone = requests.Session(), requests.Session()
    assert server.sign_in(laptop).status_code == 303 and server.sign_in(phone).status_code == 303
    token = csrf(laptop.get(server.url + "/admin/", timeout=30).text)
    laptop.post(server.url + "/admin/logout", data={"csrf_token": token, "everywhere": "1"}, timeout=30)
    assert phone.get(server.url + "/admin/", allow_redirects=False, timeout=30).status_code == 302


@pytest.mark.slow
def test_admin_sessions_expire_and_end_when_the_password_changes(tmp_path, start):
    def cookie_works(server: Server, jar) -> bool:
        session = requests.Session()
        session.cookies.update(jar)
        return session.get(server.url + "/admin/status.json", timeout=30).status_code == 200

    first = start(tmp_path)
    admin = requests.Session()
    assert first.sign_in(admin).status_code == 303
    jar = admin.cookies.copy()
    first.stop()
    again = start(tmp_path)  # a restart keeps sessions
    assert cookie_works(again, jar)
    again.stop()
    short = start(tmp_path, env={"LANTERNSLIDE_ADMIN_SESSION_HOURS": "0.0001"})  # 0.36 s: long expired
    assert not cookie_works(short, jar)
    short.stop()
    changed = start(tmp_path, password="a new password")  # 12 hours again, but another password
    assert not cookie_works(changed, jar)
    fresh = requests.Session()
    assert changed.sign_in(fresh, password="a new password").status_code == 303 and cookie_works(changed, fresh.cookies)


def test_odd_admin_job_addresses_get_a_plain_not_found_page(server, author):
    cookie = "; ".join(f"{c.name}={c.value}" for c in author.cookies)
    for path in ("/admin/jobs/..", "/admin/jobs/%2e%2e", "/admin/jobs/a.b", "/admin/jobs/" + "f" * 300):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", path, headers={"Cookie": cookie})  # sent as is: no client-side .. folding
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status == 404, (path, response.status)
        assert "Not found" in body and "Traceback" not in body


# -- server paths -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_players_never_see_where_the_server_keeps_its_files(tmp_path, start):
    model = tmp_path / "private-models-7f3a" / "sd21-folder"
    model.mkdir(parents=True)  # a folder without a model in it: loading fails, naming the path
    server = start(tmp_path, model=str(model))
    deadline = time.monotonic() + 180
    while True:
        status = requests.get(server.url + "/admin/status.json", auth=("admin", PASSWORD), timeout=30).json()
        if status["backend"]["state"] == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["backend"]["state"] == "failed"
    assert "private-models-7f3a" in status["backend"]["message"]  # the admin sees the whole path
    player = requests.Session()
    answers = [player.get(server.url + "/play/lighthouse/shore", timeout=30),
               player.get(server.url + "/play/lighthouse/shore/image", headers={"HX-Request": "true"}, timeout=30),
               player.get(server.url + "/play/lighthouse/shore/image?format=png", timeout=30)]
    for answer in answers:
        assert "private-models-7f3a" not in answer.text and str(tmp_path) not in answer.text
    assert "sd21-folder" in answers[2].text  # the model's name says which model failed
