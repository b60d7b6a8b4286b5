"""Picture streams against the real server (`python app.py`, waitress) read by a real HTTP client."""

import threading

import requests

from tests.support import ADMIN_PASSWORD
from tests.support import HTMX


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
