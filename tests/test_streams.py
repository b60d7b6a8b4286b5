"""Picture streams (web/streams.py): through Flask's test client, and against the real server (`python app.py`,
waitress) read by a real HTTP client."""

import re
import threading
import time

import pytest
import requests

from tests.support import ADMIN_PASSWORD
from tests.support import HTMX
from tests.support import data_url_image
from tests.support import events


def read_events(response):
    """Yield (event, data) as they arrive on an open SSE response."""
    name, data = None, []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name:
            yield name, "\n".join(data)
            name, data = None, []


def many_slides_story(live_server, slug, count, steps=4):
    """Write a story whose slides all need fresh pictures (the server picks it up without a restart)."""
    slides = "".join(
        f"  s{i}:\n    text: Room number {i}.\n    image: a room with the number {i} {slug}\n"
        + (f"    choices:\n      - {{text: next, to: s{i + 1}}}\n" if i + 1 < count else "")
        for i in range(count)
    )
    (live_server.log_path.parent / "stories" / f"{slug}.yaml").write_text(
        f"title: {slug}\nstart: s0\nstyle: {{steps: {steps}, seed: 3}}\nslides:\n{slides}")


@pytest.mark.slow
def test_picture_streams_then_arrives_as_a_data_url_of_the_painted_size(client):
    found = events(client, "/play/lighthouse/shore/stream")
    assert [name for name, _ in found][-2:] == ["frame", "done"]
    assert any("Painting… step" in data for name, data in found if name == "frame")
    image = data_url_image(found[-2][1])
    assert image.size == (64, 64)


@pytest.mark.slow
def test_the_picture_stream_sends_each_preview_once_and_no_bigger_than_the_picture(client):
    response = client.get("/play/lighthouse/shore/stream", buffered=False)
    started, received = time.monotonic(), []
    for chunk in response.iter_encoded():
        for block in chunk.decode().split("\n\n"):
            if block.startswith("event: frame"):
                received.append("".join(line[6:] for line in block.splitlines() if line.startswith("data: ")))
    seconds = time.monotonic() - started
    previews = [re.search(r'class="preview" src="([^"]+)"', frame) for frame in received]
    shown = [found.group(1) for found in previews if found]
    assert len(set(shown)) >= 2  # the picture was seen taking shape
    sizes = {data_url_image(f'src="{url}"').size for url in shown}
    assert len(sizes) == 1 and max(sizes.pop()) <= 64  # square like the picture, not scaled up to 256 px
    # A frame that only moves the progress bar, with the preview it already sent, comes at most once a second.
    assert len(shown) - len(set(shown)) <= seconds + 1
    assert max(len(frame) for frame in received if "preview" in frame) < 4000  # was ~20 KB: a 256 px preview


def test_events_arrive_in_order_and_each_is_flushed_at_once(live_server):
    many_slides_story(live_server, "order", 2, steps=40)  # long enough to look at the painter while it paints
    with requests.get(live_server.url + "/play/order/s0/stream", stream=True, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(response)
        first = next(events)
        # The first frame reached us while the painter was still at work: the server did not hold it back.
        status = live_server.status()
        assert status["running"] or status["queued"], status
        rest = list(events)
    frames = [first] + rest
    names = [name for name, _ in frames]
    assert names[-2:] == ["frame", "done"]
    kinds = ["queued" if 'class="placeholder"' in d and "failed" not in d else
             "preview" if "step" in d or "Starting to paint" in d else
             "image" if 'class="final"' in d else "other" for n, d in frames if n == "frame"]
    assert kinds[-1] == "image"
    assert "preview" in kinds
    assert kinds.index("preview") < kinds.index("image")
    assert "other" not in kinds, [d for n, d in frames if n == "frame"]
    assert kinds == sorted(kinds, key=["queued", "preview", "image"].index)  # position -> previews -> image
    assert 'src="data:image/webp;base64,' in frames[-2][1]


def test_a_reconnecting_player_gets_the_current_state(live_server):
    many_slides_story(live_server, "again", 1)
    with requests.get(live_server.url + "/play/again/s0/stream", stream=True, timeout=60) as response:
        list(read_events(response))
    with requests.get(live_server.url + "/play/again/s0/stream", stream=True, timeout=60) as response:
        again = list(read_events(response))
    assert [name for name, _ in again] == ["frame", "done"]
    assert 'class="final"' in again[0][1]


def test_sixteen_open_streams_do_not_starve_pages(live_server):
    many_slides_story(live_server, "crowd", 16)
    opened, finished = threading.Barrier(17), []

    def follow(i):
        with requests.get(f"{live_server.url}/play/crowd/s{i}/stream", stream=True, timeout=120) as response:
            events = read_events(response)
            next(events)
            opened.wait(60)
            finished.append([name for name, _ in events][-1])

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    opened.wait(60)  # all 16 streams are open and waiting for their pictures
    for path in ("/", "/play/lighthouse/shore", "/play/night-train/corridor", "/admin/status.json"):
        response = requests.get(live_server.url + path, timeout=30, headers=HTMX, auth=("admin", ADMIN_PASSWORD))
        assert response.status_code == 200
    for thread in threads:
        thread.join(180)
    assert finished == ["done"] * 16
