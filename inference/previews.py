"""Live previews: a cheap latent -> RGB projection of the current latents, as a small JPEG.

SD 2.x latents project to colours with a 4x3 linear map; the coefficients are A1111's "Approx cheap" ones
(modules/sd_vae_approx.py), applied to model-space latents, giving values in about [-1, 1].  It costs well under
a millisecond at 64x64 latents, so a preview every step or two is free next to a UNet step.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

SD2_LATENT_RGB = np.array(
    [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ],
    dtype=np.float32,
)


def latents_to_rgb(latents: np.ndarray) -> np.ndarray:
    """Project one latent (4, h, w) to an RGB uint8 array (h, w, 3)."""
    if latents.ndim != 3 or latents.shape[0] != 4:
        raise ValueError(f"latents: expected shape (4, h, w), got {latents.shape}")
    rgb = np.einsum("chw,cr->hwr", latents.astype(np.float32), SD2_LATENT_RGB)
    return np.clip((rgb + 1.0) * 127.5, 0, 255).astype(np.uint8)


def preview_jpeg(latents: np.ndarray, quality: int = 80) -> bytes:
    """Return a JPEG preview of one latent at the latent's own resolution (64x64 for a 512x512 picture), as A1111's
    cheap approximation does: scaling it up here would add bytes and no detail, the browser scales it for free."""
    image = Image.fromarray(latents_to_rgb(latents))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def wants_preview(step: int, total: int, every: int) -> bool:
    """Whether a batch shows a preview at this step: every ``every`` steps and the first, never the last (the
    picture itself comes then); 0 = never.  The one rule for the service's painter and painter processes."""
    return bool(every) and (step % every == 0 or step == 1) and step < total


def preview_frames(frames: Sequence[Any]) -> list[bytes | None]:
    """Each picture's preview as JPEG bytes: latents drawn as they are, a picture a remote server sent (bytes
    already) passed on as it is, None where there is none."""
    return [frame if frame is None or isinstance(frame, bytes) else preview_jpeg(frame)
            for frame in frames]
