"""Latent -> RGB previews."""

import io

import numpy as np
import pytest
from PIL import Image

from inference.previews import latents_to_rgb
from inference.previews import preview_jpeg


def test_projection_uses_the_sd2_factors():
    latents = np.zeros((4, 2, 2), dtype=np.float32)
    assert (latents_to_rgb(latents) == 127).all()
    latents[0] = 1.0  # channel 0 alone: (0.298, 0.207, 0.208)
    assert latents_to_rgb(latents)[0, 0].tolist() == [165, 153, 154]
    latents[0] = 100.0
    assert latents_to_rgb(latents)[0, 0].tolist() == [255, 255, 255]


def test_preview_is_a_small_jpeg_at_the_latents_resolution():
    data = preview_jpeg(np.random.default_rng(0).normal(size=(4, 64, 96)).astype(np.float32))  # a 768x512 picture
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert image.size == (96, 64)
    assert len(data) < 8000  # random latents: noise, the hardest case for JPEG


def test_wrong_shapes_are_named():
    with pytest.raises(ValueError, match=r"expected shape \(4, h, w\), got \(3, 2, 2\)"):
        latents_to_rgb(np.zeros((3, 2, 2)))
