"""GenerationRequest validation, sampler naming, cache keys and image encoding."""

import io

import pytest
from PIL import Image

from inference.request import SAMPLERS
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import encode_image
from inference.request import resolve_sampler
from inference.request import to_data_url


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"steps": 0}, "steps", "between 1 and 150, got 0"),
        ({"steps": 151}, "steps", "got 151"),
        ({"steps": "20"}, "steps", "whole number"),
        ({"width": 500}, "width", "multiple of 8, got 500"),
        ({"height": 4096}, "height", "between 64 and 2048"),
        ({"width": True}, "width", "whole number"),
        ({"cfg_scale": -1.0}, "cfg_scale", "between 0 and 30"),
        ({"cfg_scale": "7"}, "cfg_scale", "must be a number"),
        ({"seed": -2}, "seed", "between -1 and"),
        ({"seed": 2**32}, "seed", "between -1 and"),
        ({"prompt": 5}, "prompt", "must be text"),
        ({"prompt": "x" * 5000}, "prompt", "at most 4000"),
        ({"tiling": "yes"}, "tiling", "true or false"),
        ({"sampler_name": "Euler z"}, "sampler_name", "unknown sampler 'Euler z'; valid: DPM++ 2M,"),
        ({"scheduler": "wobbly"}, "scheduler", "unknown scheduler 'wobbly'; valid: automatic, karras"),
        ({"sampler_name": "DDIM", "scheduler": "karras"}, "scheduler", "not available with sampler 'DDIM'"),
    ],
)
def test_bad_fields_are_named(changes, field, words):
    with pytest.raises(RequestError) as info:
        GenerationRequest(**{"prompt": "a lighthouse", **changes})
    assert info.value.field == field
    assert words in info.value.message


def test_unknown_sampler_lists_every_valid_name():
    with pytest.raises(RequestError) as info:
        GenerationRequest(prompt="x", sampler_name="nope")
    for name in SAMPLERS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "schedule", "expected"),
    [
        ("Euler a", None, ("Euler a", "automatic")),
        ("euler A", None, ("Euler a", "automatic")),
        ("k_dpmpp_2m", "Karras", ("DPM++ 2M", "karras")),
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "karras")),
        ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "exponential")),
        ("UniPC", "SGM Uniform", ("UniPC", "sgm_uniform")),
    ],
)
def test_sampler_names_resolve_like_a1111(name, schedule, expected):
    assert resolve_sampler(name, schedule) == expected


def test_request_is_canonicalised():
    request = GenerationRequest(prompt="x", sampler_name="DPM++ 2M Karras", scheduler="automatic")
    assert (request.sampler_name, request.scheduler) == ("DPM++ 2M", "karras")


def test_from_dict_ignores_unknown_keys_and_accepts_integer_cfg():
    request = GenerationRequest.from_dict({"prompt": "x", "cfg_scale": 7, "negative_promp": "typo", "steps": None})
    assert request.cfg_scale == 7.0
    assert request.steps == 20


def test_cache_key_is_stable_and_covers_every_field():
    base = GenerationRequest(prompt="a lighthouse", seed=5)
    assert base.cache_key("m") == GenerationRequest(prompt="a lighthouse", seed=5).cache_key("m")
    assert base.cache_key("m") != base.cache_key("other-model")
    for change in ({"seed": 6}, {"steps": 21}, {"width": 520}, {"tiling": True}, {"negative_prompt": "x"},
                   {"cfg_scale": 7.5}, {"sampler_name": "Euler"}):
        assert base.replace(**change).cache_key("m") != base.cache_key("m"), change
    with pytest.raises(RequestError, match="seed"):
        GenerationRequest(prompt="x").cache_key("m")


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
