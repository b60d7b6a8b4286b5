"""Pictures as bytes: encoding painted pictures, base64 pictures read, checked pictures decoded."""

import base64
import io

import pytest
from PIL import Image

from inference.errors import RequestError
from inference.pictures import decode_base64_picture
from inference.pictures import encode_image
from inference.pictures import load_picture
from inference.pictures import to_data_url
from inference.request import GenerationRequest
from tests.support import encoded_picture

SOURCE = encoded_picture(Image.new("RGB", (64, 64), (200, 100, 50)))


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
def test_encode_round_trips(fmt):
    image = Image.new("RGB", (64, 48), (200, 100, 50))
    data = encode_image(image, fmt)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (64, 48)
    assert decoded.format.lower() == fmt
    assert to_data_url(data, fmt).startswith(f"data:image/{fmt};base64,")


def test_unknown_format_is_refused():
    with pytest.raises(RequestError, match="valid: webp, png, jpeg"):
        encode_image(Image.new("RGB", (8, 8)), "gif")


@pytest.mark.parametrize("text", [
    base64.b64encode(SOURCE).decode(),
    "data:image/png;base64," + base64.b64encode(SOURCE).decode(),
    base64.encodebytes(SOURCE).decode(),  # line breaks every 76 characters
    base64.b64encode(SOURCE).decode().rstrip("="),
])
def test_base64_pictures_are_read_with_or_without_a_data_url(text):
    assert decode_base64_picture(text, "init_images") == SOURCE


@pytest.mark.parametrize(("text", "words"), [
    ("not base64 at all!", "is not valid base64"),
    ("data:image/png,abc", "data:image/<type>;base64,<data>"),
    (5, "must be a base64 string, got int"),
    ("A" * 25_000_000, "pictures of at most 16777216 bytes allowed"),
])
def test_bad_base64_is_named(text, words):
    with pytest.raises(RequestError) as info:
        decode_base64_picture(text, "init_images")
    assert info.value.field == "init_images" and words in info.value.message


def test_a_truncated_picture_passes_the_cheap_check_but_not_the_decode():
    truncated = encoded_picture(Image.new("RGB", (64, 64), (1, 2, 3)))[:-30]
    GenerationRequest(prompt="x", init_image=truncated)  # building a request reads the header only
    with pytest.raises(RequestError, match="init_image: cannot be decoded"):
        load_picture(truncated, "init_image")
    assert load_picture(SOURCE, "init_image").size == (64, 64)
