"""Helpers the tests share: servers of ours run as real processes, stream readers, picture decoders, sample stories.

Test modules import these from here (never from each other); pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import base64
import html
import http.client
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from PIL import Image

from game.story import StoryError
from game.story import load_story

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "stories"

HTMX = {"HX-Request": "true"}
ADMIN_PASSWORD = "test-admin-password"


_next_port = itertools.count()


def free_port() -> int:
    """A port that is free now and that no other test process will pick before our server binds it (a server takes
    seconds to start): below Linux's ephemeral range, which connections and ``bind(0)`` draw from, in a block of its
    own for each pytest-xdist worker."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    for _ in range(1000):
        port = 20000 + worker * 1000 + next(_next_port) % 1000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in 20000 + {worker} * 1000 + 0..999")


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
    """`python app.py` running for real (waitress) on a free port, loading the tiny model by path (more flags in
    ``extra``; ``environ`` instead of this process's environment)."""

    def __init__(self, tiny_model: Path, workdir: Path, extra: tuple[str, ...] = (),
                 environ: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        env = {**(os.environ if environ is None else environ), "PYTHONUNBUFFERED": "1",
               "LANTERNSLIDE_ADMIN_PASSWORD": ADMIN_PASSWORD}
        stories = self.stories = workdir / "stories"
        shutil.copytree(STORIES, stories)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--model", str(tiny_model),
             "--device", "cpu", "--max-size", "64", "--stories", str(stories), "--instance", str(workdir / "instance"),
             *extra],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        try:
            self.first_page_seconds = self._wait_for("/", lambda r: r.status_code == 200)
        except BaseException:
            self.stop()  # a server that did not come up is not left running
            raise

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
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or slow on a busy machine
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


class ApiServer(ServerProcess):
    """`python -m inference serve` (the API alone) on a free port, with Basic auth, painting with the tiny model."""

    user, password = "painter", "s3cret:with-colon"

    def __init__(self, tiny_model: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "api.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inference",
                "serve",
                "--port",
                str(self.port),
                "--model",
                str(tiny_model),
                "--device",
                "cpu",
                "--sdapi-auth",
                f"{self.user}:{self.password}",
                "--instance",
                str(workdir / "instance"),
            ],
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        try:
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"API server exited early:\n{self.log_path.read_text()}")
                try:
                    requests.get(self.url + "/sdapi/v1/sd-models", timeout=5, auth=(self.user, self.password))
                    break
                except (requests.ConnectionError, requests.Timeout):
                    time.sleep(0.1)
            self.wait_ready()
        except BaseException:
            self.stop()  # a server that did not come up is not left running
            raise

    def wait_ready(self) -> None:
        """Paint a first picture (the model loads meanwhile): a generous bound against a hang, not a speed limit."""
        deadline = time.perf_counter() + 600
        body = {"prompt": "warm up", "steps": 1, "width": 64, "height": 64}
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API server exited early:\n{self.log_path.read_text()}")
            try:
                response = requests.post(self.url + "/sdapi/v1/txt2img", json=body, auth=(self.user, self.password),
                                         timeout=120)
            except requests.Timeout:
                continue
            if response.status_code == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text())


class RayCluster:
    """Ray nodes started with this venv's `ray` command line, as a user makes a cluster (`ray start --head`, then
    `ray start --address=...` per machine), here all on this machine, each with its own few CPUs and no GPU.

    Every node runs `ray start --block` in a process group of its own; `stop` ends those groups (and any process
    still naming the cluster's folder), never other Ray processes of this machine (`ray stop` would end them all).
    The cluster asks for a token of its own (Ray's token authentication): its file is at ``RAY_AUTH_TOKEN_PATH`` in
    ``environ``, the environment a process needs to join it (this one's, less any ``RAY_*`` setting of this
    process's own Ray).  As README says, the head turns token mode on because it finds a token; a machine that
    joins is told with ``RAY_AUTH_MODE=token``.
    """

    def __init__(self, workdir: Path):
        self.folder = Path(tempfile.mkdtemp(prefix="ls-ray-"))  # short: Ray's socket paths must fit 107 bytes
        token = workdir / "ray_auth_token"
        token.write_text(secrets.token_hex(32))
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.environ.update(RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        # A machine switched off is noticed after 3 missed health checks a second apart (Ray's default: 5, 3 s apart,
        # so the test waited ~15 s for it; only how soon is changed, not what happens then)
        self.environ.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
        self.workdir = workdir
        self.address = ""
        self.nodes: list[subprocess.Popen] = []

    def add(self, cpus: int = 1) -> None:
        """Start a node with ``cpus`` CPUs: the head first, then machines joining it; return once it runs."""
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
        environ = self.environ
        if self.address:
            role = [f"--address={self.address}"]
            environ = {**environ, "RAY_AUTH_MODE": "token"}
        else:
            self.address = f"127.0.0.1:{free_port()}"
            role = ["--head", "--port", self.address.rpartition(":")[2], "--include-dashboard=false",
                    "--dashboard-port", str(free_port())]
        log_path = self.workdir / f"ray-node-{len(self.nodes)}.log"
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", *role, *ports,
                   f"--num-cpus={cpus}", "--num-gpus=0", "--object-store-memory=100000000",
                   f"--temp-dir={self.folder / str(len(self.nodes))}", "--disable-usage-stats"]
        node = subprocess.Popen(command, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=environ,
                                start_new_session=True)
        self.nodes.append(node)
        deadline = time.monotonic() + 180  # against a hang only
        while "Ray runtime started." not in log_path.read_text():
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(command)}` did not start:\n{log_path.read_text()}")
            time.sleep(0.2)

    def leave(self, index: int) -> None:
        """The node started ``index``-th leaves the cluster at once (its machine is switched off)."""
        self._signal(self.nodes[index].pid, signal.SIGKILL)
        self.nodes[index].wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):  # at once: a graceful `ray start` took 5 s and more to end, for nothing
            self._signal(node.pid, signal.SIGKILL)
            node.wait()
        for pid in self.stragglers():
            self._signal(pid, signal.SIGKILL, group=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def stragglers(self) -> list[int]:
        """Processes still naming this cluster's folder (Ray's workers do), by process id."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(self.folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    @staticmethod
    def _signal(pid: int, sig: int, group: bool = True) -> None:
        try:
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        except ProcessLookupError:
            pass


def csrf_token(client, path="/admin/login"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, password="open sesame"):
    return client.post("/admin/login", data={"password": password, "csrf_token": csrf_token(client)})


class _FormReader(HTMLParser):
    """The values a browser would send for one form: inputs (checked boxes only), selected options, textareas."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.values = form_id, False, {}
        self.select: str | None = None
        self.option = False  # inside an option without a value attribute: its text is its value
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif not self.inside:
            return
        elif tag == "input" and a.get("name") and (a.get("type") != "checkbox" or "checked" in a):
            self.values[a["name"]] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")
        elif tag == "select":
            self.select = a.get("name")
        elif tag == "option" and self.select and ("selected" in a or self.select not in self.values):
            self.values[self.select] = a.get("value", "")  # the text, when it has no value (see handle_data)
            self.option = a.get("value") is None
        elif tag == "textarea":
            self.textarea = a.get("name")
            self.values[self.textarea] = ""

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.values[self.textarea] += data
        elif self.select and self.option and not self.values[self.select]:
            self.values[self.select] = data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "option":
            self.option = False
        elif tag == "textarea":
            self.textarea = None


def form_values(page: str, form_id: str) -> dict[str, str]:
    """What submitting the form with this id sends, as the page has it filled in (no button's own value)."""
    reader = _FormReader(form_id)
    reader.feed(page)
    return reader.values


def editor_state(client, slug):
    """The YAML editor of a story: its text (unescaped), its revision, and the whole page."""
    page = client.get(f"/admin/stories/{slug}").get_data(as_text=True)
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', page).group(1)
    text = re.search(r"<textarea name=\"text\"[^>]*>(.*?)</textarea>", page, re.S).group(1)
    return html.unescape(text), revision, page


def events(client, url):
    """Read a picture stream to its end; return [(event, data)]."""
    return parse_events(client.get(url).get_data(as_text=True))


def parse_events(body: str) -> list[tuple[str, str]]:
    """A server-sent event stream's events, as [(event, data)]."""
    found = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        if name:
            found.append((name, "\n".join(line[6:] for line in lines if line.startswith("data: "))))
    return found


def final_frame(client, slide_url):
    found = events(client, slide_url + "/stream")
    assert found[-1] == ("done", "")
    return found[-2][1]


def data_url_image(html: str) -> Image.Image:
    match = re.search(r'src="data:image/(\w+);base64,([^"]+)"', html)
    assert match, html[:500]
    image = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    assert image.format.lower() == match.group(1)
    return image


def encoded_picture(image: Image.Image, fmt: str = "PNG") -> bytes:
    """A picture's bytes in a file format (PNG by default)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def smooth_picture(width: int = 64, height: int = 64) -> Image.Image:
    """A smooth colour ramp: every pixel is told apart from its place, and no edge is sharp."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    return Image.fromarray(ramp.astype(np.uint8))


def square_mask(size: tuple[int, int] = (64, 64), box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    """A black mask with a white box: paint inside the box only."""
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


# A small valid story.
GOOD = """\
title: Test  # a comment that must survive a round trip
start: a
style:
  steps: 20
characters:
  keeper: an old keeper
slides:
  a:
    text: Start here.
    image: a shore
    characters: [keeper]
    choices:
      - text: Go on
        to: b
  b:
    text: The end.
"""

# A small Twee 3 story.
STATEFUL = """\
title: Lantern
start: hall
state:
  lantern: false
  coins: 3
  name: Ann
slides:
  hall:
    text: |
      You are in the hall, {{ name }}.
      {% if lantern %}The lantern glows.{% else %}It is dark.{% endif %}
    image: "a hall, {% if lantern %}lit by a lantern{% else %}in darkness{% endif %}"
    choices:
      - text: Take the lantern
        to: hall
        if: not lantern
        set: {lantern: true, coins: coins - 1}
      - text: Go down
        to: cellar
        if: lantern
        otherwise: disable
  cellar:
    text: The cellar.
"""


def story_errors(text: str) -> list[str]:
    """The errors that refuse a story read as stories/t.yaml, each as shown: file, line, slide, field, message."""
    with pytest.raises(StoryError) as info:
        load_story(text, "stories/t.yaml", "t")
    return [str(p) for p in info.value.problems if p.severity == "error"]


TWEE = """\
:: StoryTitle
The Cellar Door

:: StoryData
{
  "ifid": "D674C58C-DEFA-4F70-B7A2-27742230C0FC",
  "format": "Harlowe",
  "start": "Top of the stairs"
}

:: StoryStylesheet [stylesheet]
body { color: red; }

:: Top of the stairs {"position":"100,100","size":"100,100"}
(set: $lamp to true)You stand at the top of the cellar stairs.(if: $lamp)[ Your lamp flickers.]
[[Go down->Cellar]]
[[Cellar<-Listen at the door]]
[[Leave|Outside]]
[[Nowhere]]

:: Cellar [dark]
Cold air. <<if $x>>A rat.<</if>>
[[Back up|Top of the stairs]]

:: Outside
The sun is out. (link: "Again")[(goto: "Top of the stairs")]
"""

# A small story with state: a lantern to take, coins to spend (its file's text, and the story).
LANTERN_YAML = """\
title: Lantern
start: hall
state: {lantern: false, coins: 3}
slides:
  hall:
    text: "Hall. {% if lantern %}Your lantern glows.{% endif %} Coins: {{ coins }}"
    image: "a hall{% if lantern %} lit by a lantern{% endif %}"
    choices:
      - {text: Take the lantern, to: hall, if: not lantern, set: {lantern: true, coins: coins - 1}}
      - {text: Go down, to: cellar, if: lantern, otherwise: disable}
      - {text: Pay, to: cellar, if: coins > 5}
  cellar:
    text: The cellar.
    choices:
      - {text: Up, to: hall}
"""
LANTERN = load_story(LANTERN_YAML, "s", "lantern")


# -- a server painting on a remote A1111 server that never finishes (fault injection) ----------------------------


class HangingPainter:
    """Test double of a remote A1111 server (fault injection): the model list answers, a picture never comes."""

    def __init__(self) -> None:
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(
                    [{"title": "hanging-test-double", "model_name": "hanging"}] if "sd-models" in self.path else {}
                )

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if "txt2img" in self.path:
                    release.wait(600)
                self._json({})

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the app hung up on a picture that never came: expected

        self.server = Quiet(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class ProxiedServer(ServerProcess):
    """`python app.py` painting on the hanging painter, with the extra flags given."""

    def __init__(self, workdir: Path, painter: HangingPainter, *flags: str):
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.stories = workdir / "stories"
        shutil.copytree(STORIES, self.stories)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LANTERNSLIDE_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--backend", "remote", "--api-url",
             painter.url, "--remote-workers", "1", "--prefetch-depth", "0", "--stories", str(self.stories),
             "--instance", str(workdir / "instance"), *flags],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if get(self, "/")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(self.log_path.read_text())

    def story(self, slug: str, count: int) -> None:
        slides = "".join(f"  s{i}:\n    text: Room {i}.\n    image: room number {i} of {slug}\n" for i in range(count))
        (self.stories / f"{slug}.yaml").write_text(f"title: {slug}\nstart: s0\nslides:\n{slides}")

    def status(self) -> dict:
        import requests

        return requests.get(f"http://127.0.0.1:{self.port}/admin/status.json", auth=("admin", ADMIN_PASSWORD),
                            timeout=60).json()


def connect(server: ProxiedServer, path: str, headers: dict[str, str] | None = None,
            source: str = "127.0.0.1") -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send a GET from ``source`` (a loopback address) and return the connection and the response, unread."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60, source_address=(source, 0))
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


def get(server: ProxiedServer, path: str, headers: dict[str, str] | None = None,
        source: str = "127.0.0.1") -> tuple[int, http.client.HTTPMessage, str]:
    conn, response = connect(server, path, headers, source)
    try:
        return response.status, response.headers, response.read().decode()
    finally:
        response.close()
        conn.close()


def wait_until(condition, what, timeout=600):
    """Poll until ``condition()`` is truthy and return it (a bound against a hang, not a speed limit)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)
