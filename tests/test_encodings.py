"""Browser encodings: a picture painted is encoded for the pages before they ask, so showing it encodes nothing."""

import threading

import pytest

from inference.encodings import BrowserEncodings
from inference.encodings import EncodeAhead
from tests.support import data_url_image
from tests.support import encoded_picture
from tests.support import smooth_picture
from tests.support import wait_until

PNG = encoded_picture(smooth_picture())


@pytest.mark.slow
def test_a_picture_painted_ahead_reaches_the_page_already_encoded(make_app):
    app = make_app(PREFETCH_DEPTH=1)
    client = app.test_client()
    images, encodings = app.extensions["images"], app.extensions["encodings"]
    client.get("/play/lighthouse/shore")  # the reader's slide: the slides its choices lead to are painted ahead

    def all_painted_and_encoded():
        stats = images.stats()
        return (not stats["queued"] and not stats["running"] and stats["counters"]["generated"] >= 3
                and encodings.stats()["made"] == stats["counters"]["generated"])

    wait_until(all_painted_and_encoded, "every picture painted, and each encoded once, with no page asking")
    made = encodings.stats()["made"]
    page = client.get("/play/lighthouse/wreckage").get_data(as_text=True)  # the choice the reader then takes
    assert "sse-connect" not in page  # the picture is in the page itself...
    picture = data_url_image(page)
    assert (picture.format, picture.size) == ("WEBP", (64, 64))
    assert encodings.stats()["made"] == made  # ...encoded before the page asked: serving it encoded nothing
    assert client.get("/play/lighthouse/wreckage/image").mimetype == "image/webp"
    assert encodings.stats()["made"] == made
    assert images.stats()["encode_ahead"] == {"waiting": 0, "encoded": made, "dropped": 0}
    images.close()  # the service's encoding ahead ends with it
    assert not images.encode_ahead.offer("a" * 64, PNG)


def test_the_api_alone_encodes_nothing_ahead(make_app):
    assert make_app(API_ALONE=True).extensions["images"].encode_ahead is None  # it has no pages


def test_with_png_pages_nothing_is_encoded(make_app):
    ahead = make_app(IMAGE_FORMAT="png").extensions["images"].encode_ahead
    assert not ahead.offer("a" * 64, PNG)  # pages get the painted PNG itself
    assert ahead.stats() == {"waiting": 0, "encoded": 0, "dropped": 0}


class HeldEncodings(BrowserEncodings):
    """The memo, with each encoding held at a gate until the test opens it (a stand-in for a slow machine), so
    pictures pile up behind the one being encoded."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def get(self, key, png, fmt, width=0):
        self.entered.set()
        assert self.gate.wait(60)
        return super().get(key, png, fmt, width)


def test_encoding_ahead_is_bounded_and_a_picture_left_over_is_encoded_by_its_first_view():
    encodings = HeldEncodings()
    ahead = EncodeAhead(encodings, "webp", limit=1)
    before = set(threading.enumerate())
    assert ahead.offer("a", PNG)  # taken at once, and held at the gate
    assert encodings.entered.wait(60)
    (worker,) = set(threading.enumerate()) - before  # one thread, started by the first picture
    assert ahead.offer("b", PNG)  # waits its turn
    assert not ahead.offer("c", PNG)  # one more than the limit: left for its first view
    assert ahead.stats() == {"waiting": 1, "encoded": 0, "dropped": 1}
    encodings.gate.set()
    wait_until(lambda: ahead.stats()["encoded"] == 2, "a and b encoded ahead")
    assert encodings.find("a", "webp")[:4] == encodings.find("b", "webp")[:4] == b"RIFF"
    assert encodings.find("c", "webp") is None
    assert encodings.get("c", PNG, "webp")[:4] == b"RIFF"  # its first view encodes it, as without encoding ahead
    assert encodings.stats()["made"] == 3
    ahead.close()
    assert not worker.is_alive()
    assert not ahead.offer("d", PNG)

