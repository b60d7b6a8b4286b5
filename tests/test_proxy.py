"""The public link under attack, over real HTTP against `python app.py` (waitress): proxy trust, picture streams.

The server paints on a remote A1111 server that is a test double injecting one fault: it answers the model list
at once and never finishes a picture, so pictures stay queued or painting for as long as a test needs.  Clients
are told apart by the proxy's X-Forwarded-For; a stranger connecting directly, not through the proxy, is a
connection from another loopback address (127.0.0.2).
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time

import pytest

from tests.support import HTMX
from tests.support import ROOT
from tests.support import HangingPainter
from tests.support import ProxiedServer as Server
from tests.support import connect
from tests.support import get


def first_frame(response: http.client.HTTPResponse) -> str:
    """Read an event stream up to its first `frame` event and return that event's data."""
    event, data = "", []
    while True:
        line = response.readline().decode()
        if not line:
            raise AssertionError("the stream ended before its first frame")
        line = line.rstrip("\r\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            if event == "frame":
                return "\n".join(data)
            event, data = "", []


def forwarded(address: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **extra}


@pytest.fixture(scope="module")
def painter():
    double = HangingPainter()
    yield double
    double.close()


@pytest.fixture(scope="module")
def proxied(painter, tmp_path_factory):
    """Behind a proxy (as with --share): rate limit 100 a minute, 2 waiting pictures per client."""
    server = Server(tmp_path_factory.mktemp("proxied"), painter, "--behind-proxy", "--rate-limit", "100 per minute",
                    "--player-queue-limit", "2")
    yield server
    server.stop()


# -- item 3: every friend behind the proxy is a client of their own ---------------------------------------------

@pytest.mark.slow
def test_friends_behind_the_proxy_get_their_own_rate_limit(proxied):
    friend, other = forwarded("198.51.100.7"), forwarded("198.51.100.8")
    codes = [get(proxied, "/", friend)[0] for _ in range(101)]
    assert codes[:100] == [200] * 100 and codes[100] == 429
    assert get(proxied, "/", other)[0] == 200
    # A hop the friend wrote themselves is not believed: the proxy's last hop is who they are.
    assert get(proxied, "/", forwarded("203.0.113.50, 198.51.100.7"))[0] == 429
    # Nor are the headers of someone who connects directly instead of through the proxy.
    assert get(proxied, "/", forwarded("198.51.100.99"), source="127.0.0.2")[0] == 200
    spoofed = [get(proxied, "/", forwarded(f"198.51.100.{100 + i}"), source="127.0.0.2")[0] for i in range(100)]
    assert spoofed[-1] == 429  # every made-up address counted against the one connection they really are


def test_friends_behind_the_proxy_get_their_own_picture_cap(proxied):
    proxied.story("cap", 6)
    crowded = None
    for i in range(6):  # one picture paints (never finishing), two wait, and then this friend is at the cap
        status, _, html = get(proxied, f"/play/cap/s{i}", forwarded("198.51.100.20"))
        assert status == 200
        if "You have several pictures waiting already" in html:
            crowded = i
            break
    assert crowded is not None and crowded <= 3
    status, _, html = get(proxied, "/play/cap/s5", forwarded("198.51.100.21"))
    assert status == 200 and 'id="picture"' in html
    assert "You have several pictures waiting already" not in html and "The painter is busy" not in html


def test_the_session_cookie_is_secure_when_the_proxy_says_https(proxied):
    _, headers, _ = get(proxied, "/play/lighthouse/shore", forwarded("198.51.100.30", **{"X-Forwarded-Proto": "https"}))
    assert "Secure" in headers["Set-Cookie"]
    _, headers, _ = get(proxied, "/play/lighthouse/shore", forwarded("198.51.100.31"))
    assert "Secure" not in headers["Set-Cookie"]
    # Someone connecting directly cannot claim https either.
    _, headers, _ = get(proxied, "/play/lighthouse/shore", {"X-Forwarded-Proto": "https"}, source="127.0.0.3")
    assert "Secure" not in headers["Set-Cookie"]


@pytest.mark.slow
def test_without_proxy_mode_forwarded_headers_are_ignored(painter, tmp_path):
    server = Server(tmp_path, painter, "--rate-limit", "20 per minute")
    try:
        https = forwarded("198.51.100.40", **{"X-Forwarded-Proto": "https"})
        assert "Secure" not in get(server, "/play/lighthouse/shore", https, source="127.0.0.2")[1]["Set-Cookie"]
        codes = [get(server, "/", forwarded(f"198.51.100.{50 + i}"), source="127.0.0.2")[0] for i in range(21)]
        assert codes[:19] == [200] * 19 and codes[-1] == 429  # one client however many addresses it claims
    finally:
        server.stop()


# -- item 4: open picture streams never take the pages down ----------------------------------------------------

POLL = re.compile(r'hx-get="/play/crowd/s\d+/image" hx-trigger="load delay:\d+s"')


@pytest.mark.slow
def test_hundreds_of_open_streams_leave_the_pages_answering(proxied):
    proxied.story("crowd", 10)
    held: list[tuple[http.client.HTTPConnection, http.client.HTTPResponse]] = []

    def open_stream(address: str, i: int) -> bool:
        """Open a stream and read its first frame; True if it is a live stream, False if it fell back to polling."""
        conn, response = connect(proxied, f"/play/crowd/s{i % 10}/stream", forwarded(address))
        held.append((conn, response))
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        frame = first_frame(response)
        if POLL.search(frame):
            assert "checked every 3 s instead of live" in frame
            return False
        assert 'class="placeholder"' in frame or "to paint" in frame or "Painting" in frame, frame
        return True

    for i in range(10):  # ten players each ask for a picture (the painter never finishes one)
        assert get(proxied, f"/play/crowd/s{i}", forwarded(f"10.1.0.{i + 1}"))[0] == 200
    try:
        one = [open_stream("192.0.2.70", i) for i in range(70)]  # 70 streams from one client
        many = [open_stream(f"10.0.{i // 200}.{i % 200 + 1}", i) for i in range(300)]  # 300 clients, one each
        assert sum(one) == 4  # --streams-per-client
        assert sum(one) + sum(many) == 24  # --max-streams: the other 40 server threads stay for pages
        assert proxied.status()["streams"]["open"] == 24
        # Meanwhile another player's pages answer, and their picture is checked every few seconds instead.
        player = forwarded("192.0.2.99")
        assert get(proxied, "/", player)[0] == 200
        status, _, html = get(proxied, "/play/crowd/s3", player)
        assert status == 200 and POLL.search(html) and "instead of live" in html
        status, _, html = get(proxied, "/play/crowd/s3/image", {**player, **HTMX})
        assert status == 200 and POLL.search(html)
        assert get(proxied, "/play/lighthouse/shore", {**player, **HTMX})[0] == 200
    finally:
        for conn, response in held:
            response.close()
            conn.close()
    # Streams whose players went away give their threads back (noticed at the next keep-alive, every 5 s).
    deadline = time.monotonic() + 120
    while proxied.status()["streams"]["open"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proxied.status()["streams"]["open"] == 0
    conn, response = connect(proxied, "/play/crowd/s0/stream", forwarded("192.0.2.70"))
    try:
        assert not POLL.search(first_frame(response))  # a live stream again
    finally:
        response.close()
        conn.close()


@pytest.mark.slow
def test_streams_that_would_leave_no_threads_for_pages_are_refused_at_start():
    result = subprocess.run([sys.executable, "app.py", "--threads", "64", "--max-streams", "60"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--max-streams 60 with --threads 64" in result.stderr and "between 1 and 48" in result.stderr
