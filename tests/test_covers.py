"""The story shelf of the front page: each story's first picture as its cover, painted ahead, served small."""

import html
import io
import re
import threading
import time

import pytest
from PIL import Image

from inference.encodings import png_to
from tests.support import HTMX
from tests.support import data_url_image
from tests.support import final_frame

COVER = re.compile(r'<div class="cover( blank hue-\d)?" id="cover-([a-z0-9_-]+)"[^>]*>(.*?)</div>', re.S)
CHECK = re.compile(r'<div hidden id="cover-check" hx-get="([^"]+)" hx-trigger="load delay:(\d+)s"')


class SlowPainter:
    """A stand-in for a slow GPU around the real tiny backend (timing control and observation): it records the
    prompts of each batch it is given, and until ``go`` is set every batch waits at its first step (``waiting``
    tells that one does), so the test can act while a batch is being painted."""

    def __init__(self, real):
        self.real = real
        self.calls = []
        self.waiting = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests, on_step=None):
        self.calls.append([r.prompt for r in requests])

        def step(index, total, previews):
            if not self.go.is_set():
                self.waiting.set()
                assert self.go.wait(120)
            if on_step is not None:
                on_step(index, total, previews)

        return self.real.generate(requests, step)


def covers(page: str) -> dict[str, str]:
    """Each card's cover: "blank" (its title on a coloured ground) or the address of its picture."""
    found = {}
    for blank, slug, inside in COVER.findall(page):
        src = re.search(r'<img src="([^"]+)"', inside)
        found[slug] = "blank" if blank else html.unescape(src.group(1)) if src else "no picture"
    return found


def wait_idle(app) -> None:
    """Until nothing is waiting or being painted (a generous deadline against a hang, not a speed limit)."""
    images = app.extensions["images"]
    deadline = time.monotonic() + 600
    while images.stats()["queued"] or images.stats()["running"]:
        assert time.monotonic() < deadline, images.stats()
        time.sleep(0.05)


def prompt_of(app, slug: str, slide_id: str) -> str:
    """The prompt of a slide's picture as a new player gets it."""
    from game import engine
    from web.play import picture_chain

    with app.app_context():
        story = app.extensions["stories"].get(slug)
        return picture_chain(story, slide_id, engine.values(story, None))[-1][0].prompt


def shelf_of(stories_dir, count: int, shipped: bool = False) -> None:
    """A shelf of ``count`` small books (two slides each, pictures of 2 steps: quick on a CPU), instead of the
    shipped stories unless ``shipped``."""
    if not shipped:
        for path in stories_dir.glob("*.yaml"):
            path.unlink()
    for n in range(1, count + 1):
        (stories_dir / f"book{n:02d}.yaml").write_text(
            f"title: Book {n:02d}\nstart: a\nstyle: {{steps: 2}}\nslides:\n"
            f"  a:\n    text: Page one.\n    image: a lantern number {n}\n    choices:\n      - {{text: On, to: b}}\n"
            f"  b:\n    text: Page two.\n    image: a door number {n}\n")


@pytest.mark.slow
def test_a_fresh_shelf_shows_titled_grounds_then_the_painted_covers_small(make_app):
    app = make_app(PREFETCH_DEPTH=1, COVER_WIDTH=32)
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200
    first = page.get_data(as_text=True)
    assert covers(first) == {"lighthouse": "blank", "night-train": "blank"}
    assert first.count("Painting the cover…") == 2
    assert '<span class="cover-title">The Lighthouse Keeper</span>' in first
    assert "A storm, a dark lighthouse" in first  # the line about the story
    assert CHECK.search(first)  # one check for the whole shelf
    wait_idle(app)

    painted = client.get("/").get_data(as_text=True)
    assert "cover-check" not in painted and "Painting the cover" not in painted  # nothing left to wait for
    src = covers(painted)["lighthouse"]
    assert src.startswith("/play/lighthouse/cover?v=")
    assert 'width="32" height="32"' in painted
    image = client.get(src)
    assert image.status_code == 200 and image.mimetype == "image/webp"
    cover = Image.open(io.BytesIO(image.data))
    assert cover.format == "WEBP" and cover.size == (32, 32)  # the 64x64 picture, made small
    assert "immutable" in image.headers["Cache-Control"] and "max-age=31536000" in image.headers["Cache-Control"]
    assert "HX-Request" in image.headers["Vary"]
    assert client.get(src, headers={"If-None-Match": image.headers["ETag"]}).status_code == 304
    unversioned = client.get("/play/lighthouse/cover")
    assert unversioned.data == image.data and unversioned.headers["Cache-Control"] == "no-cache"

    # the cover is the first picture a new player gets, made small; painted already, it comes with the slide
    assert "sse-connect" not in client.get("/play/lighthouse/shore").get_data(as_text=True)
    first_picture = client.get("/play/lighthouse/shore/image?format=png").data
    assert image.data == png_to(first_picture, "webp", 32)


def test_the_shelf_check_swaps_in_each_cover_as_it_is_painted_then_stops(make_app, stories_dir):
    shelf_of(stories_dir, 2)
    app = make_app(PREFETCH_DEPTH=1)
    client = app.test_client()
    url, delay = CHECK.search(client.get("/").get_data(as_text=True)).groups()
    url = html.unescape(url)
    assert url.startswith("/covers?") and "book01" in url and "book02" in url and int(delay) >= 3
    wait_idle(app)
    swapped = client.get(url, headers=HTMX)
    assert swapped.status_code == 200 and "HX-Request" in swapped.headers["Vary"]
    body = swapped.get_data(as_text=True)
    assert "<html" not in body
    assert body.count('hx-swap-oob="true"') == 2
    assert set(covers(body)) == {"book01", "book02"}
    assert all(src.startswith("/play/book0") for src in covers(body).values())
    assert "cover-check" not in body  # all painted: no more checks
    assert client.get(url).headers["Location"] == "/"  # without htmx: the story list


def test_checks_back_off_a_bounded_number_of_times(make_app, stories_dir, story_backend):
    shelf_of(stories_dir, 1)
    painter = SlowPainter(story_backend)  # nothing gets painted while the test looks
    app = make_app(PREFETCH_DEPTH=1, BACKEND_INSTANCE=painter)
    client = app.test_client()
    try:
        url = html.unescape(CHECK.search(client.get("/").get_data(as_text=True)).group(1))
        delays = []
        for _ in range(40):
            body = client.get(url, headers=HTMX).get_data(as_text=True)
            assert "hx-swap-oob" not in body  # nothing painted yet
            found = CHECK.search(body)
            if not found:
                break
            url, delay = html.unescape(found.group(1)), int(found.group(2))
            delays.append(delay)
        assert 10 <= len(delays) < 40  # a bounded number of checks...
        assert delays == sorted(delays) and delays[0] < delays[-1] <= 30  # ...each one later, up to half a minute
        for odd in ("tries=-1", "tries=%C2%B2", "tries=99999", "pending=" + "a," * 5000, "pending=../x,NOPE,"):
            assert client.get("/covers?" + odd, headers=HTMX).status_code == 200
    finally:
        painter.go.set()
    wait_idle(app)


def test_the_htmx_cover_is_the_card_partial_and_anyone_else_gets_the_picture(make_app, stories_dir):
    shelf_of(stories_dir, 1)
    (stories_dir / "broken.yaml").write_text("title: Broken\nstart: a\nslides:\n  a:\n    text: hi\n"
                                             "    choices:\n      - {text: go, to: b}\n")
    app = make_app(PREFETCH_DEPTH=1)
    client = app.test_client()
    partial = client.get("/play/book01/cover", headers=HTMX)
    assert partial.status_code == 200 and "HX-Request" in partial.headers["Vary"]
    assert "<html" not in partial.get_data(as_text=True)
    assert covers(partial.get_data(as_text=True)) == {"book01": "blank"}  # asked for: it is being painted
    plain = client.get("/play/book01/cover")
    assert plain.status_code in (503, 200)  # being painted (or, on a fast machine, painted already)
    wait_idle(app)
    partial = client.get("/play/book01/cover", headers=HTMX).get_data(as_text=True)
    assert covers(partial)["book01"].startswith("/play/book01/cover?v=")
    plain = client.get("/play/book01/cover")
    assert plain.status_code == 200 and plain.mimetype == "image/webp"
    assert Image.open(io.BytesIO(plain.data)).size == (64, 64)  # never made larger than the picture
    assert client.get("/play/no-such-story/cover").status_code == 404
    assert client.get("/play/no-such-story/cover", headers=HTMX).status_code == 404
    assert client.get("/play/Bad..Slug/cover").status_code == 404
    assert client.get("/play/broken/cover").status_code == 404  # a story that cannot be played has no picture
    broken = client.get("/play/broken/cover", headers=HTMX).get_data(as_text=True)
    assert covers(broken) == {"broken": "blank"} and "Painting" not in broken


def test_a_broken_story_has_a_titled_cover_and_the_shelf_still_works(make_app, stories_dir):
    shelf_of(stories_dir, 1)
    (stories_dir / "broken.yaml").write_text("title: Broken\nstart: a\nslides:\n  a:\n    text: hi\n"
                                             "    choices:\n      - {text: go, to: b}\n")
    app = make_app(PREFETCH_DEPTH=1)
    page = app.test_client().get("/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert covers(body) == {"book01": "blank", "broken": "blank"}
    assert "cannot be played until they are fixed" in body
    card = body[body.index('id="cover-broken"'):]
    assert "Painting the cover" not in card[: card.index("</div>")]  # no picture is on its way for it
    wait_idle(app)


@pytest.mark.slow
def test_covers_are_painted_ahead_once_each_and_a_player_preempts_them(make_app, stories_dir, story_backend):
    shelf_of(stories_dir, 2)
    painter = SlowPainter(story_backend)
    app = make_app(PREFETCH_DEPTH=1, BACKEND_INSTANCE=painter, BATCH_SIZE=1)
    images = app.extensions["images"]
    try:
        app.test_client().get("/")
        assert painter.waiting.wait(60)  # a cover is being painted...
        app.test_client().get("/")  # ...and a second visitor's shelf joins the covers already asked for
        assert images.stats()["counters"]["prefetched"] == 2
        player = app.test_client()
        player.get("/play/book02/b")  # a player waits for a picture: paint-ahead gives way
    finally:
        painter.go.set()
    assert data_url_image(final_frame(player, "/play/book02/b")).size == (64, 64)
    wait_idle(app)
    covers_painted = {prompt_of(app, "book01", "a"), prompt_of(app, "book02", "a")}
    prompts = [call[0] for call in painter.calls]
    assert prompts[0] in covers_painted, prompts
    assert prompts[1] == prompt_of(app, "book02", "b"), prompts  # right after the stopped cover: the player's
    assert sorted(prompts[2:]) == sorted(covers_painted | {prompts[0]}), prompts  # the stopped one again, later
    assert images.stats()["counters"]["preempted"] == 1
    assert "blank" not in covers(app.test_client().get("/").get_data(as_text=True)).values()


@pytest.mark.slow
def test_a_long_shelf_asks_for_a_few_covers_at_a_time_first_cards_first(make_app, stories_dir, story_backend):
    from web.covers import COVERS_AHEAD

    shelf_of(stories_dir, 12)
    painter = SlowPainter(story_backend)
    app = make_app(PREFETCH_DEPTH=1, BACKEND_INSTANCE=painter)
    images = app.extensions["images"]
    try:
        page = app.test_client().get("/").get_data(as_text=True)
        assert list(covers(page).values()) == ["blank"] * 12
        assert images.stats()["counters"]["prefetched"] == COVERS_AHEAD == 8  # the first cards
        assert painter.waiting.wait(60)
    finally:
        painter.go.set()
    wait_idle(app)
    page = app.test_client().get("/").get_data(as_text=True)  # the first 8 painted; this view asks for the rest
    shelf = covers(page)
    assert [slug for slug, src in shelf.items() if src != "blank"] == [f"book{n:02d}" for n in range(1, 9)]
    assert images.stats()["counters"]["prefetched"] == 12
    wait_idle(app)
    assert "blank" not in covers(app.test_client().get("/").get_data(as_text=True)).values()


@pytest.mark.slow
def test_a_full_queue_leaves_the_titles_and_the_next_check_asks_again(make_app, stories_dir, story_backend):
    shelf_of(stories_dir, 6)
    painter = SlowPainter(story_backend)
    app = make_app(PREFETCH_DEPTH=1, BACKEND_INSTANCE=painter, QUEUE_LIMIT=2, BATCH_SIZE=1)
    images = app.extensions["images"]
    try:
        page = app.test_client().get("/")
        assert page.status_code == 200
        assert images.stats()["queued"] <= 2 and images.stats()["counters"]["rejected"] >= 1
        body = page.get_data(as_text=True)
        assert list(covers(body).values()) == ["blank"] * 6
        assert body.count("Painting the cover…") == 6  # turned away for now: asked again by the next check
        url = html.unescape(CHECK.search(body).group(1))
    finally:
        painter.go.set()
    client = app.test_client()
    for _ in range(10):  # each check swaps in what was painted and asks for more, as the queue has room
        wait_idle(app)
        found = CHECK.search(client.get(url, headers=HTMX).get_data(as_text=True))
        if not found:
            break
        url = html.unescape(found.group(1))
    assert "blank" not in covers(client.get("/").get_data(as_text=True)).values()
