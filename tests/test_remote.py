"""The remote backend against our own API server over real HTTP (Lanternslide -> Lanternslide)."""

import numpy as np
import pytest

from inference.backend import BackendUnavailable
from inference.errors import RequestError
from inference.remote import RemoteBackend
from inference.request import GenerationRequest
from tests.support import ApiServer
from tests.support import data_url_image
from tests.support import encoded_picture
from tests.support import final_frame
from tests.support import free_port
from tests.support import smooth_picture
from tests.support import square_mask

REQUEST = GenerationRequest(prompt="a lighthouse", seed=3, steps=6, width=64, height=64)


def ready_remote(api_server, **kwargs):
    remote = RemoteBackend(api_server.url, f"{ApiServer.user}:{ApiServer.password}", **kwargs)
    remote._check()
    assert remote.status().ready, remote.status()
    return remote


@pytest.mark.slow
def test_paints_on_the_remote_server_with_progress(api_server):
    remote = ready_remote(api_server, poll_interval=0.05)
    steps = []
    result = remote.generate([REQUEST.replace(steps=40)], lambda step, total, preview: steps.append((step, total)))[0]
    assert result.image.size == (64, 64)
    assert result.seed == 3
    assert steps and all(total == 40 for _, total in steps)
    again = remote.generate([REQUEST.replace(steps=40)])[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))


@pytest.mark.slow
def test_max_size_applies_to_remote_pictures_too(api_server):
    remote = RemoteBackend(api_server.url, f"{ApiServer.user}:{ApiServer.password}", max_size=64)
    result = remote.generate([REQUEST.replace(width=512, height=768)])[0]
    assert result.image.size == (64, 96)
    assert "512x768 painted at 64x96" in result.info["scaled"]


def test_base_url_may_include_the_api_path(api_server):
    remote = RemoteBackend(api_server.url + "/sdapi/v1/", f"{ApiServer.user}:{ApiServer.password}")
    assert remote.api == api_server.url + "/sdapi/v1"


def test_wrong_credentials_are_named(api_server):
    remote = RemoteBackend(api_server.url, f"{ApiServer.user}:wrong")
    remote._check()
    status = remote.status()
    assert status.state == "failed"
    assert f"The image server at {api_server.url} refused the credentials" in status.message
    assert "--api-auth" in status.message


def test_a_server_that_is_down_is_named_and_retried_a_bounded_number_of_times():
    url = f"http://127.0.0.1:{free_port()}"
    remote = RemoteBackend(url, retries=1, connect_timeout=1)
    remote._check()
    assert remote.status().state == "failed"
    assert f"The image server at {url} cannot be reached" in remote.status().message
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        remote.generate([REQUEST])


@pytest.mark.slow
def test_the_game_plays_on_a_remote_server(make_app, api_server):
    app = make_app(BACKEND="remote", API_URL=api_server.url, API_AUTH=f"{ApiServer.user}:{ApiServer.password}",
                   BACKEND_INSTANCE=None)
    client = app.test_client()
    assert data_url_image(final_frame(client, "/play/lighthouse/shore")).size == (64, 64)


def test_the_game_stays_playable_when_the_remote_server_is_down(make_app):
    url = f"http://127.0.0.1:{free_port()}"
    app = make_app(BACKEND="remote", API_URL=url, BACKEND_INSTANCE=None)
    client = app.test_client()
    page = client.get("/play/lighthouse/shore")
    assert page.status_code == 200
    html = final_frame(client, "/play/lighthouse/shore")
    assert f"The image server at {url} cannot be reached" in html
    assert "Try again" in html
    assert client.post("/play/lighthouse/shore", data={"choice": "1"}).status_code == 303


def test_img2img_paints_on_the_remote_server_as_it_paints_here(api_server, backend):
    remote = ready_remote(api_server)
    request = REQUEST.replace(init_image=encoded_picture(smooth_picture(96, 48)), denoising_strength=0.6,
                              resize_mode=1, width=64, height=96)
    result = remote.generate([request])[0]
    assert result.image.size == (64, 96) and result.seed == 3 and result.request.init_image == request.init_image
    here = np.asarray(backend.generate([request])[0].image).astype(int)
    assert np.abs(np.asarray(result.image).astype(int) - here).max() <= 2  # the same model paints the same picture


def test_masked_img2img_on_the_remote_server_keeps_the_unmasked_part(api_server):
    remote = ready_remote(api_server)
    source = smooth_picture(96, 48)
    request = REQUEST.replace(init_image=encoded_picture(source), denoising_strength=1.0, mask_blur=0,
                              mask=encoded_picture(square_mask((96, 48), (40, 10, 56, 26))))
    result = remote.generate([request])[0]
    assert result.image.size == (96, 48)  # "only masked", A1111's default: the init picture's size
    out, kept = np.asarray(result.image).astype(int), np.asarray(source).astype(int)
    inside = np.zeros((48, 96), bool)
    inside[10:26, 40:56] = True
    assert np.array_equal(out[~inside], kept[~inside]) and np.abs(out[inside] - kept[inside]).mean() > 5
    with pytest.raises(RequestError, match="init_from: the picture b{64} to start from was not loaded"):
        remote.generate([REQUEST.replace(init_from="b" * 64)])
