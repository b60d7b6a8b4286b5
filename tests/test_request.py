"""GenerationRequest: validation (naming the field), canonical sampler names, cache keys, batch keys, img2img."""

import base64
import hashlib
import io
import json

import pytest
from PIL import Image

from inference.errors import RequestError
from inference.request import GenerationRequest
from inference.samplers import SAMPLERS


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


# -- img2img ---------------------------------------------------------------------------------------------------


def png(size=(64, 64), color=(200, 100, 50), fmt="PNG", mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


SOURCE = png()
IMG2IMG = GenerationRequest(prompt="a lighthouse", seed=5, init_image=SOURCE)


def test_txt2img_cache_keys_are_exactly_what_they_were_before_img2img():
    # pinned from main before img2img existed: every cached txt2img picture keeps its key
    assert GenerationRequest(prompt="a lighthouse", seed=5).cache_key("m") == (
        "cfcd8c5bb24c18ed0195229f831c7f269ebe977f14840ec672eac45d8003a981")
    assert GenerationRequest(prompt="a lighthouse at dusk", negative_prompt="blurry", seed=1234, steps=25,
                             cfg_scale=6.5, width=768, height=512, sampler_name="Euler a", tiling=True,
                             restore_faces=True).cache_key("sd21|dtype=fp16") == (
        "98e6cd3f1aaa86f33c0aa0159c59f7cc8f753d62613a39010848a156e1675c2a")
    # and img2img settings left at their defaults do not touch a txt2img key
    assert GenerationRequest(prompt="x", seed=1, mask_blur=9, denoising_strength=0.2).cache_key("m") == (
        GenerationRequest(prompt="x", seed=1).cache_key("m"))


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"denoising_strength": 1.5}, "denoising_strength", "between 0 and 1, got 1.5"),
        ({"denoising_strength": -0.1}, "denoising_strength", "between 0 and 1"),
        ({"denoising_strength": "0.5"}, "denoising_strength", "must be a number"),
        ({"resize_mode": 4}, "resize_mode", "between 0 and 3, got 4"),
        ({"mask_blur": 65}, "mask_blur", "between 0 and 64"),
        ({"inpainting_fill": 4}, "inpainting_fill", "between 0 and 3"),
        ({"inpaint_full_res_padding": 300}, "inpaint_full_res_padding", "between 0 and 256"),
        ({"inpainting_mask_invert": 2}, "inpainting_mask_invert", "between 0 and 1"),
        ({"inpaint_full_res": 1}, "inpaint_full_res", "true or false"),
        ({"init_from": "abc"}, "init_from", "64 lowercase hex characters"),
        ({"init_image": b"not a picture"}, "init_image", "not a picture Pillow can read"),
        ({"init_image": "aGVsbG8="}, "init_image", "must be the bytes of a PNG, WebP or JPEG picture, got str"),
        ({"init_image": png(fmt="GIF", mode="P", color=1)}, "init_image", "is a GIF picture; send a PNG, WebP or JPEG"),
        ({"init_image": png((2049, 2048))}, "init_image", "2049x2048 pixels; at most 4194304 pixels (2048x2048)"),
        ({"init_image": b"\x89PNG" + bytes(16 * 1024 * 1024)}, "init_image", "at most 16777216 (16 MB) allowed"),
        ({"init_image": None, "mask": SOURCE}, "mask", "needs a picture to paint on"),
        ({"mask": b"junk"}, "mask", "not a picture"),
    ],
)
def test_bad_img2img_fields_are_named(changes, field, words):
    with pytest.raises(RequestError) as info:
        GenerationRequest(**{"prompt": "a lighthouse", "init_image": SOURCE, **changes})
    assert info.value.field == field
    assert words in info.value.message


def test_img2img_is_told_by_its_picture_or_source_key_and_never_shows_bytes():
    assert not GenerationRequest(prompt="x").is_img2img
    assert IMG2IMG.is_img2img
    assert GenerationRequest(prompt="x", init_from="a" * 64).is_img2img
    assert "init_image" not in repr(IMG2IMG) and "\\x89PNG" not in repr(IMG2IMG)


def test_img2img_cache_keys_hash_the_pictures_and_cover_the_img2img_fields():
    base = IMG2IMG.cache_key("m")
    assert base != GenerationRequest(prompt="a lighthouse", seed=5).cache_key("m")
    assert base == GenerationRequest(prompt="a lighthouse", seed=5, init_image=bytes(SOURCE)).cache_key("m")
    assert IMG2IMG.replace(init_image=png(color=(0, 0, 0))).cache_key("m") != base
    for change in ({"denoising_strength": 0.5}, {"resize_mode": 1}, {"mask": png(color=(255, 255, 255))}):
        assert IMG2IMG.replace(**change).cache_key("m") != base, change
    # mask settings matter only with a mask
    assert IMG2IMG.replace(mask_blur=8, inpainting_fill=2).cache_key("m") == base
    masked = IMG2IMG.replace(mask=png(color=(255, 255, 255)))
    for change in ({"mask_blur": 8}, {"inpainting_fill": 1}, {"inpaint_full_res": False},
                   {"inpaint_full_res_padding": 32}, {"inpainting_mask_invert": 1}):
        assert masked.replace(**change).cache_key("m") != masked.cache_key("m"), change
    # a continuation is keyed by its source's key, loaded into init_image or not yet
    follow = GenerationRequest(prompt="a lighthouse", seed=5, init_from="ab" * 32)
    assert follow.cache_key("m") == follow.replace(init_image=SOURCE).cache_key("m") != base
    assert follow.cache_key("m") != follow.replace(init_from="cd" * 32).cache_key("m")


def test_picture_digests_are_computed_once_and_follow_replace():
    assert IMG2IMG.digest("init_image") == hashlib.sha256(SOURCE).hexdigest()
    assert IMG2IMG.digest("mask") is None
    copy = IMG2IMG.replace(seed=6)
    assert copy.__dict__["_digests"]["init_image"] == IMG2IMG.digest("init_image")
    other = png(color=(1, 2, 3))
    assert IMG2IMG.replace(init_image=other).digest("init_image") == hashlib.sha256(other).hexdigest()


def test_batch_keys_keep_img2img_apart_unless_truly_compatible():
    txt = GenerationRequest(prompt="a lighthouse", seed=5)
    assert txt.batch_key() != IMG2IMG.batch_key()
    # other pictures, seeds and prompts batch together; strength, size and latent upscale do not
    assert IMG2IMG.batch_key() == IMG2IMG.replace(init_image=png(color=(9, 9, 9)), seed=7, prompt="y").batch_key()
    assert IMG2IMG.batch_key() == IMG2IMG.replace(resize_mode=1).batch_key()
    for change in ({"denoising_strength": 0.5}, {"width": 128}, {"steps": 4}, {"resize_mode": 3},
                   {"cfg_scale": 5.0}, {"sampler_name": "Euler"}):
        assert IMG2IMG.replace(**change).batch_key() != IMG2IMG.batch_key(), change
    masked = IMG2IMG.replace(mask=SOURCE)
    assert masked.batch_key() != IMG2IMG.replace(mask=SOURCE).batch_key()  # a masked picture is painted alone
    assert masked.batch_key() == masked.batch_key()


def test_to_dict_is_json_safe_and_round_trips():
    assert list(GenerationRequest(prompt="x").to_dict()) == ["prompt", "negative_prompt", "seed", "steps", "cfg_scale",
                                                            "width", "height", "sampler_name", "scheduler", "tiling",
                                                            "restore_faces"]
    masked = IMG2IMG.replace(mask=png(color=(255, 255, 255)), denoising_strength=0.4, resize_mode=2)
    data = json.loads(json.dumps(masked.to_dict()))
    assert data["init_images"] == [base64.b64encode(SOURCE).decode()]
    assert data["denoising_strength"] == 0.4 and data["resize_mode"] == 2
    assert GenerationRequest.from_dict(data) == masked
    follow = GenerationRequest(prompt="x", init_from="ab" * 32)
    assert follow.to_dict()["init_images"] == [] and follow.to_dict()["init_from"] == "ab" * 32
    assert GenerationRequest.from_dict(json.loads(json.dumps(follow.to_dict()))) == follow
